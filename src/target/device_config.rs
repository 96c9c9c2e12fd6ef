//! The two encodings of a Tofino pipeline in P4Runtime's
//! `p4_device_config`, byte for byte:
//!
//! - `bf_switchd --p4rt-server` (PI): the program name, tofino.bin and
//!   context.json, each after its length as a little-endian 32-bit
//!   integer (the layout of p4runtime-shell's Tofino config builder).
//! - `stratum_bfrt`: Stratum's `BfPipelineConfig` protobuf (program name,
//!   bfrt.json, one profile with context.json and the binary).

use p4runtime_proto::stratum::hal::barefoot::{bf_pipeline_config::Profile, BfPipelineConfig};
use prost::Message;

/// The profile name Stratum's pipeline builder gives a single-pipeline
/// program (bf-p4c's pipe directory).
pub const PROFILE_NAME: &str = "pipe";

/// Why a device config cannot be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceConfigError {
    #[error("{what} is {len} bytes, over the 2 GiB the PI packing's 32-bit length can say")]
    TooLong { what: &'static str, len: usize },
}

/// The compiled files of one Tofino pipeline.
#[derive(Debug, Clone, Copy)]
pub struct TofinoFiles<'a> {
    /// The P4 program's name (as the switch reports it).
    pub program: &'a str,
    /// bf-p4c's `pipe/tofino.bin` (`tofino2.bin` on Tofino 2).
    pub binary: &'a [u8],
    /// bf-p4c's `pipe/context.json`.
    pub context: &'a [u8],
    /// bf-p4c's `bfrt.json` (Stratum only).
    pub bfrt: &'a [u8],
}

/// The program name bf-p4c wrote at the top of `context.json`
/// (`"program_name": "fabric_tna"`), which the driver registers the
/// program under; `None` if the first 4 KiB do not name it.
pub fn compiled_program_name(context: &[u8]) -> Option<&str> {
    let head = &context[..context.len().min(4096)];
    let key = b"\"program_name\"";
    let at = head.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &head[at..];
    let open = rest.iter().position(|&b| b == b'"')? + 1;
    let len = rest[open..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[open..open + len]).ok()
}

/// The PI packing `bf_switchd --p4rt-server` takes.
pub fn bf_switchd(f: &TofinoFiles) -> Result<Vec<u8>, DeviceConfigError> {
    let parts: [(&'static str, &[u8]); 3] = [
        ("the program name", f.program.as_bytes()),
        ("tofino.bin", f.binary),
        ("context.json", f.context),
    ];
    let mut out = Vec::with_capacity(12 + parts.iter().map(|(_, p)| p.len()).sum::<usize>());
    for (what, part) in parts {
        let len = i32::try_from(part.len()).map_err(|_| DeviceConfigError::TooLong {
            what,
            len: part.len(),
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Stratum's `BfPipelineConfig`: one profile on every pipe (an empty
/// pipe scope).
pub fn stratum_bfrt(f: &TofinoFiles) -> Vec<u8> {
    BfPipelineConfig {
        p4_name: f.program.to_string(),
        bfruntime_info: f.bfrt.to_vec(),
        profiles: vec![Profile {
            profile_name: PROFILE_NAME.to_string(),
            context: f.context.to_vec(),
            binary: f.binary.to_vec(),
            pipe_scope: Vec::new(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: TofinoFiles = TofinoFiles {
        program: "myprog",
        binary: b"\xab",
        context: b"{}",
        bfrt: b"{\"t\":1}",
    };

    /// The same bytes p4runtime-shell's builder test expects for
    /// ("myprog", tofino.bin = AB, context.json = "{}").
    #[test]
    fn bf_switchd_packing_byte_for_byte() {
        let mut want = Vec::new();
        want.extend_from_slice(b"\x06\x00\x00\x00myprog");
        want.extend_from_slice(b"\x01\x00\x00\x00\xab");
        want.extend_from_slice(b"\x02\x00\x00\x00{}");
        assert_eq!(bf_switchd(&FILES).expect("encode"), want);
        // A length over 255 spreads over the bytes, least significant first.
        let big = vec![7u8; 0x0102];
        let out = bf_switchd(&TofinoFiles {
            binary: &big,
            ..FILES
        })
        .expect("encode");
        assert_eq!(&out[10..14], &[0x02, 0x01, 0x00, 0x00]);
        assert_eq!(out.len(), 4 + 6 + 4 + 0x0102 + 4 + 2);
    }

    #[test]
    fn program_name_from_context_json() {
        let ctx = b"{\n  \"build_date\": \"x\",\n  \"program_name\": \"fabric_tna\",\n";
        assert_eq!(compiled_program_name(ctx), Some("fabric_tna"));
        assert_eq!(compiled_program_name(b"{}"), None);
        assert_eq!(compiled_program_name(b"{\"program_name\": \"cut"), None);
    }

    /// BfPipelineConfig { p4_name: 1, bfruntime_info: 2, profiles: 3 {
    /// profile_name: 1, context: 2, binary: 3 } }, written out by hand.
    #[test]
    fn stratum_config_byte_for_byte() {
        let mut profile = Vec::new();
        profile.extend_from_slice(b"\x0a\x04pipe");
        profile.extend_from_slice(b"\x12\x02{}");
        profile.extend_from_slice(b"\x1a\x01\xab");
        let mut want = Vec::new();
        want.extend_from_slice(b"\x0a\x06myprog");
        want.extend_from_slice(b"\x12\x07{\"t\":1}");
        want.push(0x1a);
        want.push(profile.len() as u8);
        want.extend_from_slice(&profile);
        assert_eq!(stratum_bfrt(&FILES), want);
        let back = BfPipelineConfig::decode(want.as_slice()).expect("decode");
        assert_eq!(back.profiles[0].binary, b"\xab");
    }
}
