//! The `p4fabric` subcommands. `main.rs` holds the clap `Subcommand` enum
//! and dispatches to the `run` function of each module here.
//!
//! May use: everything; `demo` and `bench` (feature `testkit`) also the
//! test kit and `crate::bench`. Nothing uses the CLI.

pub mod apply;
#[cfg(feature = "testkit")]
pub mod bench;
#[cfg(feature = "testkit")]
pub mod check;
#[cfg(feature = "testkit")]
pub mod demo;
pub mod drain;
pub mod get;
pub mod run;
pub mod status;
pub mod topology;
pub mod trace;
pub mod upgrade;
pub mod validate;

use std::path::PathBuf;

use crate::config::etcd::{EtcdOptions, EtcdStore};
use crate::config::DEFAULT_PREFIX;

/// How the CLI reaches etcd.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma separated.
    #[arg(
        long = "etcd",
        env = "P4FABRIC_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Key prefix of the configuration API.
    #[arg(long, env = "P4FABRIC_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// PEM CA certificate of etcd (enables TLS; use https:// endpoints).
    #[arg(long = "etcd-ca", env = "P4FABRIC_ETCD_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for etcd.
    #[arg(long = "etcd-cert", env = "P4FABRIC_ETCD_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM client key for etcd.
    #[arg(long = "etcd-key", env = "P4FABRIC_ETCD_KEY")]
    pub key: Option<PathBuf>,
    #[arg(long = "etcd-user", env = "P4FABRIC_ETCD_USER")]
    pub user: Option<String>,
    #[arg(
        long = "etcd-password",
        env = "P4FABRIC_ETCD_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

impl EtcdArgs {
    /// One plain endpoint under the default prefix (tests, the demo).
    pub fn plain(endpoint: &str) -> EtcdArgs {
        EtcdArgs {
            endpoints: vec![endpoint.to_string()],
            prefix: DEFAULT_PREFIX.to_string(),
            ca: None,
            cert: None,
            key: None,
            user: None,
            password: None,
        }
    }

    pub fn options(&self) -> EtcdOptions {
        let mut o = EtcdOptions::new(self.endpoints.iter().cloned());
        o.prefix = self.prefix.clone();
        o.ca_file = self.ca.clone();
        o.cert_file = self.cert.clone();
        o.key_file = self.key.clone();
        o.user = self.user.clone();
        o.password = self.password.clone();
        o
    }

    pub async fn connect(&self) -> anyhow::Result<EtcdStore> {
        let o = self.options();
        o.connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach etcd at {}: {e}", o.endpoints.join(",")))
    }
}

/// A stored value for display: its JSON, or the raw text if it is not JSON.
pub fn display_value(raw: &[u8]) -> serde_json::Value {
    serde_json::from_slice(raw)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(raw).into_owned()))
}
