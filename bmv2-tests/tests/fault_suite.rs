//! The fault suite (issue #9) on the demo topology (examples/fabric.yaml:
//! 2 spines, 4 leaves, srv1 dual-homed on a two-leaf LACP bond), with
//! full-mesh IPv4 and IPv6 pings running through every fault.
//!
//! One fabric and one controller, faults in sequence. For each: the pings
//! run from before the fault until after recovery; flows the fault cannot
//! touch must lose nothing, the others must come back; afterwards every
//! switch read back equals the desired state (`LabRun::wait_converged`: no
//! missing, stale or different entity) and every probe answers. The table
//! printed at the end gives, per fault, the worst outage and the pings lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use p4fabric::config::{Attachment, Fabric};
use p4fabric::testkit::lab::process::ControllerProcess;
use p4fabric::testkit::lab::reach::{self, Probe};
use p4fabric::testkit::lab::run::{ns_prefix, FlowReport, LabController, LabRun, Traffic};
use p4fabric::testkit::within;

const INTERVAL: Duration = Duration::from_millis(100);
/// The tests of this file take turns: outages are measured on a machine
/// otherwise quiet (as far as this file goes).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Generous bound on an affected flow's outage.
const MAX_OUTAGE: Duration = Duration::from_secs(15);

/// The leaves a host is attached to (both for a LAG host).
fn leaves_of(f: &Fabric, host: &str) -> BTreeSet<String> {
    match f.hosts.get(host).map(|h| &h.attachment) {
        Some(Attachment::Port(p)) => [p.switch.clone()].into(),
        Some(Attachment::Lag(l)) => f
            .lags
            .get(l)
            .map(|l| l.members.iter().map(|m| m.switch.clone()).collect())
            .unwrap_or_default(),
        None => BTreeSet::new(),
    }
}

/// One row of the table.
struct Row {
    fault: String,
    worst: Duration,
    worst_flow: String,
    lost: u32,
    affected: usize,
    flows: usize,
    secs: f64,
}

struct Suite {
    run: LabRun,
    ctl: Option<LabController>,
    probes: Vec<Probe>,
    rows: Vec<Row>,
    /// What must hold but did not (reported together at the end).
    problems: Vec<String>,
}

impl Suite {
    fn traffic(&self) -> Traffic {
        self.run.traffic(&self.probes, INTERVAL).expect("traffic")
    }

    /// Stops the pings of a fault, checks them against `affected`, waits
    /// for the fabric to converge and every probe to answer, and records
    /// the row.
    async fn finish(
        &mut self,
        fault: &str,
        started: Instant,
        traffic: Traffic,
        affected: impl Fn(&Probe) -> bool,
    ) -> Vec<FlowReport> {
        let reports = traffic.stop();
        let mut row = Row {
            fault: fault.to_string(),
            worst: Duration::ZERO,
            worst_flow: String::new(),
            lost: 0,
            affected: 0,
            flows: reports.len(),
            secs: started.elapsed().as_secs_f64(),
        };
        for r in &reports {
            row.lost += r.lost();
            if r.longest_outage > row.worst {
                row.worst = r.longest_outage;
                row.worst_flow = format!("{} -> {} ({})", r.probe.from, r.probe.to, r.probe.ip);
            }
            if affected(&r.probe) {
                row.affected += 1;
                if r.longest_outage > MAX_OUTAGE {
                    self.problems
                        .push(format!("{fault}: outage over {MAX_OUTAGE:?}: {r}"));
                }
            } else if r.lost() > 0 {
                self.problems
                    .push(format!("{fault}: an unaffected flow lost pings: {r}"));
            }
            if r.received == 0 {
                self.problems
                    .push(format!("{fault}: no answer at all: {r}"));
            }
        }
        eprintln!(
            "[{fault}] worst outage {} ms ({}), {} pings lost, {} of {} flows exposed",
            row.worst.as_millis(),
            row.worst_flow,
            row.lost,
            row.affected,
            row.flows
        );
        for r in reports.iter().filter(|r| r.lost() > 0) {
            eprintln!("    {r}");
        }
        let c = self.run.wait_converged(Duration::from_secs(60)).await;
        if !c.converged() {
            self.problems
                .push(format!("{fault}: not converged after: {:?}", c.pending));
        }
        let failures = reach::failures(&self.run.lab.ping_all(&self.probes));
        if !failures.is_empty() {
            self.problems.push(format!(
                "{fault}: probes failing after recovery:\n  {}",
                failures.join("\n  ")
            ));
        }
        self.rows.push(row);
        reports
    }

    fn writes(&self) -> u64 {
        self.ctl.as_ref().map_or(0, |c| c.writes())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_with_full_mesh_traffic() {
    p4fabric::require_lab_run!();
    let _turn = SERIAL.lock().await;
    p4fabric::testkit::lab::init_test_logging();
    let t0 = Instant::now();
    let fabric = p4fabric::testkit::lab::run::demo_fabric().expect("examples/fabric.yaml");
    let (run, ctl, probes) = LabRun::start_serving(&fabric, &ns_prefix("p4f-fs"), "fault-suite")
        .await
        .expect("lab");
    eprintln!(
        "fabric up and converged in {:.1} s; {} flows ({} IPv6) every {} ms",
        t0.elapsed().as_secs_f64(),
        probes.len(),
        probes.iter().filter(|p| p.ip.is_ipv6()).count(),
        INTERVAL.as_millis()
    );
    let mut s = Suite {
        run,
        ctl: Some(ctl),
        probes,
        rows: Vec::new(),
        problems: Vec::new(),
    };
    let on = |f: &Fabric, leaf: &str| {
        let f = f.clone();
        let leaf = leaf.to_string();
        move |p: &Probe| {
            leaves_of(&f, &p.from).contains(&leaf) || leaves_of(&f, &p.to).contains(&leaf)
        }
    };
    let touches = |hosts: &'static [&'static str]| {
        move |p: &Probe| hosts.contains(&p.from.as_str()) || hosts.contains(&p.to.as_str())
    };

    // -- Controller restart (graceful): nothing written, nothing lost.
    let started = Instant::now();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(c) = s.ctl.take() {
        c.stop().await;
    }
    let ctl = s
        .run
        .start_controller("fault-suite-2")
        .await
        .expect("controller");
    let n = fabric.switches.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctl.agents_converged(n) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.ctl = Some(ctl);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w = s.writes();
    s.finish("controller restart", started, traffic, |_| false)
        .await;
    if w != 0 {
        s.problems.push(format!(
            "controller restart: the new controller wrote {w} updates to a stable fabric"
        ));
    }

    // -- etcd restart: forwarding untouched, nothing written.
    let started = Instant::now();
    let before = s.writes();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.run.etcd.restart().await.expect("etcd restart");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let w = s.writes() - before;
    s.finish("etcd restart", started, traffic, |_| false).await;
    if w != 0 {
        s.problems
            .push(format!("etcd restart: the controller wrote {w} updates"));
    }

    // -- Config churn: a VLAN, a port, a host and a route come and go.
    let started = Instant::now();
    let traffic = s.traffic();
    let churn = p4fabric::testkit::lab::run::extended(
        s.run.fabric(),
        r#"
ports:
  leaf3/4: {mode: access, vlan: 40}
vlans:
  40: {name: churn, tenant: demo, ipv4_gateway: 10.0.40.1/24}
hosts:
  churn1: {mac: "02:00:00:00:40:05", vlan: 40, ips: [10.0.40.5], attachment: {port: leaf3/4}}
routes:
  churn-net: {prefix: 198.51.100.0/24, next_hops: [10.0.40.5]}
"#,
    )
    .expect("churn");
    let base = s.run.fabric().clone();
    for round in 0..2 {
        s.run.apply(&churn).await.expect("apply churn");
        let c = s.run.wait_converged(Duration::from_secs(30)).await;
        if !c.converged() {
            s.problems.push(format!(
                "config churn {round}: additions not installed: {:?}",
                c.pending
            ));
        }
        s.run.apply(&base).await.expect("apply base");
        let c = s.run.wait_converged(Duration::from_secs(30)).await;
        if !c.converged() {
            s.problems.push(format!(
                "config churn {round}: removals not installed: {:?}",
                c.pending
            ));
        }
    }
    s.finish(
        "config churn (VLAN, port, host, route x2)",
        started,
        traffic,
        |_| false,
    )
    .await;

    // -- A spine link down, then up.
    let started = Instant::now();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.run.lab.cut_link("leaf1-spine1").expect("cut");
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.run.lab.restore_link("leaf1-spine1").expect("restore");
    if !s.run.wait_discovered(Duration::from_secs(30)).await {
        s.problems
            .push("spine link: leaf1-spine1 not rediscovered".into());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.finish("spine link down/up", started, traffic, on(&fabric, "leaf1"))
        .await;

    // -- A LAG member of the dual-homed server down, then up.
    let started = Instant::now();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let member = "leaf1/4".parse().expect("port");
    s.run
        .lab
        .set_edge_link(&member, false)
        .expect("member down");
    tokio::time::sleep(Duration::from_secs(5)).await;
    s.run.lab.set_edge_link(&member, true).expect("member up");
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.finish(
        "LAG member down/up (srv1 leg on leaf1)",
        started,
        traffic,
        touches(&["srv1", "srv1-web"]),
    )
    .await;

    // -- srv1's LACP stops on its leaf2 leg (the link stays up): the
    // fabric times the partner out (3 s, fast rate) and tells the server,
    // which stops using the leg; when LACP speaks again the leg rejoins.
    let started = Instant::now();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leg = bond_leg(s.run.fabric(), "bond1", "leaf2/4");
    let bond = || s.run.lab.bond("bond1").expect("srv1's bond");
    bond().set_lacp_muted(leg, true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    if bond().lacp().is_some_and(|m| m[leg].distributing()) {
        s.problems
            .push("LACP stop: the server still distributes on the silent leg".into());
    }
    bond().set_lacp_muted(leg, false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    if !bond()
        .lacp()
        .is_some_and(|m| m.iter().all(|m| m.distributing()))
    {
        s.problems
            .push("LACP stop: the leg did not rejoin after LACP resumed".into());
    }
    s.finish(
        "LACP stop/resume (srv1 leg on leaf2)",
        started,
        traffic,
        touches(&["srv1", "srv1-web"]),
    )
    .await;

    // -- A server reboot: vm4's link down 3 s, then configured again.
    let started = Instant::now();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let f = s.run.fabric().clone();
    s.run
        .lab
        .reboot_host(&f, "vm4", Duration::from_secs(3))
        .expect("reboot vm4");
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.finish("server reboot (vm4)", started, traffic, touches(&["vm4"]))
        .await;

    // -- A leaf restarted (empty, no pipeline), then a whole spine: every
    // flow between leaves may cross it.
    restart_phase(&mut s, "leaf3", on(&fabric, "leaf3")).await;
    let f = fabric.clone();
    restart_phase(&mut s, "spine2", move |p| {
        leaves_of(&f, &p.from) != leaves_of(&f, &p.to) || leaves_of(&f, &p.from).len() > 1
    })
    .await;

    controller_failover(&mut s).await;

    eprintln!("\nfault                                       worst outage   lost pings   flows exposed   phase");
    for r in &s.rows {
        eprintln!(
            "{:<43} {:>9} ms   {:>10}   {:>6} of {:<4}   {:>4.0} s   {}",
            r.fault,
            r.worst.as_millis(),
            r.lost,
            r.affected,
            r.flows,
            r.secs,
            r.worst_flow
        );
    }
    eprintln!("fault suite: {:.0} s in all", t0.elapsed().as_secs_f64());
    assert!(s.problems.is_empty(), "\n{}", s.problems.join("\n"));
}

/// The index of `port` among `lag`'s members (the bond's legs are in the
/// same order).
fn bond_leg(f: &Fabric, lag: &str, port: &str) -> usize {
    let port: p4fabric::config::PortRef = port.parse().expect("port");
    f.lags
        .get(lag)
        .and_then(|l| l.members.iter().position(|m| *m == port))
        .expect("a member of the LAG")
}

/// Controller failover: the in-process controller hands over to two
/// `p4fabric run` processes in HA (the daemon's own election); the leader
/// is killed -9 with traffic running. The standby must lead within the
/// lease TTL + 1 s, lose no ping and write nothing to the stable fabric.
async fn controller_failover(s: &mut Suite) {
    const TTL: Duration = Duration::from_secs(2);
    if let Some(c) = s.ctl.take() {
        c.stop().await;
    }
    let logs = tempfile::tempdir().expect("tempdir");
    let ep = s.run.endpoint();
    let n = s.run.fabric().switches.len();
    let settled = |c: &ControllerProcess| {
        c.metrics().is_ok_and(|m| {
            m.sum("p4fabric_switch_sessions_up") as usize == n
                && m.sum("p4fabric_switch_converged") as usize == n
        })
    };
    let mut a = ControllerProcess::start(&ep, "fs-a", TTL, logs.path()).expect("controller a");
    let b = ControllerProcess::start(&ep, "fs-b", TTL, logs.path()).expect("controller b");
    if within(Duration::from_secs(30), || a.is_leader() && settled(&a))
        .await
        .is_none()
    {
        s.problems
            .push(format!("failover: a never led and settled:\n{}", a.log()));
        return;
    }
    let started = Instant::now();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    a.kill();
    if within(TTL + Duration::from_secs(1), || b.is_leader())
        .await
        .is_none()
    {
        s.problems.push(format!(
            "failover: b did not lead within TTL + 1 s:\n{}",
            b.log()
        ));
    }
    let led = killed.elapsed();
    if within(Duration::from_secs(15), || settled(&b))
        .await
        .is_none()
    {
        s.problems
            .push(format!("failover: b did not settle:\n{}", b.log()));
    }
    eprintln!(
        "[controller failover] b led {} ms and held every switch {} ms after the kill",
        led.as_millis(),
        killed.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let w = b.writes().unwrap_or(u64::MAX);
    s.finish(
        "controller failover (leader kill -9)",
        started,
        traffic,
        |_| false,
    )
    .await;
    if w != 0 {
        s.problems.push(format!(
            "failover: the new leader wrote {w} updates to a stable fabric; its log:\n{}\n---- the old leader's log:\n{}",
            b.log(),
            a.log()
        ));
    }
}

/// One phase: `name` killed, restarted empty, and back.
async fn restart_phase(s: &mut Suite, name: &str, affected: impl Fn(&Probe) -> bool) {
    let started = Instant::now();
    let traffic = s.traffic();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sessions, _) = agent(s, name);
    restart_switch(&mut s.run, name).await;
    wait_back(s, name, sessions).await;
    let role = if name.starts_with("spine") {
        "spine"
    } else {
        "leaf"
    };
    s.finish(
        &format!("{role} restart ({name})"),
        started,
        traffic,
        affected,
    )
    .await;
}

/// kill -9 a switch, leave it down 2 s, start it again on the same address
/// (empty, no pipeline).
async fn restart_switch(run: &mut LabRun, name: &str) {
    let sw = run.lab.switch_mut(name).expect("switch");
    sw.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sw = run.lab.switch_mut(name).expect("switch");
    sw.restart_same_address().expect("restart");
}

/// The agent's session count and convergence for `name`.
fn agent(s: &Suite, name: &str) -> (u64, bool) {
    let Some(c) = &s.ctl else { return (0, false) };
    let m = c.metrics.lock().unwrap_or_else(|p| p.into_inner());
    m.agents
        .get(name)
        .map_or((0, false), |a| (a.counters.sessions, a.converged()))
}

/// Waits until the controller has a new session with the restarted switch
/// and has programmed it, and its links are discovered again.
async fn wait_back(s: &mut Suite, name: &str, sessions_before: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let (n, converged) = agent(s, name);
        if n > sessions_before && converged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = s.run.wait_converged(Duration::from_secs(30)).await;
    if !s.run.wait_discovered(Duration::from_secs(60)).await {
        s.problems
            .push(format!("{name}: links not rediscovered after restart"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// MAC aging: a host the configuration does not know is learned from its
/// traffic (status/hosts, entries on the switches), and once it falls
/// silent it ages out after `mac_aging_secs`: its status goes and no entry
/// of it stays on any switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_host_ages_out_when_silent() {
    p4fabric::require_lab_run!();
    let _turn = SERIAL.lock().await;
    p4fabric::testkit::lab::init_test_logging();
    const AGING: u64 = 3;
    let with_h9: Fabric = serde_yaml::from_str(&format!(
        r#"
settings: {{mac_aging_secs: {AGING}}}
switches:
  leaf1: {{address: "127.0.0.1:1", device_id: 1, role: leaf, label: 101, fabric_ports: [1]}}
  leaf2: {{address: "127.0.0.1:2", device_id: 2, role: leaf, label: 102, fabric_ports: [1]}}
  spine1: {{address: "127.0.0.1:3", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}}
links:
  leaf1-spine1: {{a: leaf1/1, b: spine1/1}}
  leaf2-spine1: {{a: leaf2/1, b: spine1/2}}
ports:
  leaf1/3: {{mode: access, vlan: 10}}
  leaf2/3: {{mode: access, vlan: 10}}
  leaf2/4: {{mode: access, vlan: 10}}
vlans:
  10: {{name: a, ipv4_gateway: 10.0.10.1/24}}
hosts:
  h1: {{mac: "02:00:00:00:0a:01", vlan: 10, ips: [10.0.10.11], attachment: {{port: leaf1/3}}}}
  h2: {{mac: "02:00:00:00:0a:02", vlan: 10, ips: [10.0.10.12], attachment: {{port: leaf2/3}}}}
  h9: {{mac: "02:00:00:00:0a:09", vlan: 10, ips: [10.0.10.19], attachment: {{port: leaf2/4}}}}
"#
    ))
    .expect("fabric");
    // The lab builds h9's namespace; the controller never hears of it.
    let mut run = LabRun::start(&with_h9, &ns_prefix("p4f-fa"))
        .await
        .expect("lab");
    let mut without = run.fabric().clone();
    without.hosts.remove("h9");
    run.apply(&without).await.expect("apply");
    let ctl = run.start_controller("aging").await.expect("controller");
    run.wait_settled(Duration::from_secs(60))
        .await
        .expect("settled");

    let key = "hosts/10/02:00:00:00:0a:09";
    let probes = vec![
        p4fabric::testkit::lab::run::probe("h9", "h1", "10.0.10.11".parse().expect("ip")),
        p4fabric::testkit::lab::run::probe("h1", "h9", "10.0.10.19".parse().expect("ip")),
    ];
    let traffic = run.traffic(&probes, INTERVAL).expect("traffic");
    let learned = status_key(&run, key, true, Duration::from_secs(15)).await;
    let learned = learned.expect("h9 was never learned");
    let c = run.wait_converged(Duration::from_secs(30)).await;
    assert!(c.converged(), "learned host not installed: {:?}", c.pending);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports = traffic.stop();
    for r in &reports {
        eprintln!("learning: {r}");
        assert!(r.received > 0, "{r}");
    }
    let aged = status_key(&run, key, false, Duration::from_secs(AGING * 3 + 15)).await;
    let aged = aged.expect("h9 never aged out of status/hosts");
    let c = run.wait_converged(Duration::from_secs(30)).await;
    assert!(c.converged(), "after aging: {:?}", c.pending);
    eprintln!(
        "MAC aging ({AGING} s): h9 learned {} ms after its first ping, aged out {} ms after it fell silent",
        learned.as_millis(),
        aged.as_millis()
    );
    ctl.stop().await;
}

/// How long until status key `key` is there (`present`) or gone; `None`
/// after `timeout`.
async fn status_key(run: &LabRun, key: &str, present: bool, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if run
            .status()
            .await
            .is_ok_and(|s| s.contains_key(key) == present)
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
