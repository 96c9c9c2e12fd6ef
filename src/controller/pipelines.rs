//! The pipeline cache: owns the compiled pipelines (P4Info and device
//! config) the controller has loaded, one per (target, device-config
//! format, pipeline name), shared by every agent whose switch runs it.
//! Uses the switch's target (`target::for_switch`) and `Pipeline::load_for`
//! to load them and, for simulated switches without a compiled fabric
//! pipeline of their target, the bmv2 one or the contract's P4Info (in its
//! TNA form for Tofino targets, `compile::contract`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::compile;
use crate::config::{DeviceConfigFormat, Switch};
use crate::p4rt::Pipeline;
use crate::target;

/// Which loaded pipeline: target, device-config format, pipeline name.
type Key = (&'static str, Option<DeviceConfigFormat>, String);

#[derive(Debug)]
pub(super) struct PipelineCache {
    /// Where compiled pipelines live (`<name>.p4info.txt`, `<name>.json`).
    dir: PathBuf,
    /// Simulated switches: the contract's P4Info stands in for a missing
    /// compiled fabric pipeline.
    simulated: bool,
    loaded: BTreeMap<Key, Arc<Pipeline>>,
}

impl PipelineCache {
    pub(super) fn new(dir: PathBuf, simulated: bool) -> Self {
        PipelineCache {
            dir,
            simulated,
            loaded: BTreeMap::new(),
        }
    }

    /// The pipeline switch `name` runs, as its target loads it, loaded on
    /// first use; `None` (logged) where it cannot be loaded: the switch
    /// gets no agent until it can.
    pub(super) fn get(&mut self, name: &str, sw: &Switch) -> Option<Arc<Pipeline>> {
        let target = match target::for_switch(name, sw) {
            Ok(t) => t,
            // Validation rejects such a switch before it gets here.
            Err(e) => {
                tracing::error!(switch = name, error = %e, "no target for the switch");
                return None;
            }
        };
        let key: Key = (target.name(), sw.device_config, sw.pipeline.clone());
        if let Some(p) = self.loaded.get(&key) {
            return Some(p.clone());
        }
        let pipeline = sw.pipeline.as_str();
        let loaded = match Pipeline::load_for(&self.dir, pipeline, target.as_ref()) {
            Ok(p) => Ok(p),
            Err(e) if self.simulated && pipeline == "fabric" => {
                let (p, contract) =
                    compile::contract::simulation_pipeline_for(&self.dir, target.arch());
                tracing::warn!(
                    target = target.name(),
                    error = %e,
                    "simulated switches use the {}",
                    if contract { "contract's P4Info" } else { "bmv2 fabric pipeline" }
                );
                Ok(p)
            }
            Err(e) => Err(e),
        };
        match loaded {
            Ok(p) => {
                let p = Arc::new(p);
                self.loaded.insert(key, p.clone());
                Some(p)
            }
            Err(e) => {
                tracing::error!(switch = name, dir = %self.dir.display(), error = %e, "cannot load pipeline");
                None
            }
        }
    }
}
