//! "Converged" as the switches see it: read every switch back over
//! P4Runtime and compare with what `compile()` says it must hold — never
//! trusting the controller's own account. Works on bmv2 and on in-process
//! simulated switches alike.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::compile::{self, Hosts};
use crate::config::{Fabric, Switch};
use crate::p4rt::{Client, ClientOptions, P4InfoRegistry, Pipeline, SwitchEntities};
use crate::topo::{ObservedState, Topology};

/// What every switch must hold for `fabric`, with the topology as
/// configured (all links up) and no learned hosts — the controller's view
/// of a fresh lab.
pub fn expected(fabric: &Fabric) -> BTreeMap<String, SwitchEntities> {
    let topo = Topology::build(fabric, &ObservedState::default(), None);
    compile::compile(fabric, &topo, &Hosts::new())
}

/// The compiled pipelines the fabric's switches run, by pipeline name.
pub fn load_pipelines(dir: &Path, fabric: &Fabric) -> Result<BTreeMap<String, Arc<Pipeline>>> {
    let mut out = BTreeMap::new();
    for sw in fabric.switches.values() {
        if !out.contains_key(&sw.pipeline) {
            let p = Pipeline::load(dir, &sw.pipeline).with_context(|| {
                format!(
                    "cannot load pipeline {:?} from {} (needs {}.p4info.txt, built by p4/compile.sh with p4c)",
                    sw.pipeline,
                    dir.display(),
                    sw.pipeline
                )
            })?;
            out.insert(sw.pipeline.clone(), Arc::new(p));
        }
    }
    Ok(out)
}

/// Everything one switch holds, decoded to name-level entities.
pub async fn read_switch(sw: &Switch, reg: &P4InfoRegistry) -> Result<SwitchEntities> {
    let mut opts = ClientOptions::new(&sw.address, sw.device_id, 0);
    opts.connect_timeout = Duration::from_secs(2);
    opts.rpc_timeout = Duration::from_secs(10);
    // A Read needs no arbitration: this reader never competes with the
    // controller for primary.
    let client = Client::connect(opts).await?;
    Ok(crate::p4rt::switch::read_all(&client, reg).await?)
}

/// Reads every switch; a switch that cannot be read maps to its error.
pub async fn read_fabric(
    fabric: &Fabric,
    pipelines: &BTreeMap<String, Arc<Pipeline>>,
) -> BTreeMap<String, Result<SwitchEntities, String>> {
    let mut out = BTreeMap::new();
    for (name, sw) in &fabric.switches {
        let r = match pipelines.get(&sw.pipeline) {
            Some(p) => read_switch(sw, &p.registry)
                .await
                .map_err(|e| format!("{e:#}")),
            None => Err(format!("pipeline {} not loaded", sw.pipeline)),
        };
        out.insert(name.clone(), r);
    }
    out
}

/// How far `got` is from `want`: counts of missing, stale (not wanted)
/// and different entities, with one example key of each.
pub fn difference(want: &SwitchEntities, got: &SwitchEntities) -> Option<String> {
    use crate::compile::diff::{mismatches, Mismatch};
    let found = mismatches(want.iter(), got.iter());
    if found.is_empty() {
        return None;
    }
    let kind = |which: Mismatch, label: &str| {
        let of = || found.iter().filter(move |(m, _)| *m == which);
        let example = of()
            .next()
            .map(|(_, e)| format!(" (e.g. {})", e.key()))
            .unwrap_or_default();
        format!("{} {label}{example}", of().count())
    };
    Some(format!(
        "{}, {}, {}",
        kind(Mismatch::Missing, "missing"),
        kind(Mismatch::Extra, "stale"),
        kind(Mismatch::Differs, "different")
    ))
}

/// The last read-back of a fabric against its desired state.
#[derive(Debug, Default)]
pub struct Convergence {
    /// What each switch holds (switches that could be read).
    pub installed: BTreeMap<String, SwitchEntities>,
    /// Switches that do not hold their desired state, and why.
    pub pending: BTreeMap<String, String>,
}

impl Convergence {
    pub fn converged(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Reads the fabric back once and compares with `want`.
pub async fn check(
    fabric: &Fabric,
    pipelines: &BTreeMap<String, Arc<Pipeline>>,
    want: &BTreeMap<String, SwitchEntities>,
) -> Convergence {
    let mut c = Convergence::default();
    let empty = SwitchEntities::new();
    for (name, got) in read_fabric(fabric, pipelines).await {
        match got {
            Ok(got) => {
                if let Some(d) = difference(want.get(&name).unwrap_or(&empty), &got) {
                    c.pending.insert(name.clone(), d);
                }
                c.installed.insert(name, got);
            }
            Err(e) => {
                c.pending.insert(name, format!("cannot read: {e}"));
            }
        }
    }
    c
}

/// Polls until every switch holds exactly `want`, or `timeout` passes
/// (then the last read-back, with what is still pending).
pub async fn wait_converged(
    fabric: &Fabric,
    pipelines: &BTreeMap<String, Arc<Pipeline>>,
    want: &BTreeMap<String, SwitchEntities>,
    timeout: Duration,
) -> Convergence {
    poll_converged(timeout, || check(fabric, pipelines, want)).await
}

/// Runs `check` every 300 ms until it says converged or `timeout` passes
/// (then its last result).
pub async fn poll_converged<F, Fut>(timeout: Duration, mut check: F) -> Convergence
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Convergence>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let c = check().await;
        if c.converged() || Instant::now() >= deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
