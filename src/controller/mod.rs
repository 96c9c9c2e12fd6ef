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
//!
//! This file owns the event dispatch: the `Controller` task, its channels
//! and the order it serves them in, and the glue from one part to the next.
//! Each other job has a file of its own:
//!
//! - `agents`: agents' lifecycle (start, restart, stop, hand out desired
//!   state, resync pacing);
//! - `pipelines`: the pipeline cache;
//! - `port_watchers`: the port-status subscribers' lifecycle;
//! - `port_security`: publishing ports at their learned-MAC limit;
//! - `recovery`: the start-up recovery window and restoring learned state;
//! - `status`: status publishing to etcd;
//! - `observations`: reading that status back (the observed state and
//!   learned hosts), for tools that must see what the controller sees;
//! - `incremental`: the incremental compiler;
//! - `maintenance`: drain / undrain order and status;
//! - `upgrade`: the rolling pipeline upgrade's order and status, and
//!   `rollout` its glue to the agents and maintenance;
//! - `metrics`: Prometheus metrics.
//!
//! May use: `config`, `topo`, `compile`, `protocols`, `agent`, `p4rt`
//! (types), `portstatus`, `target` (pipelines, port maps). Nothing
//! downstream uses the controller except the commands that run it
//! (`cli`, `ha`, the test kit).

mod agents;
mod incremental;
pub mod maintenance;
pub mod metrics;
pub mod observations;
mod pipelines;
mod port_security;
mod port_watchers;
mod recovery;
mod rollout;
mod status;
pub mod upgrade;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::agent::{self, ReadBack, SessionState, SwitchEvent};
use crate::compile::{HostEntry, HostKey, Hosts};
use crate::config::status::StatusWriter;
use crate::config::watch::ConfigUpdate;
use crate::config::Fabric;
use crate::p4rt::{Pipeline, StreamEvent};
use crate::portstatus::PortEvent;
use crate::protocols::{self, Action, Protocols};
use crate::target;
use crate::topo::ObservedState;

use agents::{AgentChannels, Agents};
use maintenance::Maintenance;
use port_security::PortSecurityPublisher;
use port_watchers::PortWatchers;
use recovery::{LinkRound, Recovery};
use status::StatusPublisher;

pub use agents::{resync_interval_for, DEFAULT_BULK_SYNCS, RESYNC_ENTITIES_PER_SEC};
pub use incremental::IncrementalCompiler;
pub use metrics::{ControllerMetrics, MetricsState, SharedMetrics};
pub use recovery::{RECOVERY_GRACE, RECOVERY_MAX};

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Where compiled pipelines live (`<name>.p4info.txt`, `<name>.json`).
    pub pipeline_dir: std::path::PathBuf,
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

pub struct Controller {
    opts: ControllerOptions,
    config: watch::Receiver<ConfigUpdate>,
    fabric: Arc<Fabric>,
    agents: Agents,
    port_watchers: PortWatchers,
    status: StatusPublisher,
    port_security: PortSecurityPublisher,
    /// Drains and undrains, and the writer for their status.
    maintenance: Maintenance,
    /// The rolling pipeline upgrade (`upgrade` key).
    upgrade: upgrade::Upgrade,
    /// The upgrade's verify step for the switch being loaded or verified.
    verification: Option<verify::Verification>,
    status_writer: Option<Arc<StatusWriter>>,
    /// Discovery, LACP, ARP/ND, learning; created with the first config.
    protocols: Option<Protocols>,
    /// Hosts given at start (benchmarks), merged with learned ones.
    seeded_hosts: Hosts,
    /// Changes to the seeded hosts (benchmarks: a learned host appearing
    /// or going without a switch to learn it from).
    host_updates: Option<mpsc::Receiver<(HostKey, Option<HostEntry>)>>,
    /// The compiler's inputs besides the configuration.
    observed: ObservedState,
    hosts: Hosts,
    compiler: IncrementalCompiler,
    /// A configuration arrived that is not compiled yet.
    config_pending: bool,
    /// Learned or seeded hosts changed and are not compiled yet: compiled
    /// once the queued events are handled (a flood of sources costs one
    /// compile per batch, not one per source, and never delays the
    /// protocols' frames and timers).
    hosts_dirty: bool,
    generation: u64,
    /// Packet-ins, digests, idle timeouts from the agents.
    events_rx: mpsc::Receiver<SwitchEvent>,
    /// Discovery / LACP packet-ins, served before `events_rx`.
    control_rx: mpsc::Receiver<SwitchEvent>,
    /// Port up/down from the switches that publish it, served with the
    /// control frames.
    port_events_rx: mpsc::Receiver<PortEvent>,
    read_backs_rx: mpsc::Receiver<ReadBack>,
    /// Set from the first configuration until every switch's read-back is
    /// in (or `RECOVERY_GRACE` passed).
    recovery: Option<Recovery>,
    /// After recovery, on switches that hold state, the first desired
    /// state waits for discovery to re-hear the links.
    link_round: LinkRound,
    metrics: SharedMetrics,
    /// Switch events on device ports outside the switch's port map.
    unmapped: UnmappedPorts,
}

/// Counts (metrics) and logs, at most every `UnmappedPorts::LOG_EVERY`,
/// packet-ins, learn rows and idle entries dropped because their device
/// port is not in the switch's port map: a switch punting from a port the
/// configuration does not know must not flood the log.
#[derive(Debug, Default)]
struct UnmappedPorts {
    since_log: u64,
    logged: Option<Instant>,
}

impl UnmappedPorts {
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn count(&mut self, switch: &str, ports: &[crate::config::PortNum], metrics: &SharedMetrics) {
        let Some(first) = ports.first() else {
            return;
        };
        let n = ports.len() as u64;
        self.since_log += n;
        metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .controller
            .unmapped_port_events += n;
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= Self::LOG_EVERY)
        {
            tracing::warn!(
                switch,
                device_port = first,
                dropped = self.since_log,
                "switch events on device ports outside the port map dropped"
            );
            self.logged = Some(now);
            self.since_log = 0;
        }
    }
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
        let channels = AgentChannels {
            events: events_tx,
            control: control_tx,
            read_backs: read_backs_tx,
        };
        Controller {
            agents: Agents::new(&opts, channels),
            port_watchers: PortWatchers::new(port_events_tx),
            port_security: PortSecurityPublisher::new(status.clone()),
            status: StatusPublisher::new(
                status.clone(),
                opts.controller_id.clone(),
                opts.election_id,
            ),
            maintenance: Maintenance::default(),
            upgrade: upgrade::Upgrade::default(),
            verification: None,
            status_writer: status,
            opts,
            config,
            fabric: Arc::new(Fabric::default()),
            protocols: None,
            seeded_hosts: Hosts::new(),
            host_updates: None,
            observed: ObservedState::default(),
            hosts: Hosts::new(),
            compiler: IncrementalCompiler::default(),
            config_pending: false,
            hosts_dirty: false,
            generation: 0,
            events_rx,
            control_rx,
            port_events_rx,
            read_backs_rx,
            recovery: None,
            link_round: LinkRound::default(),
            metrics,
            unmapped: UnmappedPorts::default(),
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
                _ = agent::sleep_until_opt(self.recovery.as_ref().map(Recovery::deadline)) => {
                    self.end_recovery()
                }
                Some((key, host)) = recv_opt(&mut self.host_updates) => self.on_seeded_host(key, host),
                _ = agent::sleep_until_opt(
                    self.protocols.as_ref().and_then(|p| p.next_deadline()).map(tokio::time::Instant::from_std),
                ) => self.on_protocol_timer(),
                _ = status_tick.tick() => self.publish_status(),
                Some(ev) = self.events_rx.recv() => self.on_switch_event(ev),
                // Last: only when no event is waiting.
                _ = std::future::ready(()), if self.hosts_dirty => self.compile_hosts(),
            }
        }
        tracing::info!("shutting down; switches keep their forwarding state");
        // A term that ends with the instance alive (deposed, a standby
        // again) keeps its status lease: what it said about maintenance
        // would outlive it, and a successor that never drains those
        // switches never overwrites it.
        self.maintenance.unpublish(self.status_writer.as_ref());
        self.agents.stop().await;
        self.port_watchers.stop();
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
        self.status.config_errors(&update.errors);
        for e in update.errors.iter() {
            tracing::warn!(key = %e.key, error = %e.reason, "configuration key rejected; last good value stays");
        }
        self.port_watchers.sync(&self.fabric);
        self.agents.forget_failed_pipelines();
        let first = self.protocols.is_none();
        self.upgrade.on_config(&self.fabric);
        if first {
            // Before the first drain request: a switch the previous leader
            // had out of service stays so from the first compile on.
            self.resume_upgrade().await;
        }
        self.maintenance.set_internal(self.upgrade.drain_request());
        self.sync_agents();
        let now = std::time::Instant::now();
        let actions = match self.protocols.as_mut() {
            Some(p) => p.on_config(&self.fabric, now),
            None => {
                let mut p = Protocols::new(&self.fabric, now);
                if !self.agents.is_empty() {
                    p.hold_lacp(now);
                    self.status.read_lacp_partners().await;
                    if let Some(tree) = self.status.read_flood_tree().await {
                        self.compiler.seed_flood_tree(tree);
                    }
                    self.recovery = Some(Recovery::new(self.agents.names().cloned()));
                }
                self.protocols = Some(p);
                Vec::new()
            }
        };
        self.on_actions(actions);
        if self.config_pending {
            self.refresh_observed();
            let changed = self.maintenance.on_config(&self.fabric, &self.hosts);
            self.apply_maintenance(changed, true);
        }
    }

    /// Carries out a maintenance step: the LACP actor's drained leaves,
    /// and a compile when the switches routed around changed (or
    /// `recompile`).
    fn apply_maintenance(&mut self, changed: maintenance::Changed, recompile: bool) {
        if changed.lacp {
            let leaves = self.maintenance.lacp_drained();
            let actions = self
                .protocols
                .as_mut()
                .map(|p| p.set_lacp_drained(&leaves, std::time::Instant::now()))
                .unwrap_or_default();
            self.on_actions(actions);
        }
        if changed.routed || recompile {
            self.refresh_observed();
            self.recompute(recompile);
        }
    }

    /// The status tick's maintenance step: drains and undrains that wait
    /// for switches to converge, for LACP, or for time.
    fn maintenance_tick(&mut self) {
        self.upgrade_tick();
        let statuses = self.agents.statuses();
        let members = self
            .protocols
            .as_ref()
            .map(Protocols::lag_status)
            .unwrap_or_default();
        let lacp_back = |leaf: &str| {
            members
                .iter()
                .filter(|m| m.port.switch == leaf && m.mode == crate::config::LagMode::Lacp)
                .filter(|m| m.port_up)
                .all(|m| m.usable)
        };
        let observed = &self.observed;
        let links_up = |switch: &str| {
            !observed
                .discovered
                .iter()
                .any(|(l, seen)| !seen && (l.0.switch == switch || l.1.switch == switch))
                && !observed.ports_down.iter().any(|p| p.switch == switch)
        };
        // Refused drains are re-checked (a spine came back; a host left).
        let mut changed = self.maintenance.on_config(&self.fabric, &self.hosts);
        let stepped =
            self.maintenance
                .step(&statuses, links_up, lacp_back, std::time::Instant::now());
        changed.routed |= stepped.routed;
        changed.lacp |= stepped.lacp;
        self.apply_maintenance(changed, false);
        self.maintenance
            .publish(self.status_writer.as_ref(), &self.opts.controller_id);
    }

    /// A switch's read-back at session start: recover what was learned
    /// there, then hand out a new desired state (the agent waits for one
    /// before writing) — at start, once every switch has reported.
    fn on_read_back(&mut self, rb: ReadBack) {
        if !self.agents.contains(&rb.switch) {
            return;
        }
        self.link_round.read_back(&rb);
        if let Some(p) = self.protocols.as_mut() {
            let packets = recovery::restore_learned(p, &rb);
            self.on_actions(packets);
        }
        match self.recovery.as_mut().map(|r| r.reported(&rb.switch)) {
            Some(false) => {}
            Some(true) => {
                self.recovery = None;
                self.recovered();
            }
            None => {
                self.refresh_observed();
                self.recompute(false);
            }
        }
    }

    /// The recovery window's deadline: over unless connected switches are
    /// still being read back (their agents read a few at a time, under the
    /// bulk permits).
    fn end_recovery(&mut self) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        let agents = &self.agents;
        if r.expired(|n| {
            agents
                .get(n)
                .is_some_and(|a| a.status().state == SessionState::Primary)
        }) {
            self.recovery = None;
            self.recovered();
        }
    }

    /// Recovery is over: LACP speaks, and one desired state for all — at
    /// once on empty switches (a cold start), after the start-up discovery
    /// round on switches that forward (`LinkRound`).
    fn recovered(&mut self) {
        let now = std::time::Instant::now();
        let (actions, waiting) = match self.protocols.as_mut() {
            Some(p) => (
                p.release_lacp(self.status.lacp_partners(), now),
                self.link_round.start(p, now),
            ),
            None => (Vec::new(), false),
        };
        self.on_actions(actions);
        if !waiting {
            self.refresh_observed();
            self.recompute(false);
        }
    }

    /// The first desired state once the start-up discovery round is over.
    fn check_link_round(&mut self) {
        let Some(p) = self.protocols.as_mut() else {
            return;
        };
        if self.link_round.end_if_over(p, std::time::Instant::now()) {
            self.refresh_observed();
            self.recompute(false);
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

    /// A seeded host appeared (`Some`) or went (`None`).
    fn on_seeded_host(&mut self, key: HostKey, host: Option<HostEntry>) {
        match host {
            Some(h) => self.seeded_hosts.insert(key, h),
            None => self.seeded_hosts.remove(&key),
        };
        self.hosts_dirty = true;
    }

    /// Compiles the host changes gathered since the last compile.
    fn compile_hosts(&mut self) {
        self.hosts_dirty = false;
        self.refresh_observed();
        self.recompute(false);
    }

    /// A protocol timer is due (probes, LACPDUs, ageing).
    fn on_protocol_timer(&mut self) {
        let now = std::time::Instant::now();
        let actions = self
            .protocols
            .as_mut()
            .map(|p| p.on_tick(now))
            .unwrap_or_default();
        self.on_actions(actions);
    }

    /// Packet-ins, digests and idle timeouts feed the control protocols
    /// (discovery, LACP, ARP/ND, learning), decoded by
    /// `protocols::Event::decode` with the switch's pipeline.
    fn on_switch_event(&mut self, ev: SwitchEvent) {
        let Some(pipeline) = self.agents.pipeline(&ev.switch).cloned() else {
            return;
        };
        let Some(protocols) = self.protocols.as_mut() else {
            return;
        };
        match &ev.event {
            StreamEvent::Digest(d) => {
                if let Some(agent) = self.agents.get(&ev.switch) {
                    agent.ack_digest(d.digest_id, d.list_id);
                }
            }
            StreamEvent::Error(e) => {
                tracing::warn!(switch = %ev.switch, code = e.canonical_code, message = %e.message, "stream error");
            }
            _ => {}
        }
        let decoded = protocols::Event::decode(&pipeline.registry, &ev.event);
        // The protocols speak configured port numbers; the switch, its own.
        let decoded = match (decoded, self.agents.ports(&ev.switch)) {
            (Ok(Some(event)), Some(t)) => {
                let (event, unmapped) = event.map_ports(|p| target::ports::port_to_config(t, p));
                self.unmapped.count(&ev.switch, &unmapped, &self.metrics);
                Ok(event)
            }
            (decoded, _) => decoded,
        };
        let actions = match decoded {
            Ok(Some(event)) => protocols.on_event(&ev.switch, &event, std::time::Instant::now()),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::debug!(switch = %ev.switch, error = %e, "undecodable switch event");
                Vec::new()
            }
        };
        self.on_actions(actions);
    }

    /// Carries out what the protocols asked for; one recompile covers any
    /// number of topology, LAG, host and next-hop changes.
    fn on_actions(&mut self, actions: Vec<Action>) {
        let mut recompile = false;
        for a in actions {
            match a {
                Action::HostsChanged => self.hosts_dirty = true,
                Action::SendPacket(p) => {
                    let (Some(agent), Some(pipeline)) =
                        (self.agents.get(&p.switch), self.agents.pipeline(&p.switch))
                    else {
                        continue;
                    };
                    // On the device's port numbers.
                    let p = match self.agents.ports(&p.switch) {
                        None => p,
                        Some(t) => match p.map_ports(|port| target::ports::port_to_device(t, port))
                        {
                            Ok(p) => p,
                            Err(e) => {
                                tracing::warn!(error = %e, "packet-out on an unmapped port dropped");
                                continue;
                            }
                        },
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
                | Action::LagMembersChanged { .. }
                | Action::NextHopsChanged => recompile = true,
            }
        }
        // An attachment reached its MAC limit or came back under it: the
        // data plane's lock follows (a topology-only recompile).
        if let Some(p) = &self.protocols {
            recompile |= p.locked_attachments() != self.observed.locked_sources;
        }
        if recompile {
            // Host changes gathered so far go with it.
            self.hosts_dirty = false;
            self.refresh_observed();
            self.recompute(false);
        }
        self.check_link_round();
    }

    /// Copies what the protocols observed into the compiler's inputs.
    fn refresh_observed(&mut self) {
        self.observed.drained = self.maintenance.routed();
        self.observed.lags_handed_over = self.maintenance.handed_over();
        let Some(p) = &self.protocols else {
            self.hosts = self.seeded_hosts.clone();
            return;
        };
        self.observed.discovered = p.observed_links();
        self.observed.ports_down = p.ports_down();
        self.observed.lacp_unsynced = p.lacp_unsynced();
        self.observed.locked_sources = p.locked_attachments();
        self.hosts = self.seeded_hosts.clone();
        self.hosts.extend(p.learned_hosts().into_iter().map(|h| {
            let e = HostEntry::from(h);
            (e.key(), e)
        }));
    }

    /// Brings the compiled fabric up to date and hands every agent the new
    /// desired state. `config_changed`: compile anew (config changes touch
    /// anything); otherwise apply only what changed in the observed state
    /// (`update_topology`) and the host set (`update_host` per host).
    fn recompute(&mut self, config_changed: bool) {
        if self.recovery.is_some() || self.link_round.running() {
            // Agents are still reporting what their switches hold, or
            // discovery is re-hearing their links; the first desired state
            // comes when that is complete.
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
        self.generation += 1;
        // Drains and undrains wait for the switches to hold this one.
        self.maintenance.compiled(self.generation);
        self.agents
            .set_desired(self.generation, &self.compiler.snapshot(), full);
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

    fn publish_status(&mut self) {
        self.maintenance_tick();
        self.publish_port_security();
        let statuses = self.agents.statuses();
        let labels = self.pipeline_labels();
        self.status.switches(&statuses, &labels);
        {
            let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
            m.agents = statuses;
            if let Some(p) = &self.protocols {
                m.controller.protocols = p.counters().clone();
            }
        }
        self.status.observed(
            self.protocols.as_ref(),
            &self.observed,
            self.compiler.flood_tree(),
        );
    }
}

impl Controller {
    /// Port security status keys and metrics (small: only attachments at
    /// their limit; kept apart from `publish_status`'s bulk writes).
    fn publish_port_security(&mut self) {
        let Some(p) = &self.protocols else {
            return;
        };
        let figures = PortSecurityPublisher::metrics(p);
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .controller
            .port_security = figures;
        self.port_security.publish(p);
    }
}

/// Receives from `rx`, or waits forever where there is no channel.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
