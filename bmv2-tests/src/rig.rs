//! One bmv2 switch running the fabric pipeline, driven through the
//! project's P4Runtime client, with a raw socket on every port: the base of
//! the pipeline packet tests (`tests/pipeline_*.rs`).
//!
//! A test starts a `Rig`, writes entities by name, injects frames (on a
//! port or as a PacketOut) and asserts with `expect` the exact frames on
//! the exact ports, the exact PacketIns, and nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use p4fabric::compile::Plan;
use p4fabric::lab::packet::hex;
use p4fabric::lab::{Bmv2Switch, PortSocket, SwitchOptions};
use p4fabric::p4rt::switch::DigestRow;
use p4fabric::p4rt::{
    read_all, write_ops, ActionProfileGroup, Client, ClientOptions, Entity, P4InfoRegistry,
    Pipeline, Session, StreamEvent, TableKey, UpdateKind, Value,
};
use p4runtime_proto::v1::set_forwarding_pipeline_config_request::Action as PipelineAction;
use tokio::time::Instant;

/// How long a case waits, after the expected output arrived, for anything
/// unexpected (extra frames, PacketIns).
pub const SETTLE: Duration = Duration::from_millis(300);
/// How long a case waits at most for the expected output.
pub const PATIENCE: Duration = Duration::from_secs(3);

/// Where the compiled fabric pipeline is: `P4FABRIC_PIPELINE_DIR` if set
/// (a fresh compile elsewhere), else the checked-in `p4/build`.
pub fn fabric_build_dir() -> PathBuf {
    match std::env::var_os("P4FABRIC_PIPELINE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../p4/build"),
    }
}

/// A frame the switch sent to the controller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Punted {
    pub ingress_port: u32,
    pub reason: u32,
    pub payload: Vec<u8>,
}

impl Punted {
    pub fn new(ingress_port: u32, reason: u8, payload: &[u8]) -> Punted {
        Punted {
            ingress_port,
            reason: u32::from(reason),
            payload: payload.to_vec(),
        }
    }
}

/// One digest list: its id (for the ack) and its rows.
#[derive(Debug, Clone)]
pub struct DigestList {
    pub digest_id: u32,
    pub list_id: u64,
    pub rows: Vec<DigestRow>,
}

/// Everything the switch emitted during one observation.
#[derive(Debug, Default)]
pub struct Observed {
    /// (port, frame), in arrival order per port.
    pub frames: Vec<(u32, Vec<u8>)>,
    pub punted: Vec<Punted>,
    pub digests: Vec<DigestList>,
    /// Keys of the entries named by idle-timeout notifications.
    pub idle: Vec<TableKey>,
}

impl Observed {
    /// All digest rows, in arrival order.
    pub fn digest_rows(&self) -> Vec<DigestRow> {
        self.digests.iter().flat_map(|d| d.rows.clone()).collect()
    }

    /// Frames that left through `port`.
    pub fn on(&self, port: u32) -> Vec<&[u8]> {
        self.frames
            .iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, f)| f.as_slice())
            .collect()
    }
}

pub struct Rig {
    pub sw: Bmv2Switch,
    pub client: Client,
    pub session: Session,
    pub reg: Arc<P4InfoRegistry>,
    sockets: Vec<(u32, PortSocket)>,
}

impl Rig {
    /// Starts bmv2 with `ports`, pushes the fabric pipeline and becomes
    /// primary. Nothing is written yet.
    pub async fn start(device_id: u64, ports: &[u32]) -> Result<Rig> {
        let dir = fabric_build_dir();
        ensure!(
            dir.join("fabric.json").exists(),
            "{} missing: compile the pipeline (p4/compile.sh)",
            dir.join("fabric.json").display()
        );
        let sw = Bmv2Switch::start(SwitchOptions {
            device_id,
            ports: ports.to_vec(),
            json: None,
        })?;
        let Primary {
            client,
            session,
            reg,
        } = Primary::connect(&sw.grpc_addr, device_id).await?;
        let mut sockets = Vec::with_capacity(ports.len());
        for p in ports {
            sockets.push((*p, sw.port_socket(*p)?));
        }
        let rig = Rig {
            sw,
            client,
            session,
            reg,
            sockets,
        };
        Ok(rig)
    }

    /// Writes `entities` (one batch per call, in order); fails naming the
    /// first refused entity.
    pub async fn write(&self, kind: UpdateKind, entities: &[Entity]) -> Result<()> {
        write_entities(&self.client, &self.reg, kind, entities).await
    }

    pub async fn insert(&self, entities: &[Entity]) -> Result<()> {
        self.write(UpdateKind::Insert, entities).await
    }

    pub async fn modify(&self, entities: &[Entity]) -> Result<()> {
        self.write(UpdateKind::Modify, entities).await
    }

    pub async fn delete(&self, entities: &[Entity]) -> Result<()> {
        self.write(UpdateKind::Delete, entities).await
    }

    /// Writes dependency stages in order (members before groups before the
    /// entries that point at them).
    pub async fn insert_stages(&self, stages: &[Vec<Entity>]) -> Result<()> {
        for s in stages {
            self.insert(s).await?;
        }
        Ok(())
    }

    fn socket(&self, port: u32) -> Result<&PortSocket> {
        match self.sockets.iter().find(|(p, _)| *p == port) {
            Some((_, s)) => Ok(s),
            None => bail!("the rig has no port {port}"),
        }
    }

    /// Reads everything back and fails unless each of `entities` is
    /// installed exactly as given (the client's encoding round trip against
    /// the real pipeline's P4Info).
    pub async fn expect_installed(&self, entities: &[Entity]) -> Result<()> {
        let read = read_all(&self.client, &self.reg).await?;
        for e in entities {
            match read.get(&e.key()) {
                Some(r) if r == e => {}
                // PI (bmv2) reads every member of a group back with the watch
                // port of the group's last member (DeviceMgr's group read
                // reuses one WatchPort across its member loop): compare the
                // rest.
                Some(Entity::Group(r)) if Some(without_watch(r)) == without_watch_e(e) => {}
                Some(r) => bail!(
                    "{} reads back different:\n wrote {e:?}\n read  {r:?}",
                    e.key()
                ),
                None => bail!("{} is not installed", e.key()),
            }
        }
        Ok(())
    }

    /// Sends `frame` into the switch on `port` (from the far end).
    pub fn send(&self, port: u32, frame: &[u8]) -> Result<()> {
        self.socket(port)?.send(frame)
    }

    /// Sends a PacketOut with `packet_out` fields by name.
    pub async fn packet_out(&self, payload: &[u8], fields: &[(&str, Value)]) -> Result<()> {
        let p = self.reg.packet_out(payload.to_vec(), fields)?;
        self.session.send_packet(p).await?;
        Ok(())
    }

    /// Acknowledges a digest list (bmv2 suppresses repeats of un-acked
    /// digest data until the ack timeout).
    pub async fn ack(&self, d: &DigestList) -> Result<()> {
        self.session.ack_digest(d.digest_id, d.list_id).await?;
        Ok(())
    }

    /// Forgets everything queued on the ports and the stream.
    pub async fn quiesce(&mut self) -> Result<()> {
        for (_, s) in &self.sockets {
            s.drain()?;
        }
        let _ = self.poll_events(&mut Observed::default())?;
        Ok(())
    }

    fn poll_frames(&self, obs: &mut Observed) -> Result<bool> {
        let mut any = false;
        for (p, s) in &self.sockets {
            while let Some(f) = s.recv(Duration::ZERO)? {
                obs.frames.push((*p, f));
                any = true;
            }
        }
        Ok(any)
    }

    fn poll_events(&mut self, obs: &mut Observed) -> Result<bool> {
        take_events(&mut self.session, &self.reg, obs)
    }

    /// Collects until at least `frames` frames and `punts` PacketIns have
    /// arrived (or `PATIENCE` ran out), then for `settle` more.
    pub async fn collect(
        &mut self,
        frames: usize,
        punts: usize,
        settle: Duration,
    ) -> Result<Observed> {
        let mut obs = Observed::default();
        let give_up = Instant::now() + PATIENCE;
        let mut settle_until: Option<Instant> = None;
        loop {
            self.poll_frames(&mut obs)?;
            self.poll_events(&mut obs)?;
            let now = Instant::now();
            if settle_until.is_none()
                && ((obs.frames.len() >= frames && obs.punted.len() >= punts) || now >= give_up)
            {
                settle_until = Some(now + settle);
            }
            if settle_until.is_some_and(|t| now >= t) {
                return Ok(obs);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Collects for `dur`, or until `done` holds for what was seen.
    pub async fn watch(
        &mut self,
        dur: Duration,
        done: impl Fn(&Observed) -> bool,
    ) -> Result<Observed> {
        let mut obs = Observed::default();
        let until = Instant::now() + dur;
        while Instant::now() < until && !done(&obs) {
            self.poll_frames(&mut obs)?;
            self.poll_events(&mut obs)?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(obs)
    }

    /// Observes the switch and fails unless it emitted exactly `frames`
    /// (any order) and exactly `punted`. Returns everything seen, for
    /// checks on digests.
    pub async fn expect(
        &mut self,
        what: &str,
        frames: &[(u32, Vec<u8>)],
        punted: &[Punted],
    ) -> Result<Observed> {
        let obs = self.collect(frames.len(), punted.len(), SETTLE).await?;
        compare_frames(what, &obs.frames, frames)?;
        compare_punts(what, &obs.punted, punted)?;
        Ok(obs)
    }

    /// One case: quiesce, send `frame` into `port`, `expect`.
    pub async fn check(
        &mut self,
        what: &str,
        port: u32,
        frame: &[u8],
        frames: &[(u32, Vec<u8>)],
        punted: &[Punted],
    ) -> Result<Observed> {
        self.quiesce().await?;
        self.send(port, frame)?;
        self.expect(what, frames, punted).await
    }

    /// Sends each flow's frame and returns, per flow, the port its single
    /// output left through; fails unless every flow produced exactly one
    /// frame, equal to one of its `(port, frame)` alternatives, and nothing
    /// else arrived.
    pub async fn spread(&mut self, what: &str, flows: &[Flow]) -> Result<Vec<u32>> {
        self.quiesce().await?;
        for f in flows {
            self.send(f.port, &f.frame)?;
        }
        let obs = self.collect(flows.len(), 0, SETTLE).await?;
        ensure!(
            obs.punted.is_empty(),
            "{what}: unexpected PacketIns: {:?}",
            obs.punted
        );
        let mut chosen: Vec<Option<u32>> = vec![None; flows.len()];
        for (port, frame) in &obs.frames {
            let Some(i) = flows
                .iter()
                .position(|f| f.out.iter().any(|(p, o)| p == port && o == frame))
            else {
                bail!("{what}: unexpected frame on port {port}: {}", hex(frame));
            };
            ensure!(
                chosen[i].is_none(),
                "{what}: flow {i} left twice (ports {:?} and {port})",
                chosen[i]
            );
            chosen[i] = Some(*port);
        }
        chosen
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.with_context(|| format!("{what}: flow {i} produced nothing")))
            .collect()
    }

    /// Repeats `spread` until the ports chosen satisfy `ok`, for at most
    /// `within` (after a link change: frames hashed to a port whose far
    /// end is down are lost until the watch port takes the member out).
    pub async fn spread_until(
        &mut self,
        what: &str,
        flows: &[Flow],
        within: Duration,
        ok: impl Fn(&[u32]) -> bool,
    ) -> Result<Vec<u32>> {
        let give_up = Instant::now() + within;
        // bmv2 polls port state about every 200 ms.
        let mut pause = Duration::from_millis(1000);
        loop {
            tokio::time::sleep(pause).await;
            pause = Duration::from_millis(200);
            let last = self.spread(what, flows).await;
            match last {
                Ok(ports) if ok(&ports) => return Ok(ports),
                Ok(ports) if Instant::now() >= give_up => {
                    bail!("{what}: not there after {within:?}: ports {ports:?}")
                }
                Err(e) if Instant::now() >= give_up => {
                    return Err(e.context(format!("{what}: not there after {within:?}")))
                }
                _ => {}
            }
        }
    }
}

/// A P4Runtime primary on one running switch, with the fabric pipeline
/// pushed: for switches the test did not start itself (a `LabFabric`'s).
pub struct Primary {
    pub client: Client,
    pub session: Session,
    pub reg: Arc<P4InfoRegistry>,
}

impl Primary {
    /// Connects to `grpc_addr`, becomes primary and pushes the fabric
    /// pipeline (`fabric_build_dir`).
    pub async fn connect(grpc_addr: &str, device_id: u64) -> Result<Primary> {
        let dir = fabric_build_dir();
        let pipeline = Pipeline::load(&dir, "fabric")
            .with_context(|| format!("loading the fabric pipeline from {}", dir.display()))?;
        let client = Client::connect(ClientOptions::new(grpc_addr, device_id, 1)).await?;
        let mut session = client.open_session().await?;
        session
            .wait_primary(Duration::from_secs(5))
            .await
            .context("becoming primary")?;
        client
            .set_pipeline(
                PipelineAction::VerifyAndCommit,
                pipeline.registry.p4info().clone(),
                pipeline.device_config.to_vec(),
                pipeline.cookie,
            )
            .await
            .context("pushing the fabric pipeline")?;
        Ok(Primary {
            client,
            session,
            reg: pipeline.registry.clone(),
        })
    }

    /// Writes a plan (`p4fabric::compile::diff`), stage by stage; fails
    /// naming the first refused entity.
    pub async fn write_plan(&self, plan: &Plan) -> Result<()> {
        for stage in &plan.stages {
            for kind in [UpdateKind::Insert, UpdateKind::Modify, UpdateKind::Delete] {
                let entities: Vec<Entity> = stage
                    .iter()
                    .filter(|op| op.kind == kind)
                    .map(|op| op.entity.clone())
                    .collect();
                write_entities(&self.client, &self.reg, kind, &entities).await?;
            }
        }
        Ok(())
    }

    /// Everything the switch sent on the stream since the last call.
    pub fn events(&mut self) -> Result<Observed> {
        let mut obs = Observed::default();
        take_events(&mut self.session, &self.reg, &mut obs)?;
        Ok(obs)
    }
}

/// Writes `entities` with one update kind (batches of 500); fails naming
/// the first refused entity.
async fn write_entities(
    client: &Client,
    reg: &P4InfoRegistry,
    kind: UpdateKind,
    entities: &[Entity],
) -> Result<()> {
    let ops: Vec<_> = entities.iter().map(|e| (kind, e)).collect();
    let results = write_ops(client, reg, &ops, 500).await;
    for (r, e) in results.into_iter().zip(entities) {
        r.with_context(|| format!("{kind:?} {}", e.key()))?;
    }
    Ok(())
}

/// Moves what is queued on `session`'s stream into `obs` (PacketIns,
/// digests, idle timeouts); true if anything was there.
fn take_events(session: &mut Session, reg: &P4InfoRegistry, obs: &mut Observed) -> Result<bool> {
    let mut any = false;
    loop {
        let ev = match session.events.try_recv() {
            Ok(ev) => ev,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return Ok(any),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                bail!("the P4Runtime stream is gone")
            }
        };
        any = true;
        match ev {
            StreamEvent::PacketIn(p) => {
                let p = reg.decode_packet_in(&p)?;
                obs.punted.push(Punted {
                    ingress_port: p.get("ingress_port").unwrap_or(u128::MAX) as u32,
                    reason: p.get("punt_reason").unwrap_or(u128::MAX) as u32,
                    payload: p.payload,
                });
            }
            StreamEvent::Digest(d) => {
                let (_, rows) = reg.decode_digest(&d)?;
                obs.digests.push(DigestList {
                    digest_id: d.digest_id,
                    list_id: d.list_id,
                    rows,
                });
            }
            StreamEvent::IdleTimeout(n) => {
                for t in &n.table_entry {
                    obs.idle.push(reg.decode_table_key(t)?);
                }
            }
            StreamEvent::Error(e) => bail!("stream error from the switch: {e:?}"),
            StreamEvent::Closed(s) => bail!("the P4Runtime stream closed: {s:?}"),
        }
    }
}

fn without_watch(g: &ActionProfileGroup) -> ActionProfileGroup {
    let mut g = g.clone();
    for m in &mut g.members {
        m.watch_port = None;
    }
    g
}

fn without_watch_e(e: &Entity) -> Option<ActionProfileGroup> {
    match e {
        Entity::Group(g) => Some(without_watch(g)),
        _ => None,
    }
}

/// One flow of a load-spreading check: what goes in, and the frames that
/// may come out (exactly one of them must).
#[derive(Debug, Clone)]
pub struct Flow {
    pub port: u32,
    pub frame: Vec<u8>,
    pub out: Vec<(u32, Vec<u8>)>,
}

fn compare_frames(what: &str, got: &[(u32, Vec<u8>)], want: &[(u32, Vec<u8>)]) -> Result<()> {
    let mut got_sorted = got.to_vec();
    got_sorted.sort();
    let mut want_sorted = want.to_vec();
    want_sorted.sort();
    if got_sorted == want_sorted {
        return Ok(());
    }
    let mut msg = format!("{what}: frames differ\n");
    let mut left = got_sorted.clone();
    for w in &want_sorted {
        match left.iter().position(|g| g == w) {
            Some(i) => {
                left.remove(i);
            }
            None => msg.push_str(&format!("  missing  on {}: {}\n", w.0, hex(&w.1))),
        }
    }
    for g in &left {
        msg.push_str(&format!("  extra    on {}: {}\n", g.0, hex(&g.1)));
    }
    bail!(msg)
}

fn compare_punts(what: &str, got: &[Punted], want: &[Punted]) -> Result<()> {
    let mut g = got.to_vec();
    g.sort();
    let mut w = want.to_vec();
    w.sort();
    if g == w {
        return Ok(());
    }
    let show = |ps: &[Punted]| {
        ps.iter()
            .map(|p| {
                format!(
                    "\n    port {} reason {}: {}",
                    p.ingress_port,
                    p.reason,
                    hex(&p.payload)
                )
            })
            .collect::<String>()
    };
    bail!(
        "{what}: PacketIns differ\n  want:{}\n  got:{}",
        show(&w),
        show(&g)
    )
}
