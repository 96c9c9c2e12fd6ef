//! The session and arbitration loop: owns an agent's connection to its
//! switch — connect (with backoff), arbitrate (waiting as a backup), make
//! sure the switch runs our pipeline, forward stream events to the
//! controller, serve the outbound queues — and carries out the passes the
//! scheduler decides on (read back, report, reconcile). Uses `p4rt` (client,
//! session), `scheduler`, `reconcile`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use p4runtime_proto::v1::set_forwarding_pipeline_config_request::Action as PipelineAction;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::handle::{
    AgentConfig, AgentStatus, Outbound, ReadBack, ReadReply, SessionState, SwitchEvent,
};
use super::scheduler::{ReadBackWait, Scheduler, Step};
use super::snapshot::{Desired, Installed};
use crate::p4rt::intern::SharedEntities;
use crate::p4rt::switch::ReadError;
use crate::p4rt::{Client, ClientError, Mastership, StreamEvent};
use crate::target::read_configured;

pub(super) struct Agent {
    pub(super) cfg: AgentConfig,
    pub(super) desired: watch::Receiver<Desired>,
    pub(super) status: watch::Sender<AgentStatus>,
    pub(super) events: mpsc::Sender<SwitchEvent>,
    pub(super) packet_out: mpsc::Receiver<Outbound>,
    pub(super) control_out: mpsc::Receiver<Outbound>,
    pub(super) reads: mpsc::Receiver<ReadReply>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// What we believe the switch holds: read back at session start and
    /// after failures, updated with every successful write, and the
    /// desired snapshot itself once that is installed in full.
    pub(super) installed: Installed,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionEnd {
    #[error("shutdown")]
    Shutdown,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("read back failed: {0}")]
    Read(#[source] ReadError),
    /// A Write call failed as a whole: the session is in doubt (the next
    /// one reads the switch back).
    #[error("write call failed: {0}")]
    Write(#[source] Arc<ClientError>),
    #[error("no longer primary")]
    LostPrimary,
}

impl Agent {
    pub(super) fn update_status(&self, f: impl FnOnce(&mut AgentStatus)) {
        self.status.send_modify(f);
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(super) async fn run(mut self) {
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
        // `Some`: the stream ended, with the status the switch gave, if any.
        let (closed_tx, mut closed) = watch::channel(None::<Option<tonic::Status>>);
        let events_out = self.events.clone();
        let control_events = self.cfg.control_events.clone();
        let ev_name = name.clone();
        let forward = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let StreamEvent::Closed(s) = ev {
                    closed_tx.send_replace(Some(s));
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
            // (Keeps the switch's status where there was one.)
            closed_tx.send_if_modified(|c| {
                let first = c.is_none();
                if first {
                    *c = Some(None);
                }
                first
            });
        });
        let result = self
            .primary_loop(client, &sender, &mut mastership, &mut closed)
            .await;
        forward.abort();
        result
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
        let cookie = client.pipeline_cookie().await?;
        if cookie == Some(self.cfg.pipeline.cookie) && !self.cfg.push_once {
            self.update_status(|s| s.pipeline_cookie = cookie);
            return Ok(());
        }
        // A pipeline the controller also accepts (mid-upgrade): adopt it,
        // so a controller restart never reloads a switch in service.
        if let Some(p) = self
            .cfg
            .accept
            .iter()
            .find(|p| Some(p.cookie) == cookie && !self.cfg.push_once)
        {
            tracing::info!(switch = %self.cfg.name, cookie = p.cookie, "switch runs an accepted pipeline; adopted");
            self.cfg.pipeline = p.clone();
            self.update_status(|s| s.pipeline_cookie = cookie);
            return Ok(());
        }
        let p = &self.cfg.pipeline;
        // A switch with no pipeline (fresh, or restarted) or out of service
        // gets a full commit; a running one with another pipeline is
        // reconciled so its forwarding state survives where the new
        // program allows.
        let action = if cookie.is_none() || self.cfg.full_commit {
            PipelineAction::VerifyAndCommit
        } else {
            PipelineAction::ReconcileAndCommit
        };
        tracing::info!(switch = %self.cfg.name, ?action, cookie = p.cookie, "pushing pipeline");
        let pushed = client
            .set_pipeline(
                action,
                p.registry.p4info().clone(),
                p.device_config.to_vec(),
                p.cookie,
            )
            .await;
        if let Err(e) = pushed {
            let why = e.to_string();
            self.update_status(|s| {
                s.pipeline_error = Some(why);
                s.pipeline_cookie = cookie;
            });
            return Err(e.into());
        }
        let new = p.cookie;
        self.cfg.push_once = false;
        self.update_status(|s| {
            s.counters.pipeline_pushes += 1;
            s.pipeline_cookie = Some(new);
            s.pipeline_error = None;
        });
        Ok(())
    }

    async fn read_back(&mut self, client: &Client) -> Result<(), SessionEnd> {
        let read = self.read_switch(client).await.map_err(SessionEnd::Read)?;
        let n = read.len();
        self.installed = Installed::Read(Arc::new(read));
        self.update_status(|s| s.installed = n);
        Ok(())
    }

    /// Everything p4fabric writes, as the switch holds it, in configured
    /// port numbers.
    async fn read_switch(&self, client: &Client) -> Result<SharedEntities, ReadError> {
        let reg = &self.cfg.pipeline.registry;
        let (read, strays) = read_configured(client, reg, self.cfg.ports.as_deref()).await?;
        if let (n @ 1.., Some(first)) = strays {
            // Once per read-back: the next pass rewrites or deletes them.
            tracing::warn!(switch = %self.cfg.name, ports = n, first_device_port = first, "read back entities on device ports outside the port map; rewriting or deleting them");
        }
        Ok(read)
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

    /// The primary's session: pushes the pipeline if needed, then runs
    /// the passes the scheduler (`scheduler.rs`) decides on, and serves
    /// the outbound queues, until the session ends.
    async fn primary_loop(
        &mut self,
        client: &Client,
        sender: &crate::p4rt::SessionSender,
        mastership: &mut watch::Receiver<Mastership>,
        closed: &mut watch::Receiver<Option<Option<tonic::Status>>>,
    ) -> Result<(), SessionEnd> {
        self.ensure_pipeline(client).await?;
        let mut schedule = Scheduler::new(
            Instant::now(),
            self.cfg.bulk_permits.is_some(),
            self.cfg.retry.clone(),
            self.cfg.read_back_wait,
            self.resync_interval(),
        );
        // Kept across iterations: the semaphore is fair, a new acquire
        // would lose the place in its queue.
        let mut acquiring: Option<Pin<Box<PermitFuture>>> = None;
        loop {
            let generation = self.desired.borrow().generation;
            match schedule.next(generation) {
                Step::ReadBack { report } => {
                    self.read_back(client).await?;
                    let reported = if report {
                        // Hands the permit back once reported: the wait for
                        // the controller's answer must not hold up the others.
                        self.report_read_back(schedule.take_permit()).await?
                    } else {
                        None
                    };
                    schedule.read_back_done(Instant::now(), reported);
                    continue;
                }
                Step::Reconcile => {
                    let failed = self.reconcile(client).await?;
                    // Resyncs are jittered so hundreds of agents started
                    // together do not all re-read at once.
                    schedule
                        .reconciled(Instant::now(), failed, || jittered(self.resync_interval()));
                    continue;
                }
                Step::Wait => {}
            }
            if schedule.wants_permit() && acquiring.is_none() {
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
                        Wake::Closed(why.ok().and_then(|w| w.clone()).flatten())
                    }
                    r = mastership.changed() => {
                        if r.is_err() || *mastership.borrow() != Mastership::Primary {
                            Wake::LostPrimary
                        } else {
                            Wake::Nothing
                        }
                    }
                    Some(out) = self.control_out.recv() => Wake::Outbound(out),
                    Some(reply) = self.reads.recv() => Wake::Read(reply),
                    r = self.desired.changed() => {
                        if r.is_err() { Wake::Shutdown } else { Wake::Desired }
                    }
                    Some(p) = async { acquiring.as_mut()?.await.ok() }, if acquiring.is_some() => {
                        Wake::Permit(p)
                    }
                    _ = sleep_until_opt(schedule.retry_at()) => Wake::Retry,
                    _ = sleep_until_opt(schedule.awaiting_until()) => Wake::ReadBackWait,
                    _ = tokio::time::sleep_until(schedule.resync_at()) => Wake::Resync,
                    Some(out) = self.packet_out.recv() => Wake::Outbound(out),
                }
            };
            match wake {
                Wake::Shutdown => return Err(SessionEnd::Shutdown),
                Wake::Closed(why) => return Err(ClientError::StreamClosed(why).into()),
                Wake::LostPrimary => return Err(SessionEnd::LostPrimary),
                Wake::Nothing => {}
                Wake::Desired => schedule.desired_changed(),
                Wake::Permit(p) => {
                    acquiring = None;
                    schedule.permit_granted(p);
                }
                Wake::Outbound(Outbound::Packet(p)) => sender.send_packet(p).await?,
                Wake::Outbound(Outbound::DigestAck { digest_id, list_id }) => {
                    sender.ack_digest(digest_id, list_id).await?
                }
                Wake::ReadBackWait => match schedule.read_back_wait_over() {
                    ReadBackWait::ReconcileAnyway => {
                        tracing::warn!(switch = %self.cfg.name, "no desired state after read-back; reconciling with the last one")
                    }
                    // This controller has computed nothing yet: the empty
                    // state of generation 0 would delete what the switch
                    // holds.
                    ReadBackWait::Hold => {
                        tracing::warn!(switch = %self.cfg.name, "no desired state yet after read-back; writing nothing until there is one")
                    }
                },
                Wake::Read(reply) => {
                    // Answers only; what the agent believes the switch
                    // holds stays as it is (the scheduler's own read-backs
                    // update it).
                    let read = self.read_switch(client).await;
                    let _ = reply.send(read.map(Arc::new).map_err(|e| e.to_string()));
                }
                Wake::Retry => schedule.retry_due(),
                Wake::Resync => {
                    schedule.resync_due(Instant::now(), jittered(self.resync_interval()))
                }
            }
        }
    }
}

type PermitFuture = dyn std::future::Future<
        Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
    > + Send;

/// What woke the primary loop.
enum Wake {
    Shutdown,
    Closed(Option<tonic::Status>),
    LostPrimary,
    Nothing,
    Desired,
    ReadBackWait,
    /// The controller asks for what the switch holds (`read_switch`).
    Read(ReadReply),
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
