//! P4Runtime: entities by name, the P4Info registry, value encoding, whether
//! one build may be rolled out over another (`compat`), and the switch
//! client (batched writes, reads); `UpdateKind`, the project's one update
//! kind.
//!
//! May use: nothing of ours (the generated `p4runtime-proto`). The
//! simulated switch that tests run it against is in the test kit.

pub mod codec;
pub mod compat;
pub mod entity;
pub mod intern;
pub mod p4info;
pub mod pipeline;

pub use codec::CodecError;
pub use entity::*;
pub use p4info::{P4InfoError, P4InfoRegistry};
pub mod backoff;
pub mod client;

pub use client::{
    Client, ClientError, ClientOptions, Mastership, Session, SessionSender, StreamEvent, WriteError,
};
pub mod switch;

pub use pipeline::{Pipeline, PipelineError};
pub use switch::{read_all, write_ops, OpError, PacketIn, UpdateKind};
