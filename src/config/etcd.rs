//! The etcd store: connection options (endpoints, TLS, user/password), a
//! consistent read of the configuration, one-transaction writes, and the
//! watch stream the watcher resumes from a revision.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, CompactionOptions, Compare, CompareOp, ConnectOptions, GetOptions,
    Identity, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

use super::keys::{controller_owned, CONFIG_DIRS, DEFAULT_PREFIX};
use super::store::{ConfigStore, RawSnapshot, StoreError};

/// etcd's gRPC server refuses pings more frequent than its
/// `--grpc-keepalive-min-time` (default 5 s): after two such it sends
/// GOAWAY "too_many_pings" and the connection drops (with pings every 2 s
/// the controller lost its watch every ~8 s). 10 s stays clear of it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `http://host:port` (or `https://` with TLS); any member will do.
    pub endpoints: Vec<String>,
    /// Key prefix of the API, ending in `/`.
    pub prefix: String,
    /// PEM CA certificate to verify the server with (enables TLS).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// Limit for one unary request (get, txn); watches are not limited.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_string(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }

    fn read(path: &PathBuf) -> Result<Vec<u8>, StoreError> {
        std::fs::read(path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })
    }

    fn connect_options(&self) -> Result<ConnectOptions, StoreError> {
        // HTTP/2 pings notice a dead or partitioned etcd (within
        // KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT), so a silent watch does
        // not hang forever.
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true);
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            o = o.with_user(u.clone(), p.clone());
        } else if self.user.is_some() {
            return Err(StoreError::Invalid(
                "etcd user given without password".into(),
            ));
        }
        if self.ca_file.is_some() || self.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(Self::read(ca)?));
            }
            match (&self.cert_file, &self.key_file) {
                (Some(c), Some(k)) => {
                    tls = tls.identity(Identity::from_pem(Self::read(c)?, Self::read(k)?));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Invalid(
                        "etcd client certificate and key go together".into(),
                    ))
                }
            }
            o = o.with_tls(tls);
        }
        Ok(o)
    }

    pub async fn connect(&self) -> Result<EtcdStore, StoreError> {
        if self.endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoint given".into()));
        }
        if !self.prefix.ends_with('/') {
            return Err(StoreError::Invalid(format!(
                "etcd prefix {:?} must end with /",
                self.prefix
            )));
        }
        let options = self.connect_options()?;
        let client = limit(
            self.connect_timeout,
            Client::connect(&self.endpoints, Some(options)),
        )
        .await?;
        let store = EtcdStore {
            client,
            prefix: self.prefix.clone(),
            timeout: self.request_timeout,
        };
        // The channel connects lazily: probe, so an unreachable etcd (or a
        // refused login) fails here and not at some later request.
        let mut c = store.client.clone();
        let probe = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_limit(1);
        limit(
            self.connect_timeout,
            c.get(self.prefix.clone(), Some(probe)),
        )
        .await?;
        Ok(store)
    }
}

async fn limit<T>(
    d: Duration,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Timeout(d)),
    }
}

/// A connected etcd store under one prefix.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    timeout: Duration,
}

/// The outcome of a `commit`.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub revision: i64,
}

impl EtcdStore {
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every key under `prefix + dir` (relative paths), status included,
    /// and the revision read at.
    pub async fn get_dir(&self, dir: &str) -> Result<RawSnapshot, StoreError> {
        let mut c = self.client.clone();
        let full = format!("{}{dir}", self.prefix);
        let resp = limit(
            self.timeout,
            c.get(full, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut kvs = BTreeMap::new();
        for kv in resp.kvs() {
            if let Some(rel) = self.relative(kv.key()) {
                kvs.insert(rel, kv.value().to_vec());
            }
        }
        Ok(RawSnapshot { revision, kvs })
    }

    /// etcd's current revision and cluster id.
    pub async fn revision(&self) -> Result<(i64, u64), StoreError> {
        let mut c = self.client.clone();
        let probe = GetOptions::new().with_keys_only().with_limit(1);
        let resp = limit(self.timeout, c.get(self.prefix.clone(), Some(probe))).await?;
        Ok(resp
            .header()
            .map(|h| (h.revision(), h.cluster_id()))
            .unwrap_or_default())
    }

    /// The relative path of a full key, if it is under the prefix.
    pub fn relative(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(&self.prefix).map(str::to_string)
    }

    /// Writes `puts` and deletes `deletes` (relative paths) in ONE
    /// transaction: watchers see the whole change at one revision.
    pub async fn commit(
        &self,
        puts: Vec<(String, Vec<u8>)>,
        deletes: Vec<String>,
    ) -> Result<Committed, StoreError> {
        self.commit_when(puts, deletes, vec![]).await
    }

    /// Like `commit`, but only if no configuration key was written after
    /// `revision` (what the caller validated against); status keys do not
    /// count. (A key deleted meanwhile is not noticed: etcd compares only
    /// keys that exist.)
    pub async fn commit_if_unchanged_since(
        &self,
        puts: Vec<(String, Vec<u8>)>,
        deletes: Vec<String>,
        revision: i64,
    ) -> Result<Committed, StoreError> {
        let unchanged = |key: String| Compare::mod_revision(key, CompareOp::Less, revision + 1);
        let mut compares: Vec<Compare> = CONFIG_DIRS
            .iter()
            .map(|d| unchanged(format!("{}{d}/", self.prefix)).with_prefix())
            .collect();
        compares.push(unchanged(format!("{}settings", self.prefix)));
        compares.push(unchanged(format!(
            "{}{}",
            self.prefix,
            super::keys::UPGRADE
        )));
        self.commit_when(puts, deletes, compares).await
    }

    async fn commit_when(
        &self,
        puts: Vec<(String, Vec<u8>)>,
        deletes: Vec<String>,
        compares: Vec<Compare>,
    ) -> Result<Committed, StoreError> {
        let mut ops: Vec<TxnOp> = puts
            .into_iter()
            .map(|(k, v)| TxnOp::put(format!("{}{k}", self.prefix), v, None))
            .collect();
        ops.extend(
            deletes
                .into_iter()
                .map(|k| TxnOp::delete(format!("{}{k}", self.prefix), None)),
        );
        let mut c = self.client.clone();
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = limit(self.timeout, c.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict);
        }
        Ok(Committed {
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
        })
    }

    /// Compacts the history up to `revision` (tests, maintenance).
    pub async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut c = self.client.clone();
        limit(
            self.timeout,
            c.compact(revision, Some(CompactionOptions::new().with_physical())),
        )
        .await?;
        Ok(())
    }

    /// Watches the whole prefix from `revision` (inclusive), with progress
    /// notifications so an idle watch still learns the current revision.
    pub async fn watch_from(&self, revision: i64) -> Result<WatchStream, StoreError> {
        let mut c = self.client.clone();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision)
            .with_progress_notify();
        limit(self.timeout, c.watch(self.prefix.clone(), Some(opts))).await
    }
}

impl ConfigStore for EtcdStore {
    /// Every configuration key (status and election excluded) at one
    /// revision.
    async fn load(&self) -> Result<RawSnapshot, StoreError> {
        let mut snap = self.get_dir("").await?;
        snap.kvs.retain(|k, _| !controller_owned(k));
        Ok(snap)
    }
}
