//! The agent's API: owns what the controller configures an agent with
//! (`AgentConfig`), what an agent reports (`AgentStatus`, `ReadBack`,
//! `SwitchEvent`), and the controller's end of a running agent
//! (`AgentHandle`, `spawn`). Uses `p4rt` (client options, pipeline, stream
//! events) and `net` to queue control frames first.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use p4runtime_proto::v1 as p4;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::session::Agent;
use super::snapshot::Installed;
use super::Desired;
use crate::p4rt::backoff::Backoff;
use crate::p4rt::intern::SharedEntities;
use crate::p4rt::switch::DEFAULT_BATCH;
use crate::p4rt::{ClientOptions, Pipeline, StreamEvent};
use crate::target::SwitchTarget;

#[derive(Clone)]
pub struct AgentConfig {
    pub name: String,
    pub client: ClientOptions,
    pub pipeline: Arc<Pipeline>,
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
    /// Other pipelines the agent adopts, without a push, when the switch
    /// already runs one of them (a rolling upgrade in progress when the
    /// controller started); `pipeline` is pushed only where the switch
    /// runs none of these.
    pub accept: Vec<Arc<Pipeline>>,
    /// Push a different pipeline with VERIFY_AND_COMMIT (a full load: the
    /// switch starts empty and is written in full) rather than
    /// RECONCILE_AND_COMMIT: for a switch out of service (a rolling
    /// upgrade's drained switch). bmv2 refuses to reconcile a changed
    /// JSON ("Error when reconciling config").
    pub full_commit: bool,
    /// Push the pipeline even when the switch reports its cookie, once per
    /// agent: a rolling upgrade's rollback after a refused push, when the
    /// switch's state is in doubt (bmv2 keeps reporting the old cookie
    /// after refusing a new JSON, but then fails every table read).
    pub push_once: bool,
    /// The switch's target where its configured port numbers are not its
    /// device ports (`SwitchTarget::maps_entities`): writes go through
    /// `target::ports::op_to_device`, read-backs through
    /// `target::ports::ReadBackMap`. `None`: the same numbers, nothing mapped.
    pub ports: Option<Arc<dyn SwitchTarget>>,
}

impl AgentConfig {
    pub fn new(name: &str, client: ClientOptions, pipeline: Arc<Pipeline>) -> Self {
        AgentConfig {
            name: name.to_string(),
            client,
            pipeline,
            batch_size: DEFAULT_BATCH,
            resync_interval: Duration::from_secs(60),
            fabric_resync_ms: None,
            reconnect: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            retry: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
            report_read_back: None,
            read_back_wait: READ_BACK_WAIT,
            control_events: None,
            bulk_permits: None,
            accept: Vec::new(),
            full_commit: false,
            push_once: false,
            ports: None,
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
    /// The cookie of the pipeline the switch runs, once checked (pushed
    /// or adopted) in this agent's session.
    pub pipeline_cookie: Option<u64>,
    /// The last pipeline push refused, until one succeeds.
    pub pipeline_error: Option<String>,
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
    /// A switch not connected yet.
    pub fn new(name: &str) -> Self {
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
            pipeline_cookie: None,
            pipeline_error: None,
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
        matches!(&self.event, StreamEvent::PacketIn(p) if crate::net::is_control_frame(&p.payload))
    }
}

/// Where the agent answers a `read_switch` request: what the switch holds
/// (configured port numbers), or why it could not be read.
pub type ReadReply = oneshot::Sender<Result<Arc<SharedEntities>, String>>;

/// What the controller sends on a switch's stream.
#[derive(Debug, Clone)]
pub(super) enum Outbound {
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
    /// Requests to read the switch back now (`read_switch`).
    reads: mpsc::Sender<ReadReply>,
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

    /// The cookie of the pipeline the switch runs (without copying the
    /// whole status: asked per packet-in).
    pub fn pipeline_cookie(&self) -> Option<u64> {
        self.status.borrow().pipeline_cookie
    }

    pub fn status_watch(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Queues a packet-out; dropped (false) if the queue is full.
    /// Discovery and LACP frames have a queue of their own that the agent
    /// serves first, so a flood of ARP replies cannot delay them.
    pub fn send_packet(&self, p: p4::PacketOut) -> bool {
        let queue = if crate::net::is_control_frame(&p.payload) {
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

    /// Asks the agent to read everything p4fabric writes back from the
    /// switch, as it holds it now (the upgrade's verify step). Served by a
    /// primary session between passes; `None` when a request is already
    /// queued or the agent is gone.
    pub fn read_switch(&self) -> Option<oneshot::Receiver<Result<Arc<SharedEntities>, String>>> {
        let (tx, rx) = oneshot::channel();
        self.reads.try_send(tx).ok()?;
        Some(rx)
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
    let (reads_tx, reads_rx) = mpsc::channel(1);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let name = cfg.name.clone();
    let agent = Agent {
        cfg,
        desired: desired_rx,
        status: status_tx,
        events,
        packet_out: packet_rx,
        control_out: control_rx,
        reads: reads_rx,
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
        reads: reads_tx,
        shutdown: shutdown_tx,
        join: Some(join),
    }
}
