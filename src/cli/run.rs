//! `p4fabric run`: the controller daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::EtcdArgs;
use crate::config::status::{ControllerStatus, StatusWriter};
use crate::config::watch::{ConfigWatch, Tuning};
use crate::controller::{Controller, ControllerOptions};
use crate::ha::{self, HaOptions};

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
    /// P4Runtime election id with `--config` (with etcd it comes from the
    /// leader election).
    #[arg(long, default_value_t = 1)]
    pub election_id: u64,
    /// Leadership lease TTL in seconds: how long a dead leader holds on
    /// when its standbys cannot reach its liveness port.
    #[arg(long, default_value_t = 3)]
    pub lease_ttl: u64,
    /// Address of this instance's liveness port, which standbys watch to
    /// take over within milliseconds of the leader's death (port 0: any
    /// free port). With instances on several hosts, give an address the
    /// other hosts reach; `off`: standbys wait a lease TTL.
    #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_liveness)]
    pub ha_listen: Liveness,
    /// TTL of the status lease in etcd, seconds.
    #[arg(long, default_value_t = 10)]
    pub status_ttl: u64,
}

/// `--ha-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness(pub Option<SocketAddr>);

fn parse_liveness(s: &str) -> Result<Liveness, String> {
    if s == "off" {
        return Ok(Liveness(None));
    }
    s.parse()
        .map(|a| Liveness(Some(a)))
        .map_err(|e| format!("{s:?}: expected host:port or off ({e})"))
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
    let metrics = crate::controller::SharedMetrics::default();
    if let Some(addr) = args.metrics_addr {
        let bound = crate::controller::metrics::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
    }
    if let Some(path) = &args.config {
        // The embedded file store: one instance, no election.
        anyhow::ensure!(
            path.exists(),
            "configuration file {} not found",
            path.display()
        );
        tracing::info!(file = %path.display(), "configuration from file (embedded store)");
        opts.election_id = u128::from(args.election_id);
        let watch = ConfigWatch::file(path.clone(), Duration::from_millis(500), Tuning::default());
        let controller = Controller::new(opts, watch.subscribe(), None).with_metrics(metrics);
        controller.run(shutdown_signal()).await;
        return Ok(());
    }

    // etcd: every instance keeps its configuration model warm and
    // campaigns; the leader programs the switches with an election id
    // derived from its etcd leadership (see src/ha).
    let store = args.etcd.connect().await?;
    let me = ControllerStatus::this_process(&id);
    let status = StatusWriter::start(&store, &me, Duration::from_secs(args.status_ttl))
        .await
        .context("cannot write status to etcd")?;
    let status = Arc::new(status);
    let watch = ConfigWatch::etcd(args.etcd.options(), Tuning::default());
    let mut ha_opts = HaOptions::new(store.prefix(), &id);
    ha_opts.ttl = Duration::from_secs(args.lease_ttl.max(1));
    ha_opts.liveness = args.ha_listen.0;
    lead_while_elected(
        &store,
        watch.subscribe(),
        &me,
        opts,
        ha_opts,
        status.clone(),
        metrics.clone(),
        shutdown_signal(),
    )
    .await;
    drop(watch);
    if let Ok(w) = Arc::try_unwrap(status) {
        let _ = w.shutdown().await;
    }
    Ok(())
}

/// What `p4fabric run` does with etcd once connected: campaigns, and for
/// every term it wins runs a controller on the term's election id (marked
/// leader in `status/controllers/<id>` and the `p4fabric_leader` metric
/// meanwhile); a standby between terms.
/// Until `shutdown` (then it resigns). The test kit runs HA pairs through
/// this too (`testkit::lab::run::LabController::start_ha`).
pub async fn lead_while_elected(
    store: &crate::config::etcd::EtcdStore,
    config: tokio::sync::watch::Receiver<crate::config::watch::ConfigUpdate>,
    me: &ControllerStatus,
    opts: ControllerOptions,
    ha_opts: HaOptions,
    status: Arc<StatusWriter>,
    metrics: crate::controller::SharedMetrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    ha::run(
        store.client(),
        ha_opts,
        shutdown,
        |election_id, mut stop| {
            let mut opts = opts.clone();
            opts.election_id = election_id;
            let controller = Controller::new(opts, config.clone(), Some(status.clone()))
                .with_metrics(metrics.clone());
            let status = status.clone();
            let me = me.clone();
            let metrics = metrics.clone();
            async move {
                let mut leader = me.clone();
                leader.leader = true;
                let _ = status
                    .set(
                        &crate::config::status::paths::controller(&leader.id),
                        &leader,
                    )
                    .await;
                controller
                    .run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                // A standby again: `p4fabric_leader` is 0 until the next
                // term (it stayed 1 after a lost term before).
                metrics
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .controller
                    .leader = false;
                let _ = status
                    .set(&crate::config::status::paths::controller(&me.id), &me)
                    .await;
            }
        },
    )
    .await;
}
