//! The pipeline cache: owns the compiled pipelines (P4Info and device
//! config) the controller has loaded, one per pipeline name, shared by
//! every agent whose switch runs it. Uses `p4rt::Pipeline` to load them
//! and, for simulated switches without a compiled fabric pipeline, the
//! contract's P4Info (`compile::contract`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::compile;
use crate::p4rt::Pipeline;

#[derive(Debug)]
pub(super) struct PipelineCache {
    /// Where compiled pipelines live (`<name>.p4info.txt`, `<name>.json`).
    dir: PathBuf,
    /// Simulated switches: the contract's P4Info stands in for a missing
    /// compiled fabric pipeline.
    simulated: bool,
    loaded: BTreeMap<String, Arc<Pipeline>>,
}

impl PipelineCache {
    pub(super) fn new(dir: PathBuf, simulated: bool) -> Self {
        PipelineCache {
            dir,
            simulated,
            loaded: BTreeMap::new(),
        }
    }

    /// The pipeline called `name`, loaded on first use; `None` (logged)
    /// where it cannot be loaded: its switches get no agent until it can.
    pub(super) fn get(&mut self, name: &str) -> Option<Arc<Pipeline>> {
        if let Some(p) = self.loaded.get(name) {
            return Some(p.clone());
        }
        let loaded = if self.simulated && name == "fabric" {
            let (p, contract) = compile::contract::simulation_pipeline(&self.dir);
            if contract {
                tracing::warn!(
                    "compiled fabric pipeline missing: simulated switches use the contract P4Info"
                );
            }
            Ok(p)
        } else {
            Pipeline::load(&self.dir, name)
        };
        match loaded {
            Ok(p) => {
                let p = Arc::new(p);
                self.loaded.insert(name.to_string(), p.clone());
                Some(p)
            }
            Err(e) => {
                tracing::error!(pipeline = name, dir = %self.dir.display(), error = %e, "cannot load pipeline");
                None
            }
        }
    }
}
