//! What every configuration store offers: a consistent read of all config
//! keys at one revision. Watching is store specific (`watch` for etcd,
//! `file` for a YAML file) but both end in the same `ConfigUpdate`s.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use super::etcd::EtcdOptions;
use super::keys::DocumentError;
use super::model::Fabric;
use super::state::{ConfigState, KeyError};

/// All configuration keys (relative path -> raw value) at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSnapshot {
    pub revision: i64,
    pub kvs: BTreeMap<String, Vec<u8>>,
}

impl RawSnapshot {
    /// The configuration these keys give, and the keys rejected.
    pub fn fabric(&self) -> (Fabric, Vec<KeyError>) {
        ConfigState::new().reset(self.kvs.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd: no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Document {
        path: PathBuf,
        source: DocumentError,
    },
    #[error("the configuration in etcd changed meanwhile; nothing was written")]
    Conflict,
    #[error("{0}")]
    Invalid(String),
}

/// A store the configuration can be read from.
pub trait ConfigStore {
    fn load(&self) -> impl Future<Output = Result<RawSnapshot, StoreError>> + Send;
}

/// Where the controller takes its configuration from.
#[derive(Debug, Clone)]
pub enum Source {
    Etcd(EtcdOptions),
    /// A YAML file in the `Fabric` shape (the embedded default when no etcd
    /// endpoint is given).
    File(PathBuf),
}
