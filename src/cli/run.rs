//! `p4fabric run`: the controller daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::EtcdArgs;
use crate::config::status::{ControllerStatus, StatusWriter};
use crate::config::watch::{ConfigWatch, Tuning};
use crate::controller::{Controller, ControllerOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Use this YAML file as the configuration (the embedded file store)
    /// instead of etcd. It is re-read when it changes.
    #[arg(long = "config", short = 'f', conflicts_with = "endpoints")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Directory of compiled pipelines (`<name>.p4info.txt`, `<name>.json`).
    #[arg(long, env = "P4FABRIC_PIPELINE_DIR")]
    pub pipeline_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, env = "P4FABRIC_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// This instance's id in status keys (default: hostname-pid).
    #[arg(long, env = "P4FABRIC_CONTROLLER_ID")]
    pub controller_id: Option<String>,
    /// P4Runtime election id to use when running without HA election.
    #[arg(long, default_value_t = 1)]
    pub election_id: u64,
    /// TTL of the status lease in etcd, seconds.
    #[arg(long, default_value_t = 10)]
    pub status_ttl: u64,
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "p4fabric".into());
    format!("{host}-{}", std::process::id())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let id = args.controller_id.clone().unwrap_or_else(default_id);
    let mut opts = ControllerOptions::new(&id);
    if let Some(d) = &args.pipeline_dir {
        opts.pipeline_dir = d.clone();
    }
    opts.election_id = u128::from(args.election_id);
    let (watch, status) = match &args.config {
        Some(path) => {
            anyhow::ensure!(
                path.exists(),
                "configuration file {} not found",
                path.display()
            );
            tracing::info!(file = %path.display(), "configuration from file (embedded store)");
            let w = ConfigWatch::file(path.clone(), Duration::from_millis(500), Tuning::default());
            (w, None)
        }
        None => {
            let store = args.etcd.connect().await?;
            let me = ControllerStatus::this_process(&id);
            let status = StatusWriter::start(&store, &me, Duration::from_secs(args.status_ttl))
                .await
                .context("cannot write status to etcd")?;
            let w = ConfigWatch::etcd(args.etcd.options(), Tuning::default());
            (w, Some(status))
        }
    };
    let controller = Controller::new(opts, watch.subscribe(), status);
    if let Some(addr) = args.metrics_addr {
        let bound = crate::controller::metrics::serve(addr, controller.metrics())
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
    }
    controller.run(shutdown_signal()).await;
    drop(watch);
    Ok(())
}
