//! An in-process P4Runtime switch for fast tests and scale runs.
//!
//! It serves the real gRPC service on 127.0.0.1, checks every write
//! against the P4Info (names, widths, masks, priorities, allowed actions,
//! references between entries, members and groups, table sizes), follows
//! the spec's arbitration rules, and exposes packet I/O to the test. It has
//! no data plane: what a frame would do is the forwarding checker's job.
//! It never replaces bmv2 tests; it is what lets hundreds of switches run
//! on one machine.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use p4runtime_proto::v1 as p4;
use p4runtime_proto::v1::p4_runtime_server::{P4Runtime, P4RuntimeServer};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};

use crate::p4rt::client::{from_uint128, to_uint128};
use crate::p4rt::entity::{Entity, EntityKey, SwitchEntities, TableAction};
use crate::p4rt::intern::{intern, SharedEntities as Held};
use crate::p4rt::p4info::P4InfoRegistry;

/// The P4Runtime version this simulated switch claims (what bmv2 reports too).
pub const API_VERSION: &str = "1.3.0";

type StreamTx = mpsc::Sender<Result<p4::StreamMessageResponse, Status>>;

struct Conn {
    id: u64,
    election_id: Option<u128>,
    tx: StreamTx,
}

struct Pipeline {
    registry: Arc<P4InfoRegistry>,
    config: p4::ForwardingPipelineConfig,
}

/// Counters a test can assert on (e.g. "a restart wrote nothing").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub write_rpcs: u64,
    /// Updates applied successfully.
    pub updates_applied: u64,
    pub updates_failed: u64,
    pub pipeline_pushes: u64,
    pub read_rpcs: u64,
}

#[derive(Default)]
struct State {
    pipeline: Option<Pipeline>,
    entities: Held,
    /// Entries per table, counted on first need and kept up to date by
    /// `apply_update` (a scan per insert made filling a table O(n^2));
    /// cleared wherever `entities` changes another way.
    table_counts: HashMap<&'static str, i64>,
    conns: Vec<Conn>,
    next_conn: u64,
    /// The election id of the current primary, if any.
    primary: Option<u128>,
    stats: SimStats,
    packet_outs: Vec<p4::PacketOut>,
    digest_acks: Vec<(u32, u64)>,
    /// Election id of every Write that changed something, in order.
    write_log: Vec<u128>,
    /// Updates applied since the last pipeline push, and refused there by
    /// `Faults::stall_after_push` (none before a push since the faults
    /// were last set).
    since_push: Option<(u64, u64)>,
}

/// TLS settings of a simulated switch (PEM contents).
#[derive(Debug, Clone)]
pub struct SimTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Require client certificates signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

/// Faults a chaos wrapper can inject into this simulated switch.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every write RPC fails with UNAVAILABLE while set.
    pub refuse_writes: bool,
    /// Each update fails (RESOURCE_EXHAUSTED) with this probability, 0..=1.
    pub update_failure_rate: f64,
    /// Delay before answering each RPC.
    pub delay: std::time::Duration,
    /// After a pipeline push, apply this many updates, then refuse every
    /// further one (UNAVAILABLE) while set: a switch caught *loading*, its
    /// new pipeline pushed and partly written (the rolling-upgrade tests
    /// stop the controller in that window).
    pub stall_after_push: Option<u64>,
    /// While the switch runs the pipeline with this cookie, inserts into
    /// this table are acknowledged but not kept: a pipeline build that
    /// silently loses a table's entries (what the rolling upgrade's verify
    /// step must catch; the agent, trusting its acknowledged writes,
    /// believes it converged).
    pub forget_table: Option<(u64, &'static str)>,
}

struct Shared {
    device_id: u64,
    state: Mutex<State>,
    faults: Mutex<Faults>,
    /// Seeded so a failing chaos run can be replayed.
    rng: Mutex<rand::rngs::StdRng>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running in-process switch. Stops when dropped.
pub struct SimSwitch {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl SimSwitch {
    /// Starts a simulated switch for `device_id` on a free 127.0.0.1 port.
    pub async fn start(device_id: u64) -> std::io::Result<SimSwitch> {
        Self::start_on(device_id, "127.0.0.1:0".parse().expect("literal address")).await
    }

    /// Starts on a given address (port 0 = any free port).
    pub async fn start_on(device_id: u64, addr: SocketAddr) -> std::io::Result<SimSwitch> {
        Self::start_with(device_id, addr, None).await
    }

    /// Starts serving TLS (PEM server certificate and key; with
    /// `client_ca`, clients must present a certificate it signed: mTLS).
    pub async fn start_tls(device_id: u64, tls: SimTls) -> std::io::Result<SimSwitch> {
        let addr = "127.0.0.1:0".parse().expect("literal address");
        Self::start_with(device_id, addr, Some(tls)).await
    }

    async fn start_with(
        device_id: u64,
        addr: SocketAddr,
        tls: Option<SimTls>,
    ) -> std::io::Result<SimSwitch> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            device_id,
            state: Mutex::new(State::default()),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(rand::SeedableRng::seed_from_u64(device_id)),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = P4RuntimeServer::new(Service {
            shared: shared.clone(),
        })
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            let mut cfg = tonic::transport::ServerTlsConfig::new().identity(
                tonic::transport::Identity::from_pem(tls.cert_pem, tls.key_pem),
            );
            if let Some(ca) = tls.client_ca_pem {
                cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            builder = builder.tls_config(cfg).map_err(std::io::Error::other)?;
        }
        tokio::spawn(async move {
            let r = builder
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "simulated switch server ended");
            }
        });
        Ok(SimSwitch {
            shared,
            addr,
            stop: Some(stop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn device_id(&self) -> u64 {
        self.shared.device_id
    }

    /// What the switch holds now.
    pub fn entities(&self) -> SwitchEntities {
        let st = self.shared.lock();
        st.entities
            .iter()
            .map(|(k, e)| (EntityKey::clone(k), Entity::clone(e)))
            .collect()
    }

    /// Puts an entity on the switch behind the controller's back (as a
    /// stray write by someone else would).
    pub fn inject_entity(&self, e: Entity) {
        let mut st = self.shared.lock();
        st.table_counts.clear();
        let (k, e) = intern(e.key(), e);
        st.entities.insert(k, e);
    }

    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats
    }

    pub fn pipeline_cookie(&self) -> Option<u64> {
        let st = self.shared.lock();
        st.pipeline
            .as_ref()
            .and_then(|p| p.config.cookie.as_ref())
            .map(|c| c.cookie)
    }

    pub fn primary_election_id(&self) -> Option<u128> {
        self.shared.lock().primary
    }

    /// PacketOuts received from the primary, oldest first (drained).
    pub fn take_packet_outs(&self) -> Vec<p4::PacketOut> {
        std::mem::take(&mut self.shared.lock().packet_outs)
    }

    /// The election id behind each successful write, oldest first: lets an
    /// HA test prove writes from two primaries never interleave.
    pub fn write_log(&self) -> Vec<u128> {
        self.shared.lock().write_log.clone()
    }

    pub fn digest_acks(&self) -> Vec<(u32, u64)> {
        self.shared.lock().digest_acks.clone()
    }

    /// Sets the faults in force; `stall_after_push` counts from the next
    /// pipeline push on.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.shared.lock();
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
        st.since_push = None;
    }

    /// Since its last pipeline push: (updates applied, updates refused by
    /// `Faults::stall_after_push`); none before a push since the faults
    /// were last set (or the switch restarted).
    pub fn since_push(&self) -> Option<(u64, u64)> {
        self.shared.lock().since_push
    }

    /// Reseeds the random choices of injected update failures.
    pub fn seed(&self, seed: u64) {
        *self.shared.rng.lock().unwrap_or_else(|p| p.into_inner()) =
            rand::SeedableRng::seed_from_u64(seed);
    }

    /// Sends a message to the primary's stream (packet-in, digest, idle
    /// timeout); false when there is no primary.
    pub fn send_to_primary(&self, update: p4::stream_message_response::Update) -> bool {
        let st = self.shared.lock();
        let Some(primary) = st.primary else {
            return false;
        };
        let Some(conn) = st.conns.iter().find(|c| c.election_id == Some(primary)) else {
            return false;
        };
        conn.tx
            .try_send(Ok(p4::StreamMessageResponse {
                update: Some(update),
            }))
            .is_ok()
    }

    /// Behaves like a switch that rebooted: no pipeline, no entities, every
    /// stream cut.
    pub fn restart(&self) {
        let mut st = self.shared.lock();
        st.pipeline = None;
        st.entities.clear();
        st.table_counts.clear();
        st.since_push = None;
        st.primary = None;
        for c in st.conns.drain(..) {
            let _ = c.tx.try_send(Err(Status::unavailable("switch restarted")));
        }
    }

    /// Cuts every stream (like a network blip) without losing state.
    pub fn drop_streams(&self) {
        let mut st = self.shared.lock();
        st.primary = None;
        for c in st.conns.drain(..) {
            let _ = c.tx.try_send(Err(Status::unavailable("stream dropped")));
        }
    }
}

impl Drop for SimSwitch {
    fn drop(&mut self) {
        self.drop_streams();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

fn arbitration_msg(
    device_id: u64,
    primary: Option<u128>,
    to: Option<u128>,
) -> p4::StreamMessageResponse {
    let (code, message) = match (primary, to) {
        (Some(p), Some(me)) if p == me => (Code::Ok, "primary"),
        (Some(_), _) => (Code::AlreadyExists, "backup: another controller is primary"),
        (None, _) => (Code::NotFound, "no primary"),
    };
    p4::StreamMessageResponse {
        update: Some(p4::stream_message_response::Update::Arbitration(
            p4::MasterArbitrationUpdate {
                device_id,
                role: None,
                election_id: primary.map(to_uint128),
                status: Some(tonic_types::Status {
                    code: code as i32,
                    message: message.to_string(),
                    details: Vec::new(),
                }),
            },
        )),
    }
}

impl State {
    /// Recomputes the primary (highest election id among open streams that
    /// arbitrated) and tells the streams that need to know.
    fn rearbitrate(&mut self, device_id: u64, asking: Option<u64>) {
        let best = self.conns.iter().filter_map(|c| c.election_id).max();
        let changed = best != self.primary;
        self.primary = best;
        for c in &self.conns {
            if changed || Some(c.id) == asking {
                let _ =
                    c.tx.try_send(Ok(arbitration_msg(device_id, best, c.election_id)));
            }
        }
    }

    fn check_primary(&self, election_id: Option<&p4::Uint128>) -> Result<(), Status> {
        let id = election_id.map(from_uint128);
        match (self.primary, id) {
            (Some(p), Some(id)) if p == id => Ok(()),
            _ => Err(Status::permission_denied("not primary")),
        }
    }
}

fn p4_error(code: Code, message: String) -> prost_types::Any {
    let e = p4::Error {
        canonical_code: code as i32,
        message,
        space: String::new(),
        code: 0,
        details: None,
    };
    prost_types::Any {
        type_url: "type.googleapis.com/p4.v1.Error".into(),
        value: e.encode_to_vec(),
    }
}

/// Applies one update to the entity map, checking references.
fn apply_update(
    reg: &P4InfoRegistry,
    entities: &mut Held,
    table_counts: &mut HashMap<&'static str, i64>,
    kind: p4::update::Type,
    entity: &p4::Entity,
) -> Result<(), (Code, String)> {
    let inv = |e: crate::p4rt::CodecError| (Code::InvalidArgument, e.to_string());
    if kind == p4::update::Type::Delete {
        let key = reg.decode_entity_key(entity).map_err(inv)?;
        if !entities.contains_key(&key) {
            return Err((Code::NotFound, format!("{key} does not exist")));
        }
        if let Some(user) = referenced_by(entities, &key) {
            return Err((
                Code::FailedPrecondition,
                format!("{key} is still used by {user}"),
            ));
        }
        if let EntityKey::Table(tk) = &key {
            if let Some(n) = table_counts.get_mut(tk.table) {
                *n -= 1;
            }
        }
        entities.remove(&key);
        return Ok(());
    }
    let decoded = reg.decode_entity(entity).map_err(inv)?;
    // Re-encoding applies every check the controller-side encoder applies.
    reg.encode_entity(&decoded, false).map_err(inv)?;
    check_references(reg, entities, &decoded)?;
    let key = decoded.key();
    if let Entity::Meter(_) = decoded {
        // As on bmv2: meter cells always exist; only MODIFY configures them.
        if kind != p4::update::Type::Modify {
            return Err((
                Code::InvalidArgument,
                "INSERT update type not supported for meters".into(),
            ));
        }
        let (key, decoded) = intern(key, decoded);
        entities.insert(key, decoded);
        return Ok(());
    }
    match kind {
        p4::update::Type::Insert => {
            if entities.contains_key(&key) {
                return Err((Code::AlreadyExists, format!("{key} already exists")));
            }
            if let Entity::Table(t) = &decoded {
                let table = reg
                    .table(t.key.table)
                    .map_err(|e| (Code::InvalidArgument, e.to_string()))?;
                let count = table_counts
                    .entry(t.key.table)
                    .or_insert_with(|| table_entries(entities, t.key.table).count() as i64);
                if table.size > 0 && *count >= table.size {
                    return Err((
                        Code::ResourceExhausted,
                        format!("table {} is full", table.name),
                    ));
                }
                *count += 1;
            }
        }
        p4::update::Type::Modify => {
            if !entities.contains_key(&key) {
                return Err((Code::NotFound, format!("{key} does not exist")));
            }
        }
        _ => return Err((Code::InvalidArgument, "update type unspecified".into())),
    }
    let (key, decoded) = intern(key, decoded);
    entities.insert(key, decoded);
    Ok(())
}

/// The entries of one table: keys sort by table first, so they are one
/// range of the map.
fn table_entries<'a>(
    entities: &'a Held,
    table: &'static str,
) -> impl Iterator<Item = (&'a Arc<EntityKey>, &'a Arc<Entity>)> {
    entities
        .range(EntityKey::Table(crate::p4rt::TableKey::new(table))..)
        .take_while(move |(k, _)| matches!(k.as_ref(), EntityKey::Table(tk) if tk.table == table))
}

/// Members and groups an entity points at must exist.
fn check_references(
    reg: &P4InfoRegistry,
    entities: &Held,
    e: &Entity,
) -> Result<(), (Code, String)> {
    match e {
        Entity::Table(t) => {
            let table = reg
                .table(t.key.table)
                .map_err(|e| (Code::InvalidArgument, e.to_string()))?;
            let profile = match &t.action {
                TableAction::Direct(_) => return Ok(()),
                _ => reg
                    .action_profile_by_id(table.implementation_id)
                    .map_err(|e| (Code::InvalidArgument, e.to_string()))?,
            };
            let key = match t.action {
                TableAction::Member(id) => EntityKey::Member {
                    profile: profile.name,
                    member_id: id,
                },
                TableAction::Group(id) => EntityKey::Group {
                    profile: profile.name,
                    group_id: id,
                },
                TableAction::Direct(_) => return Ok(()),
            };
            if !entities.contains_key(&key) {
                return Err((Code::NotFound, format!("{key} does not exist")));
            }
        }
        Entity::Group(g) => {
            let prof = reg
                .action_profile(g.profile)
                .map_err(|e| (Code::InvalidArgument, e.to_string()))?;
            if prof.max_group_size > 0 && g.members.len() > prof.max_group_size as usize {
                return Err((
                    Code::ResourceExhausted,
                    format!("group {} too large", g.group_id),
                ));
            }
            for m in &g.members {
                let key = EntityKey::Member {
                    profile: g.profile,
                    member_id: m.member_id,
                };
                if !entities.contains_key(&key) {
                    return Err((Code::NotFound, format!("{key} does not exist")));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Who still uses `key` (a member used by a group or an entry, a group used
/// by an entry), if anyone.
fn referenced_by(entities: &Held, key: &EntityKey) -> Option<String> {
    let (profile, id, is_member) = match key {
        EntityKey::Member { profile, member_id } => (*profile, *member_id, true),
        EntityKey::Group { profile, group_id } => (*profile, *group_id, false),
        _ => return None,
    };
    entities.values().find_map(|e| match &**e {
        Entity::Group(g) if is_member && g.profile == profile => g
            .members
            .iter()
            .any(|m| m.member_id == id)
            .then(|| format!("group {}", g.group_id)),
        Entity::Table(t) => {
            let hit = match t.action {
                TableAction::Member(m) => is_member && m == id,
                TableAction::Group(g) => !is_member && g == id,
                TableAction::Direct(_) => false,
            };
            hit.then(|| format!("{}", e.key()))
        }
        _ => None,
    })
}

/// Does a (possibly wildcard) read request select `key`?
fn selects(reg: &P4InfoRegistry, req: &p4::Entity, key: &EntityKey) -> bool {
    use p4::entity::Entity as E;
    use p4::packet_replication_engine_entry::Type;
    match (&req.entity, key) {
        (Some(E::TableEntry(t)), EntityKey::Table(k)) => {
            if t.table_id == 0 {
                return true;
            }
            match reg.table_by_id(t.table_id) {
                Ok(info) if info.name == k.table => {
                    t.r#match.is_empty()
                        || reg.decode_table_key(t).map(|rk| &rk == k).unwrap_or(false)
                }
                _ => false,
            }
        }
        (Some(E::ActionProfileMember(m)), EntityKey::Member { profile, member_id }) => {
            (m.action_profile_id == 0
                || reg
                    .action_profile_by_id(m.action_profile_id)
                    .map(|p| p.name == *profile)
                    .unwrap_or(false))
                && (m.member_id == 0 || m.member_id == *member_id)
        }
        (Some(E::ActionProfileGroup(g)), EntityKey::Group { profile, group_id }) => {
            (g.action_profile_id == 0
                || reg
                    .action_profile_by_id(g.action_profile_id)
                    .map(|p| p.name == *profile)
                    .unwrap_or(false))
                && (g.group_id == 0 || g.group_id == *group_id)
        }
        (Some(E::PacketReplicationEngineEntry(p)), EntityKey::Multicast(id)) => {
            matches!(&p.r#type, Some(Type::MulticastGroupEntry(m)) if m.multicast_group_id == 0 || m.multicast_group_id == *id)
        }
        (Some(E::PacketReplicationEngineEntry(p)), EntityKey::Clone(id)) => {
            matches!(&p.r#type, Some(Type::CloneSessionEntry(c)) if c.session_id == 0 || c.session_id == *id)
        }
        (Some(E::DigestEntry(d)), EntityKey::Digest(name)) => {
            d.digest_id == 0
                || reg
                    .digest_by_id(d.digest_id)
                    .map(|x| x.name == *name)
                    .unwrap_or(false)
        }
        (Some(E::MeterEntry(m)), EntityKey::Meter { meter, index }) => {
            (m.meter_id == 0
                || reg
                    .meter_by_id(m.meter_id)
                    .map(|x| x.name == *meter)
                    .unwrap_or(false))
                && m.index.as_ref().is_none_or(|i| i.index == *index)
        }
        _ => false,
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<p4::ReadResponse, Status>> + Send>>;
type ChannelStream = Pin<Box<dyn Stream<Item = Result<p4::StreamMessageResponse, Status>> + Send>>;

#[tonic::async_trait]
impl P4Runtime for Service {
    async fn write(
        &self,
        req: Request<p4::WriteRequest>,
    ) -> Result<Response<p4::WriteResponse>, Status> {
        let faults = self.shared.faults();
        if !faults.delay.is_zero() {
            tokio::time::sleep(faults.delay).await;
        }
        let req = req.into_inner();
        let mut st = self.shared.lock();
        st.stats.write_rpcs += 1;
        if req.device_id != self.shared.device_id {
            return Err(Status::not_found("unknown device id"));
        }
        st.check_primary(req.election_id.as_ref())?;
        if faults.refuse_writes {
            return Err(Status::unavailable("injected fault: writes refused"));
        }
        if req.atomicity != p4::write_request::Atomicity::ContinueOnError as i32 {
            return Err(Status::unimplemented("only CONTINUE_ON_ERROR is supported"));
        }
        let reg = match &st.pipeline {
            Some(p) => p.registry.clone(),
            None => return Err(Status::failed_precondition("no forwarding pipeline")),
        };
        // Per update, its error if any: the `p4.Error` details are built
        // only when something failed (an all-OK batch, the common case,
        // answers with an empty response; building them cost an encode
        // and three allocations per update).
        let mut errors: Vec<Option<(Code, String)>> = Vec::with_capacity(req.updates.len());
        let mut failed = 0;
        for u in &req.updates {
            let kind =
                p4::update::Type::try_from(u.r#type).unwrap_or(p4::update::Type::Unspecified);
            let injected = faults.update_failure_rate > 0.0 && {
                use rand::Rng;
                let mut rng = self.shared.rng.lock().unwrap_or_else(|p| p.into_inner());
                rng.random::<f64>() < faults.update_failure_rate
            };
            let stalled = match (faults.stall_after_push, st.since_push.as_mut()) {
                (Some(n), Some((applied, refused))) if *applied >= n => {
                    *refused += 1;
                    true
                }
                _ => false,
            };
            let forgotten = kind == p4::update::Type::Insert
                && faults.forget_table.is_some_and(|(cookie, table)| {
                    let running = st.pipeline.as_ref().and_then(|p| p.config.cookie.as_ref());
                    running.is_some_and(|c| c.cookie == cookie)
                        && u.entity.as_ref().is_some_and(|e| {
                            matches!(reg.decode_entity_key(e), Ok(EntityKey::Table(k)) if k.table == table)
                        })
                });
            let r = if injected {
                Err((Code::ResourceExhausted, "injected fault".to_string()))
            } else if forgotten {
                Ok(())
            } else if stalled {
                Err((
                    Code::Unavailable,
                    "injected fault: stalled after the pipeline push".to_string(),
                ))
            } else {
                match &u.entity {
                    Some(e) => {
                        let State {
                            entities,
                            table_counts,
                            ..
                        } = &mut *st;
                        apply_update(&reg, entities, table_counts, kind, e)
                    }
                    None => Err((Code::InvalidArgument, "update without entity".into())),
                }
            };
            match r {
                Ok(()) => {
                    st.stats.updates_applied += 1;
                    if let Some((applied, _)) = st.since_push.as_mut() {
                        *applied += 1;
                    }
                    errors.push(None);
                }
                Err(e) => {
                    failed += 1;
                    st.stats.updates_failed += 1;
                    errors.push(Some(e));
                }
            }
        }
        if failed < req.updates.len() {
            let id = req.election_id.as_ref().map(from_uint128).unwrap_or(0);
            st.write_log.push(id);
        }
        if failed == 0 {
            return Ok(Response::new(p4::WriteResponse {}));
        }
        let details = errors
            .into_iter()
            .map(|e| match e {
                None => p4_error(Code::Ok, String::new()),
                Some((code, msg)) => p4_error(code, msg),
            })
            .collect();
        let status = tonic_types::Status {
            code: Code::Unknown as i32,
            message: format!("{failed} update(s) failed"),
            details,
        };
        Err(Status::with_details(
            Code::Unknown,
            status.message.clone(),
            status.encode_to_vec().into(),
        ))
    }

    type ReadStream = ReadStream;

    async fn read(
        &self,
        req: Request<p4::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = req.into_inner();
        let mut st = self.shared.lock();
        st.stats.read_rpcs += 1;
        if req.device_id != self.shared.device_id {
            return Err(Status::not_found("unknown device id"));
        }
        let reg = match &st.pipeline {
            Some(p) => p.registry.clone(),
            None => return Err(Status::failed_precondition("no forwarding pipeline")),
        };
        let mut out = Vec::new();
        for r in &req.entities {
            // A read of one table (the common case: a read-back asks table
            // by table) scans only that table's range.
            let table = match &r.entity {
                Some(p4::entity::Entity::TableEntry(t)) if t.table_id != 0 => {
                    reg.table_by_id(t.table_id).ok().map(|info| info.name)
                }
                _ => None,
            };
            let candidates: Box<dyn Iterator<Item = (&Arc<EntityKey>, &Arc<Entity>)>> = match table
            {
                Some(name) => Box::new(table_entries(&st.entities, name)),
                None => Box::new(st.entities.iter()),
            };
            for (key, e) in candidates {
                if selects(&reg, r, key) {
                    let enc = reg
                        .encode_entity(e, false)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    out.push(enc);
                }
            }
        }
        drop(st);
        let chunks: Vec<Result<p4::ReadResponse, Status>> = out
            .chunks(1000)
            .map(|c| {
                Ok(p4::ReadResponse {
                    entities: c.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn set_forwarding_pipeline_config(
        &self,
        req: Request<p4::SetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::SetForwardingPipelineConfigResponse>, Status> {
        use p4::set_forwarding_pipeline_config_request::Action;
        let req = req.into_inner();
        let mut st = self.shared.lock();
        if req.device_id != self.shared.device_id {
            return Err(Status::not_found("unknown device id"));
        }
        st.check_primary(req.election_id.as_ref())?;
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("no config"))?;
        let p4info = config
            .p4info
            .clone()
            .ok_or_else(|| Status::invalid_argument("no p4info"))?;
        let registry = Arc::new(
            P4InfoRegistry::new(p4info).map_err(|e| Status::invalid_argument(e.to_string()))?,
        );
        let action = Action::try_from(req.action).unwrap_or(Action::Unspecified);
        match action {
            Action::Verify => return Ok(Response::new(Default::default())),
            Action::VerifyAndCommit | Action::VerifyAndSave => st.entities.clear(),
            Action::ReconcileAndCommit => {
                // Keep what the new program can still express.
                st.entities
                    .retain(|_, e| registry.encode_entity(e, false).is_ok());
            }
            Action::Commit => return Err(Status::unimplemented("COMMIT without VERIFY_AND_SAVE")),
            Action::Unspecified => return Err(Status::invalid_argument("action unspecified")),
        }
        st.table_counts.clear();
        st.stats.pipeline_pushes += 1;
        st.since_push = Some((0, 0));
        st.pipeline = Some(Pipeline { registry, config });
        Ok(Response::new(Default::default()))
    }

    async fn get_forwarding_pipeline_config(
        &self,
        req: Request<p4::GetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::GetForwardingPipelineConfigResponse>, Status> {
        use p4::get_forwarding_pipeline_config_request::ResponseType as RT;
        let req = req.into_inner();
        if req.device_id != self.shared.device_id {
            return Err(Status::not_found("unknown device id"));
        }
        let st = self.shared.lock();
        let p = st
            .pipeline
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("no forwarding pipeline"))?;
        let mut config = p.config.clone();
        match RT::try_from(req.response_type).unwrap_or(RT::All) {
            RT::All => {}
            RT::CookieOnly => {
                config.p4info = None;
                config.p4_device_config.clear();
            }
            RT::P4infoAndCookie => config.p4_device_config.clear(),
            RT::DeviceConfigAndCookie => config.p4info = None,
        }
        Ok(Response::new(p4::GetForwardingPipelineConfigResponse {
            config: Some(config),
        }))
    }

    type StreamChannelStream = ChannelStream;

    async fn stream_channel(
        &self,
        req: Request<tonic::Streaming<p4::StreamMessageRequest>>,
    ) -> Result<Response<Self::StreamChannelStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(4096);
        let shared = self.shared.clone();
        let conn_id = {
            let mut st = shared.lock();
            st.next_conn += 1;
            let id = st.next_conn;
            st.conns.push(Conn {
                id,
                election_id: None,
                tx: tx.clone(),
            });
            id
        };
        tokio::spawn(async move {
            use p4::stream_message_request::Update as U;
            while let Some(Ok(msg)) = inbound.next().await {
                let mut st = shared.lock();
                match msg.update {
                    Some(U::Arbitration(a)) => {
                        if a.device_id != shared.device_id {
                            let _ = tx.try_send(Err(Status::not_found("unknown device id")));
                            break;
                        }
                        let Some(id) = a.election_id.as_ref().map(from_uint128) else {
                            let _ = tx.try_send(Err(Status::invalid_argument("no election id")));
                            break;
                        };
                        let taken = st
                            .conns
                            .iter()
                            .any(|c| c.id != conn_id && c.election_id == Some(id));
                        if taken {
                            let _ =
                                tx.try_send(Err(Status::invalid_argument("election id in use")));
                            break;
                        }
                        if let Some(c) = st.conns.iter_mut().find(|c| c.id == conn_id) {
                            c.election_id = Some(id);
                        }
                        st.rearbitrate(shared.device_id, Some(conn_id));
                    }
                    Some(U::Packet(p)) => {
                        let me = st
                            .conns
                            .iter()
                            .find(|c| c.id == conn_id)
                            .and_then(|c| c.election_id);
                        if me.is_some() && me == st.primary {
                            st.packet_outs.push(p);
                        } else {
                            let _ = tx
                                .try_send(Ok(stream_error(Code::PermissionDenied, "not primary")));
                        }
                    }
                    Some(U::DigestAck(a)) => st.digest_acks.push((a.digest_id, a.list_id)),
                    Some(U::Other(_)) | None => {}
                }
            }
            // Stream closed: forget the connection. Like the spec (and
            // unlike bmv2), a lost primary is not replaced until a client
            // arbitrates again; backups hear that there is no primary.
            let mut st = shared.lock();
            st.conns.retain(|c| c.id != conn_id);
            let was_primary =
                st.primary.is_some() && !st.conns.iter().any(|c| c.election_id == st.primary);
            if was_primary {
                st.primary = None;
                for c in &st.conns {
                    let _ =
                        c.tx.try_send(Ok(arbitration_msg(shared.device_id, None, c.election_id)));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn capabilities(
        &self,
        _req: Request<p4::CapabilitiesRequest>,
    ) -> Result<Response<p4::CapabilitiesResponse>, Status> {
        Ok(Response::new(p4::CapabilitiesResponse {
            p4runtime_api_version: API_VERSION.to_string(),
            experimental: None,
        }))
    }
}

fn stream_error(code: Code, message: &str) -> p4::StreamMessageResponse {
    p4::StreamMessageResponse {
        update: Some(p4::stream_message_response::Update::Error(
            p4::StreamError {
                canonical_code: code as i32,
                message: message.to_string(),
                ..Default::default()
            },
        )),
    }
}

/// Summary counts by table/kind, for logs and status.
pub fn entity_counts<'a>(keys: impl IntoIterator<Item = &'a EntityKey>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in keys {
        let name = match k {
            EntityKey::Table(t) => t.table.to_string(),
            EntityKey::Member { profile, .. } => format!("{profile} members"),
            EntityKey::Group { profile, .. } => format!("{profile} groups"),
            EntityKey::Multicast(_) => "multicast groups".into(),
            EntityKey::Clone(_) => "clone sessions".into(),
            EntityKey::Digest(_) => "digests".into(),
            EntityKey::Meter { meter, .. } => meter.to_string(),
        };
        *out.entry(name).or_insert(0) += 1;
    }
    out
}
