//! One agent per switch: keeps the switch's installed entities equal to the
//! desired ones, level-triggered.
//!
//! The agent connects (retrying with backoff), arbitrates, makes sure the
//! switch runs our pipeline (pushing it only when the cookie differs),
//! *reads back* what the switch holds, and writes only the difference —
//! never flush-and-rewrite. Desired state arrives through a watch channel:
//! latest wins, so a slow switch skips stale intermediate states. Failed
//! updates are retried with capped backoff while the rest proceed. A switch
//! that restarts (stream lost, no pipeline) is restored in full. Each agent
//! is its own task: a slow or dead switch never delays another.

pub mod port_events;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use p4runtime_proto::v1 as p4;
use p4runtime_proto::v1::set_forwarding_pipeline_config_request::Action as PipelineAction;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::compile::diff::merge_join;
use crate::compile::FabricView;
use crate::p4rt::backoff::Backoff;
use crate::p4rt::intern::{intern, SharedEntities};
use crate::p4rt::switch::{read_all_shared, write_ops_with, OpError, UpdateKind, DEFAULT_BATCH};
use crate::p4rt::{Client, ClientError, ClientOptions, Entity, Mastership, Pipeline, StreamEvent};
use crate::p4rt::{EntityKey, SwitchEntities};

/// (installed, desired) pairs of the same key, for every key that may
/// differ.
pub type Changes<'a> = Vec<(Option<&'a Entity>, Option<&'a Entity>)>;

/// Ordered write stages that turn the installed entities into the desired
/// ones, given their (installed, desired) pairs (the compiler's diff); ops
/// within a stage are independent. Ops borrow the entities: writing a whole
/// switch copies none of them.
pub type Planner = Arc<
    dyn for<'a> Fn(Changes<'a>) -> Vec<Vec<(UpdateKind, crate::compile::diff::OpEntity<'a>)>>
        + Send
        + Sync,
>;

/// A version of the desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Increases with every new desired state (e.g. the config revision).
    pub generation: u64,
    pub entities: DesiredEntities,
}

/// A switch's desired entities: a plain map, or the switch's part of a
/// compiled-fabric snapshot that every agent of the generation shares (the
/// controller's way: no per-switch copy, and consecutive snapshots share
/// structure, so finding what changed costs O(changes)).
#[derive(Debug, Clone)]
pub enum DesiredEntities {
    Map(Arc<SwitchEntities>),
    Fabric(Arc<FabricView>),
}

impl Default for DesiredEntities {
    fn default() -> Self {
        DesiredEntities::Map(Arc::default())
    }
}

impl From<Arc<SwitchEntities>> for DesiredEntities {
    fn from(m: Arc<SwitchEntities>) -> Self {
        DesiredEntities::Map(m)
    }
}

impl From<Arc<FabricView>> for DesiredEntities {
    fn from(v: Arc<FabricView>) -> Self {
        DesiredEntities::Fabric(v)
    }
}

impl DesiredEntities {
    /// The entity of `switch` with this key.
    pub fn get<'a>(&'a self, switch: &str, key: &EntityKey) -> Option<&'a Entity> {
        match self {
            DesiredEntities::Map(m) => m.get(key),
            DesiredEntities::Fabric(v) => v.get(switch, key),
        }
    }

    /// The entities of `switch` in key order.
    pub fn iter<'a>(
        &'a self,
        switch: &str,
    ) -> Box<dyn Iterator<Item = (&'a EntityKey, &'a Entity)> + 'a> {
        match self {
            DesiredEntities::Map(m) => Box::new(m.iter()),
            DesiredEntities::Fabric(v) => Box::new(v.iter_switch(switch)),
        }
    }

    pub fn len(&self, switch: &str) -> usize {
        match self {
            DesiredEntities::Map(m) => m.len(),
            DesiredEntities::Fabric(v) => v.switch_len(switch),
        }
    }

    pub fn is_empty(&self, switch: &str) -> bool {
        self.len(switch) == 0
    }

    /// The keys of `switch` that may differ from `old`; `None` when the
    /// two cannot be compared cheaply (then diff everything).
    fn changed_keys(&self, old: &DesiredEntities, switch: &str) -> Option<BTreeSet<EntityKey>> {
        match (old, self) {
            (DesiredEntities::Map(o), DesiredEntities::Map(n)) if Arc::ptr_eq(o, n) => {
                Some(BTreeSet::new())
            }
            (DesiredEntities::Fabric(o), DesiredEntities::Fabric(n)) => {
                if Arc::ptr_eq(o, n) {
                    Some(BTreeSet::new())
                } else {
                    Some(n.changed_keys(o, switch))
                }
            }
            _ => None,
        }
    }
}

/// What the agent believes its switch holds.
#[derive(Debug, Clone)]
enum Installed {
    /// Read back from the switch (plus the writes since); shared with the
    /// controller's recovery until the first write.
    Read(Arc<SharedEntities>),
    /// Exactly a desired state this agent installed in full, plus the
    /// writes since (`None`: deleted). Shares the desired snapshot rather
    /// than holding a copy of the switch's entities.
    Based {
        base: DesiredEntities,
        overlay: BTreeMap<EntityKey, Option<Entity>>,
    },
}

impl Installed {
    fn get<'a>(&'a self, switch: &str, key: &EntityKey) -> Option<&'a Entity> {
        match self {
            Installed::Read(m) => m.get(key).map(|e| &**e),
            Installed::Based { base, overlay } => match overlay.get(key) {
                Some(e) => e.as_ref(),
                None => base.get(switch, key),
            },
        }
    }

    /// Entities in key order.
    fn iter<'a>(
        &'a self,
        switch: &str,
    ) -> Box<dyn Iterator<Item = (&'a EntityKey, &'a Entity)> + 'a> {
        match self {
            Installed::Read(m) => Box::new(m.iter().map(|(k, e)| (&**k, &**e))),
            Installed::Based { base, overlay } => {
                let mut a = base.iter(switch).peekable();
                let mut b = overlay.iter().peekable();
                Box::new(std::iter::from_fn(move || loop {
                    let next = match (a.peek(), b.peek()) {
                        (None, None) => return None,
                        (Some(_), None) => return a.next(),
                        (None, Some(_)) => b.next(),
                        (Some((ka, _)), Some((kb, _))) => match (*ka).cmp(*kb) {
                            std::cmp::Ordering::Less => return a.next(),
                            std::cmp::Ordering::Greater => b.next(),
                            std::cmp::Ordering::Equal => {
                                a.next();
                                b.next()
                            }
                        },
                    };
                    if let Some((k, Some(e))) = next {
                        return Some((k, e));
                    }
                }))
            }
        }
    }

    fn len(&self, switch: &str) -> usize {
        match self {
            Installed::Read(m) => m.len(),
            Installed::Based { base, overlay } => {
                let mut n = base.len(switch) as isize;
                for (k, e) in overlay {
                    match (base.get(switch, k).is_some(), e.is_some()) {
                        (false, true) => n += 1,
                        (true, false) => n -= 1,
                        _ => {}
                    }
                }
                n.max(0) as usize
            }
        }
    }

    /// Records a successful write.
    fn apply(&mut self, kind: UpdateKind, entity: &Entity) {
        let key = entity.key();
        match self {
            Installed::Read(m) => {
                let m = Arc::make_mut(m);
                if kind == UpdateKind::Delete {
                    m.remove(&key);
                } else {
                    let (key, entity) = intern(key, entity.clone());
                    m.insert(key, entity);
                }
            }
            Installed::Based { overlay, .. } => {
                let v = (kind != UpdateKind::Delete).then(|| entity.clone());
                overlay.insert(key, v);
            }
        }
    }

    /// The (installed, desired) pairs of every key that may differ.
    fn changes<'a>(&'a self, desired: &'a DesiredEntities, switch: &str) -> Changes<'a> {
        if let Installed::Based { base, overlay } = self {
            if let Some(mut keys) = desired.changed_keys(base, switch) {
                keys.extend(overlay.keys().cloned());
                return keys
                    .iter()
                    .map(|k| (self.get(switch, k), desired.get(switch, k)))
                    .collect();
            }
        }
        merge_join(self.iter(switch), desired.iter(switch)).collect()
    }
}

#[derive(Clone)]
pub struct AgentConfig {
    pub name: String,
    pub client: ClientOptions,
    pub pipeline: Arc<Pipeline>,
    pub planner: Planner,
    pub batch_size: usize,
    /// Re-read the whole switch this often to catch drift (at least).
    pub resync_interval: Duration,
    /// The controller's resync interval for the size of the whole fabric
    /// (milliseconds; `controller::resync_interval_for`): every resync
    /// reads a whole switch back and diffs it, so a fabric of 33M entries
    /// re-read every minute would keep the controller busy with nothing
    /// else. The larger of this and `resync_interval` applies.
    pub fabric_resync_ms: Option<Arc<std::sync::atomic::AtomicU64>>,
    pub reconnect: Backoff,
    pub retry: Backoff,
    /// Report each session's first read-back here and wait for a newer
    /// desired state before writing: the controller recovers learned
    /// hosts from it, so they are not deleted as unknown.
    pub report_read_back: Option<mpsc::Sender<ReadBack>>,
    /// How long to wait for that desired state (`READ_BACK_WAIT`); without
    /// any from this controller yet (generation 0) the agent waits on.
    pub read_back_wait: Duration,
    /// Where discovery / LACP packet-ins go (a channel the controller
    /// serves first); `None`: with the other events.
    pub control_events: Option<mpsc::Sender<SwitchEvent>>,
    /// Shared by the agents of one controller: a pass after a read-back
    /// (session start, retry, resync: the passes that may rewrite a whole
    /// switch) waits for one of these permits. A cold start of hundreds of
    /// switches then holds the write plans and in-flight requests of a few
    /// switches at a time instead of all of them; the controller's cores
    /// are busy either way. Packet I/O goes on while an agent waits.
    pub bulk_permits: Option<Arc<tokio::sync::Semaphore>>,
}

impl AgentConfig {
    pub fn new(
        name: &str,
        client: ClientOptions,
        pipeline: Arc<Pipeline>,
        planner: Planner,
    ) -> Self {
        AgentConfig {
            name: name.to_string(),
            client,
            pipeline,
            planner,
            batch_size: DEFAULT_BATCH,
            resync_interval: Duration::from_secs(60),
            fabric_resync_ms: None,
            reconnect: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            retry: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
            report_read_back: None,
            read_back_wait: READ_BACK_WAIT,
            control_events: None,
            bulk_permits: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    Connecting,
    /// Connected but another controller is primary.
    Backup,
    Primary,
    /// Lost; reconnecting. The reason is kept for status.
    Down(String),
    Stopped,
}

impl SessionState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionState::Connecting => "connecting",
            SessionState::Backup => "backup",
            SessionState::Primary => "primary",
            SessionState::Down(_) => "down",
            SessionState::Stopped => "stopped",
        }
    }
}

/// What the agent reports (status keys, metrics, `p4fabric status`).
#[derive(Debug, Clone)]
pub struct AgentStatus {
    pub name: String,
    pub state: SessionState,
    pub last_reconcile: Option<SystemTime>,
    /// Generation of the desired state last fully installed.
    pub converged_generation: Option<u64>,
    pub desired_generation: u64,
    pub installed: usize,
    pub desired: usize,
    /// Operations that failed in the last pass (key, reason), at most 20.
    pub failing: Vec<(String, String)>,
    pub failing_count: usize,
    pub last_error: Option<String>,
    pub counters: AgentCounters,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentCounters {
    pub updates_written: u64,
    pub update_errors: u64,
    pub reconciles: u64,
    pub pipeline_pushes: u64,
    pub sessions: u64,
    /// Sum and count of reconcile pass durations, for the latency metric.
    pub reconcile_micros_total: u64,
    /// Reconcile passes that took at most `RECONCILE_BUCKETS[i]` seconds
    /// (cumulative, Prometheus style; the +Inf bucket is `reconciles`).
    pub reconcile_buckets: [u64; RECONCILE_BUCKETS.len()],
}

/// Upper bounds (seconds) of the reconcile latency histogram.
pub const RECONCILE_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

impl AgentStatus {
    fn new(name: &str) -> Self {
        AgentStatus {
            name: name.to_string(),
            state: SessionState::Connecting,
            last_reconcile: None,
            converged_generation: None,
            desired_generation: 0,
            installed: 0,
            desired: 0,
            failing: Vec::new(),
            failing_count: 0,
            last_error: None,
            counters: AgentCounters::default(),
        }
    }

    pub fn converged(&self) -> bool {
        self.state == SessionState::Primary
            && self.failing_count == 0
            && self.converged_generation == Some(self.desired_generation)
    }
}

/// What a switch held when its agent's session started, reported before
/// the agent writes anything (see `AgentConfig::report_read_back`).
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub switch: String,
    pub installed: Arc<SharedEntities>,
}

/// How long an agent waits, after reporting its read-back, for a desired
/// state that takes it into account before reconciling anyway.
pub const READ_BACK_WAIT: Duration = Duration::from_secs(10);

/// Something a switch told the controller, tagged with the switch name.
#[derive(Debug, Clone)]
pub struct SwitchEvent {
    pub switch: String,
    pub event: StreamEvent,
}

impl SwitchEvent {
    /// A discovery or LACP packet-in.
    pub fn is_control(&self) -> bool {
        matches!(&self.event, StreamEvent::PacketIn(p) if crate::protocols::frames::is_control_frame(&p.payload))
    }
}

/// What the controller sends on a switch's stream.
#[derive(Debug, Clone)]
enum Outbound {
    Packet(p4::PacketOut),
    DigestAck { digest_id: u32, list_id: u64 },
}

/// The controller's end of a running agent.
pub struct AgentHandle {
    pub name: String,
    desired: watch::Sender<Desired>,
    status: watch::Receiver<AgentStatus>,
    packet_out: mpsc::Sender<Outbound>,
    /// Discovery / LACP packet-outs and digest acks: a queue of their own,
    /// served first.
    control_out: mpsc::Sender<Outbound>,
    shutdown: watch::Sender<bool>,
    join: Option<JoinHandle<()>>,
}

impl AgentHandle {
    /// Hands the agent a new desired state (replacing any it has not
    /// started on yet).
    pub fn set_desired(&self, desired: Desired) {
        self.desired.send_replace(desired);
    }

    pub fn status(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    pub fn status_watch(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Queues a packet-out; dropped (false) if the queue is full.
    /// Discovery and LACP frames have a queue of their own that the agent
    /// serves first, so a flood of ARP replies cannot delay them.
    pub fn send_packet(&self, p: p4::PacketOut) -> bool {
        let queue = if crate::protocols::frames::is_control_frame(&p.payload) {
            &self.control_out
        } else {
            &self.packet_out
        };
        queue.try_send(Outbound::Packet(p)).is_ok()
    }

    /// Acknowledges a digest list so the switch sends the next one.
    pub fn ack_digest(&self, digest_id: u32, list_id: u64) -> bool {
        // With the control frames: the switch holds back further digests
        // until this ack, so it must not wait behind a reconcile pass.
        self.control_out
            .try_send(Outbound::DigestAck { digest_id, list_id })
            .is_ok()
    }

    /// Waits until the switch holds the desired state of `generation` or
    /// newer.
    pub async fn wait_converged(&self, generation: u64, timeout: Duration) -> bool {
        let mut rx = self.status.clone();
        tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                s.failing_count == 0
                    && s.state == SessionState::Primary
                    && s.converged_generation.is_some_and(|g| g >= generation)
            }),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Stops the agent; the switch keeps its forwarding state.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Starts an agent task. Stream events (packet-ins, digests, idle
/// timeouts) go to `events`.
pub fn spawn(cfg: AgentConfig, events: mpsc::Sender<SwitchEvent>) -> AgentHandle {
    let (desired_tx, desired_rx) = watch::channel(Desired::default());
    let (status_tx, status_rx) = watch::channel(AgentStatus::new(&cfg.name));
    let (packet_tx, packet_rx) = mpsc::channel(1024);
    let (control_tx, control_rx) = mpsc::channel(256);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let name = cfg.name.clone();
    let agent = Agent {
        cfg,
        desired: desired_rx,
        status: status_tx,
        events,
        packet_out: packet_rx,
        control_out: control_rx,
        shutdown: shutdown_rx,
        installed: Installed::Read(Arc::default()),
    };
    let join = tokio::spawn(agent.run());
    AgentHandle {
        name,
        desired: desired_tx,
        status: status_rx,
        packet_out: packet_tx,
        control_out: control_tx,
        shutdown: shutdown_tx,
        join: Some(join),
    }
}

struct Agent {
    cfg: AgentConfig,
    desired: watch::Receiver<Desired>,
    status: watch::Sender<AgentStatus>,
    events: mpsc::Sender<SwitchEvent>,
    packet_out: mpsc::Receiver<Outbound>,
    control_out: mpsc::Receiver<Outbound>,
    shutdown: watch::Receiver<bool>,
    /// What we believe the switch holds: read back at session start and
    /// after failures, updated with every successful write, and the
    /// desired snapshot itself once that is installed in full.
    installed: Installed,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("shutdown")]
    Shutdown,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("read back failed: {0}")]
    Read(String),
    #[error("no longer primary")]
    LostPrimary,
}

impl Agent {
    fn update_status(&self, f: impl FnOnce(&mut AgentStatus)) {
        self.status.send_modify(f);
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn run(mut self) {
        let mut reconnect = self.cfg.reconnect.clone();
        loop {
            if self.stopping() {
                break;
            }
            self.update_status(|s| s.state = SessionState::Connecting);
            let mut stop = self.shutdown.clone();
            let client =
                Client::connect_with_retry(self.cfg.client.clone(), &mut reconnect, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            let Some(client) = client else { break };
            match self.session(&client).await {
                Err(SessionEnd::Shutdown) => break,
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(switch = %self.cfg.name, error = %e, "session ended");
                    let reason = e.to_string();
                    self.update_status(|s| {
                        s.state = SessionState::Down(reason.clone());
                        s.last_error = Some(reason);
                    });
                    let delay = reconnect.next_delay();
                    let mut stop = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        }
        self.update_status(|s| s.state = SessionState::Stopped);
    }

    async fn session(&mut self, client: &Client) -> Result<(), SessionEnd> {
        let name = self.cfg.name.clone();
        let session = client.open_session().await?;
        self.update_status(|s| s.counters.sessions += 1);
        let (sender, mut mastership, mut events) = session.split();

        // Arbitration: wait for the answer; as a backup, wait to be promoted
        // (another controller instance may still hold the switch).
        loop {
            let m = *mastership.borrow_and_update();
            match m {
                Mastership::Primary => break,
                Mastership::Pending => {}
                Mastership::Backup { .. } => self.update_status(|s| s.state = SessionState::Backup),
            }
            let mut stop = self.shutdown.clone();
            tokio::select! {
                r = mastership.changed() => if r.is_err() { return Err(ClientError::StreamClosed(None).into()) },
                _ = stop.wait_for(|s| *s) => return Err(SessionEnd::Shutdown),
                ev = events.recv() => match ev {
                    Some(StreamEvent::Closed(s)) => return Err(ClientError::StreamClosed(s).into()),
                    None => return Err(ClientError::StreamClosed(None).into()),
                    // A backup receives no packet-ins or digests worth acting on.
                    Some(_) => {}
                },
            }
        }
        tracing::info!(switch = %name, "primary");
        self.update_status(|s| s.state = SessionState::Primary);

        // Stream events go to the controller from a task of their own, so a
        // long reconcile never holds up packet-ins.
        let (closed_tx, mut closed) = watch::channel(None::<String>);
        let events_out = self.events.clone();
        let control_events = self.cfg.control_events.clone();
        let ev_name = name.clone();
        let forward = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let StreamEvent::Closed(s) = &ev {
                    let why = s
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "closed".into());
                    closed_tx.send_replace(Some(why));
                    break;
                }
                let ev = SwitchEvent {
                    switch: ev_name.clone(),
                    event: ev,
                };
                // Discovery / LACP packet-ins go ahead of everything else
                // and are never dropped; the rest is dropped when the
                // controller lags (an ARP storm must not grow memory).
                match &control_events {
                    Some(c) if ev.is_control() => {
                        let _ = c.send(ev).await;
                    }
                    _ => {
                        let _ = events_out.try_send(ev);
                    }
                }
            }
            closed_tx.send_replace(Some("closed".into()));
        });
        let result = self
            .primary_loop(client, &sender, &mut mastership, &mut closed)
            .await;
        forward.abort();
        result
    }

    /// May a read-back or the pass after it run: with a permit, or where
    /// the controller bounds none.
    fn may_bulk(&self, permit: &Option<tokio::sync::OwnedSemaphorePermit>) -> bool {
        permit.is_some() || self.cfg.bulk_permits.is_none()
    }

    fn resync_interval(&self) -> Duration {
        let fabric = self
            .cfg
            .fabric_resync_ms
            .as_ref()
            .map_or(0, |ms| ms.load(std::sync::atomic::Ordering::Relaxed));
        self.cfg.resync_interval.max(Duration::from_millis(fabric))
    }

    async fn ensure_pipeline(&mut self, client: &Client) -> Result<(), SessionEnd> {
        let p = &self.cfg.pipeline;
        let cookie = client.pipeline_cookie().await?;
        if cookie == Some(p.cookie) {
            return Ok(());
        }
        // A switch with no pipeline (fresh, or restarted) gets a full
        // commit; a running one with another pipeline is reconciled so its
        // forwarding state survives where the new program allows.
        let action = if cookie.is_none() {
            PipelineAction::VerifyAndCommit
        } else {
            PipelineAction::ReconcileAndCommit
        };
        tracing::info!(switch = %self.cfg.name, ?action, cookie = p.cookie, "pushing pipeline");
        client
            .set_pipeline(
                action,
                p.registry.p4info().clone(),
                p.device_config.to_vec(),
                p.cookie,
            )
            .await?;
        self.update_status(|s| s.counters.pipeline_pushes += 1);
        Ok(())
    }

    async fn read_back(&mut self, client: &Client) -> Result<(), SessionEnd> {
        let reg = self.cfg.pipeline.registry.clone();
        let read = read_all_shared(client, &reg)
            .await
            .map_err(|e| SessionEnd::Read(e.to_string()))?;
        let n = read.len();
        self.installed = Installed::Read(Arc::new(read));
        self.update_status(|s| s.installed = n);
        Ok(())
    }

    /// Hands the session's read-back to the controller; returns the
    /// generation of the desired state at the time: the agent writes
    /// nothing until a newer one (which accounts for what the switch
    /// holds) comes, or `READ_BACK_WAIT` passed.
    async fn report_read_back(
        &mut self,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Option<u64>, SessionEnd> {
        let Some(tx) = self.cfg.report_read_back.clone() else {
            return Ok(None);
        };
        let Installed::Read(read) = &self.installed else {
            return Ok(None);
        };
        let seen = self.desired.borrow().generation;
        let report = ReadBack {
            switch: self.cfg.name.clone(),
            installed: read.clone(),
        };
        if tx.send(report).await.is_err() {
            return Ok(None);
        }
        // Reported: the next agent may read its switch.
        drop(permit);
        Ok(Some(seen))
    }

    async fn primary_loop(
        &mut self,
        client: &Client,
        sender: &crate::p4rt::SessionSender,
        mastership: &mut watch::Receiver<Mastership>,
        closed: &mut watch::Receiver<Option<String>>,
    ) -> Result<(), SessionEnd> {
        self.ensure_pipeline(client).await?;
        let mut retry = self.cfg.retry.clone();
        let mut retry_at: Option<Instant> = None;
        // Counted from the end of the first pass (which may take minutes on
        // a large switch: it just wrote everything), jittered so hundreds
        // of agents started together do not all re-read at once.
        let mut resync_at = Instant::now() + self.resync_interval();
        let mut first_pass = true;
        let mut dirty = true;
        // The next pass follows a read-back (and may be large): it needs a
        // bulk permit, if this controller bounds them.
        let mut bulk = true;
        // The switch is to be read back: at session start (then reported to
        // the controller), for a resync or a retry. A read-back (a whole
        // switch in memory) and the pass after it run under a bulk permit
        // too: a controller restart then reads a few switches at a time,
        // its recovery sees steady progress, and packet I/O goes on while
        // an agent waits. Single changes go on without one.
        let mut read_pending = true;
        let mut report_pending = true;
        // After the report: the generation the controller had then, and
        // until when to wait for a newer one (`None`: until it comes).
        let mut awaiting: Option<(u64, Option<Instant>)> = None;
        let mut permit: Option<tokio::sync::OwnedSemaphorePermit> = None;
        // Kept across iterations: the semaphore is fair, a new acquire
        // would lose the place in its queue.
        let mut acquiring: Option<Pin<Box<PermitFuture>>> = None;
        loop {
            if read_pending && self.may_bulk(&permit) {
                read_pending = false;
                self.read_back(client).await?;
                if std::mem::take(&mut report_pending) {
                    // Hands the permit back once reported: the wait for
                    // the controller's answer must not hold up the others.
                    if let Some(seen) = self.report_read_back(permit.take()).await? {
                        awaiting = Some((seen, Some(Instant::now() + self.cfg.read_back_wait)));
                    }
                }
                bulk = true;
                dirty = true;
            }
            if awaiting.is_some_and(|(seen, _)| self.desired.borrow().generation > seen) {
                awaiting = None;
            }
            // (The report may have handed the permit back.)
            if dirty && awaiting.is_none() && (!bulk || self.may_bulk(&permit)) {
                dirty = false;
                let failed = self.reconcile(client).await?;
                if std::mem::take(&mut bulk) {
                    permit = None;
                }
                if std::mem::take(&mut first_pass) {
                    resync_at = Instant::now() + jittered(self.resync_interval());
                }
                if failed {
                    retry_at = Some(Instant::now() + retry.next_delay());
                } else {
                    retry.reset();
                    retry_at = None;
                }
            }
            let wants_permit = read_pending || (dirty && bulk && awaiting.is_none());
            if wants_permit && permit.is_none() && acquiring.is_none() {
                if let Some(sem) = &self.cfg.bulk_permits {
                    acquiring = Some(Box::pin(sem.clone().acquire_owned()));
                }
            }
            // Decide inside select!, act outside it: watch guards must not
            // live across the awaits below.
            let wake = {
                let mut stop = self.shutdown.clone();
                tokio::select! {
                    // In this order: control frames and digest acks before
                    // a new desired state; ordinary packet-outs (which an
                    // ARP flood may keep ready) last.
                    biased;
                    _ = stop.wait_for(|s| *s) => Wake::Shutdown,
                    why = closed.wait_for(|c| c.is_some()) => {
                        Wake::Closed(why.ok().and_then(|w| w.clone()))
                    }
                    r = mastership.changed() => {
                        if r.is_err() || *mastership.borrow() != Mastership::Primary {
                            Wake::LostPrimary
                        } else {
                            Wake::Nothing
                        }
                    }
                    Some(out) = self.control_out.recv() => Wake::Outbound(out),
                    r = self.desired.changed() => {
                        if r.is_err() { Wake::Shutdown } else { Wake::Desired }
                    }
                    Some(p) = async { acquiring.as_mut()?.await.ok() }, if acquiring.is_some() => {
                        Wake::Permit(p)
                    }
                    _ = sleep_until_opt(retry_at) => Wake::Retry,
                    _ = sleep_until_opt(awaiting.and_then(|(_, until)| until)) => Wake::ReadBackWait,
                    _ = tokio::time::sleep_until(resync_at) => Wake::Resync,
                    Some(out) = self.packet_out.recv() => Wake::Outbound(out),
                }
            };
            match wake {
                Wake::Shutdown => return Err(SessionEnd::Shutdown),
                Wake::Closed(why) => {
                    return Err(
                        ClientError::StreamClosed(why.map(tonic::Status::unavailable)).into(),
                    )
                }
                Wake::LostPrimary => return Err(SessionEnd::LostPrimary),
                Wake::Nothing => {}
                Wake::Desired => dirty = true,
                Wake::Permit(p) => {
                    acquiring = None;
                    permit = Some(p);
                }
                Wake::Outbound(Outbound::Packet(p)) => sender.send_packet(p).await?,
                Wake::Outbound(Outbound::DigestAck { digest_id, list_id }) => {
                    sender.ack_digest(digest_id, list_id).await?
                }
                Wake::ReadBackWait => {
                    let seen = awaiting.map_or(0, |(seen, _)| seen);
                    if seen > 0 {
                        tracing::warn!(switch = %self.cfg.name, "no desired state after read-back; reconciling with the last one");
                        awaiting = None;
                    } else {
                        // This controller has computed nothing yet: the
                        // empty state of generation 0 would delete what
                        // the switch holds.
                        tracing::warn!(switch = %self.cfg.name, "no desired state yet after read-back; writing nothing until there is one");
                        awaiting = Some((0, None));
                    }
                }
                Wake::Retry => {
                    // Failures may mean our view is stale (an entry that
                    // exists, or one that vanished): re-read, then retry.
                    retry_at = None;
                    read_pending = true;
                }
                Wake::Resync => {
                    resync_at = Instant::now() + jittered(self.resync_interval());
                    read_pending = true;
                }
            }
        }
    }

    /// One pass: diff, write stage by stage, record results. Returns whether
    /// any update failed (to schedule a retry).
    async fn reconcile(&mut self, client: &Client) -> Result<bool, SessionEnd> {
        let started = std::time::Instant::now();
        let desired = self.desired.borrow_and_update().clone();
        let name = self.cfg.name.clone();
        let reg = self.cfg.pipeline.registry.clone();
        let mut failing: Vec<(String, String)> = Vec::new();
        let mut failing_count = 0usize;
        let mut written = 0u64;
        let planned;
        self.update_status(|s| {
            s.desired_generation = desired.generation;
            s.desired = desired.entities.len(&name);
        });
        // The ops borrow from `installed` and `desired`; what succeeded is
        // recorded after the pass (copied only if something failed:
        // otherwise the switch holds exactly `desired`). Results are kept
        // per batch, failures by position: memory stays at one reference
        // per op however large the switch.
        let succeeded: Vec<(UpdateKind, Entity)> = {
            let stages = (self.cfg.planner)(self.installed.changes(&desired.entities, &name));
            planned = started.elapsed();
            let mut failed: BTreeSet<(usize, usize)> = BTreeSet::new();
            let batch = self.cfg.batch_size.max(1);
            for (si, ops) in stages.iter().enumerate() {
                let ops: Vec<(UpdateKind, &Entity)> =
                    ops.iter().map(|(k, e)| (*k, e.as_ref())).collect();
                if tracing::enabled!(tracing::Level::DEBUG) {
                    // What changes on the switch, for whoever asks why
                    // (bounded: a full restore is thousands).
                    for (kind, e) in ops.iter().take(100) {
                        tracing::debug!(switch = %name, stage = si, ?kind, key = %e.key(), "write");
                    }
                }
                let mut call_failed: Option<String> = None;
                write_ops_with(client, &reg, &ops, batch, |i, r| match r {
                    Ok(()) => {
                        written += 1;
                        true
                    }
                    Err(OpError::Call(msg)) => {
                        call_failed = Some(msg);
                        false
                    }
                    Err(e) => {
                        failed.insert((si, i));
                        failing_count += 1;
                        if failing.len() < 20 {
                            let (kind, entity) = &ops[i];
                            failing.push((format!("{kind:?} {}", entity.key()), e.to_string()));
                        }
                        true
                    }
                })
                .await;
                if let Some(msg) = call_failed {
                    // The call itself failed: the session is in doubt (the
                    // next one reads the switch back).
                    return Err(
                        ClientError::StreamClosed(Some(tonic::Status::unavailable(msg))).into(),
                    );
                }
            }
            if failed.is_empty() {
                Vec::new()
            } else {
                stages
                    .iter()
                    .enumerate()
                    .flat_map(|(si, ops)| ops.iter().enumerate().map(move |(i, op)| (si, i, op)))
                    .filter(|(si, i, _)| !failed.contains(&(*si, *i)))
                    .map(|(_, _, (k, e))| (*k, e.clone().into_owned()))
                    .collect()
            }
        };
        if failing_count == 0 {
            // The switch now holds exactly the desired state: keep that
            // (shared) instead of our own copy.
            self.installed = Installed::Based {
                base: desired.entities.clone(),
                overlay: BTreeMap::new(),
            };
        } else {
            for (kind, entity) in &succeeded {
                self.installed.apply(*kind, entity);
            }
        }
        let elapsed = started.elapsed();
        if failing_count > 0 {
            tracing::warn!(switch = %self.cfg.name, failing = failing_count, first = ?failing.first(), "updates failed; will retry");
        } else if written > 0 {
            tracing::info!(switch = %self.cfg.name, written, ms = elapsed.as_millis() as u64, plan_ms = planned.as_millis() as u64, generation = desired.generation, "reconciled");
        }
        let installed = self.installed.len(&name);
        self.update_status(|s| {
            s.last_reconcile = Some(SystemTime::now());
            s.installed = installed;
            s.counters.reconciles += 1;
            s.counters.updates_written += written;
            s.counters.update_errors += failing_count as u64;
            s.counters.reconcile_micros_total += elapsed.as_micros() as u64;
            let secs = elapsed.as_secs_f64();
            for (i, bound) in RECONCILE_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    s.counters.reconcile_buckets[i] += 1;
                }
            }
            s.failing_count = failing_count;
            s.failing = failing;
            if failing_count == 0 {
                s.converged_generation = Some(desired.generation);
                s.last_error = None;
            }
        });
        Ok(failing_count > 0)
    }
}

type PermitFuture = dyn std::future::Future<
        Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
    > + Send;

/// What woke the primary loop.
enum Wake {
    Shutdown,
    Closed(Option<String>),
    LostPrimary,
    Nothing,
    Desired,
    ReadBackWait,
    Permit(tokio::sync::OwnedSemaphorePermit),
    Outbound(Outbound),
    Retry,
    Resync,
}

/// `d` +- 25%, at random.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.75..1.25))
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The planner the daemon uses: the compiler's staged diff.
pub fn diff_planner() -> Planner {
    Arc::new(|changes| {
        crate::compile::diff::staged(changes)
            .into_iter()
            .map(|stage| {
                stage
                    .into_iter()
                    .map(|(kind, e)| {
                        let kind = match kind {
                            crate::compile::OpKind::Insert => UpdateKind::Insert,
                            crate::compile::OpKind::Modify => UpdateKind::Modify,
                            crate::compile::OpKind::Delete => UpdateKind::Delete,
                        };
                        (kind, e)
                    })
                    .collect()
            })
            .collect()
    })
}
