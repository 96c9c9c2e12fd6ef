//! Status written back to etcd under `<prefix>status/`: per-key validation
//! errors, switch sessions, observed links, learned hosts and the
//! controller instances. Every status key is attached to this controller's
//! lease, so a dead controller's status expires with it — but for the
//! durable ones a successor needs after it stopped or died (`set_durable`:
//! the LACP partners heard, the rolling upgrade's `status/upgrade`).
//!
//! The writer keeps what it wrote in memory: when etcd comes back or the
//! lease had expired, everything is written again under a fresh lease.
//!
//! Two ways to write: `set` awaits the put (start-up, HA); the `*_later`
//! calls hand a value to a write-behind queue and return at once, for the
//! controller's loop, which must never wait on etcd (discovery and LACP
//! timers run there). The queue keeps one pending value per key (latest
//! wins, so it is bounded by the number of keys), writes in transactions of
//! `BATCH` keys at most `MAX_KEYS_PER_SEC` keys a second, and writes
//! everything else before learned hosts (`hosts/`), which a flood of
//! sources can make many.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::etcd::EtcdStore;
use super::keys::STATUS_DIR;
use super::model::{Attachment, PortRef, VlanId};
use super::state::KeyError;
use super::store::StoreError;
use crate::net::MacAddr;

/// `status/controllers/<id>`: one running controller instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerStatus {
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    /// Unix seconds.
    pub started_at: u64,
    pub leader: bool,
}

impl ControllerStatus {
    /// This process, not (yet) leader.
    pub fn this_process(id: impl Into<String>) -> Self {
        ControllerStatus {
            id: id.into(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: unix_now(),
            leader: false,
        }
    }
}

/// P4Runtime session state of a switch as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Connecting,
    /// Connected, this controller is primary.
    Primary,
    /// Connected as a backup.
    Backup,
    Down,
}

/// `status/switches/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchStatus {
    pub state: SessionState,
    /// The controller reporting it.
    pub controller: String,
    /// P4Runtime election id, as a decimal string (it is 128 bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_id: Option<String>,
    /// Entities installed by the last reconcile.
    #[serde(default)]
    pub entities: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix seconds when `state` was entered.
    pub since: u64,
    /// The cookie of the pipeline the switch runs (hex), once its agent
    /// checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_cookie: Option<String>,
    /// That pipeline's label (`upgrade`'s `version` / `from_version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_version: Option<String>,
}

/// Where a rolling pipeline upgrade is (`status/upgrade`; no key: no
/// `upgrade` configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeState {
    /// Not started, or between switches: `detail` says what it waits for.
    Waiting,
    /// A switch is being upgraded (`switch`, `phase`).
    Running,
    /// Every switch runs the new pipeline.
    Done,
    /// Stopped at `switch`: `failure` says why; the rest stay as they are.
    Failed,
}

/// `status/upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStatus {
    pub state: UpgradeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub pipeline_dir: String,
    /// The switch being upgraded (or where it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    /// Its phase: draining, loading, undraining, rolling_back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub detail: String,
    /// Switches on the new pipeline, in upgrade order.
    #[serde(default)]
    pub done: Vec<String>,
    /// Switches still on another pipeline, in upgrade order.
    #[serde(default)]
    pub remaining: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub controller: String,
    /// Unix seconds when `state`/`phase` was entered.
    pub since: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Up,
    Down,
}

/// `status/links/<switch>/<port>`: what discovery sees on one fabric port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub state: LinkState,
    /// The far end, when a probe was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<PortRef>,
    /// Does it match a configured link (`links/...`)? None: none configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches_config: Option<bool>,
    /// Unix seconds of the last probe received.
    pub last_seen: u64,
}

/// `status/hosts/<vlan>/<mac>`: a host the fabric learned or was told of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub attachment: Attachment,
    #[serde(default)]
    pub ips: Vec<std::net::IpAddr>,
    /// `true` if learned from traffic, `false` if configured.
    pub learned: bool,
    pub last_seen: u64,
}

/// `status/port-security/ports/<switch>/<port>` or
/// `status/port-security/lags/<name>`: an edge port or LAG at its
/// learned-MAC limit (the key is removed once it is below it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurityStatus {
    /// Always `limited` (the only state with a key).
    pub state: String,
    /// MACs learned there now.
    pub learned: u64,
    pub limit: u64,
    /// Unix seconds when it reached the limit.
    pub since: u64,
    /// New sources refused (not learned, not answered) since then.
    pub refused: u64,
    /// Why, in words, and how it clears.
    pub reason: String,
}

/// `status/config/<key>`: why a configuration key is not in force.
/// What the controller observed and compiled with (`status/observed`):
/// links discovery found or lost, ports down, LACP members out of sync.
/// Together with the configuration and the learned hosts it determines
/// every switch's desired state, so a checker can compile it
/// independently and compare with what the switches hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedStatus {
    /// `(a, b, seen)`: `seen` false = lost.
    #[serde(default)]
    pub links: Vec<(PortRef, PortRef, bool)>,
    #[serde(default)]
    pub ports_down: Vec<PortRef>,
    #[serde(default)]
    pub lacp_unsynced: Vec<PortRef>,
    /// The flood tree in force (its links). Not an observation but a
    /// decision that depends on history (the tree changes as little as
    /// possible), so a checker needs it to compile the same flood groups.
    #[serde(default)]
    pub flood_tree: Vec<(PortRef, PortRef)>,
    /// Switches in maintenance the fabric routes around (a compiler input
    /// decided by the controller, `controller::maintenance`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drained: Vec<String>,
    /// Drained leaves whose own LAG groups hand over to the other leaf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lags_handed_over: Vec<String>,
}

/// Where a switch is in a drain or undrain (`status/maintenance/<switch>`;
/// no key: in service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceState {
    /// The fabric is moving traffic off it.
    Draining,
    /// Out of service; `detail` says how that was confirmed.
    Drained,
    /// Coming back, in reverse order.
    Undraining,
    /// The drain was not done; `detail` says why.
    Refused,
}

/// `status/maintenance/<switch>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceStatus {
    pub state: MaintenanceState,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub controller: String,
    /// Unix seconds when `state` was entered.
    pub since: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigKeyStatus {
    pub error: String,
    pub controller: String,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Relative status paths (under `<prefix>status/`).
pub mod paths {
    use super::*;

    pub fn config(key: &str) -> String {
        format!("config/{key}")
    }
    pub fn switch(name: &str) -> String {
        format!("switches/{name}")
    }
    /// The LACP partner last heard on a LAG member (durable, see
    /// `StatusWriter::set_durable`).
    pub fn lacp_partner(port: &PortRef) -> String {
        format!("{LACP_PARTNERS}{port}")
    }

    pub const LACP_PARTNERS: &str = "lacp-partners/";

    pub fn link(port: &PortRef) -> String {
        format!("links/{port}")
    }
    pub fn host(vlan: VlanId, mac: MacAddr) -> String {
        format!("hosts/{vlan}/{mac}")
    }
    pub fn controller(id: &str) -> String {
        format!("controllers/{id}")
    }
    pub const OBSERVED: &str = "observed";

    pub const PORT_SECURITY: &str = "port-security/";

    /// An attachment's port-security state, named as its configuration
    /// key is (`ports/leaf1/3`, `lags/bond1`).
    pub fn port_security(attachment: &Attachment) -> String {
        match attachment {
            Attachment::Port(p) => format!("{PORT_SECURITY}ports/{p}"),
            Attachment::Lag(l) => format!("{PORT_SECURITY}lags/{l}"),
        }
    }

    /// Durable (`StatusWriter::set_durable`): a controller taking over
    /// resumes the roll-out where it says (`controller::upgrade`).
    pub const UPGRADE: &str = "upgrade";

    pub const MAINTENANCE: &str = "maintenance/";
    pub fn maintenance(switch: &str) -> String {
        format!("{MAINTENANCE}{switch}")
    }
}

/// Limit for one status write, so a dead etcd never blocks the caller long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys per etcd transaction (etcd's default `--max-txn-ops` is 128).
const BATCH: usize = 100;

/// What the write-behind queue writes to etcd at most, in keys a second:
/// thousands of learned hosts cost etcd a bounded rate of writes.
pub const MAX_KEYS_PER_SEC: u32 = 2000;

/// One write waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Under the lease (gone when this controller is).
    Put(Vec<u8>),
    /// Without lease (outlives the controller).
    Durable(Vec<u8>),
    Delete,
}

/// The write-behind queue: what the controller handed over and not yet
/// written, urgent keys apart from learned hosts.
#[derive(Default)]
struct Queue {
    urgent: BTreeMap<String, Pending>,
    bulk: BTreeMap<String, Pending>,
    /// What was last handed over per key, so an unchanged value costs
    /// neither a queue slot nor a write.
    handed: BTreeMap<String, Pending>,
    /// Writes taken and not yet answered by etcd (a flush waits for them
    /// too: taken is not written).
    in_flight: usize,
    /// Keys written by the queue since start (for metrics and tests).
    written: u64,
    /// Transactions that failed (retried).
    failed: u64,
}

impl Queue {
    fn push(&mut self, path: &str, op: Pending) {
        if self.handed.get(path) == Some(&op) {
            return;
        }
        if op == Pending::Delete {
            self.handed.remove(path);
        } else {
            self.handed.insert(path.to_string(), op.clone());
        }
        self.bucket(path).insert(path.to_string(), op);
    }

    /// Learned hosts wait behind everything else.
    fn bucket(&mut self, path: &str) -> &mut BTreeMap<String, Pending> {
        if path.starts_with("hosts/") {
            &mut self.bulk
        } else {
            &mut self.urgent
        }
    }

    /// Up to `n` writes, urgent ones first.
    fn take(&mut self, n: usize) -> Vec<(String, Pending)> {
        let mut out = Vec::new();
        for q in [&mut self.urgent, &mut self.bulk] {
            while out.len() < n {
                match q.pop_first() {
                    Some(kv) => out.push(kv),
                    None => break,
                }
            }
        }
        self.in_flight += out.len();
        out
    }

    /// `n` taken writes were written.
    fn written(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
        self.written += n as u64;
    }

    /// Puts back writes that failed, unless a newer value came meanwhile.
    fn put_back(&mut self, ops: Vec<(String, Pending)>) {
        self.in_flight = self.in_flight.saturating_sub(ops.len());
        for (path, op) in ops {
            self.bucket(&path).entry(path).or_insert(op);
        }
    }

    /// Writes queued or being written.
    fn len(&self) -> usize {
        self.urgent.len() + self.bulk.len() + self.in_flight
    }
}

/// Counters of the write-behind queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Keys waiting to be written, or being written.
    pub pending: usize,
    /// Keys written since start.
    pub written: u64,
    /// Transactions that failed and were retried.
    pub failed: u64,
}

struct Shared {
    client: Client,
    /// `<prefix>status/`.
    dir: String,
    lease: i64,
    /// Every status key this writer holds (relative to `dir`) and its value.
    written: BTreeMap<String, Vec<u8>>,
}

impl Shared {
    async fn put(&mut self, path: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let lease = self.lease;
        self.put_with(path, value, Some(PutOptions::new().with_lease(lease)))
            .await
    }

    async fn put_with(
        &mut self,
        path: &str,
        value: Vec<u8>,
        opts: Option<PutOptions>,
    ) -> Result<(), StoreError> {
        let key = format!("{}{path}", self.dir);
        let put = self.client.put(key, value, opts);
        match tokio::time::timeout(REQUEST_TIMEOUT, put).await {
            Ok(r) => r.map(|_| ()).map_err(Into::into),
            Err(_) => Err(StoreError::Timeout(REQUEST_TIMEOUT)),
        }
    }

    /// Writes `ops` in one transaction and keeps `written` in step.
    /// Unchanged values are skipped.
    async fn write_batch(&mut self, ops: &[(String, Pending)]) -> Result<(), StoreError> {
        let lease = self.lease;
        let mut txn_ops = Vec::with_capacity(ops.len());
        for (path, op) in ops {
            let key = format!("{}{path}", self.dir);
            match op {
                Pending::Put(v) if self.written.get(path) != Some(v) => {
                    txn_ops.push(TxnOp::put(
                        key,
                        v.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    ));
                }
                Pending::Put(_) => {}
                Pending::Durable(v) => txn_ops.push(TxnOp::put(key, v.clone(), None)),
                Pending::Delete => txn_ops.push(TxnOp::delete(key, None)),
            }
        }
        if !txn_ops.is_empty() {
            let txn = self.client.txn(Txn::new().and_then(txn_ops));
            match tokio::time::timeout(REQUEST_TIMEOUT, txn).await {
                Ok(r) => r.map(|_| ())?,
                Err(_) => return Err(StoreError::Timeout(REQUEST_TIMEOUT)),
            }
        }
        for (path, op) in ops {
            match op {
                Pending::Put(v) => {
                    self.written.insert(path.clone(), v.clone());
                }
                Pending::Durable(_) => {}
                Pending::Delete => {
                    self.written.remove(path);
                }
            }
        }
        Ok(())
    }

    /// Grants a fresh lease and writes everything again under it.
    async fn regrant(&mut self, ttl: i64) -> Result<(), StoreError> {
        self.lease = self.client.lease_grant(ttl, None).await?.id();
        let all: Vec<(String, Pending)> = std::mem::take(&mut self.written)
            .into_iter()
            .map(|(k, v)| (k, Pending::Put(v)))
            .collect();
        for chunk in all.chunks(BATCH) {
            if let Err(e) = self.write_batch(chunk).await {
                // Keep what was not rewritten: the next attempt writes it.
                for (k, op) in all.iter() {
                    if let Pending::Put(v) = op {
                        self.written.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Writes this controller's status under a kept-alive lease.
pub struct StatusWriter {
    shared: Arc<Mutex<Shared>>,
    id: String,
    keeper: JoinHandle<()>,
    queue: Arc<std::sync::Mutex<Queue>>,
    wake: Arc<tokio::sync::Notify>,
    flusher: JoinHandle<()>,
}

impl StatusWriter {
    /// Grants a lease of `ttl` and announces the controller at
    /// `status/controllers/<id>`.
    pub async fn start(
        store: &EtcdStore,
        me: &ControllerStatus,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        let ttl = i64::try_from(ttl.as_secs().max(2)).unwrap_or(60);
        let mut client = store.client();
        let lease = client.lease_grant(ttl, None).await?.id();
        let shared = Arc::new(Mutex::new(Shared {
            client,
            dir: format!("{}{STATUS_DIR}", store.prefix()),
            lease,
            written: BTreeMap::new(),
        }));
        let keeper = tokio::spawn(keep_alive(shared.clone(), ttl));
        let queue = Arc::new(std::sync::Mutex::new(Queue::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let flusher = tokio::spawn(write_behind(shared.clone(), queue.clone(), wake.clone()));
        let w = StatusWriter {
            shared,
            id: me.id.clone(),
            keeper,
            queue,
            wake,
            flusher,
        };
        w.set(&paths::controller(&me.id), me).await?;
        Ok(w)
    }

    pub fn controller_id(&self) -> &str {
        &self.id
    }

    /// Writes one status value (relative path under `status/`). The value
    /// is kept and rewritten if the put fails now.
    pub async fn set<T: Serialize>(&self, path: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut s = self.shared.lock().await;
        if s.written.get(path) == Some(&bytes) {
            return Ok(());
        }
        s.written.insert(path.to_string(), bytes.clone());
        s.put(path, bytes).await
    }

    /// Hands `value` to the write-behind queue (see the module comment);
    /// returns at once. An unchanged value is dropped here.
    pub fn set_later<T: Serialize>(&self, path: &str, value: &T) {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.push(path, Pending::Put(bytes)),
            Err(e) => warn!(error = %e, path, "status value not serialisable"),
        }
    }

    /// `set_durable` through the write-behind queue.
    pub fn set_durable_later<T: Serialize>(&self, path: &str, value: &T) {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.push(path, Pending::Durable(bytes)),
            Err(e) => warn!(error = %e, path, "status value not serialisable"),
        }
    }

    /// `remove` through the write-behind queue.
    pub fn remove_later(&self, path: &str) {
        self.push(path, Pending::Delete);
    }

    fn push(&self, path: &str, op: Pending) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path, op);
        self.wake.notify_one();
    }

    /// The write-behind queue's counters.
    pub fn queue_stats(&self) -> QueueStats {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        QueueStats {
            pending: q.len(),
            written: q.written,
            failed: q.failed,
        }
    }

    /// Waits until the write-behind queue is empty, at most `limit`.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.queue_stats().pending > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Writes a value that outlives this controller (no lease): state a
    /// successor needs after this one died (`paths::lacp_partner`).
    pub async fn set_durable<T: Serialize>(&self, path: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.shared.lock().await.put_with(path, bytes, None).await
    }

    /// Every status value under `dir` (relative to `status/`), by path.
    pub async fn read_dir(&self, dir: &str) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        let mut s = self.shared.lock().await;
        let base = s.dir.clone();
        let get = s.client.get(
            format!("{base}{dir}"),
            Some(GetOptions::new().with_prefix()),
        );
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, get).await {
            Ok(r) => r?,
            Err(_) => return Err(StoreError::Timeout(REQUEST_TIMEOUT)),
        };
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let k = kv.key_str().ok()?.strip_prefix(&base)?.to_string();
                Some((k, kv.value().to_vec()))
            })
            .collect())
    }

    /// The lease the status keys are attached to now.
    pub async fn lease(&self) -> i64 {
        self.shared.lock().await.lease
    }

    /// Removes one status value this writer wrote.
    pub async fn remove(&self, path: &str) -> Result<(), StoreError> {
        let mut s = self.shared.lock().await;
        if s.written.remove(path).is_some() {
            let key = format!("{}{path}", s.dir);
            s.client.delete(key, None).await?;
        }
        Ok(())
    }

    /// Makes `status/config/` hold exactly `errors`, through the
    /// write-behind queue (the entries no longer in `errors` are removed).
    pub fn set_config_errors(&self, errors: &[KeyError]) {
        let want: BTreeMap<String, ConfigKeyStatus> = errors
            .iter()
            .map(|e| {
                (
                    paths::config(&e.key),
                    ConfigKeyStatus {
                        error: e.reason.clone(),
                        controller: self.id.clone(),
                    },
                )
            })
            .collect();
        let stale: Vec<String> = {
            let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.handed
                .keys()
                .filter(|k| k.starts_with("config/") && !want.contains_key(*k))
                .cloned()
                .collect()
        };
        for k in stale {
            self.remove_later(&k);
        }
        for (k, v) in &want {
            self.set_later(k, v);
        }
    }

    pub async fn set_switch(&self, name: &str, st: &SwitchStatus) -> Result<(), StoreError> {
        self.set(&paths::switch(name), st).await
    }

    pub async fn set_link(&self, port: &PortRef, st: &LinkStatus) -> Result<(), StoreError> {
        self.set(&paths::link(port), st).await
    }

    pub async fn set_host(
        &self,
        vlan: VlanId,
        mac: MacAddr,
        st: &HostStatus,
    ) -> Result<(), StoreError> {
        self.set(&paths::host(vlan, mac), st).await
    }

    /// Revokes the lease: all of this controller's status goes at once.
    /// Durable values still queued are written first (briefly).
    pub async fn shutdown(self) -> Result<(), StoreError> {
        self.flush(Duration::from_secs(2)).await;
        self.flusher.abort();
        self.keeper.abort();
        let mut s = self.shared.lock().await;
        let lease = s.lease;
        s.client.lease_revoke(lease).await?;
        Ok(())
    }
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        self.keeper.abort();
        self.flusher.abort();
    }
}

/// The write-behind task: batches of queued writes, one transaction each,
/// paced to `MAX_KEYS_PER_SEC`; a failed batch goes back to the queue
/// (newer values win) and is retried with backoff.
async fn write_behind(
    shared: Arc<Mutex<Shared>>,
    queue: Arc<std::sync::Mutex<Queue>>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let ops = queue.lock().unwrap_or_else(|p| p.into_inner()).take(BATCH);
        if ops.is_empty() {
            wake.notified().await;
            continue;
        }
        let n = ops.len();
        let started = tokio::time::Instant::now();
        let r = shared.lock().await.write_batch(&ops).await;
        match r {
            Ok(()) => {
                queue.lock().unwrap_or_else(|p| p.into_inner()).written(n);
                backoff = Duration::from_millis(100);
                let budget = Duration::from_secs_f64(n as f64 / f64::from(MAX_KEYS_PER_SEC));
                tokio::time::sleep_until(started + budget).await;
            }
            Err(e) => {
                debug!(error = %e, keys = n, "status batch not written; retried");
                {
                    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                    q.failed += 1;
                    q.put_back(ops);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Keeps the lease alive at a third of its TTL; after any failure, grants
/// a new lease and rewrites everything (a no-op in effect if the old lease
/// survived, but it also repairs puts that failed meanwhile).
async fn keep_alive(shared: Arc<Mutex<Shared>>, ttl: i64) {
    let period = Duration::from_millis(u64::try_from(ttl).unwrap_or(6) * 1000 / 3);
    let mut broken = false;
    loop {
        tokio::time::sleep(period).await;
        if broken {
            let mut s = shared.lock().await;
            match tokio::time::timeout(period, s.regrant(ttl)).await {
                Ok(Ok(())) => {
                    debug!("status lease re-granted");
                    broken = false;
                }
                Ok(Err(e)) => warn!(error = %e, "status: etcd still unreachable"),
                Err(_) => warn!("status: etcd still unreachable (timeout)"),
            }
            continue;
        }
        // Not holding the lock: writers go on while the ping is in flight.
        let (mut client, lease) = {
            let s = shared.lock().await;
            (s.client.clone(), s.lease)
        };
        let ping = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.ok()?;
            keeper.keep_alive().await.ok()?;
            let r = stream.message().await.ok()??;
            Some(r.ttl() > 0)
        };
        let alive = tokio::time::timeout(period, ping).await.ok().flatten() == Some(true);
        if !alive {
            warn!("status lease lost; will re-grant and rewrite");
            broken = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: u8) -> Pending {
        Pending::Put(vec![v])
    }

    #[test]
    fn the_queue_keeps_one_value_per_key_and_urgent_keys_first() {
        let mut q = Queue::default();
        q.push("hosts/10/a", put(1));
        q.push("hosts/10/a", put(2));
        q.push("hosts/10/b", put(1));
        q.push("links/leaf1/1", put(1));
        assert_eq!(q.len(), 3);
        let first = q.take(2);
        assert_eq!(first[0], ("links/leaf1/1".to_string(), put(1)));
        assert_eq!(first[1], ("hosts/10/a".to_string(), put(2)));
        // Handing over an unchanged value queues nothing; the two taken
        // count until they are answered (a flush waits for them).
        q.push("hosts/10/a", put(2));
        assert_eq!(q.len(), 3);
        // A failed batch goes back, unless a newer value came meanwhile.
        q.push("hosts/10/a", put(3));
        q.put_back(first);
        assert_eq!(q.take(10).len(), 3);
        q.push("hosts/10/a", put(4));
        q.put_back(vec![("hosts/10/a".to_string(), put(3))]);
        assert_eq!(q.take(10), vec![("hosts/10/a".to_string(), put(4))]);
        // A removal is queued even after the value was handed over, and
        // the value handed again afterwards is written again.
        q.push("hosts/10/a", Pending::Delete);
        q.push("hosts/10/a", put(4));
        assert_eq!(q.take(10), vec![("hosts/10/a".to_string(), put(4))]);
        // Each answered write leaves the count.
        let n = q.len();
        q.written(1);
        assert_eq!((q.len(), q.written), (n - 1, 1));
    }
}
