//! A running fabric for the end-to-end tests: a real etcd, a `LabFabric`
//! of bmv2 switches and host namespaces, and controllers (in-process here;
//! tests may also start `p4fabric run` processes against `endpoint()`).
//!
//! Two things the fault and scenario tests need on top of the lab:
//! - `check` / `wait_converged`: read every switch back and compare with a
//!   desired state compiled *here*, from the configuration this harness
//!   applied plus what the controller reports it observed (`status/observed`:
//!   links, ports down, LACP members out of sync) and learned
//!   (`status/hosts/`). The controller's own account of what it wrote is
//!   never used.
//! - `Traffic`: pings running in the host namespaces the whole time, with
//!   per-flow loss and the longest outage (a run of missing replies).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::reach::Probe;
use super::readback::{self, Convergence};
use super::{LabFabric, LabOptions};
use crate::compile;
use crate::config::document::Document;
use crate::config::etcd::{EtcdOptions, EtcdStore};
use crate::config::keys::STATUS_DIR;
use crate::config::watch::{ConfigWatch, Tuning};
use crate::config::Fabric;
use crate::controller::{Controller, ControllerOptions, SharedMetrics};
use crate::p4rt::{Pipeline, SwitchEntities};
use crate::testkit::EtcdServer;
use crate::topo::{LinkId, Topology};

/// Why an end-to-end test cannot run here: bmv2, root, etcd or the compiled
/// pipeline missing.
pub fn missing() -> Option<String> {
    if let Some(why) = super::missing_prerequisite() {
        return Some(why);
    }
    if EtcdServer::binary().is_none() {
        return Some("etcd not found (apt-get install etcd-server)".into());
    }
    let dir = Pipeline::default_dir();
    for f in ["fabric.json", "fabric.p4info.txt"] {
        if !dir.join(f).exists() {
            return Some(format!(
                "{} missing (the compiled pipeline: p4/compile.sh with p4c)",
                dir.join(f).display()
            ));
        }
    }
    None
}

/// Returns early from an end-to-end test, loudly, where `run::missing()`
/// says it cannot run.
#[macro_export]
macro_rules! require_lab_run {
    () => {
        if let Some(why) = $crate::testkit::lab::run::missing() {
            $crate::testkit::lab::say_skipped(module_path!(), &why);
            return;
        }
    };
}

pub struct LabRun {
    // Drop order: the lab (bmv2 + namespaces) before etcd and the files.
    pub lab: LabFabric,
    pub etcd: EtcdServer,
    pub pipelines: BTreeMap<String, Arc<Pipeline>>,
    /// The configuration last applied, with the switches' real addresses.
    fabric: Fabric,
    dir: tempfile::TempDir,
}

impl LabRun {
    /// Starts the switches (free ports) and host namespaces named
    /// `<ns_prefix><host>`, a fresh etcd, and applies `fabric` with the
    /// addresses the switches really got. No controller runs yet.
    pub async fn start(fabric: &Fabric, ns_prefix: &str) -> Result<LabRun> {
        let opts = LabOptions {
            host_ns_prefix: ns_prefix.to_string(),
            ..LabOptions::default()
        };
        Self::start_with(fabric, opts).await
    }

    /// `start` with lab options (the switches always get free ports).
    pub async fn start_with(fabric: &Fabric, mut opts: LabOptions) -> Result<LabRun> {
        opts.free_ports = true;
        opts.json = None;
        let lab = LabFabric::start(fabric, &opts)?;
        let etcd = EtcdServer::start().await.map_err(anyhow::Error::msg)?;
        let pipelines = readback::load_pipelines(&Pipeline::default_dir(), fabric)?;
        let mut run = LabRun {
            lab,
            etcd,
            pipelines,
            fabric: fabric.clone(),
            dir: tempfile::tempdir()?,
        };
        run.apply(fabric).await?;
        Ok(run)
    }

    /// The configuration in force (with real switch addresses).
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    pub fn endpoint(&self) -> String {
        self.etcd.endpoint()
    }

    /// Writes `fabric` to etcd as `p4fabric apply --prune` does; switches
    /// the lab runs get their real addresses.
    pub async fn apply(&mut self, fabric: &Fabric) -> Result<()> {
        let mut fabric = fabric.clone();
        self.lab.wire_config(&mut fabric);
        let file = self.dir.path().join("fabric.yaml");
        std::fs::write(&file, serde_yaml::to_string(&fabric)?)?;
        apply_file(&self.endpoint(), &file).await?;
        self.fabric = fabric;
        Ok(())
    }

    /// Starts a controller in this process, watching this etcd, writing
    /// status there (so `check` sees what it observed).
    pub async fn start_controller(&self, id: &str) -> Result<LabController> {
        LabController::start(&self.endpoint(), id).await
    }

    /// Everything under `status/`, by path relative to it.
    pub async fn status(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        read_status(&self.endpoint()).await
    }

    /// What every switch must hold: compiled here from the configuration
    /// applied and the controller's reported observations and learned hosts.
    pub async fn expected(&self) -> Result<BTreeMap<String, SwitchEntities>> {
        Ok(expected_with(&self.fabric, &self.status().await?))
    }

    /// Reads every switch back once and compares with `expected()`.
    pub async fn check(&self) -> Convergence {
        check_with_status(&self.fabric, &self.pipelines, &self.endpoint()).await
    }

    /// Waits until the controller reports every configured link seen by
    /// discovery (`status/observed`); false on timeout.
    pub async fn wait_discovered(&self, timeout: Duration) -> bool {
        let want: Vec<LinkId> = self
            .fabric
            .links
            .values()
            .map(|l| LinkId::new(l.a.clone(), l.b.clone()))
            .collect();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(status) = self.status().await {
                let (observed, _, _) = observations(&status);
                if want
                    .iter()
                    .all(|l| observed.discovered.get(l) == Some(&true))
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// A stable start: discovery has seen every configured link, then every
    /// switch reads back converged (each within `timeout`).
    pub async fn wait_settled(&self, timeout: Duration) -> Result<Convergence> {
        if !self.wait_discovered(timeout).await {
            anyhow::bail!("discovery did not see every configured link within {timeout:?}");
        }
        let c = self.wait_converged(timeout).await;
        if !c.converged() {
            anyhow::bail!("not converged within {timeout:?}: {:?}", c.pending);
        }
        Ok(c)
    }

    /// `start`, a controller in this process, settled (links discovered,
    /// switches converged), and every host pair that should reach each
    /// other answering: the start of a test that runs traffic.
    pub async fn start_serving(
        fabric: &Fabric,
        ns_prefix: &str,
        controller: &str,
    ) -> Result<(LabRun, LabController, Vec<Probe>)> {
        let run = LabRun::start(fabric, ns_prefix).await?;
        let ctl = run.start_controller(controller).await?;
        run.wait_settled(Duration::from_secs(60)).await?;
        let probes = super::reach::probes(run.fabric());
        let failures = super::reach::failures(&run.lab.ping_all(&probes));
        if !failures.is_empty() {
            anyhow::bail!("before anything happened:\n{}", failures.join("\n"));
        }
        Ok((run, ctl, probes))
    }

    /// Polls `check` until converged or `timeout` (then the last result).
    pub async fn wait_converged(&self, timeout: Duration) -> Convergence {
        wait_converged_with_status(&self.fabric, &self.pipelines, &self.endpoint(), timeout).await
    }

    /// Starts one ping per probe (every `interval`) in the host namespaces.
    pub fn traffic(&self, probes: &[Probe], interval: Duration) -> Result<Traffic> {
        Traffic::start(&self.lab, &self.fabric, probes, interval)
    }
}

/// A host-namespace prefix for one test run: `<base><tag>-`, unique to
/// this process (`lab::unique_tag`), so two engineers running the same test
/// on one machine do not collide.
pub fn ns_prefix(base: &str) -> String {
    format!("{base}{}-", super::unique_tag())
}

/// Everything under `status/` in the etcd at `endpoint`, by path relative
/// to it.
pub async fn read_status(endpoint: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    let store: EtcdStore = EtcdOptions::new([endpoint.to_string()]).connect().await?;
    let snap = store.get_dir(STATUS_DIR).await?;
    Ok(snap
        .kvs
        .iter()
        .filter_map(|(k, v)| {
            let path = k.get(STATUS_DIR.len()..)?.to_string();
            Some((path, serde_json::from_slice(v).ok()?))
        })
        .collect())
}

/// What every switch must hold: `fabric` compiled with the observations
/// and learned hosts a controller reported in `status`.
pub fn expected_with(
    fabric: &Fabric,
    status: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, SwitchEntities> {
    let (observed, tree, hosts) = observations(status);
    let topo = Topology::build(fabric, &observed, tree.as_ref());
    compile::compile(fabric, &topo, &hosts)
}

/// Reads every switch back once and compares with `fabric` compiled with
/// what the controller writing status to `endpoint` observed.
pub async fn check_with_status(
    fabric: &Fabric,
    pipelines: &BTreeMap<String, Arc<Pipeline>>,
    endpoint: &str,
) -> Convergence {
    match read_status(endpoint).await {
        Ok(status) => readback::check(fabric, pipelines, &expected_with(fabric, &status)).await,
        Err(e) => {
            let mut c = Convergence::default();
            c.pending
                .insert("etcd".into(), format!("cannot read status: {e:#}"));
            c
        }
    }
}

/// Polls `check_with_status` until converged or `timeout` (then the last
/// result).
pub async fn wait_converged_with_status(
    fabric: &Fabric,
    pipelines: &BTreeMap<String, Arc<Pipeline>>,
    endpoint: &str,
    timeout: Duration,
) -> Convergence {
    readback::poll_converged(timeout, || check_with_status(fabric, pipelines, endpoint)).await
}

/// Checks the fabric file at `path` and writes it to etcd at `endpoint` as
/// `p4fabric apply --prune` does.
pub async fn apply_file(endpoint: &str, path: &std::path::Path) -> Result<()> {
    let doc = Document::read(path)?;
    if !doc.problems.is_empty() {
        anyhow::bail!("{}: {}", path.display(), doc.problems.join("; "));
    }
    let store = EtcdOptions::new([endpoint.to_string()]).connect().await?;
    crate::config::apply::apply(&store, &doc, true, false).await?;
    Ok(())
}

/// examples/fabric.yaml (the demo topology) as `p4fabric demo` runs it:
/// srv1 on an LACP bond (the lab bond runs the server side of LACP).
pub fn demo_fabric() -> Result<Fabric> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fabric.yaml");
    let doc = Document::read(path.as_ref())?;
    doc.fabric.context("examples/fabric.yaml has no fabric")
}

/// `fabric` with the items of the YAML fragment `extra` (any sections of a
/// fabric file) added, or replacing those of the same name.
pub fn extended(fabric: &Fabric, extra: &str) -> Result<Fabric> {
    let x: Fabric = serde_yaml::from_str(extra).context("fabric fragment")?;
    let mut f = fabric.clone();
    f.switches.extend(x.switches);
    f.links.extend(x.links);
    f.ports.extend(x.ports);
    f.lags.extend(x.lags);
    f.vlans.extend(x.vlans);
    f.routes.extend(x.routes);
    f.hosts.extend(x.hosts);
    Ok(f)
}

/// The compiler's observed-state inputs and learned hosts, from the status
/// a controller wrote (`observed`, `hosts/<vlan>/<mac>`).
pub use crate::controller::observations::from_status as observations;

/// A controller running in this process.
pub struct LabController {
    stop: oneshot::Sender<()>,
    join: JoinHandle<()>,
    pub metrics: SharedMetrics,
    _watch: ConfigWatch,
    _status: Arc<crate::config::status::StatusWriter>,
}

/// What every controller instance here starts from: its configuration
/// watch, a store, its status (10 s lease), its options (status every
/// 200 ms).
struct Parts {
    watch: ConfigWatch,
    store: EtcdStore,
    me: crate::config::status::ControllerStatus,
    status: Arc<crate::config::status::StatusWriter>,
    opts: ControllerOptions,
}

impl Parts {
    async fn new(endpoint: &str, id: &str) -> Result<Parts> {
        let watch = ConfigWatch::etcd(EtcdOptions::new([endpoint.to_string()]), Tuning::default());
        let store = EtcdOptions::new([endpoint.to_string()]).connect().await?;
        let me = crate::config::status::ControllerStatus::this_process(id);
        let status = Arc::new(
            crate::config::status::StatusWriter::start(&store, &me, Duration::from_secs(10))
                .await?,
        );
        let mut opts = ControllerOptions::new(id);
        opts.status_interval = Duration::from_millis(200);
        Ok(Parts {
            watch,
            store,
            me,
            status,
            opts,
        })
    }
}

/// Resolves when a `LabController` is stopped.
type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl LabController {
    pub async fn start(endpoint: &str, id: &str) -> Result<LabController> {
        let p = Parts::new(endpoint, id).await?;
        let c = Controller::new(p.opts, p.watch.subscribe(), Some(p.status.clone()));
        let metrics = c.metrics();
        Ok(Self::spawn(p.watch, p.status, metrics, |stopped| {
            c.run(stopped)
        }))
    }

    /// A controller instance as `p4fabric run` runs one with etcd
    /// (`cli::run::lead_while_elected`): it campaigns and leads (a
    /// controller on the term's election id) or waits as a standby,
    /// watching the leader's liveness port. Start two for an HA pair; the
    /// lease TTL is `p4fabric run`'s default (3 s).
    pub async fn start_ha(endpoint: &str, id: &str) -> Result<LabController> {
        let p = Parts::new(endpoint, id).await?;
        let ha_opts = crate::ha::HaOptions::new(p.store.prefix(), id);
        let metrics = SharedMetrics::default();
        let (store, config, me, opts) = (p.store, p.watch.subscribe(), p.me, p.opts);
        let (status, m) = (p.status.clone(), metrics.clone());
        Ok(Self::spawn(
            p.watch,
            p.status,
            metrics,
            |stopped| async move {
                crate::cli::run::lead_while_elected(
                    &store, config, &me, opts, ha_opts, status, m, stopped,
                )
                .await
            },
        ))
    }

    /// Runs `run(shutdown)` as the instance's task.
    fn spawn<F>(
        watch: ConfigWatch,
        status: Arc<crate::config::status::StatusWriter>,
        metrics: SharedMetrics,
        run: impl FnOnce(Shutdown) -> F,
    ) -> LabController
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        })));
        LabController {
            stop,
            join,
            metrics,
            _watch: watch,
            _status: status,
        }
    }

    /// Does this `start_ha` instance lead now (a term runs)?
    pub fn leading(&self) -> bool {
        let m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.controller.leader
    }

    /// The failure of a process (kill -9) as far as one process can play
    /// it: the controller's task is dropped where it stands — no
    /// resignation, no goodbye to its switches, its liveness port closes,
    /// its status stays until its lease (10 s) runs out. Its agents get
    /// their stop signal as their handles drop (a killed process stops
    /// them at once; a write in flight may still land, and the switches
    /// fence it by the successor's higher election id).
    pub async fn kill(mut self) {
        self.join.abort();
        let _ = (&mut self.join).await;
    }

    /// Graceful stop: switches keep their forwarding state.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.join.await;
        if let Ok(s) = Arc::try_unwrap(self._status) {
            let _ = s.shutdown().await;
        }
    }

    /// Total updates the agents wrote so far.
    pub fn writes(&self) -> u64 {
        let m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.agents.values().map(|a| a.counters.updates_written).sum()
    }

    /// Entities the agents believe their switches hold, in all (as of the
    /// last status publication).
    pub fn entities_installed(&self) -> usize {
        let m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.agents.values().map(|a| a.installed).sum()
    }

    /// What the control protocols handled so far (as of the last status
    /// publication).
    pub fn protocol_counters(&self) -> crate::protocols::Counters {
        let m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.controller.protocols.clone()
    }

    /// Every one of `n` agents holds its latest desired state.
    pub fn agents_converged(&self, n: usize) -> bool {
        let m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.agents.len() == n && m.agents.values().all(|a| a.converged())
    }
}

/// Pings running in host namespaces (one `ping -i interval` per probe).
pub struct Traffic {
    flows: Vec<Flow>,
    interval: Duration,
    /// When the pings started (seconds since the Unix epoch, as `ping -D`).
    started: f64,
}

fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An answered echo: its sequence number and, with `ping -D`, when the
/// reply arrived (seconds since the Unix epoch).
type Reply = (u32, Option<f64>);

struct Flow {
    probe: Probe,
    child: Child,
    reader: std::thread::JoinHandle<(Vec<Reply>, Option<u32>)>,
}

/// One flow's result.
#[derive(Debug, Clone)]
pub struct FlowReport {
    pub probe: Probe,
    /// The ping interval of this flow.
    pub interval: Duration,
    pub sent: u32,
    pub received: u32,
    /// The longest run of consecutive lost echoes, as time.
    pub longest_outage: Duration,
    /// When that run started, from the flow's start (by echo sequence).
    pub outage_started: Option<Duration>,
}

impl FlowReport {
    pub fn lost(&self) -> u32 {
        self.sent.saturating_sub(self.received)
    }
}

impl std::fmt::Display for FlowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} ({}): {}/{} received, longest outage {} ms",
            self.probe.from,
            self.probe.to,
            self.probe.ip,
            self.received,
            self.sent,
            self.longest_outage.as_millis()
        )?;
        match self.outage_started {
            Some(t) if !self.longest_outage.is_zero() => {
                write!(f, " (from {:.2} s)", t.as_secs_f64())
            }
            _ => Ok(()),
        }
    }
}

impl Traffic {
    /// Each ping is sent from the source host's configured address of the
    /// probe's family (`ping -I`): a flow is a pair of addresses. Left to
    /// itself the kernel moves to an address it configured later (SLAAC
    /// from the fabric's router advertisements), and the reply to an
    /// address the fabric has not learned yet is lost once, whatever the
    /// test is about.
    pub fn start(
        lab: &LabFabric,
        fabric: &Fabric,
        probes: &[Probe],
        interval: Duration,
    ) -> Result<Traffic> {
        let mut flows = Vec::new();
        for p in probes {
            let ns = lab
                .host_ns(&p.from)
                .with_context(|| format!("no host {}", p.from))?;
            let source = fabric
                .hosts
                .get(&p.from)
                .and_then(|h| h.ips.iter().find(|ip| ip.is_ipv6() == p.ip.is_ipv6()));
            let mut cmd = Command::new("ip");
            // -D: each reply carries its arrival time, so an outage is
            // placed in time even when ping cannot keep its interval.
            cmd.args(["netns", "exec", &ns.name, "ping", "-n", "-D", "-W"])
                .arg(REPLY_TIMEOUT.as_secs().to_string())
                .arg("-i")
                .arg(format!("{:.3}", interval.as_secs_f64()));
            if let Some(src) = source {
                cmd.arg("-I").arg(src.to_string());
            }
            let mut child = cmd
                .arg(p.ip.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting ping")?;
            let out = child.stdout.take().context("ping stdout")?;
            let reader = std::thread::spawn(move || read_ping(out));
            flows.push(Flow {
                probe: p.clone(),
                child,
                reader,
            });
        }
        Ok(Traffic {
            flows,
            interval,
            started: unix_secs(std::time::SystemTime::now()),
        })
    }

    /// Stops every ping (SIGINT, so it prints its summary) and reports.
    pub fn stop(self) -> Vec<FlowReport> {
        for f in &self.flows {
            // SAFETY: kill(2) on a child we started and have not reaped.
            unsafe {
                libc::kill(f.child.id() as libc::pid_t, libc::SIGINT);
            }
        }
        let mut out = Vec::new();
        for mut f in self.flows {
            let (replies, transmitted) = f.reader.join().unwrap_or_default();
            let _ = f.child.wait();
            out.push(report(
                f.probe,
                &replies,
                transmitted,
                self.interval,
                Some(self.started),
            ));
        }
        out
    }
}

/// The echoes answered, and the transmitted count from the summary line.
fn read_ping(out: impl std::io::Read) -> (Vec<Reply>, Option<u32>) {
    let mut replies = Vec::new();
    let mut transmitted = None;
    for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
        if let Some(seq) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("icmp_seq="))
            .and_then(|s| s.parse().ok())
        {
            if line.contains("bytes from") {
                let at = line
                    .strip_prefix('[')
                    .and_then(|l| l.split_once(']'))
                    .and_then(|(t, _)| t.parse().ok());
                replies.push((seq, at));
            }
        } else if let Some((n, _)) = line.split_once(" packets transmitted") {
            transmitted = n.trim().parse().ok();
        }
    }
    (replies, transmitted)
}

/// One flow's figures from its answered echoes. `started`: when the pings
/// started (Unix seconds); with reply times the outage is placed by the
/// last reply before it, else by sequence number x interval (which runs
/// late when ping cannot keep its interval on a loaded machine).
fn report(
    probe: Probe,
    replies: &[Reply],
    transmitted: Option<u32>,
    interval: Duration,
    started: Option<f64>,
) -> FlowReport {
    let mut replies = replies.to_vec();
    replies.sort_unstable_by_key(|r| r.0);
    replies.dedup_by_key(|r| r.0);
    // Echoes sent within the reply timeout (`-W 1`) before ping was
    // stopped may still have been in flight: they count as sent only if a
    // later one was answered. (At a 20 ms interval and a loaded machine the
    // round trip through three bmv2 switches can exceed the interval.)
    let in_flight = (REPLY_TIMEOUT.as_micros() / interval.as_micros().max(1)).max(1) as u32;
    let sent = transmitted
        .unwrap_or(0)
        .saturating_sub(in_flight)
        .max(replies.last().map_or(0, |r| r.0));
    // Missing runs: before the first answer, between answers, after the
    // last one (ping numbers echoes from 1).
    let mut longest = 0u32;
    let mut outage_after: Option<Reply> = None;
    let mut prev: Reply = (0, started);
    for &r in &replies {
        let gap = r.0.saturating_sub(prev.0 + 1);
        if gap > longest {
            longest = gap;
            outage_after = Some(prev);
        }
        prev = r;
    }
    if sent.saturating_sub(prev.0) > longest {
        longest = sent.saturating_sub(prev.0);
        outage_after = Some(prev);
    }
    let placed = |(seq, at): Reply| match (at, started) {
        (Some(at), Some(start)) => Duration::from_secs_f64((at - start).max(0.0)),
        _ => interval * seq,
    };
    FlowReport {
        probe,
        interval,
        sent,
        received: replies.len() as u32,
        longest_outage: interval * longest,
        outage_started: outage_after.map(placed),
    }
}

/// `ping -W`: how long ping waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// A probe from host `from` to address `ip` of host `to`.
pub fn probe(from: &str, to: &str, ip: IpAddr) -> Probe {
    Probe {
        from: from.into(),
        to: to.into(),
        ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_output_gives_loss_and_longest_outage() {
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\
            64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.1 ms\n\
            64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.1 ms\n\
            64 bytes from 10.0.0.2: icmp_seq=6 ttl=64 time=0.1 ms\n\
            From 10.0.0.1 icmp_seq=7 Destination Host Unreachable\n\
            64 bytes from 10.0.0.2: icmp_seq=8 ttl=64 time=0.1 ms\n\
            \n--- 10.0.0.2 ping statistics ---\n\
            9 packets transmitted, 4 received, 55% packet loss, time 400ms\n";
        let (replies, tx) = read_ping(out.as_bytes());
        let seqs: Vec<u32> = replies.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![1, 2, 6, 8]);
        assert_eq!(tx, Some(9));
        let r = report(
            probe("a", "b", "10.0.0.2".parse().unwrap()),
            &replies,
            tx,
            Duration::from_millis(50),
            None,
        );
        // The 9th echo may have been in flight: 8 count as sent.
        assert_eq!((r.sent, r.received, r.lost()), (8, 4, 4));
        // 3, 4, 5 lost in a row, after the 2nd echo.
        assert_eq!(r.longest_outage, Duration::from_millis(150));
        assert_eq!(r.outage_started, Some(Duration::from_millis(100)));
        // At 20 ms, two echoes unanswered at the stop were in flight.
        let replies: Vec<Reply> = (1..=98).map(|s| (s, None)).collect();
        let r = report(
            probe("a", "b", "10.0.0.2".parse().unwrap()),
            &replies,
            Some(100),
            Duration::from_millis(20),
            None,
        );
        assert_eq!((r.sent, r.lost()), (98, 0));
    }

    #[test]
    fn reply_times_place_the_outage() {
        // ping -D, 10 ms, but the machine ran it late: echo 3 answered at
        // 0.5 s, then 4 and 5 lost.
        let out = "[1000.100000] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.1 ms\n\
            [1000.300000] 64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=0.1 ms\n\
            [1000.500000] 64 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=0.1 ms\n\
            [1000.900000] 64 bytes from 10.0.0.2: icmp_seq=6 ttl=64 time=0.1 ms\n";
        let (replies, _) = read_ping(out.as_bytes());
        assert_eq!(replies[2], (3, Some(1000.5)));
        let r = report(
            probe("a", "b", "10.0.0.2".parse().unwrap()),
            &replies,
            Some(6),
            Duration::from_millis(10),
            Some(1000.0),
        );
        assert_eq!(r.longest_outage, Duration::from_millis(20));
        let at = r.outage_started.expect("placed");
        assert!((at.as_secs_f64() - 0.5).abs() < 1e-6, "{at:?}");
    }
}
