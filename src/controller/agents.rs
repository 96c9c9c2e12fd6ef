//! Agents' lifecycle: owns the running agents, one per configured switch,
//! with the pipeline each was started with. Starts agents for new
//! switches, restarts those whose address, device id, pipeline or port
//! map changed, stops those removed, hands every agent each new desired
//! state, and paces their resyncs by the size of the whole fabric; keeps
//! each switch's target where it maps ports (the agent's writes and
//! read-backs, the controller's packet I/O). Uses `agent` (spawn,
//! handles), `target` and the pipeline cache.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use super::pipelines::PipelineCache;
use super::upgrade::PipelineChoice;
use super::ControllerOptions;
use crate::agent::{self, AgentConfig, AgentHandle, AgentStatus, Desired, ReadBack, SwitchEvent};
use crate::compile::FabricView;
use crate::config::{DeviceConfigFormat, Fabric, PortNum, Switch, Target};
use crate::p4rt::{ClientOptions, Pipeline};
use crate::target::{self, SwitchTarget};

/// Enough to keep a controller's cores and many slow switches busy (a
/// leaf's full write takes a switch 0.1-1 s); few enough that a cold start
/// of 256 switches holds 16 switches' write plans, not 256.
pub const DEFAULT_BULK_SYNCS: usize = 16;

/// Entities per second the periodic resyncs of the whole fabric may read
/// back and diff, on average: a few percent of what one controller core
/// writes at a cold start (~400k/s, docs/performance.md).
pub const RESYNC_ENTITIES_PER_SEC: usize = 25_000;

/// How often each switch is re-read, for a fabric of `entities` in all:
/// every minute at least, and no more often than the whole fabric can be
/// re-read at `RESYNC_ENTITIES_PER_SEC` (256 leaves x 31k entries: 5.3 min;
/// x 131k: 22 min). Drift from anything else (a switch restart, a
/// refused write) is caught by the session and retry paths, not by this.
pub fn resync_interval_for(entities: usize) -> Duration {
    Duration::from_secs(60).max(Duration::from_secs_f64(
        entities as f64 / RESYNC_ENTITIES_PER_SEC as f64,
    ))
}

/// What an agent was started with; a change means a new agent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AgentIdentity {
    address: String,
    device_id: u64,
    pipeline: String,
    /// The target and format decide which files the pipeline is.
    target: Target,
    device_config: Option<DeviceConfigFormat>,
    /// The agent writes and reads through the port map: configured port
    /// -> device port, and the CPU port (which passes unmapped).
    port_map: Vec<(PortNum, PortNum)>,
    cpu_port: Option<PortNum>,
}

impl AgentIdentity {
    fn of(sw: &Switch) -> Self {
        AgentIdentity {
            address: sw.address.clone(),
            device_id: sw.device_id,
            pipeline: sw.pipeline.clone(),
            target: sw.target,
            device_config: sw.device_config,
            port_map: sw
                .port_map
                .iter()
                .map(|(p, m)| (*p, m.device_port))
                .collect(),
            cpu_port: sw.cpu_port,
        }
    }
}

/// A running agent and what it was started with.
struct Running {
    identity: AgentIdentity,
    /// The directory of the pipeline it pushes (`PipelineChoice::dir`).
    dir: std::path::PathBuf,
    handle: AgentHandle,
    /// The pipelines it may run, the one it pushes first (to decode its
    /// packet-ins etc.: the one whose cookie it reports).
    pipelines: Vec<Arc<Pipeline>>,
    /// The switch's target where it maps ports (`SwitchTarget::maps_entities`).
    ports: Option<Arc<dyn SwitchTarget>>,
}

/// Where the agents' reports go: the controller's channels.
pub(super) struct AgentChannels {
    pub events: mpsc::Sender<SwitchEvent>,
    /// Discovery / LACP packet-ins (served before `events`).
    pub control: mpsc::Sender<SwitchEvent>,
    pub read_backs: mpsc::Sender<ReadBack>,
}

pub(super) struct Agents {
    running: BTreeMap<String, Running>,
    pipelines: PipelineCache,
    channels: AgentChannels,
    election_id: u128,
    keepalive_timeout: Duration,
    /// `ControllerOptions::bulk_syncs` permits, shared by the agents.
    bulk_permits: Option<Arc<Semaphore>>,
    /// `resync_interval_for` the fabric's entity count, read by the agents.
    fabric_resync_ms: Arc<AtomicU64>,
}

impl Agents {
    pub(super) fn new(opts: &ControllerOptions, channels: AgentChannels) -> Self {
        Agents {
            running: BTreeMap::new(),
            pipelines: PipelineCache::new(opts.pipeline_dir.clone(), opts.simulated),
            channels,
            election_id: opts.election_id,
            keepalive_timeout: opts.switch_keepalive_timeout,
            bulk_permits: (opts.bulk_syncs > 0).then(|| Arc::new(Semaphore::new(opts.bulk_syncs))),
            fabric_resync_ms: Arc::default(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    pub(super) fn contains(&self, switch: &str) -> bool {
        self.running.contains_key(switch)
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &String> {
        self.running.keys()
    }

    pub(super) fn get(&self, switch: &str) -> Option<&AgentHandle> {
        self.running.get(switch).map(|r| &r.handle)
    }

    /// The pipeline `switch`'s agent runs (the one whose cookie it
    /// reports; before it reported one, the one it pushes).
    pub(super) fn pipeline(&self, switch: &str) -> Option<&Arc<Pipeline>> {
        let r = self.running.get(switch)?;
        let cookie = r.handle.pipeline_cookie();
        r.pipelines
            .iter()
            .find(|p| Some(p.cookie) == cookie)
            .or(r.pipelines.first())
    }

    /// `switch`'s target where its configured port numbers are not its
    /// device ports (packet I/O is mapped through it); `None`: the same.
    pub(super) fn ports(&self, switch: &str) -> Option<&dyn SwitchTarget> {
        self.running.get(switch)?.ports.as_deref()
    }

    /// Retries pipelines that failed to load (a new configuration).
    pub(super) fn forget_failed_pipelines(&mut self) {
        self.pipelines.forget_failures();
    }

    /// The controller's own pipeline directory.
    pub(super) fn default_dir(&self) -> &std::path::Path {
        self.pipelines.default_dir()
    }

    /// The pipeline `switch` runs when built in `dir` (loaded on first use).
    pub(super) fn load(
        &mut self,
        dir: &std::path::Path,
        switch: &str,
        sw: &Switch,
    ) -> Result<Arc<Pipeline>, String> {
        self.pipelines.load(dir, switch, sw)
    }

    /// Whether a roll-out may go from `old` to `new` (`PipelineCache::rollable`).
    pub(super) fn rollable(&mut self, old: &Pipeline, new: &Pipeline) -> Result<(), String> {
        self.pipelines.rollable(old, new)
    }

    pub(super) fn statuses(&self) -> BTreeMap<String, AgentStatus> {
        self.running
            .iter()
            .map(|(n, r)| (n.clone(), r.handle.status()))
            .collect()
    }

    /// Starts agents for new switches, restarts those whose address,
    /// device id or pipeline changed, stops those removed. `choice`: which
    /// pipeline directory each switch's agent pushes and which it adopts
    /// (`controller::upgrade`); a running agent moves to another
    /// directory only when pinned there (the drained switch of a rolling
    /// upgrade): anywhere else a restart would reload a switch in service.
    pub(super) fn sync(&mut self, fabric: &Fabric, choice: impl Fn(&str) -> PipelineChoice) {
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !fabric.switches.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(r) = self.running.remove(&name) {
                tracing::info!(switch = %name, "switch removed from configuration");
                tokio::spawn(r.handle.stop());
            }
        }
        for (name, sw) in &fabric.switches {
            let identity = AgentIdentity::of(sw);
            let choice = choice(name);
            if self
                .running
                .get(name)
                .is_some_and(|r| r.identity == identity && (!choice.pinned || r.dir == choice.dir))
            {
                continue;
            }
            // Validation rejects settings the target refuses; were one
            // to get here, the switch gets no agent (and no write on
            // unmapped ports), the others go on.
            let ports = match target::for_switch(name, sw) {
                Ok(t) => t.maps_entities().then(|| Arc::<dyn SwitchTarget>::from(t)),
                Err(e) => {
                    tracing::error!(switch = %name, error = %e, "invalid target settings");
                    continue;
                }
            };
            // Recorded as asked for even when it falls back: a pinned
            // agent is not restarted again on every sync.
            let dir = choice.dir.clone();
            let pipeline = match self.pipelines.load(&choice.dir, name, sw) {
                Ok(p) => p,
                Err(e) if choice.dir != self.pipelines.default_dir() => {
                    tracing::error!(switch = %name, error = %e, "cannot load pipeline; using the controller's own");
                    let Some(p) = self.pipelines.get(name, sw) else {
                        continue;
                    };
                    p
                }
                Err(e) => {
                    tracing::error!(switch = %name, error = %e, "cannot load pipeline");
                    continue;
                }
            };
            let mut pipelines = vec![pipeline.clone()];
            for d in &choice.accept {
                if let Ok(p) = self.pipelines.load(d, name, sw) {
                    if pipelines.iter().all(|q| q.cookie != p.cookie) {
                        pipelines.push(p);
                    }
                }
            }
            let mut client = ClientOptions::new(&sw.address, sw.device_id, self.election_id);
            client.keepalive_timeout = self.keepalive_timeout;
            let mut cfg = AgentConfig::new(name, client, pipeline.clone());
            cfg.report_read_back = Some(self.channels.read_backs.clone());
            cfg.control_events = Some(self.channels.control.clone());
            cfg.bulk_permits = self.bulk_permits.clone();
            cfg.fabric_resync_ms = Some(self.fabric_resync_ms.clone());
            cfg.accept = pipelines[1..].to_vec();
            // Pinned: the drained switch of a rolling upgrade.
            cfg.full_commit = choice.pinned;
            cfg.push_once = choice.push;
            cfg.ports = ports.clone();
            let handle = agent::spawn(cfg, self.channels.events.clone());
            let started = Running {
                identity,
                dir,
                handle,
                pipelines,
                ports,
            };
            if let Some(old) = self.running.insert(name.clone(), started) {
                tokio::spawn(old.handle.stop());
            }
        }
    }

    /// Hands every agent the desired state of `generation`; after a full
    /// compile (`full`), re-paces their resyncs for the fabric's size.
    pub(super) fn set_desired(&self, generation: u64, snapshot: &Arc<FabricView>, full: bool) {
        for r in self.running.values() {
            r.handle.set_desired(Desired {
                generation,
                entities: snapshot.clone().into(),
            });
        }
        if full {
            let total: usize = self.running.keys().map(|n| snapshot.switch_len(n)).sum();
            let every = resync_interval_for(total);
            self.fabric_resync_ms
                .store(every.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Stops every agent; the switches keep their forwarding state.
    pub(super) async fn stop(&mut self) {
        for (_, r) in std::mem::take(&mut self.running) {
            r.handle.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resyncs_slow_down_with_the_size_of_the_fabric() {
        // The demo fabric: every minute.
        assert_eq!(resync_interval_for(500), Duration::from_secs(60));
        assert_eq!(resync_interval_for(1_500_000), Duration::from_secs(60));
        // 256 leaves x 31k entries, 256 x 131k: a sweep at 25k entities/s.
        assert_eq!(resync_interval_for(7_958_896).as_secs(), 318);
        assert_eq!(resync_interval_for(33_191_152).as_secs(), 1327);
    }
}
