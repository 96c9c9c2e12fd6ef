//! P4Runtime: the P4Info registry, value encoding, and the switch client.
