//! `p4fabric bench scale`: a large fabric of simulated switches (in a child
//! process), the real controller: time to converge from cold, controller
//! CPU time and peak RSS, and the time one change takes at that scale.
//! Configuration reaches the controller as it does from etcd: key changes
//! through the config watch's applier (`config::watch::spawn_applier`:
//! parse, apply, check, coalesce), so a binding's figure includes that
//! side; only etcd itself is left out.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::{mpsc, oneshot, watch};

use super::sim::SimSwitches;
use super::{cpu_time, machine, peak_rss_mib, percentiles};
use crate::compile::{sample, HostEntry};
use crate::config::keys::encode;
use crate::config::watch::{spawn_applier, ConfigUpdate, Feed, Tuning};
use crate::config::{Attachment, Change, Fabric, Host, PortRef};
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
    /// Bindings (`hosts/<id>`) put at once, then deleted at once, then
    /// put again in `--bulk-updates` updates (0: skip).
    #[arg(long, default_value_t = 1000)]
    pub bulk: usize,
    /// The updates the last bulk put comes in, sent back to back (the
    /// configurations a watch publishes for a burst of transactions).
    #[arg(long, default_value_t = 10)]
    pub bulk_updates: usize,
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

/// The `i`-th extra binding: a port of some leaf, the port's first VLAN,
/// an address of its subnet (above the learned hosts' and the learned
/// bench hosts' ones), as Neutron binds a VM port.
fn extra_host(f: &Fabric, i: usize) -> Option<(String, Host)> {
    let leaves = f.switches.len().saturating_sub(4).max(1);
    let leaf = sample::leaf_name(1 + i % leaves);
    let port = PortRef::new(leaf, 10 + (i / leaves % 24) as u32);
    let vlan = *f.ports.get(&port)?.vlans.member_vlans().first()?;
    let net = f.vlans.get(&vlan)?.ipv4_gateway?;
    let [a, b, ..] = net.network().octets();
    let ip = std::net::Ipv4Addr::new(a, b, 100 + (i >> 8 & 0x3f) as u8, (i & 0xff) as u8);
    let mac = MacAddr([0x02, 0xbe, 0x0c, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    Some((
        format!("bench-{i}"),
        Host {
            mac,
            vlan,
            ips: vec![ip.into()],
            attachment: Attachment::Port(port),
        },
    ))
}

/// Feeds key changes to the config watch's applier, as etcd's watch does.
struct Feeder {
    tx: mpsc::UnboundedSender<Feed>,
    revision: i64,
}

impl Feeder {
    fn send(&mut self, changes: Vec<Change>) -> anyhow::Result<()> {
        self.revision += 1;
        self.tx
            .send(Feed::Changes {
                revision: self.revision,
                changes,
            })
            .map_err(|_| anyhow::anyhow!("the config applier stopped"))
    }
}

/// `hosts/<name>` puts of these hosts, as Neutron's driver writes them.
fn host_puts<'a>(
    hosts: impl IntoIterator<Item = &'a (String, Host)>,
) -> anyhow::Result<Vec<Change>> {
    hosts
        .into_iter()
        .map(|(name, h)| Ok(Change::put(format!("hosts/{name}"), serde_json::to_vec(h)?)))
        .collect()
}

/// The sample fabric leaves fabric ports to discovery; the validator wants
/// every configured link end among them.
fn link_ends_as_fabric_ports(fabric: &mut Fabric) {
    let ends: Vec<PortRef> = fabric
        .links
        .values()
        .flat_map(|l| [l.a.clone(), l.b.clone()])
        .collect();
    for end in ends {
        if let Some(sw) = fabric.switches.get_mut(&end.switch) {
            if !sw.fabric_ports.contains(&end.port) {
                sw.fabric_ports.push(end.port);
            }
        }
    }
}

/// Waits until every agent is converged and holds `want` entities.
async fn holds(
    metrics: &SharedMetrics,
    want: &std::collections::BTreeMap<String, usize>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let m = metrics.lock().unwrap_or_else(|p| p.into_inner());
            let done = want.iter().all(|(n, count)| {
                m.agents
                    .get(n)
                    .is_some_and(|a| a.converged() && a.installed == *count)
            });
            if done {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for the bulk put to be installed");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A `hosts/<id>` put through the configuration path at this scale:
/// parsing, applying and validating one key (`ConfigState::apply`, what
/// the config watch does before the controller sees a change). Prints
/// p50/p99/max over `n` puts.
fn config_state_cost(fabric: &Fabric, n: usize) {
    let mut fabric = fabric.clone();
    link_ends_as_fabric_ports(&mut fabric);
    let fabric = &fabric;
    let mut state = crate::config::ConfigState::new();
    let t = Instant::now();
    let (_, errors) = state.reset(crate::config::keys::encode(fabric));
    let loaded = t.elapsed();
    if let Some(e) = errors.first() {
        println!("config state: {} keys rejected, e.g. {e}", errors.len());
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let Some((name, host)) = extra_host(fabric, 500_000 + i) else {
            break;
        };
        let Ok(value) = serde_json::to_vec(&host) else {
            break;
        };
        let t = Instant::now();
        state.apply([crate::config::Change::put(format!("hosts/{name}"), value)]);
        samples.push(t.elapsed());
    }
    // An edge port put (its value unchanged: the check is what is timed):
    // not a host or route, so the whole configuration is checked.
    let mut whole = Vec::with_capacity(n);
    if let Some((port, edge)) = fabric.ports.iter().next() {
        if let Ok(value) = serde_json::to_vec(edge) {
            for _ in 0..n {
                let t = Instant::now();
                state.apply([crate::config::Change::put(
                    format!("ports/{port}"),
                    value.clone(),
                )]);
                whole.push(t.elapsed());
            }
        }
    }
    let (p50, p99, max) = percentiles(&mut samples);
    let (w50, w99, wmax) = percentiles(&mut whole);
    println!(
        "config state (the watch's side, before the controller): all keys loaded and validated in {:.0} ms ({} rejected); one hosts/<id> put applied and checked (validate_changed: the host against the others) ({} times): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        loaded.as_secs_f64() * 1000.0,
        errors.len(),
        samples.len()
    );
    println!(
        "config state: one ports/<port> put applied and the whole configuration checked ({} times): p50 {w50:.1} ms, p99 {w99:.1} ms, max {wmax:.1} ms",
        whole.len()
    );
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
    link_ends_as_fabric_ports(&mut fabric);
    let (feed_tx, feed_rx) = mpsc::unbounded_channel();
    feed_tx
        .send(Feed::Reset {
            revision: 1,
            kvs: encode(&fabric),
        })
        .map_err(|_| anyhow::anyhow!("the config applier stopped"))?;
    let mut feeder = Feeder {
        tx: feed_tx,
        revision: 1,
    };
    let (mut rx, _applier) = spawn_applier(feed_rx, Tuning::default());
    rx.wait_for(|u| u.revision >= 1).await?;
    if let Some(e) = rx.borrow().errors.first() {
        bail!("the sample configuration has rejected keys, e.g. {e}");
    }
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
        .then(|| (opts.clone(), hosts.clone(), rx.clone()));
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
        let Some(binding) = extra_host(&fabric, 100_000 + i) else {
            break;
        };
        let put = host_puts([&binding])?;
        fabric.hosts.insert(binding.0, binding.1);
        // Well apart, as single bindings come: each is applied at once.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let t = Instant::now();
        feeder.send(put)?;
        generation = converged(&metrics, n, generation, timeout).await?;
        samples.push(t.elapsed());
    }
    let (p50, p99, max) = percentiles(&mut samples);
    println!(
        "one binding (hosts/<id>, an address, on a port) put ({} times; through the config watch's applier, then incremental update_config: fdb and host route on every leaf): every switch converged in p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        samples.len()
    );
    if args.bulk > 0 {
        let base = fabric.clone();
        let bindings: Vec<(String, Host)> = (0..args.bulk)
            .filter_map(|i| extra_host(&base, 200_000 + i))
            .collect();
        let mut all = base.clone();
        all.hosts.extend(bindings.iter().cloned());
        let puts = host_puts(&bindings)?;
        let deletes: Vec<Change> = bindings
            .iter()
            .map(|(name, _)| Change::delete(format!("hosts/{name}")))
            .collect();
        let t = Instant::now();
        feeder.send(puts)?;
        generation = converged(&metrics, n, generation, timeout).await?;
        let put = t.elapsed();
        let want: std::collections::BTreeMap<String, usize> = metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .agents
            .iter()
            .map(|(name, a)| (name.clone(), a.installed))
            .collect();
        let t = Instant::now();
        feeder.send(deletes)?;
        generation = converged(&metrics, n, generation, timeout).await?;
        let deleted = t.elapsed();
        // The same bindings in a few updates, back to back.
        let per = bindings.len().div_ceil(args.bulk_updates.max(1)).max(1);
        let chunks = bindings
            .chunks(per)
            .map(host_puts)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let t = Instant::now();
        for chunk in chunks {
            feeder.send(chunk)?;
            tokio::task::yield_now().await;
        }
        holds(&metrics, &want, timeout).await?;
        let in_updates = t.elapsed();
        generation = converged(&metrics, n, generation, timeout).await?;
        println!(
            "{} bindings put in one update (one transaction): every switch converged in {:.1} ms; deleted in one update: {:.1} ms; put in {} updates sent back to back: {:.1} ms",
            bindings.len(),
            put.as_secs_f64() * 1000.0,
            deleted.as_secs_f64() * 1000.0,
            bindings.len().div_ceil(per),
            in_updates.as_secs_f64() * 1000.0
        );
        fabric = all;
    }
    let mut samples = Vec::with_capacity(args.changes);
    for i in 0..args.changes {
        let Some((_, host)) = extra_host(&fabric, 300_000 + i) else {
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
    config_state_cost(&fabric, args.changes.min(20));
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
