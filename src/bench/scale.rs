//! `p4fabric bench scale`: a large fabric of simulated switches (in a child
//! process), the real controller: time to converge from cold, controller
//! CPU time and peak RSS, and the time one change takes at that scale.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::{oneshot, watch};

use super::sim::SimSwitches;
use super::{cpu_time, machine, peak_rss_mib, percentiles};
use crate::compile::{sample, HostEntry};
use crate::config::watch::ConfigUpdate;
use crate::config::{Attachment, Fabric, Host, PortRef};
use crate::controller::{Controller, ControllerOptions, SharedMetrics};
use crate::net::MacAddr;

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    #[arg(long, default_value_t = 4)]
    pub spines: usize,
    #[arg(long, default_value_t = 60)]
    pub leaves: usize,
    #[arg(long, default_value_t = 10_000)]
    pub hosts: usize,
    #[arg(long, default_value_t = 100_000)]
    pub routes: usize,
    /// Single-host changes to time after convergence.
    #[arg(long, default_value_t = 20)]
    pub changes: usize,
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    #[arg(long)]
    pub pipeline_dir: Option<std::path::PathBuf>,
    /// Multiply every table and action-profile size of the P4Info the
    /// simulated switches enforce (the compiled bmv2 program holds 16k
    /// IPv4 and 8k IPv6 routes: 100k routes need a bigger switch).
    #[arg(long, default_value_t = 1)]
    pub table_scale: u64,
    /// HTTP/2 keepalive timeout of the controller's switch connections
    /// (the daemon's is 5 s; the simulated switches share two cores).
    #[arg(long, default_value_t = 5)]
    pub keepalive_secs: u64,
    /// Then stop the controller and start a new one against the full
    /// switches (a controller restart or failover at scale): time until
    /// every switch is confirmed, the writes it made, its peak RSS.
    #[arg(long)]
    pub restart: bool,
}

/// Waits until every agent holds a desired state newer than `after`.
async fn converged(
    metrics: &SharedMetrics,
    switches: usize,
    after: u64,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let m = metrics.lock().unwrap_or_else(|p| p.into_inner());
            let done = m.agents.len() == switches
                && m.agents
                    .values()
                    .all(|a| a.converged() && a.converged_generation.is_some_and(|g| g > after));
            if done {
                return Ok(m
                    .agents
                    .values()
                    .filter_map(|a| a.converged_generation)
                    .max()
                    .unwrap_or(0));
            }
        }
        if Instant::now() > deadline {
            let m = metrics.lock().unwrap_or_else(|p| p.into_inner());
            let ok = m.agents.values().filter(|a| a.converged()).count();
            bail!("timed out: {ok} of {switches} switches converged");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `controller` until the returned sender fires (or is dropped).
fn spawn(controller: Controller) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async {
        let _ = stop_rx.await;
    }));
    (stop_tx, task)
}

/// `f` summed over every agent's status.
fn sum_agents(metrics: &SharedMetrics, f: impl Fn(&crate::agent::AgentStatus) -> u64) -> u64 {
    metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .agents
        .values()
        .map(f)
        .sum()
}

fn extra_host(f: &Fabric, i: usize) -> Option<(String, Host)> {
    let leaf = sample::leaf_name(1 + i % f.switches.len().saturating_sub(4).max(1));
    let port = PortRef::new(leaf, 10);
    let vlan = *f.ports.get(&port)?.vlans.member_vlans().first()?;
    let mac = MacAddr([0x02, 0xbe, 0x0c, 0, (i >> 8) as u8, i as u8]);
    Some((
        format!("bench-{i}"),
        Host {
            mac,
            vlan,
            ips: Vec::new(),
            attachment: Attachment::Port(port),
        },
    ))
}

pub async fn run(args: &ScaleArgs) -> anyhow::Result<()> {
    let (mut fabric, hosts) = sample::large(args.spines, args.leaves, args.hosts, args.routes);
    let n = fabric.switches.len();
    println!(
        "scale: {} spines + {} leaves = {n} simulated switches (in-process P4Runtime switches, in a child process), {} hosts, {} routes; {}",
        args.spines, args.leaves, args.hosts, args.routes, machine()
    );
    let ids: Vec<u64> = fabric.switches.values().map(|s| s.device_id).collect();
    let sims = SimSwitches::spawn(&ids)?;
    for sw in fabric.switches.values_mut() {
        sw.address = sims
            .addresses
            .get(&sw.device_id)
            .context("missing simulated switch")?
            .clone();
    }
    let (tx, rx) = watch::channel(ConfigUpdate {
        revision: 1,
        fabric: Arc::new(fabric.clone()),
        errors: Default::default(),
        generation: 1,
    });
    let mut opts = ControllerOptions::new("bench");
    opts.status_interval = Duration::from_millis(2);
    opts.simulated = true;
    opts.switch_keepalive_timeout = Duration::from_secs(args.keepalive_secs);
    println!("switch keepalive timeout {} s", args.keepalive_secs);
    if let Some(d) = &args.pipeline_dir {
        opts.pipeline_dir = d.clone();
    }
    let _scaled = if args.table_scale > 1 {
        let tmp = super::scaled_pipeline(&opts.pipeline_dir, args.table_scale)?;
        opts.pipeline_dir = tmp.path().to_path_buf();
        println!(
            "table sizes x{} (P4Info pushed to the simulated switches; the compiled bmv2 program holds 16384 IPv4 / 8192 IPv6 routes)",
            args.table_scale
        );
        Some(tmp)
    } else {
        None
    };
    let restart_with = args
        .restart
        .then(|| (opts.clone(), hosts.clone(), tx.subscribe()));
    let mut controller = Controller::new(opts, rx, None).with_hosts(hosts);
    let learn = controller.host_updates();
    let metrics = controller.metrics();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let (stop_tx, task) = spawn(controller);
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut generation = converged(&metrics, n, 0, timeout).await?;
    let cold = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let entities = sum_agents(&metrics, |a| a.installed as u64);
    println!(
        "cold start: converged in {:.2} s; {entities} entities on {n} switches ({:.0} entities/s); controller CPU {:.2} s; peak RSS {:.0} MiB; load average {}",
        cold.as_secs_f64(),
        entities as f64 / cold.as_secs_f64(),
        cpu.as_secs_f64(),
        peak_rss_mib(),
        super::load_average()
    );
    let mut samples = Vec::with_capacity(args.changes);
    for i in 0..args.changes {
        let Some((name, host)) = extra_host(&fabric, i) else {
            break;
        };
        fabric.hosts.insert(name, host);
        let t = Instant::now();
        tx.send_replace(ConfigUpdate {
            revision: 2 + i as i64,
            fabric: Arc::new(fabric.clone()),
            errors: Default::default(),
            generation: 2 + i as u64,
        });
        generation = converged(&metrics, n, generation, timeout).await?;
        samples.push(t.elapsed());
    }
    let (p50, p99, max) = percentiles(&mut samples);
    println!(
        "one static host added ({} times; a config change: full compile): every switch converged in p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        samples.len()
    );
    let mut samples = Vec::with_capacity(args.changes);
    for i in 0..args.changes {
        let Some((_, host)) = extra_host(&fabric, 1000 + i) else {
            break;
        };
        // An address in its VLAN's subnet (a restart recovers only those).
        let Some(net) = fabric.vlans.get(&host.vlan).and_then(|v| v.ipv4_gateway) else {
            break;
        };
        let [a, b, ..] = net.network().octets();
        let entry = HostEntry {
            vlan: host.vlan,
            mac: host.mac,
            ips: vec![std::net::Ipv4Addr::new(a, b, 200 + (i >> 8) as u8, i as u8).into()],
            attachment: host.attachment,
            learned: true,
        };
        let t = Instant::now();
        learn.send((entry.key(), Some(entry))).await?;
        generation = converged(&metrics, n, generation, timeout).await?;
        samples.push(t.elapsed());
    }
    let (p50, p99, max) = percentiles(&mut samples);
    println!(
        "one learned host with an address ({} times; incremental update_host, host route on every leaf): every switch converged in p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        samples.len()
    );
    let cpu = cpu_time() - cpu0;
    println!(
        "peak RSS after changes: {:.0} MiB; controller CPU in all {:.2} s; load average {}",
        peak_rss_mib(),
        cpu.as_secs_f64(),
        super::load_average()
    );
    let _ = stop_tx.send(());
    let _ = task.await;
    if let Some((opts, hosts, rx)) = restart_with {
        restart(opts, hosts, rx, n, timeout).await?;
    }
    drop(sims);
    Ok(())
}

/// A new controller against switches that hold everything already: what a
/// restart or an HA failover at this scale costs.
async fn restart(
    opts: ControllerOptions,
    hosts: crate::compile::Hosts,
    rx: watch::Receiver<ConfigUpdate>,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    // The peak from here on (Linux: "5" resets VmHWM to the current RSS).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let controller = Controller::new(opts, rx, None).with_hosts(hosts);
    let metrics = controller.metrics();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let (stop_tx, task) = spawn(controller);
    converged(&metrics, n, 0, timeout).await?;
    let took = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let written = sum_agents(&metrics, |a| a.counters.updates_written);
    println!(
        "controller restart: every switch read back and confirmed in {:.2} s; {written} updates written; controller CPU {:.2} s; peak RSS {}; load average {}",
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        if reset {
            format!("{:.0} MiB (of the new controller)", peak_rss_mib())
        } else {
            format!("{:.0} MiB (of the whole run: VmHWM not reset)", peak_rss_mib())
        },
        super::load_average()
    );
    let _ = stop_tx.send(());
    let _ = task.await;
    Ok(())
}
