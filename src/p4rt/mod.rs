//! P4Runtime: entities by name, the P4Info registry, value encoding, and the
//! switch client.

pub mod codec;
pub mod entity;
pub mod p4info;

pub use codec::CodecError;
pub use entity::*;
pub use p4info::{P4InfoError, P4InfoRegistry};
