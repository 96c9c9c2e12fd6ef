//! The pipeline cache: owns the compiled pipelines (P4Info and device
//! config) the controller has loaded, one per (directory, target,
//! device-config format, pipeline name), shared by every agent whose
//! switch runs it. More than one directory: during a rolling upgrade
//! (`upgrade`) switches run the old build or the new one.
//! Uses the switch's target (`target::for_switch`) and `Pipeline::load_for`
//! to load them and, for simulated switches without a compiled fabric
//! pipeline of their target, the bmv2 one or the contract's P4Info (in its
//! TNA form for Tofino targets, `compile::contract`). And whether a
//! roll-out may go from one loaded pipeline to another (`p4rt::compat`),
//! decided once per pair.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::compile;
use crate::config::{DeviceConfigFormat, Switch};
use crate::p4rt::{compat, Pipeline};
use crate::target;

/// Which loaded pipeline: directory, target, device-config format,
/// pipeline name.
type Key = (PathBuf, &'static str, Option<DeviceConfigFormat>, String);

#[derive(Debug)]
pub(super) struct PipelineCache {
    /// Where compiled pipelines live (`<name>.p4info.txt`, `<name>.json`).
    dir: PathBuf,
    /// Simulated switches: the contract's P4Info stands in for a missing
    /// compiled fabric pipeline.
    simulated: bool,
    loaded: BTreeMap<Key, Arc<Pipeline>>,
    /// Loads that failed, not retried until `forget_failures` (the
    /// upgrade asks every status tick; a broken directory must not be
    /// re-read that often).
    failed: BTreeMap<Key, String>,
    /// `rollable`'s answers by (old cookie, new cookie): the upgrade asks
    /// every status tick.
    rollable: BTreeMap<(u64, u64), Result<(), String>>,
}

impl PipelineCache {
    pub(super) fn new(dir: PathBuf, simulated: bool) -> Self {
        PipelineCache {
            dir,
            simulated,
            loaded: BTreeMap::new(),
            failed: BTreeMap::new(),
            rollable: BTreeMap::new(),
        }
    }

    /// Retries failed loads on next use (a new configuration: the files
    /// may have been fixed).
    pub(super) fn forget_failures(&mut self) {
        self.failed.clear();
    }

    /// The pipeline switch `name` runs, as its target loads it, loaded on
    /// first use; `None` (logged) where it cannot be loaded: the switch
    /// gets no agent until it can.
    pub(super) fn get(&mut self, name: &str, sw: &Switch) -> Option<Arc<Pipeline>> {
        let dir = self.dir.clone();
        match self.load(&dir, name, sw) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(switch = name, error = %e, "cannot load pipeline");
                None
            }
        }
    }

    /// Whether switches running `old` may be rolled to `new` (the rule of
    /// a rollable change, `p4rt::compat`); why not, naming the first
    /// incompatibilities.
    pub(super) fn rollable(&mut self, old: &Pipeline, new: &Pipeline) -> Result<(), String> {
        if old.cookie == new.cookie {
            return Ok(());
        }
        self.rollable
            .entry((old.cookie, new.cookie))
            .or_insert_with(|| {
                let found = compat::rollable(old.registry.p4info(), new.registry.p4info());
                if found.is_empty() {
                    return Ok(());
                }
                let why = compat::summary(&found, 3);
                tracing::warn!(old = %format!("{:#x}", old.cookie), new = %format!("{:#x}", new.cookie), incompatibilities = found.len(), "new pipeline not rollable: {why}");
                Err(format!("not rollable from the running build: {why}"))
            })
            .clone()
    }

    /// The controller's own directory (`--pipeline-dir`).
    pub(super) fn default_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The pipeline switch `name` runs when built in `dir`, loaded on
    /// first use; why not where it cannot be loaded.
    pub(super) fn load(
        &mut self,
        dir: &std::path::Path,
        name: &str,
        sw: &Switch,
    ) -> Result<Arc<Pipeline>, String> {
        // Validation rejects a switch without a target before it gets here.
        let target = target::for_switch(name, sw).map_err(|e| e.to_string())?;
        let key: Key = (
            dir.to_path_buf(),
            target.name(),
            sw.device_config,
            sw.pipeline.clone(),
        );
        if let Some(p) = self.loaded.get(&key) {
            return Ok(p.clone());
        }
        if let Some(e) = self.failed.get(&key) {
            return Err(e.clone());
        }
        let pipeline = sw.pipeline.as_str();
        let loaded = match Pipeline::load_for(dir, pipeline, target.as_ref()) {
            Ok(p) => Ok(p),
            Err(e) if self.simulated && pipeline == "fabric" => {
                let (p, contract) = compile::contract::simulation_pipeline_for(dir, target.arch());
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
                Ok(p)
            }
            Err(e) => {
                let e = format!("{}: {e}", dir.display());
                self.failed.insert(key, e.clone());
                Err(e)
            }
        }
    }
}
