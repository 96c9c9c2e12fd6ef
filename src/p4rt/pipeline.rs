//! A compiled pipeline as the controller pushes it: P4Info, the target's
//! device config (bmv2 JSON, or Tofino's packed binary and context, see
//! `target`), and a cookie that identifies the pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use super::p4info::{P4InfoError, P4InfoRegistry};
use crate::target::{SwitchTarget, TargetError};

/// Why a target's compiled pipeline cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{target} pipeline {pipeline:?}: {source}")]
    P4Info {
        target: &'static str,
        pipeline: String,
        source: P4InfoError,
    },
    #[error("{target} pipeline {pipeline:?}: cannot read {path}: {source} (compiled outputs are checked in under p4/build/{target}/ where the target's compiler exists)")]
    Missing {
        target: &'static str,
        pipeline: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{target} pipeline {pipeline:?}: {source}")]
    DeviceConfig {
        target: &'static str,
        pipeline: String,
        source: TargetError,
    },
}

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

    /// Loads pipeline `name` as `target` runs it: the target's P4Info and
    /// the device config it builds from its compiled files. The cookie
    /// covers the P4Info and the device config, so it changes with any
    /// of the target's artifacts that reach the switch.
    pub fn load_for(
        dir: &Path,
        name: &str,
        target: &dyn SwitchTarget,
    ) -> Result<Pipeline, PipelineError> {
        let artifacts = target.artifacts(dir, name);
        let t = target.name();
        // The P4Info first: a target not built at all names its P4Info.
        if !artifacts.p4info.exists() {
            return Err(PipelineError::Missing {
                target: t,
                pipeline: name.to_string(),
                path: artifacts.p4info.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let registry =
            P4InfoRegistry::load(&artifacts.p4info).map_err(|source| PipelineError::P4Info {
                target: t,
                pipeline: name.to_string(),
                source,
            })?;
        let mut files = Vec::with_capacity(artifacts.files.len());
        for a in &artifacts.files {
            match std::fs::read(&a.path) {
                Ok(b) => files.push(b),
                Err(e) if !a.required && e.kind() == std::io::ErrorKind::NotFound => {
                    files.push(Vec::new())
                }
                Err(source) => {
                    return Err(PipelineError::Missing {
                        target: t,
                        pipeline: name.to_string(),
                        path: a.path.display().to_string(),
                        source,
                    })
                }
            }
        }
        let device_config =
            target
                .device_config(name, &files)
                .map_err(|source| PipelineError::DeviceConfig {
                    target: t,
                    pipeline: name.to_string(),
                    source,
                })?;
        Ok(Pipeline::new(name, registry, device_config))
    }

    /// Where the checked-in compiled pipelines live.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("p4/build")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Switch;
    use crate::target::for_switch;

    fn target(yaml: &str) -> Box<dyn SwitchTarget> {
        let sw: Switch = serde_yaml::from_str(&format!(
            "{{address: 'h:1', device_id: 1, role: leaf, label: 101, {yaml}}}"
        ))
        .expect("switch");
        for_switch("leaf1", &sw).expect("target")
    }

    /// bmv2 loads as before (same cookie as `load`).
    #[test]
    fn bmv2_loads_the_checked_in_pipeline() {
        let dir = Pipeline::default_dir();
        let p = Pipeline::load_for(&dir, "fabric", target("").as_ref()).expect("bmv2 pipeline");
        let old = Pipeline::load(&dir, "fabric").expect("load");
        assert_eq!(p.cookie, old.cookie);
        assert!(!p.device_config.is_empty());
    }

    /// No TNA build is checked in: the error names the missing file.
    #[test]
    fn tofino_without_a_build_names_the_missing_file() {
        let dir = Pipeline::default_dir();
        for (yaml, file) in [
            ("target: tofino, cpu_port: 320", "tofino/p4info.txt"),
            ("target: tofino2, cpu_port: 0", "tofino2/p4info.txt"),
        ] {
            let t = target(yaml);
            if t.artifacts(&dir, "fabric").p4info.exists() {
                println!("SKIPPED: {} pipeline is checked in", t.name());
                continue;
            }
            let e = Pipeline::load_for(&dir, "fabric", t.as_ref()).expect_err("no build");
            assert!(e.to_string().contains(file), "{e}");
        }
    }

    /// A Tofino build in a temp dir: each missing file is named, then the
    /// device config is the packing of the files, and the cookie moves
    /// with each of them.
    #[test]
    fn tofino_loads_from_its_artifacts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = target("target: tofino, cpu_port: 320, device_config: stratum_bfrt");
        let a = t.artifacts(dir.path(), "fabric");
        std::fs::create_dir_all(a.p4info.parent().expect("dir")).expect("mkdir");
        std::fs::copy(Pipeline::default_dir().join("fabric.p4info.txt"), &a.p4info)
            .expect("p4info");
        let contents: Vec<&[u8]> = vec![b"\xab", b"{}", b"{\"t\":1}"];
        for (f, c) in a.files.iter().zip(&contents) {
            let e = Pipeline::load_for(dir.path(), "fabric", t.as_ref()).expect_err("missing");
            assert!(e.to_string().contains(&f.path.display().to_string()), "{e}");
            std::fs::create_dir_all(f.path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&f.path, c).expect("write");
        }
        let p = Pipeline::load_for(dir.path(), "fabric", t.as_ref()).expect("loads");
        let files: Vec<Vec<u8>> = contents.iter().map(|c| c.to_vec()).collect();
        assert_eq!(
            *p.device_config,
            t.device_config("fabric", &files).expect("encode")
        );
        let mut cookies = vec![p.cookie];
        for f in &a.files {
            let mut b = std::fs::read(&f.path).expect("read");
            b.push(b' ');
            std::fs::write(&f.path, b).expect("write");
            cookies.push(
                Pipeline::load_for(dir.path(), "fabric", t.as_ref())
                    .expect("loads")
                    .cookie,
            );
        }
        cookies.sort_unstable();
        cookies.dedup();
        assert_eq!(cookies.len(), 4, "every artifact changes the cookie");
    }
}
