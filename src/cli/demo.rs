//! `p4fabric demo`: a whole fabric on this machine, from one command.
//!
//! With bmv2 (and root): a `LabFabric` of real `simple_switch_grpc`
//! switches and namespace hosts from the example config, a local etcd, the
//! config applied exactly as `p4fabric apply` does, the controller running
//! in-process; once every switch is read back equal to its compiled state,
//! a real ping matrix and the status table. Without bmv2 it says what is
//! missing and runs the SIMULATED demo: the same topology on in-process
//! P4Runtime switches, the same controller, and the forwarding checker
//! walking the entities read back from them — labelled as such
//! everywhere, never passed off as pings.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::apply::ApplyArgs;
use super::EtcdArgs;
use crate::config::document::Document;
use crate::config::etcd::EtcdOptions;
use crate::config::status::{ControllerStatus, StatusWriter};
use crate::config::watch::{ConfigWatch, Tuning};
use crate::config::{Fabric, LagMode};
use crate::controller::{Controller, ControllerOptions, SharedMetrics};
use crate::p4rt::Pipeline;
use crate::testkit::lab::reach::{self, ProbeResult};
use crate::testkit::lab::readback::{self, Convergence};
use crate::testkit::lab::{LabFabric, LabOptions};
use crate::testkit::sim::SimSwitch;
use crate::testkit::EtcdServer;
use crate::topo::{ObservedState, Topology};

/// Printed with everything the simulated demo shows.
pub const SIMULATED: &str =
    "SIMULATED (no bmv2): forwarding checked on installed entries, no packets sent";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The fabric to build.
    #[arg(long = "config", short = 'f', default_value = "examples/fabric.yaml")]
    pub config: PathBuf,
    /// Exit after the matrix (non-zero if anything that should work
    /// failed) instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Run the simulated demo even where bmv2 is installed.
    #[arg(long)]
    pub simulate: bool,
    /// Start switches on free ports instead of the config's addresses.
    #[arg(long)]
    pub free_ports: bool,
    /// Directory of compiled pipelines (default: the checked-in p4/build).
    #[arg(long, env = "P4FABRIC_PIPELINE_DIR")]
    pub pipeline_dir: Option<PathBuf>,
    /// Seconds to wait for every switch to converge.
    #[arg(long, default_value_t = 90)]
    pub timeout: u64,
    /// Host namespaces are named <prefix><host>.
    #[arg(long, default_value = "p4f-")]
    pub ns_prefix: String,
}

impl DemoArgs {
    /// Defaults, as the command line has them.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        DemoArgs {
            config: config.into(),
            once: false,
            simulate: false,
            free_ports: false,
            pipeline_dir: None,
            timeout: 90,
            ns_prefix: "p4f-".into(),
        }
    }
}

/// What the demo found.
#[derive(Debug)]
pub struct DemoReport {
    pub simulated: bool,
    /// Why the real (bmv2) demo did not run, if it did not.
    pub why_simulated: Option<String>,
    pub converged: bool,
    /// Switches not equal to their desired state, and why.
    pub pending: BTreeMap<String, String>,
    pub results: Vec<ProbeResult>,
}

impl DemoReport {
    /// Converged, at least one probe, and every probe passed.
    pub fn ok(&self) -> bool {
        self.converged && !self.results.is_empty() && self.results.iter().all(|(_, r)| r.is_ok())
    }
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let report = demo(args, super::run::shutdown_signal()).await?;
    if args.once && !report.ok() {
        bail!(
            "demo failed: {} switch(es) not converged, {} of {} probes failed",
            report.pending.len(),
            reach::failures(&report.results).len(),
            report.results.len()
        );
    }
    Ok(())
}

/// The switches the controller programs: real bmv2 or simulated switches.
enum Switches {
    Real(Box<LabFabric>),
    Simulated(#[allow(dead_code)] Vec<SimSwitch>),
}

/// Runs the demo until `stop` resolves (or once, with `args.once`), then
/// tears everything down.
pub async fn demo(args: &DemoArgs, stop: impl Future<Output = ()>) -> anyhow::Result<DemoReport> {
    tokio::pin!(stop);
    let doc = Document::read(&args.config)?;
    super::validate::report(&doc)?;
    let mut fabric = doc.fabric.clone().context("configuration has no fabric")?;
    let pipeline_dir = args
        .pipeline_dir
        .clone()
        .unwrap_or_else(Pipeline::default_dir);
    let why_simulated = if args.simulate {
        Some("--simulate given".to_string())
    } else {
        crate::testkit::lab::bmv2_missing(&pipeline_dir, &fabric)
    };
    let simulated = why_simulated.is_some();
    if let Some(why) = &why_simulated {
        println!("bmv2 demo not possible here: {why}");
    }
    // Both demos need the P4Info: the simulated switches check every write
    // against it.
    let pipelines = match readback::load_pipelines(&pipeline_dir, &fabric) {
        Ok(p) => p,
        Err(e) if simulated => {
            // Simulated switches only need a P4Info to check writes against:
            // the contract's, transcribed from p4/fabric.p4.
            println!("note: {e:#}; the simulated switches check writes against the contract P4Info (src/compile/contract.rs)");
            let (p, _) = crate::compile::contract::simulation_pipeline(&pipeline_dir);
            std::iter::once(("fabric".to_string(), std::sync::Arc::new(p))).collect()
        }
        Err(e) => return Err(e.context("the bmv2 demo needs the compiled pipeline")),
    };
    if simulated {
        println!("=> {SIMULATED}");
    }
    // On bmv2 the lab's user-space bond is the server's LACP partner
    // (lab::lacp_partner). A simulated switch passes no frames: there,
    // LACP LAGs run as static bonds, and say so.
    for (name, lag) in fabric.lags.iter_mut() {
        if lag.protocol == LagMode::Lacp && simulated {
            lag.protocol = LagMode::Static;
            println!(
                "note: LAG {name} runs as a static bond on simulated switches (no frames, no LACP partner)"
            );
        }
    }

    // Switches first: their real addresses go into the config.
    let started = Instant::now();
    let switches = if simulated {
        let mut targets = Vec::new();
        for (name, sw) in fabric.switches.iter_mut() {
            let addr = if args.free_ports {
                "127.0.0.1:0".parse()?
            } else {
                sw.address
                    .parse()
                    .with_context(|| format!("{name}: address {} is not IP:PORT", sw.address))?
            };
            let t = SimSwitch::start_on(sw.device_id, addr)
                .await
                .with_context(|| format!("{name}: cannot listen on {addr} (busy?)"))?;
            sw.address = t.addr().to_string();
            targets.push(t);
        }
        println!(
            "[{SIMULATED}] {} in-process P4Runtime switches started",
            targets.len()
        );
        Switches::Simulated(targets)
    } else {
        let opts = LabOptions {
            free_ports: args.free_ports,
            host_ns_prefix: args.ns_prefix.clone(),
            json: None,
            ..LabOptions::default()
        };
        let lab = LabFabric::start(&fabric, &opts)?;
        lab.wire_config(&mut fabric);
        println!(
            "bmv2 fabric up: {} switches, {} hosts (namespaces {}<host>) in {:.1}s",
            fabric.switches.len(),
            fabric.hosts.len(),
            args.ns_prefix,
            started.elapsed().as_secs_f64()
        );
        Switches::Real(Box::new(lab))
    };

    // The configuration the controller sees: the file, or a copy with the
    // addresses the switches really got.
    let tmp = tempfile::tempdir()?;
    let config = if Some(&fabric) == doc.fabric.as_ref() {
        args.config.clone()
    } else {
        let p = tmp.path().join("fabric.yaml");
        std::fs::write(&p, serde_yaml::to_string(&fabric)?)?;
        p
    };

    let etcd = match EtcdServer::binary() {
        Some(_) => Some(EtcdServer::start().await.map_err(anyhow::Error::msg)?),
        None => {
            println!("etcd not installed (apt-get install etcd-server): using the file store");
            None
        }
    };
    let (watch, status) = match &etcd {
        Some(e) => {
            println!("etcd at {}; applying {}", e.endpoint(), config.display());
            super::apply::run(&ApplyArgs {
                file: config.clone(),
                prune: true,
                dry_run: false,
                etcd: EtcdArgs::plain(&e.endpoint()),
            })
            .await?;
            let store = EtcdOptions::new([e.endpoint()]).connect().await?;
            let status = StatusWriter::start(
                &store,
                &ControllerStatus::this_process("demo"),
                Duration::from_secs(10),
            )
            .await?;
            let watch = ConfigWatch::etcd(EtcdOptions::new([e.endpoint()]), Tuning::default());
            (watch, Some(Arc::new(status)))
        }
        None => (
            ConfigWatch::file(
                config.clone(),
                Duration::from_millis(500),
                Tuning::default(),
            ),
            None,
        ),
    };

    let mut opts = ControllerOptions::new("demo");
    opts.pipeline_dir = pipeline_dir.clone();
    opts.simulated = simulated;
    let controller = Controller::new(opts, watch.subscribe(), status.clone());
    let metrics = controller.metrics();
    let (stop_ctl, ctl_stopped) = tokio::sync::oneshot::channel::<()>();
    let ctl = tokio::spawn(controller.run(async move {
        let _ = ctl_stopped.await;
    }));

    // Converged = every switch read back equals the configuration compiled
    // with what the controller reports it observed (discovered links, the
    // flood tree, learned hosts: `status/` in etcd). The file store has no
    // status: there, the configuration alone with every link up.
    let timeout = Duration::from_secs(args.timeout);
    let converge = async {
        match &etcd {
            Some(e) => {
                crate::testkit::lab::run::wait_converged_with_status(
                    &fabric,
                    &pipelines,
                    &e.endpoint(),
                    timeout,
                )
                .await
            }
            None => {
                let want = readback::expected(&fabric);
                readback::wait_converged(&fabric, &pipelines, &want, timeout).await
            }
        }
    };
    let conv = tokio::select! {
        c = converge => Some(c),
        _ = &mut stop => None,
    };
    let report = match conv {
        None => None,
        Some(conv) => {
            let report = show(
                &fabric,
                &switches,
                &conv,
                &metrics,
                simulated,
                why_simulated,
                started,
            );
            if !args.once {
                hints(&fabric, &switches, &args.ns_prefix, etcd.as_ref());
                (&mut stop).await;
            }
            Some(report)
        }
    };

    println!("tearing down");
    let _ = stop_ctl.send(());
    let _ = ctl.await;
    drop(watch);
    if let Some(s) = status.and_then(|s| Arc::try_unwrap(s).ok()) {
        let _ = s.shutdown().await;
    }
    drop(switches);
    drop(etcd);
    report.context("interrupted before the fabric converged")
}

/// Prints the matrices and the status table; returns the report.
fn show(
    fabric: &Fabric,
    switches: &Switches,
    conv: &Convergence,
    metrics: &SharedMetrics,
    simulated: bool,
    why_simulated: Option<String>,
    started: Instant,
) -> DemoReport {
    let label = |s: &str| {
        if simulated {
            format!("[{SIMULATED}] {s}")
        } else {
            s.to_string()
        }
    };
    if conv.converged() {
        println!(
            "{}",
            label(&format!(
                "every switch converged (read back = compiled) after {:.1}s",
                started.elapsed().as_secs_f64()
            ))
        );
    } else {
        for (sw, why) in &conv.pending {
            println!("{}", label(&format!("NOT converged: {sw}: {why}")));
        }
    }
    let probes = reach::probes(fabric);
    let results = match switches {
        Switches::Real(lab) => {
            println!("ping matrix (ip netns exec <host> ping -c1 -W1 <address>):");
            lab.ping_all(&probes)
        }
        Switches::Simulated(_) => {
            println!(
                "{}",
                label("forwarding matrix (checker on read-back entities):")
            );
            let topo = Topology::build(fabric, &ObservedState::default(), None);
            reach::check_all(&conv.installed, &topo, fabric, &probes)
        }
    };
    for v6 in [false, true] {
        print!("{}", reach::render(&results, v6));
    }
    let failed = reach::failures(&results);
    for f in &failed {
        println!("{}", label(&format!("FAILED {f}")));
    }
    println!(
        "{}",
        label(&format!(
            "{} of {} probes ok",
            results.len() - failed.len(),
            results.len()
        ))
    );
    print!("{}", status_table(fabric, conv, metrics, simulated));
    DemoReport {
        simulated,
        why_simulated,
        converged: conv.converged(),
        pending: conv.pending.clone(),
        results,
    }
}

/// SWITCH SESSION ENTITIES CONVERGED — entities and convergence as read
/// back from the switch, the session as the controller's agent reports it.
pub fn status_table(
    fabric: &Fabric,
    conv: &Convergence,
    metrics: &SharedMetrics,
    simulated: bool,
) -> String {
    let agents = metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .agents
        .clone();
    let mut s = String::new();
    if simulated {
        s.push_str(&format!("[{SIMULATED}]\n"));
    }
    let w = fabric
        .switches
        .keys()
        .map(|n| n.len())
        .max()
        .unwrap_or(6)
        .max(6);
    s.push_str(&format!(
        "{:w$}  {:10}  {:>8}  CONVERGED\n",
        "SWITCH", "SESSION", "ENTITIES"
    ));
    for name in fabric.switches.keys() {
        let session = agents.get(name).map_or("-", |a| a.state.as_str());
        let entities = conv
            .installed
            .get(name)
            .map_or("?".to_string(), |e| e.len().to_string());
        let converged = if conv.pending.contains_key(name) {
            "no"
        } else {
            "yes"
        };
        s.push_str(&format!(
            "{name:w$}  {session:10}  {entities:>8}  {converged}\n"
        ));
    }
    s
}

fn hints(fabric: &Fabric, switches: &Switches, prefix: &str, etcd: Option<&EtcdServer>) {
    if let Switches::Real(_) = switches {
        let mut hosts = fabric.hosts.iter().filter(|(_, h)| !h.ips.is_empty());
        if let (Some((a, _)), Some((_, b))) = (hosts.next(), hosts.next_back()) {
            println!(
                "try: ip netns exec {prefix}{a} ping {}",
                b.ips.first().map(|i| i.to_string()).unwrap_or_default()
            );
        }
    } else {
        println!("[{SIMULATED}] switches at:");
        for (n, sw) in &fabric.switches {
            println!("  {n} {}", sw.address);
        }
    }
    if let Some(e) = etcd {
        println!("try: p4fabric status --etcd {}", e.endpoint());
    }
    println!("running; Ctrl-C tears everything down");
}
