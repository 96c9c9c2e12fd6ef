//! A fabric of in-process switches with its configuration in a real etcd:
//! where the controller-level tests (drain, rolling upgrade, restart and
//! failover mid-way) start. No data plane: the forwarding checker walking
//! what the switches hold stands in for traffic (`failing`, `Sampler`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::lab::reach::{self, Probe};
use super::lab::run::LabController;
use super::sim::SimSwitch;
use super::EtcdServer;
use crate::config::etcd::{EtcdOptions, EtcdStore};
use crate::config::keys::STATUS_DIR;
use crate::config::{Attachment, Fabric, LagMode};
use crate::p4rt::SwitchEntities;
use crate::topo::{ObservedState, Topology};

/// examples/fabric.yaml with its bonds static: a simulated switch passes
/// no frames, so no LACP partner ever answers (as `p4fabric demo
/// --simulate` runs it).
pub fn demo_fabric_static_lags() -> Result<Fabric> {
    let mut fabric = super::lab::run::demo_fabric()?;
    for lag in fabric.lags.values_mut() {
        lag.protocol = LagMode::Static;
    }
    Ok(fabric)
}

/// Simulated switches for every switch of a fabric, and a real etcd
/// holding that fabric (with the switches' addresses). Controllers are
/// started by the test (`controller`, `controller_ha`).
pub struct SimFabric {
    /// The configuration written, with the switches' real addresses.
    pub fabric: Arc<Fabric>,
    pub targets: Arc<BTreeMap<String, SimSwitch>>,
    pub store: EtcdStore,
    pub etcd: EtcdServer,
}

impl SimFabric {
    /// Starts a switch per configured switch and etcd, and writes `fabric`
    /// there. `None` (after a SKIPPED line) where etcd is not installed.
    pub async fn start(mut fabric: Fabric) -> Result<Option<SimFabric>> {
        let Some(etcd) = EtcdServer::start_or_skip().await else {
            return Ok(None);
        };
        let mut targets = BTreeMap::new();
        for (name, sw) in fabric.switches.iter_mut() {
            let t = SimSwitch::start(sw.device_id)
                .await
                .with_context(|| format!("simulated switch {name}"))?;
            sw.address = t.addr().to_string();
            targets.insert(name.clone(), t);
        }
        let store = EtcdOptions::new([etcd.endpoint()]).connect().await?;
        let keys: Vec<(String, Vec<u8>)> =
            crate::config::keys::encode(&fabric).into_iter().collect();
        store
            .commit(keys, vec![])
            .await
            .context("writing the fabric")?;
        Ok(Some(SimFabric {
            fabric: Arc::new(fabric),
            targets: Arc::new(targets),
            store,
            etcd,
        }))
    }

    pub fn endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// A lone controller (no election, as `LabController::start`).
    pub async fn controller(&self, id: &str) -> Result<LabController> {
        LabController::start(&self.endpoint(), id).await
    }

    /// An instance of an HA group (`LabController::start_ha`).
    pub async fn controller_ha(&self, id: &str) -> Result<LabController> {
        LabController::start_ha(&self.endpoint(), id).await
    }

    /// Everything under `status/`, by path relative to it.
    pub async fn status(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        let snap = self.store.get_dir(STATUS_DIR).await?;
        Ok(snap
            .kvs
            .into_iter()
            .filter_map(|(k, v)| {
                let rel = k.strip_prefix(STATUS_DIR)?.to_string();
                Some((rel, serde_json::from_slice(&v).ok()?))
            })
            .collect())
    }

    /// The probes that fail on what the switches hold now.
    pub fn failing(&self) -> Vec<Probe> {
        failing(&self.fabric, &self.targets)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// Waits until `ctl`'s agents (one per switch) hold their desired
    /// state and every probe is delivered; the last failures on timeout.
    pub async fn wait_serving(&self, ctl: &LabController, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let converged = ctl.agents_converged(self.targets.len());
            let failing = self.failing();
            if converged && failing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "not serving after {timeout:?}: agents converged {converged}, failing {failing:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs the forwarding checker every `every` until `Sampler::stop`.
    pub fn sample_forwarding(&self, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Samples>> = Arc::default();
        let started = Instant::now();
        let task = tokio::task::spawn_blocking({
            let (fabric, targets) = (self.fabric.clone(), self.targets.clone());
            let (stop, seen) = (stop.clone(), seen.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = started.elapsed();
                    let before = held(&targets);
                    let fails = failing(&fabric, &targets);
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    s.samples += 1;
                    for (p, _) in &fails {
                        *s.failed.entry(p.clone()).or_default() += 1;
                    }
                    if !fails.is_empty() {
                        let mut held = held(&targets);
                        for (n, h) in held.iter_mut() {
                            *h = (*h).min(before.get(n).copied().unwrap_or(0));
                        }
                        s.timeline.push(Failed {
                            at,
                            probes: fails,
                            held,
                        });
                    }
                    drop(s);
                    std::thread::sleep(every);
                }
            }
        });
        Sampler {
            started,
            stop,
            seen,
            task: Some(task),
        }
    }

    /// The probes whose frames the switches, as they hold their entities
    /// now, send into `switch` over a fabric link (any alternative),
    /// but for those from or to a host attached to it alone: none while it
    /// is out of service.
    pub fn crossing(&self, switch: &str) -> Vec<Probe> {
        crossing(&self.fabric, &self.targets, switch)
    }

    /// Hosts attached to one leaf alone (a port there), with that leaf.
    pub fn single_homed(&self) -> BTreeMap<String, String> {
        self.fabric
            .hosts
            .iter()
            .filter_map(|(n, h)| match &h.attachment {
                Attachment::Port(p) => Some((n.clone(), p.switch.clone())),
                Attachment::Lag(_) => None,
            })
            .collect()
    }
}

/// How many entities each switch holds.
fn held(targets: &BTreeMap<String, SimSwitch>) -> BTreeMap<String, usize> {
    targets
        .iter()
        .map(|(n, t)| (n.clone(), t.entities().len()))
        .collect()
}

/// The probes that fail, and why (the checker's account).
fn failing(fabric: &Fabric, targets: &BTreeMap<String, SimSwitch>) -> Vec<(Probe, String)> {
    let held: BTreeMap<String, SwitchEntities> = targets
        .iter()
        .map(|(n, t)| (n.clone(), t.entities()))
        .collect();
    let topo = Topology::build(fabric, &ObservedState::default(), None);
    reach::check_all(&held, &topo, fabric, &reach::probes(fabric))
        .into_iter()
        .filter_map(|(p, r)| r.err().map(|why| (p, why)))
        .collect()
}

/// `SimFabric::crossing`.
pub fn crossing(
    fabric: &Fabric,
    targets: &BTreeMap<String, SimSwitch>,
    switch: &str,
) -> Vec<Probe> {
    let held: BTreeMap<String, SwitchEntities> = targets
        .iter()
        .map(|(n, t)| (n.clone(), t.entities()))
        .collect();
    let topo = Topology::build(fabric, &ObservedState::default(), None);
    let checker = crate::compile::check::Checker::new(&held, &topo);
    let alone = |host: &str| {
        fabric
            .hosts
            .get(host)
            .is_some_and(|h| matches!(&h.attachment, Attachment::Port(p) if p.switch == switch))
    };
    reach::probes(fabric)
        .into_iter()
        .filter(|p| !alone(&p.from) && !alone(&p.to))
        .filter(|p| reach::switches_entered(&checker, fabric, p).contains(switch))
        .collect()
}

/// What a `Sampler` saw: how many samples, and per probe in how many it
/// failed.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub samples: usize,
    pub failed: BTreeMap<Probe, usize>,
    /// The samples with a failing probe.
    pub timeline: Vec<Failed>,
}

/// A sample with a failing probe.
#[derive(Debug, Clone)]
pub struct Failed {
    /// Since the sampler started.
    pub at: Duration,
    /// Which probes, with the checker's reason.
    pub probes: Vec<(Probe, String)>,
    /// How many entities each switch held, the fewer of just before and
    /// just after the check (a switch being reloaded holds few).
    pub held: BTreeMap<String, usize>,
}

impl Samples {
    /// The failures of probes between two hosts neither of which is
    /// single-homed (`single_homed`: host -> its leaf).
    pub fn not_single_homed(&self, single_homed: &BTreeMap<String, String>) -> Vec<String> {
        self.failed
            .iter()
            .filter(|(p, _)| {
                !single_homed.contains_key(&p.from) && !single_homed.contains_key(&p.to)
            })
            .map(|(p, n)| describe(p, *n))
            .collect()
    }

    /// When (since the sampler started) a probe between hosts that are
    /// not single-homed failed, and how many such probes failed then.
    pub fn not_single_homed_at(
        &self,
        single_homed: &BTreeMap<String, String>,
    ) -> Vec<(Duration, usize)> {
        self.timeline
            .iter()
            .map(|f| {
                let n = f
                    .probes
                    .iter()
                    .filter(|(p, _)| {
                        !single_homed.contains_key(&p.from) && !single_homed.contains_key(&p.to)
                    })
                    .count();
                (f.at, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Every failing probe, "from -> to ip: samples".
    pub fn describe_failed(&self) -> Vec<String> {
        self.failed.iter().map(|(p, n)| describe(p, *n)).collect()
    }
}

fn describe(p: &Probe, n: usize) -> String {
    format!("{} -> {} {}: {n}", p.from, p.to, p.ip)
}

/// The forwarding checker run in the background (`sample_forwarding`).
pub struct Sampler {
    /// When it started (`Samples::timeline` counts from here).
    pub started: Instant,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Samples>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sampler {
    /// What it saw so far (it goes on).
    pub fn seen(&self) -> Samples {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops sampling; what it saw.
    pub async fn stop(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.seen()
    }
}

impl Drop for Sampler {
    /// A test that fails before `stop` must not hang: the runtime waits
    /// for its blocking tasks when it shuts down.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
