//! A compiled pipeline as the controller pushes it: P4Info, the target's
//! device config (bmv2 JSON), and a cookie that identifies the pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use super::p4info::{P4InfoError, P4InfoRegistry};

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub registry: Arc<P4InfoRegistry>,
    /// bmv2 JSON (empty for targets that need none, like the simulated switch).
    pub device_config: Arc<Vec<u8>>,
    /// Stable across processes and restarts: FNV-1a of P4Info and device
    /// config, so a controller restart recognises its own pipeline.
    pub cookie: u64,
}

/// 64-bit FNV-1a: tiny, and stable across Rust versions (unlike std's
/// hasher), which a cookie stored on switches needs.
pub fn fnv1a(chunks: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in chunks {
        for b in *c {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Pipeline {
    pub fn new(name: &str, registry: P4InfoRegistry, device_config: Vec<u8>) -> Pipeline {
        let p4info = registry.p4info().encode_to_vec();
        let cookie = fnv1a(&[&p4info, &device_config]);
        Pipeline {
            name: name.to_string(),
            registry: Arc::new(registry),
            device_config: Arc::new(device_config),
            cookie,
        }
    }

    /// Loads `<dir>/<name>.p4info.txt` (or `.p4info.bin`) and, if present,
    /// `<dir>/<name>.json`.
    pub fn load(dir: &Path, name: &str) -> Result<Pipeline, P4InfoError> {
        let txt = dir.join(format!("{name}.p4info.txt"));
        let bin = dir.join(format!("{name}.p4info.bin"));
        let registry = if bin.exists() {
            P4InfoRegistry::load(&bin)?
        } else {
            P4InfoRegistry::load(&txt)?
        };
        let json = std::fs::read(dir.join(format!("{name}.json"))).unwrap_or_default();
        Ok(Pipeline::new(name, registry, json))
    }

    /// Where the checked-in compiled pipelines live.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("p4/build")
    }
}
