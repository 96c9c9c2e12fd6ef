//! P4Runtime v1 and P4Info messages, and the tonic client and server of the
//! `p4.v1.P4Runtime` service; the gNMI Subscribe service (port status on
//! Stratum); Stratum's Tofino pipeline config. All generated from the .proto
//! files in `proto/`.

/// `p4.config.v1`: P4Info and P4 type information.
pub mod config {
    pub mod v1 {
        tonic::include_proto!("p4.config.v1");
    }
}

/// `p4.v1`: the P4Runtime service and its messages.
pub mod v1 {
    tonic::include_proto!("p4.v1");
}

/// `gnmi`: the gNMI Subscribe RPC and its messages (a subset of gNMI).
pub mod gnmi {
    tonic::include_proto!("gnmi");
}

/// `stratum.hal.barefoot`: the device config `stratum_bfrt` takes.
pub mod stratum {
    pub mod hal {
        pub mod barefoot {
            tonic::include_proto!("stratum.hal.barefoot");
        }
    }
}

/// The encoded `FileDescriptorSet` of every message above (for reflection,
/// e.g. parsing P4Info in protobuf text format).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/p4runtime_descriptor.bin"));

pub use prost_types::Any;
pub use tonic_types::Status as RpcStatus;
