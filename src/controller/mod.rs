//! The running controller (`p4fabric run`): configuration in, one agent per
//! switch out.
//!
//! Level-triggered: whenever the configuration or the observed state
//! changes, the controller brings its `CompiledFabric` up to date —
//! `update_config` for a change of static hosts, edge ports or VLANs, a new
//! one for any other configuration change, `update_topology` for links,
//! ports and LACP state, `update_host` per learned host that changed — and
//! hands every
//! agent a snapshot of it (`Arc<FabricView>`, shared by all agents; a
//! snapshot costs a few pointer copies). Agents diff that against what
//! their switch holds, so an unchanged switch gets no writes. Status goes
//! to etcd (with a lease) and to `/metrics`.

pub mod metrics;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::agent::port_events::{self, PortEvent};
use crate::agent::{self, AgentConfig, AgentHandle, Desired, ReadBack, SessionState, SwitchEvent};
use crate::compile::{self, CompiledFabric, FabricView, HostEntry, HostKey, Hosts};
use crate::config::status::{self as st, StatusWriter};
use crate::config::watch::ConfigUpdate;
use crate::config::PortRef;
use crate::config::{Fabric, Switch};
use crate::p4rt::{ClientOptions, Pipeline, StreamEvent};
use crate::protocols::lacpdu::LacpInfo;
use crate::protocols::{self, Action, IdleEntry, MacLearn, Protocols};
use crate::topo::{FloodTree, ObservedState, Topology};

pub use metrics::{ControllerMetrics, MetricsState, SharedMetrics};

/// At start, how long the controller waits for every switch's read-back
/// before it hands out a desired state built from what was recovered so
/// far (a switch that is down must not hold up the others for long).
/// Counted from the last read-back that came in: a large fabric reads its
/// switches back a few at a time (`bulk_syncs`) and may take longer in
/// all, and releasing a leaf before a learned host's home leaf reported
/// would delete that host's entries.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(5);

/// The longest the start-up recovery waits for switches that are connected
/// and still being read back (a restart of 256 leaves of 131k entries reads
/// for over a minute on two cores); a switch that is down or not yet
/// connected holds it up for `RECOVERY_GRACE` only.
pub const RECOVERY_MAX: Duration = Duration::from_secs(300);

/// The start-up window in which read-backs are collected before the first
/// desired state that accounts for them: a learned host is recovered from
/// its home leaf, and every other leaf holds entries for it too — releasing
/// a leaf before the home leaf has reported would delete them.
#[derive(Debug)]
struct Recovery {
    waiting_for: std::collections::BTreeSet<String>,
    until: Instant,
    started: Instant,
}

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Where compiled pipelines live (`<name>.p4info.txt`, `<name>.json`).
    pub pipeline_dir: PathBuf,
    /// Our P4Runtime election id (from the HA election; 1 standalone).
    pub election_id: u128,
    pub controller_id: String,
    /// How often agent status is pushed to etcd and metrics.
    pub status_interval: Duration,
    /// Simulated switches only: where the compiled fabric pipeline is
    /// missing, use the contract's P4Info (`compile::contract`).
    pub simulated: bool,
    /// HTTP/2 keepalive timeout of the switch connections (5 s; the scale
    /// bench raises it: hundreds of simulated switches on two cores answer
    /// pings late).
    pub switch_keepalive_timeout: Duration,
    /// How many switches may run a pass after a read-back (cold start,
    /// reconnect, resync) at once; 0: no bound. See
    /// `AgentConfig::bulk_permits`.
    pub bulk_syncs: usize,
}

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

impl ControllerOptions {
    pub fn new(controller_id: impl Into<String>) -> Self {
        ControllerOptions {
            pipeline_dir: Pipeline::default_dir(),
            election_id: 1,
            controller_id: controller_id.into(),
            status_interval: Duration::from_millis(500),
            simulated: false,
            switch_keepalive_timeout: Duration::from_secs(5),
            bulk_syncs: DEFAULT_BULK_SYNCS,
        }
    }
}

/// What an agent was started with; a change means a new agent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AgentIdentity {
    address: String,
    device_id: u64,
    pipeline: String,
}

impl AgentIdentity {
    fn of(sw: &Switch) -> Self {
        AgentIdentity {
            address: sw.address.clone(),
            device_id: sw.device_id,
            pipeline: sw.pipeline.clone(),
        }
    }
}

pub struct Controller {
    opts: ControllerOptions,
    config: watch::Receiver<ConfigUpdate>,
    status: Option<Arc<StatusWriter>>,
    agents: BTreeMap<String, (AgentIdentity, AgentHandle)>,
    /// The pipeline each switch runs (to decode its packet-ins etc.).
    switch_pipelines: BTreeMap<String, Arc<Pipeline>>,
    /// Discovery, LACP, ARP/ND, learning; created with the first config.
    protocols: Option<Protocols>,
    /// Hosts given at start (benchmarks), merged with learned ones.
    seeded_hosts: Hosts,
    /// Changes to the seeded hosts (benchmarks: a learned host appearing
    /// or going without a switch to learn it from).
    host_updates: Option<mpsc::Receiver<(HostKey, Option<HostEntry>)>>,
    /// Status paths of observed links/hosts/LAG members last written.
    observed_paths: std::collections::BTreeSet<String>,
    pipelines: BTreeMap<String, Arc<Pipeline>>,
    observed: ObservedState,
    hosts: Hosts,
    compiler: IncrementalCompiler,
    /// A configuration arrived that is not compiled yet.
    config_pending: bool,
    generation: u64,
    events_tx: mpsc::Sender<SwitchEvent>,
    events_rx: mpsc::Receiver<SwitchEvent>,
    /// Discovery / LACP packet-ins, served before `events_rx`.
    control_tx: mpsc::Sender<SwitchEvent>,
    control_rx: mpsc::Receiver<SwitchEvent>,
    /// Port up/down from the switches that publish it (`port_events`),
    /// served with the control frames.
    port_events_tx: mpsc::Sender<PortEvent>,
    port_events_rx: mpsc::Receiver<PortEvent>,
    /// Per switch: the address subscribed to and the subscriber task.
    port_watchers: BTreeMap<String, (String, JoinHandle<()>)>,
    read_backs_tx: mpsc::Sender<ReadBack>,
    read_backs_rx: mpsc::Receiver<ReadBack>,
    /// `ControllerOptions::bulk_syncs` permits, shared by the agents.
    bulk_permits: Option<Arc<tokio::sync::Semaphore>>,
    /// `resync_interval_for` the fabric's entity count, read by the agents.
    fabric_resync_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Set from the first configuration until every switch's read-back is
    /// in (or `RECOVERY_GRACE` passed).
    recovery: Option<Recovery>,
    metrics: SharedMetrics,
    fabric: Arc<Fabric>,
    /// When each switch entered its current session state (unix seconds).
    state_since: BTreeMap<String, (st::SessionState, u64)>,
    /// LACP partners as published (`status/lacp-partners/`): read at
    /// start from the previous controller, then what this one heard.
    lacp_partners: BTreeMap<PortRef, LacpInfo>,
}

impl Controller {
    pub fn new(
        opts: ControllerOptions,
        config: watch::Receiver<ConfigUpdate>,
        status: Option<Arc<StatusWriter>>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::channel(4096);
        let (control_tx, control_rx) = mpsc::channel(1024);
        let (port_events_tx, port_events_rx) = mpsc::channel(1024);
        let (read_backs_tx, read_backs_rx) = mpsc::channel(64);
        let metrics = SharedMetrics::default();
        metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .controller
            .election_id = opts.election_id;
        let bulk_permits =
            (opts.bulk_syncs > 0).then(|| Arc::new(tokio::sync::Semaphore::new(opts.bulk_syncs)));
        Controller {
            bulk_permits,
            fabric_resync_ms: Arc::default(),
            opts,
            config,
            status,
            agents: BTreeMap::new(),
            switch_pipelines: BTreeMap::new(),
            protocols: None,
            seeded_hosts: Hosts::new(),
            host_updates: None,
            observed_paths: Default::default(),
            pipelines: BTreeMap::new(),
            observed: ObservedState::default(),
            hosts: Hosts::new(),
            compiler: IncrementalCompiler::default(),
            config_pending: false,
            generation: 0,
            events_tx,
            events_rx,
            control_tx,
            control_rx,
            port_events_tx,
            port_events_rx,
            port_watchers: BTreeMap::new(),
            read_backs_tx,
            read_backs_rx,
            recovery: None,
            metrics,
            fabric: Arc::new(Fabric::default()),
            state_since: BTreeMap::new(),
            lacp_partners: BTreeMap::new(),
        }
    }

    pub fn metrics(&self) -> SharedMetrics {
        self.metrics.clone()
    }

    /// Seeds learned hosts (benchmarks and tests; normally the protocols
    /// learn them).
    pub fn with_hosts(mut self, hosts: Hosts) -> Self {
        self.seeded_hosts = hosts;
        self
    }

    /// A channel to add (`Some`) or remove (`None`) seeded hosts while
    /// running, as learning would (benchmarks).
    pub fn host_updates(&mut self) -> mpsc::Sender<(HostKey, Option<HostEntry>)> {
        let (tx, rx) = mpsc::channel(64);
        self.host_updates = Some(rx);
        tx
    }

    /// Shares a metrics state across terms (HA: one endpoint per process).
    pub fn with_metrics(mut self, metrics: SharedMetrics) -> Self {
        {
            let mut m = metrics.lock().unwrap_or_else(|p| p.into_inner());
            m.controller.election_id = self.opts.election_id;
            m.controller.leader = true;
        }
        self.metrics = metrics;
        self
    }

    /// Runs until `shutdown` resolves. Switches keep their forwarding state.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut status_tick = tokio::time::interval(self.opts.status_interval);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.apply_config().await;
        loop {
            tokio::select! {
                // In this order: the ordinary switch events (packet-ins an
                // ARP / ND flood may fill) come last, so a flood delays
                // neither discovery / LACP frames nor the timers that send
                // probes and LACPDUs.
                biased;
                _ = &mut shutdown => break,
                r = self.config.changed() => {
                    if r.is_err() { break }
                    self.apply_config().await;
                }
                Some(ev) = self.control_rx.recv() => self.on_switch_event(ev),
                Some(ev) = self.port_events_rx.recv() => self.on_port_event(ev),
                Some(rb) = self.read_backs_rx.recv() => self.on_read_back(rb),
                _ = agent::sleep_until_opt(
                    self.recovery.as_ref().map(|r| tokio::time::Instant::from_std(r.until)),
                ) => self.end_recovery(),
                Some((key, host)) = recv_opt(&mut self.host_updates) => {
                    match host {
                        Some(h) => self.seeded_hosts.insert(key, h),
                        None => self.seeded_hosts.remove(&key),
                    };
                    self.refresh_observed();
                    self.recompute(false);
                }
                _ = agent::sleep_until_opt(
                    self.protocols.as_ref().and_then(|p| p.next_deadline()).map(tokio::time::Instant::from_std),
                ) => {
                    let now = std::time::Instant::now();
                    let actions = self.protocols.as_mut().map(|p| p.on_tick(now)).unwrap_or_default();
                    self.on_actions(actions);
                }
                _ = status_tick.tick() => self.publish_status().await,
                Some(ev) = self.events_rx.recv() => self.on_switch_event(ev),
            }
        }
        tracing::info!("shutting down; switches keep their forwarding state");
        for (_, (_, a)) in std::mem::take(&mut self.agents) {
            a.stop().await;
        }
        for (_, (_, w)) in std::mem::take(&mut self.port_watchers) {
            w.abort();
        }
    }

    /// A port went up or down: the protocols update links, LACP and the
    /// ports down, and one recompile takes what changed out of service.
    fn on_port_event(&mut self, ev: PortEvent) {
        let Some(protocols) = self.protocols.as_mut() else {
            return;
        };
        let actions =
            protocols.on_port_status(&ev.switch, ev.port, ev.up, std::time::Instant::now());
        self.on_actions(actions);
    }

    /// One port-event subscriber per switch that has `port_events`.
    fn sync_port_watchers(&mut self) {
        let wanted: BTreeMap<&String, &String> = self
            .fabric
            .switches
            .iter()
            .filter_map(|(n, sw)| sw.port_events.as_ref().map(|a| (n, a)))
            .collect();
        self.port_watchers.retain(|name, (addr, task)| {
            let keep = wanted.get(name).is_some_and(|a| *a == addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, addr) in wanted {
            if self.port_watchers.contains_key(name) {
                continue;
            }
            match port_events::spawn(name.clone(), addr, self.port_events_tx.clone()) {
                Ok(task) => {
                    self.port_watchers
                        .insert(name.clone(), (addr.clone(), task));
                }
                // Validation rejects such an address before it gets here.
                Err(e) => tracing::warn!(switch = %name, error = %e, "port events not subscribed"),
            }
        }
    }

    /// Ends the start-up recovery window: one desired state for all.
    fn end_recovery(&mut self) {
        if let Some(r) = self.recovery.as_mut() {
            // Connected switches still reading back are waited for (their
            // agents read a few at a time, under the bulk permits).
            let reading = r.waiting_for.iter().any(|n| {
                self.agents
                    .get(n)
                    .is_some_and(|(_, a)| a.status().state == SessionState::Primary)
            });
            if reading && r.started.elapsed() < RECOVERY_MAX {
                r.until = Instant::now() + Duration::from_millis(500);
                return;
            }
        }
        if let Some(r) = self.recovery.take() {
            if !r.waiting_for.is_empty() {
                tracing::warn!(switches = ?r.waiting_for, "no read-back yet from these switches; programming the others");
            }
            self.recovered();
        }
    }

    /// Recovery is over: one desired state for all, and LACP speaks.
    fn recovered(&mut self) {
        let actions = self
            .protocols
            .as_mut()
            .map(|p| p.release_lacp(&self.lacp_partners, std::time::Instant::now()))
            .unwrap_or_default();
        self.on_actions(actions);
        self.refresh_observed();
        self.recompute(false);
    }

    /// A switch's read-back at session start: recover what was learned
    /// there, then hand out a new desired state (the agent waits for one
    /// before writing) — at start, once every switch has reported.
    fn on_read_back(&mut self, rb: ReadBack) {
        if !self.agents.contains_key(&rb.switch) {
            return;
        }
        let recovered = protocols::recover::from_switch(rb.installed.values().map(|e| &**e));
        if let Some(p) = self.protocols.as_mut() {
            if !recovered.is_empty() {
                let actions = p.restore(&rb.switch, &recovered, std::time::Instant::now());
                tracing::info!(
                    switch = %rb.switch,
                    macs = recovered.macs.len(),
                    bindings = recovered.bindings.len(),
                    "recovered learned state from the switch"
                );
                // Packets (none expected) go out; the recompile below
                // covers any host change.
                let packets: Vec<Action> = actions
                    .into_iter()
                    .filter(|a| matches!(a, Action::SendPacket(_)))
                    .collect();
                self.on_actions(packets);
            }
        }
        if let Some(r) = self.recovery.as_mut() {
            r.waiting_for.remove(&rb.switch);
            r.until = r.until.max(Instant::now() + RECOVERY_GRACE);
            if !r.waiting_for.is_empty() {
                return;
            }
        }
        if self.recovery.take().is_some() {
            self.recovered();
        } else {
            self.refresh_observed();
            self.recompute(false);
        }
    }

    /// Packet-ins, digests and idle timeouts feed the control protocols
    /// (discovery, LACP, ARP/ND, learning).
    fn on_switch_event(&mut self, ev: SwitchEvent) {
        let Some(pipeline) = self.switch_pipelines.get(&ev.switch).cloned() else {
            return;
        };
        let Some(protocols) = self.protocols.as_mut() else {
            return;
        };
        let reg = &pipeline.registry;
        let now = std::time::Instant::now();
        let actions = match &ev.event {
            StreamEvent::PacketIn(p) => match reg.decode_packet_in(p) {
                Ok(p) => protocols.on_packet_in(&ev.switch, &p, now),
                Err(e) => {
                    tracing::debug!(switch = %ev.switch, error = %e, "undecodable packet-in");
                    Vec::new()
                }
            },
            StreamEvent::Digest(d) => {
                if let Some((_, agent)) = self.agents.get(&ev.switch) {
                    agent.ack_digest(d.digest_id, d.list_id);
                }
                match reg.decode_digest(d) {
                    Ok((name, rows)) if name == protocols::LEARN_DIGEST => {
                        let rows: Vec<MacLearn> =
                            rows.iter().filter_map(|r| MacLearn::from_row(r)).collect();
                        protocols.on_digest(&ev.switch, &rows, now)
                    }
                    Ok(_) => Vec::new(),
                    Err(e) => {
                        tracing::debug!(switch = %ev.switch, error = %e, "undecodable digest");
                        Vec::new()
                    }
                }
            }
            StreamEvent::IdleTimeout(n) => {
                let idle: Vec<IdleEntry> = n
                    .table_entry
                    .iter()
                    .filter_map(|t| reg.decode_table_key(t).ok())
                    .filter_map(|k| IdleEntry::from_key(&k))
                    .collect();
                protocols.on_idle_timeout(&ev.switch, &idle, now)
            }
            StreamEvent::Error(e) => {
                tracing::warn!(switch = %ev.switch, code = e.canonical_code, message = %e.message, "stream error");
                Vec::new()
            }
            StreamEvent::Closed(_) => Vec::new(),
        };
        self.on_actions(actions);
    }

    /// Carries out what the protocols asked for; one recompile covers any
    /// number of topology, LAG, host and next-hop changes.
    fn on_actions(&mut self, actions: Vec<Action>) {
        let mut recompile = false;
        for a in actions {
            match a {
                Action::SendPacket(p) => {
                    let (Some((_, agent)), Some(pipeline)) = (
                        self.agents.get(&p.switch),
                        self.switch_pipelines.get(&p.switch),
                    ) else {
                        continue;
                    };
                    match pipeline.registry.packet_out(p.frame.clone(), &p.metadata()) {
                        Ok(out) => {
                            if !agent.send_packet(out) {
                                tracing::debug!(switch = %p.switch, "packet-out queue full");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(switch = %p.switch, error = %e, "cannot build packet-out")
                        }
                    }
                }
                Action::TopologyChanged
                | Action::HostsChanged
                | Action::LagMembersChanged { .. }
                | Action::NextHopsChanged => recompile = true,
            }
        }
        if recompile {
            self.refresh_observed();
            self.recompute(false);
        }
    }

    /// Copies what the protocols observed into the compiler's inputs.
    fn refresh_observed(&mut self) {
        let Some(p) = &self.protocols else {
            self.hosts = self.seeded_hosts.clone();
            return;
        };
        self.observed.discovered = p.observed_links();
        self.observed.ports_down = p.ports_down();
        self.observed.lacp_unsynced = p.lacp_unsynced();
        self.hosts = self.seeded_hosts.clone();
        self.hosts.extend(p.learned_hosts().into_iter().map(|h| {
            let e = HostEntry::from(h);
            (e.key(), e)
        }));
    }

    fn pipeline(&mut self, name: &str) -> Option<Arc<Pipeline>> {
        if let Some(p) = self.pipelines.get(name) {
            return Some(p.clone());
        }
        let loaded = if self.opts.simulated && name == "fabric" {
            let (p, contract) = compile::contract::simulation_pipeline(&self.opts.pipeline_dir);
            if contract {
                tracing::warn!(
                    "compiled fabric pipeline missing: simulated switches use the contract P4Info"
                );
            }
            Ok(p)
        } else {
            Pipeline::load(&self.opts.pipeline_dir, name)
        };
        match loaded {
            Ok(p) => {
                let p = Arc::new(p);
                self.pipelines.insert(name.to_string(), p.clone());
                Some(p)
            }
            Err(e) => {
                tracing::error!(pipeline = name, dir = %self.opts.pipeline_dir.display(), error = %e, "cannot load pipeline");
                None
            }
        }
    }

    async fn apply_config(&mut self) {
        let update = self.config.borrow_and_update().clone();
        if update.revision == 0 && update.fabric.switches.is_empty() {
            return; // nothing read yet
        }
        self.fabric = update.fabric.clone();
        self.config_pending = true;
        {
            let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
            m.controller.config_revision = update.revision;
            m.controller.config_errors = update.errors.len();
        }
        if let Some(w) = &self.status {
            if let Err(e) = w.set_config_errors(&update.errors).await {
                tracing::warn!(error = %e, "cannot write config status");
            }
        }
        for e in update.errors.iter() {
            tracing::warn!(key = %e.key, error = %e.reason, "configuration key rejected; last good value stays");
        }
        self.sync_agents();
        let now = std::time::Instant::now();
        let actions = match self.protocols.as_mut() {
            Some(p) => p.on_config(&self.fabric, now),
            None => {
                let mut p = Protocols::new(&self.fabric, now);
                if !self.agents.is_empty() {
                    p.hold_lacp(now);
                    self.lacp_partners = self.read_lacp_partners().await;
                    self.recovery = Some(Recovery {
                        waiting_for: self.agents.keys().cloned().collect(),
                        until: Instant::now() + RECOVERY_GRACE,
                        started: Instant::now(),
                    });
                }
                self.protocols = Some(p);
                Vec::new()
            }
        };
        self.on_actions(actions);
        if self.config_pending {
            self.refresh_observed();
            self.recompute(true);
        }
    }

    /// Starts agents for new switches, restarts those whose address,
    /// device id or pipeline changed, stops those removed.
    fn sync_agents(&mut self) {
        self.sync_port_watchers();
        let fabric = self.fabric.clone();
        let gone: Vec<String> = self
            .agents
            .keys()
            .filter(|n| !fabric.switches.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.switch_pipelines.remove(&name);
            if let Some((_, a)) = self.agents.remove(&name) {
                tracing::info!(switch = %name, "switch removed from configuration");
                tokio::spawn(a.stop());
            }
        }
        for (name, sw) in &fabric.switches {
            let id = AgentIdentity::of(sw);
            if self.agents.get(name).is_some_and(|(old, _)| *old == id) {
                continue;
            }
            let Some(pipeline) = self.pipeline(&sw.pipeline) else {
                continue;
            };
            let mut client = ClientOptions::new(&sw.address, sw.device_id, self.opts.election_id);
            client.keepalive_timeout = self.opts.switch_keepalive_timeout;
            let mut cfg = AgentConfig::new(name, client, pipeline.clone(), agent::diff_planner());
            cfg.report_read_back = Some(self.read_backs_tx.clone());
            cfg.control_events = Some(self.control_tx.clone());
            cfg.bulk_permits = self.bulk_permits.clone();
            cfg.fabric_resync_ms = Some(self.fabric_resync_ms.clone());
            let handle = agent::spawn(cfg, self.events_tx.clone());
            self.switch_pipelines.insert(name.clone(), pipeline);
            if let Some((_, old)) = self.agents.insert(name.clone(), (id, handle)) {
                tokio::spawn(old.stop());
            }
        }
    }

    /// Brings the compiled fabric up to date and hands every agent the new
    /// desired state. `config_changed`: compile anew (config changes touch
    /// anything); otherwise apply only what changed in the observed state
    /// (`update_topology`) and the host set (`update_host` per host).
    fn recompute(&mut self, config_changed: bool) {
        if self.recovery.is_some() {
            // Agents are still reporting what their switches hold; the
            // first desired state comes when that is complete.
            self.config_pending |= config_changed;
            return;
        }
        let started = Instant::now();
        let config_changed = config_changed || std::mem::take(&mut self.config_pending);
        let Some(full) =
            self.compiler
                .update(&self.fabric, &self.observed, &self.hosts, config_changed)
        else {
            return;
        };
        let snapshot = self.compiler.snapshot();
        self.generation += 1;
        for (_, agent) in self.agents.values() {
            agent.set_desired(Desired {
                generation: self.generation,
                entities: snapshot.clone().into(),
            });
        }
        if full {
            let total: usize = self.agents.keys().map(|n| snapshot.switch_len(n)).sum();
            let every = resync_interval_for(total);
            self.fabric_resync_ms.store(
                every.as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let secs = started.elapsed().as_secs_f64();
        let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.controller.compiles += 1;
        m.controller.compile_seconds_total += secs;
        tracing::debug!(
            generation = self.generation,
            full,
            ms = secs * 1000.0,
            "compiled fabric"
        );
    }

    async fn publish_status(&mut self) {
        let statuses: BTreeMap<String, agent::AgentStatus> = self
            .agents
            .iter()
            .map(|(n, (_, a))| (n.clone(), a.status()))
            .collect();
        if let Some(w) = &self.status {
            for (name, s) in &statuses {
                let state = match s.state {
                    SessionState::Primary => st::SessionState::Primary,
                    SessionState::Backup => st::SessionState::Backup,
                    SessionState::Connecting => st::SessionState::Connecting,
                    SessionState::Down(_) | SessionState::Stopped => st::SessionState::Down,
                };
                let since = match self.state_since.get(name) {
                    Some((prev, t)) if *prev == state => *t,
                    _ => {
                        let now = st::unix_now();
                        self.state_since.insert(name.clone(), (state, now));
                        now
                    }
                };
                let value = st::SwitchStatus {
                    state,
                    controller: self.opts.controller_id.clone(),
                    election_id: Some(self.opts.election_id.to_string()),
                    entities: s.installed as u64,
                    last_error: s.last_error.clone().or_else(|| {
                        s.failing
                            .first()
                            .map(|(k, e)| format!("{} failing, e.g. {k}: {e}", s.failing_count))
                    }),
                    since,
                };
                if let Err(e) = w.set_switch(name, &value).await {
                    tracing::debug!(error = %e, "cannot write switch status");
                }
            }
        }
        {
            let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
            m.agents = statuses;
            if let Some(p) = &self.protocols {
                m.controller.protocols = p.counters().clone();
            }
        }
        self.publish_observed().await;
    }

    /// Writes what the protocols observe: links (both ends), learned hosts,
    /// LAG members with their LACP state. Entries that disappeared are
    /// removed, so status never shows a stale link or host.
    /// The LACP partners a previous controller heard (empty without
    /// status or on any error: LACP then waits for the partners to speak).
    async fn read_lacp_partners(&self) -> BTreeMap<PortRef, LacpInfo> {
        let Some(w) = &self.status else {
            return BTreeMap::new();
        };
        match w.read_dir(st::paths::LACP_PARTNERS).await {
            Ok(kvs) => kvs
                .iter()
                .filter_map(|(k, v)| {
                    let port = k.strip_prefix(st::paths::LACP_PARTNERS)?.parse().ok()?;
                    Some((port, serde_json::from_slice(v).ok()?))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the LACP partners heard before");
                BTreeMap::new()
            }
        }
    }

    /// Publishes the LACP partners heard that changed (durable keys: a
    /// successor reads them after this controller died).
    async fn publish_lacp_partners(&mut self) {
        let (Some(w), Some(p)) = (&self.status, &self.protocols) else {
            return;
        };
        for (port, info) in p.lacp_partners() {
            if self.lacp_partners.get(&port) == Some(&info) {
                continue;
            }
            match w.set_durable(&st::paths::lacp_partner(&port), &info).await {
                Ok(()) => {
                    self.lacp_partners.insert(port, info);
                }
                Err(e) => tracing::debug!(error = %e, "LACP partner not published; retried"),
            }
        }
    }

    async fn publish_observed(&mut self) {
        self.publish_lacp_partners().await;
        let (Some(w), Some(p)) = (&self.status, &self.protocols) else {
            return;
        };
        let now = std::time::Instant::now();
        let unix = st::unix_now();
        let ago = |t: Option<std::time::Instant>| {
            t.map(|t| unix.saturating_sub(now.saturating_duration_since(t).as_secs()))
                .unwrap_or(0)
        };
        let mut values: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for l in p.links() {
            for (here, there) in [(&l.id.0, &l.id.1), (&l.id.1, &l.id.0)] {
                let v = st::LinkStatus {
                    state: if l.up {
                        st::LinkState::Up
                    } else {
                        st::LinkState::Down
                    },
                    remote: Some(there.clone()),
                    matches_config: Some(l.configured),
                    last_seen: ago(l.last_seen),
                };
                values.insert(
                    st::paths::link(here),
                    serde_json::to_value(v).unwrap_or_default(),
                );
            }
        }
        for id in p.configured_links_not_seen() {
            for here in [&id.0, &id.1] {
                values.entry(st::paths::link(here)).or_insert_with(|| {
                    serde_json::json!({"state": "down", "matches_config": true, "last_seen": 0,
                                       "note": "configured, never seen by discovery"})
                });
            }
        }
        for h in p.learned_hosts() {
            let v = st::HostStatus {
                attachment: h.attachment.clone(),
                ips: h.ips.clone(),
                learned: true,
                last_seen: unix,
            };
            values.insert(
                st::paths::host(h.vlan, h.mac),
                serde_json::to_value(v).unwrap_or_default(),
            );
        }
        for m in p.lag_status() {
            let v = serde_json::json!({
                "port_up": m.port_up,
                "selected": m.selected,
                "usable": m.usable,
                "mode": format!("{:?}", m.mode).to_lowercase(),
                "actor_state": m.actor.as_ref().map(|a| format!("{:?}", a.state)),
                "partner_system": m.partner.as_ref().map(|a| a.system.to_string()),
                "partner_key": m.partner.as_ref().map(|a| a.key),
                "partner_state": m.partner.as_ref().map(|a| format!("{:?}", a.state)),
            });
            values.insert(format!("lags/{}/{}", m.lag, m.port), v);
        }
        let observed = st::ObservedStatus {
            links: self
                .observed
                .discovered
                .iter()
                .map(|(id, seen)| (id.0.clone(), id.1.clone(), *seen))
                .collect(),
            ports_down: self.observed.ports_down.iter().cloned().collect(),
            lacp_unsynced: self.observed.lacp_unsynced.iter().cloned().collect(),
            flood_tree: self
                .compiler
                .flood_tree()
                .into_iter()
                .flat_map(|t| t.links.iter())
                .map(|l| (l.0.clone(), l.1.clone()))
                .collect(),
        };
        values.insert(
            st::paths::OBSERVED.to_string(),
            serde_json::to_value(observed).unwrap_or_default(),
        );
        for (path, v) in &values {
            if let Err(e) = w.set(path, v).await {
                tracing::debug!(error = %e, path, "cannot write status");
                return;
            }
        }
        for gone in self
            .observed_paths
            .iter()
            .filter(|p| !values.contains_key(*p))
        {
            let _ = w.remove(gone).await;
        }
        self.observed_paths = values.into_keys().collect();
    }
}

/// The controller's compiled fabric, kept up to date incrementally: a
/// configuration change goes through `update_config` (static hosts, edge
/// ports, VLANs) or compiles anew (the rest), an observed-state change
/// (links, ports, LACP) runs `update_topology`, a host change
/// `update_host`. The result always equals `compile::compile` of the same
/// inputs (and the same previous flood tree);
/// `tests/controller_incremental.rs` checks that.
#[derive(Debug, Default)]
pub struct IncrementalCompiler {
    /// None before the first configuration.
    compiled: Option<CompiledFabric>,
    /// The configuration, observed state and hosts `compiled` reflects.
    fabric: Arc<Fabric>,
    observed: ObservedState,
    hosts: Hosts,
    /// The snapshot taken after the last update.
    snapshot: Arc<FabricView>,
    previous_tree: Option<FloodTree>,
}

impl IncrementalCompiler {
    /// Brings the compiled fabric up to `fabric` (compiled anew the first
    /// time and for a configuration change `update_config` cannot apply),
    /// `observed` and `hosts`, and takes a new snapshot. The configuration
    /// is compared with the previous one when `config_changed` or when it
    /// is another `Arc`. Returns whether it compiled anew.
    pub fn update(
        &mut self,
        fabric: &Arc<Fabric>,
        observed: &ObservedState,
        hosts: &Hosts,
        config_changed: bool,
    ) -> Option<bool> {
        let reconfigured = config_changed || !Arc::ptr_eq(&self.fabric, fabric);
        let full = match self.compiled.as_mut() {
            None => true,
            Some(c) if reconfigured => c.update_config(&self.fabric, fabric, &self.hosts).is_none(),
            Some(_) => false,
        };
        self.fabric = fabric.clone();
        if full {
            let topo = Topology::build(fabric, observed, self.previous_tree.as_ref());
            self.previous_tree = Some(topo.flood_tree().clone());
            let mut c = CompiledFabric::new(fabric, &topo, hosts);
            // Share structure with what the agents hold, so each finds the
            // difference without comparing every entity.
            c.share_with(&self.snapshot);
            self.compiled = Some(c);
            self.observed = observed.clone();
            self.hosts = hosts.clone();
        } else {
            let c = self.compiled.as_mut()?;
            if *observed != self.observed {
                let topo = Topology::build(fabric, observed, self.previous_tree.as_ref());
                self.previous_tree = Some(topo.flood_tree().clone());
                c.update_topology(fabric, &topo);
                self.observed = observed.clone();
            }
            apply_host_changes(c, &mut self.hosts, hosts);
        }
        let c = self.compiled.as_ref()?;
        self.snapshot = Arc::new(c.view().clone());
        Some(full)
    }

    /// The desired entities of every switch as of the last update (shared;
    /// cheap to clone).
    pub fn snapshot(&self) -> Arc<FabricView> {
        self.snapshot.clone()
    }

    /// The flood tree of the last update (the next update builds on it).
    pub fn flood_tree(&self) -> Option<&FloodTree> {
        self.previous_tree.as_ref()
    }
}

/// Applies the difference between the hosts `compiled` reflects
/// (`applied`, brought up to date) and `hosts`, one `update_host` each.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn apply_host_changes(compiled: &mut CompiledFabric, applied: &mut Hosts, hosts: &Hosts) {
    let gone: Vec<compile::HostKey> = applied
        .keys()
        .filter(|k| !hosts.contains_key(*k))
        .copied()
        .collect();
    for k in gone {
        compiled.update_host(k, None);
        applied.remove(&k);
    }
    for (k, h) in hosts {
        if applied.get(k) != Some(h) {
            compiled.update_host(*k, Some(h.clone()));
            applied.insert(*k, h.clone());
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
