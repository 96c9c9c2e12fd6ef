//! P4Runtime: entities by name, the P4Info registry, value encoding, and the
//! switch client.

pub mod entity;
