//! Generates the P4Runtime and gNMI messages and tonic clients/servers, and
//! Stratum's Tofino pipeline config message, from our own .proto files, plus a descriptor set so P4Info text files can be parsed by
//! reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/p4/config/v1/p4types.proto",
        "proto/p4/config/v1/p4info.proto",
        "proto/p4/v1/p4data.proto",
        "proto/p4/v1/p4runtime.proto",
        "proto/gnmi/gnmi.proto",
        "proto/stratum/bf.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=proto/google/rpc/status.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(out_dir.join("p4runtime_descriptor.bin"))
        // google.rpc.Status comes from tonic-types so that tonic's rich
        // error helpers work with the Status inside MasterArbitrationUpdate.
        .extern_path(".google.rpc.Status", "::tonic_types::Status")
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
