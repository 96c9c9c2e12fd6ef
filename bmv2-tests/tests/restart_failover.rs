//! Controller restart and HA failover are invisible to the fabric (#16), at
//! `p4fabric run`'s default options, on the example fabric and on the same
//! fabric with no `links:` (discovery is then the only source of fabric
//! paths). Pings every 10 ms on every flow, srv1's LACP bond included:
//!
//! - kill -9 of the only controller, a new one started a second later;
//! - kill -9 of the leader of two (the standby takes over).
//!
//! Five flows at 10 ms, as the issue measured them (every pair of hosts at
//! that rate is more than bmv2 forwards on two shared cores): the bonded
//! server to and from hosts on other leaves, bridged and routed, v4 and v6,
//! and two flows that never touch the bond.
//!
//! Neither may write anything to the stable fabric, and no flow may see a
//! gap over 150 ms (no flow touches a failed element: only controllers
//! fail).

use std::time::{Duration, Instant};

use p4fabric::config::Fabric;
use p4fabric::testkit::lab::process::ControllerProcess;
use p4fabric::testkit::lab::reach::{self, Probe};
use p4fabric::testkit::lab::run::{ns_prefix, observations, probe, FlowReport, LabRun};
use p4fabric::testkit::within;

const INTERVAL: Duration = Duration::from_millis(10);
const MAX_GAP: Duration = Duration::from_millis(150);

/// Every switch has a primary session and holds its desired state.
fn settled(c: &ControllerProcess, n: usize) -> bool {
    c.metrics().is_ok_and(|m| {
        m.sum("p4fabric_switch_sessions_up") as usize == n
            && m.sum("p4fabric_switch_converged") as usize == n
    })
}

/// Updates a controller wrote, and updates switches refused it (a start
/// that writes nothing is refused nothing: no WatchPortEnforcer refusals).
fn written_or_refused(c: &ControllerProcess) -> u64 {
    c.metrics()
        .map(|m| (m.sum("p4fabric_writes_total") + m.sum("p4fabric_write_errors_total")) as u64)
        .unwrap_or(u64::MAX)
}

fn check(phase: &str, reports: &[FlowReport], writes: u64, problems: &mut Vec<String>) {
    let worst = reports.iter().max_by_key(|r| r.longest_outage);
    eprintln!(
        "[{phase}] {writes} writes; worst gap {} ms ({}); {} pings lost in all",
        worst.map(|r| r.longest_outage.as_millis()).unwrap_or(0),
        worst.map(|r| r.to_string()).unwrap_or_default(),
        reports.iter().map(FlowReport::lost).sum::<u32>()
    );
    if writes != 0 {
        problems.push(format!(
            "{phase}: {writes} updates written to (or refused by) a stable fabric"
        ));
    }
    for r in reports.iter().filter(|r| r.longest_outage > MAX_GAP) {
        problems.push(format!("{phase}: gap over {MAX_GAP:?}: {r}"));
    }
}

fn flows() -> Vec<Probe> {
    let ip = |s: &str| s.parse().expect("address");
    vec![
        probe("vm1", "srv1-web", ip("10.0.10.21")),
        probe("srv1", "vm4", ip("10.0.30.41")),
        probe("vm3", "srv1", ip("2001:db8:20::21")),
        probe("vm4", "vm1", ip("10.0.10.11")),
        probe("router", "vm5", ip("10.0.10.51")),
    ]
}

/// Waits until the controller reports `n` fabric links up (discovered or
/// configured and seen).
async fn links_up(run: &LabRun, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(status) = run.status().await {
            let (observed, _, _) = observations(&status);
            if observed.discovered.values().filter(|up| **up).count() >= n {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The lab is cabled as `cabled` says; the configuration applied is
/// `fabric` (the same, or without its `links:`).
async fn restart_and_failover(cabled: &Fabric, fabric: Fabric, variant: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut run = LabRun::start(cabled, &ns_prefix("p4f-rf"))
        .await
        .expect("lab");
    run.apply(&fabric).await.expect("apply");
    let ep = run.endpoint();
    let n = fabric.switches.len();
    let logs = tempfile::tempdir().expect("tempdir");
    let mut a = ControllerProcess::start_default(&ep, "rf-a", logs.path()).expect("a");
    assert!(
        within(Duration::from_secs(60), || a.is_leader() && settled(&a, n))
            .await
            .is_some(),
        "{variant}: a never settled:\n{}",
        a.log()
    );
    // Every leaf is cabled to both spines, configured or not.
    assert!(
        links_up(&run, 8, Duration::from_secs(60)).await,
        "{variant}: discovery did not find the 8 links:\n{}",
        a.log()
    );
    run.wait_settled(Duration::from_secs(60))
        .await
        .expect("settled");
    let probes = flows();
    let failures = reach::failures(&run.lab.ping_all(&probes));
    assert!(failures.is_empty(), "{variant}: {}", failures.join("\n"));

    // kill -9 of the only controller; a new one a second later.
    let traffic = run.traffic(&probes, INTERVAL).expect("traffic");
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let a2 = ControllerProcess::start_default(&ep, "rf-a2", logs.path()).expect("a2");
    if within(Duration::from_secs(30), || {
        a2.is_leader() && settled(&a2, n)
    })
    .await
    .is_none()
    {
        problems.push(format!("{variant}: a2 never settled:\n{}", a2.log()));
    }
    // Past a fast LACP timeout (3 s) after the kill.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = written_or_refused(&a2);
    let reports = traffic.stop();
    let before = problems.len();
    check(
        &format!("{variant}: restart"),
        &reports,
        writes,
        &mut problems,
    );
    if problems.len() > before {
        problems.push(format!("---- the new controller's log:\n{}", a2.log()));
    }

    // HA: a standby, then kill -9 of the leader.
    let mut a2 = a2;
    let b = ControllerProcess::start_default(&ep, "rf-b", logs.path()).expect("b");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let traffic = run.traffic(&probes, INTERVAL).expect("traffic");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    a2.kill();
    let led = within(Duration::from_secs(5), || b.is_leader()).await;
    if within(Duration::from_secs(30), || settled(&b, n))
        .await
        .is_none()
    {
        problems.push(format!("{variant}: b never settled:\n{}", b.log()));
    }
    eprintln!(
        "[{variant}: failover] b led {:?} after the kill, settled after {:?}",
        led,
        killed.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = written_or_refused(&b);
    let reports = traffic.stop();
    let before = problems.len();
    check(
        &format!("{variant}: failover"),
        &reports,
        writes,
        &mut problems,
    );
    if problems.len() > before {
        problems.push(format!("---- the new leader's log:\n{}", b.log()));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restart_and_failover_at_the_defaults_write_nothing_and_lose_nothing() {
    p4fabric::require_lab_run!();
    p4fabric::testkit::lab::init_test_logging();
    let configured = p4fabric::testkit::lab::run::demo_fabric().expect("examples/fabric.yaml");
    let mut discovered = configured.clone();
    discovered.links.clear();
    let mut problems = Vec::new();
    // P4FABRIC_RF_ONLY=configured|discovered runs one variant (debugging).
    let only = std::env::var("P4FABRIC_RF_ONLY").unwrap_or_default();
    if !only.starts_with('d') {
        let f = configured.clone();
        problems.extend(restart_and_failover(&configured, f, "configured links").await);
    }
    if !only.starts_with('c') {
        problems.extend(restart_and_failover(&configured, discovered, "discovered links").await);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
