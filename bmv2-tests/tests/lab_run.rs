//! The end-to-end harness itself (`p4fabric::testkit::lab::run`) on the demo
//! topology: a controller converges the fabric (read back against a
//! desired state compiled from config + reported observations), and
//! background pings between every pair of hosts (IPv4 and IPv6) lose
//! nothing on a stable fabric, and the controller writes nothing meanwhile.

use std::time::Duration;

use p4fabric::testkit::lab::reach;
use p4fabric::testkit::lab::run::LabRun;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_demo_fabric_and_steady_traffic_loses_nothing() {
    p4fabric::require_lab_run!();
    p4fabric::testkit::lab::init_test_logging();
    let fabric = p4fabric::testkit::lab::run::demo_fabric().expect("examples/fabric.yaml");
    let run = LabRun::start(&fabric, "p4f-lr-").await.expect("lab");
    let ctl = run.start_controller("lab-run").await.expect("controller");
    run.wait_settled(Duration::from_secs(60))
        .await
        .expect("settled");
    let probes = reach::probes(run.fabric());
    // Warm up: hosts' own (SLAAC) IPv6 sources are learned on first use
    // (the controller resolves them) — a change, so not in the window.
    let warm = run.lab.ping_all(&probes);
    let failed = reach::failures(&warm);
    assert!(failed.is_empty(), "pings failed:\n{}", failed.join("\n"));
    assert!(
        run.wait_converged(Duration::from_secs(30))
            .await
            .converged(),
        "converged after the warm-up"
    );
    let writes_before = ctl.writes();
    let traffic = run
        .traffic(&probes, Duration::from_millis(100))
        .expect("traffic");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reports = traffic.stop();
    let writes = ctl.writes() - writes_before;
    let c = run.check().await;
    assert!(c.converged(), "after traffic: {:?}", c.pending);
    for r in &reports {
        eprintln!("{r}");
    }
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| r.received == 0 || r.lost() > 0)
        .map(|r| r.to_string())
        .collect();
    assert!(bad.is_empty(), "flows with loss:\n{}", bad.join("\n"));
    assert_eq!(writes, 0, "the controller wrote to a stable fabric");
    ctl.stop().await;
}
