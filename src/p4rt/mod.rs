//! P4Runtime: entities by name, the P4Info registry, value encoding, and the
//! switch client.

pub mod codec;
pub mod conformance;
pub mod entity;
pub mod intern;
pub mod p4info;
pub mod pipeline;

pub use codec::CodecError;
pub use entity::*;
pub use p4info::{P4InfoError, P4InfoRegistry};
pub mod backoff;
pub mod chaos;
pub mod client;

pub use client::{
    Client, ClientError, ClientOptions, Mastership, Session, SessionSender, StreamEvent, WriteError,
};
pub mod switch;

pub use switch::{read_all, write_ops, OpError, PacketIn, UpdateKind};
pub mod target;
pub use pipeline::{Pipeline, PipelineError};
