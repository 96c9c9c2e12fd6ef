//! A fabric link cut on a running bmv2 fabric (the far ends of its veths
//! go down: carrier loss, the way docs/lab.md says) is detected by discovery,
//! and traffic between the leaves continues over the other spine. The
//! outage is bounded by discovery's timeout (interval x miss limit) plus a
//! margin for the recompile and the writes; afterwards the switches read
//! back converged with the link out of the topology, and again after the
//! link is restored.

use std::time::Duration;

use bmv2_tests::protocols::{assert_outages, assert_reachable, ip, start, wait_for};
use p4fabric::testkit::lab::run::{observations, probe};
use p4fabric::topo::LinkId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_fabric_link_is_detected_and_traffic_takes_the_other_spine() {
    p4fabric::require_lab_run!();
    let fabric = bmv2_tests::protocols::fabric(|_| {});
    let (run, ctl) = start(&fabric, "p4f-pl-").await;
    let detect = Duration::from_millis(
        u64::from(fabric.settings.discovery_interval_ms)
            * u64::from(fabric.settings.discovery_miss_limit),
    );
    let probes = [
        probe("a1", "a2", ip("10.0.10.12")),
        probe("a2", "a1", ip("10.0.10.11")),
        probe("a1", "b2", ip("10.0.20.12")),
        probe("b1", "a2", ip("10.0.10.12")),
    ];
    assert_reachable(&run, &probes, 5, "before the cut");
    let traffic = run
        .traffic(&probes, Duration::from_millis(50))
        .expect("traffic");
    tokio::time::sleep(Duration::from_secs(1)).await;

    run.lab.cut_link("leaf1-spine1").expect("cut");
    let cut = LinkId::new("leaf1/1".parse().unwrap(), "spine1/1".parse().unwrap());
    let lost = wait_for(detect + Duration::from_secs(10), || async {
        let status = run.status().await.ok()?;
        let (observed, _, _) = observations(&status);
        (observed.discovered.get(&cut) == Some(&false)).then_some(())
    })
    .await;
    assert!(lost.is_some(), "the controller never reported {cut:?} lost");
    let c = run.wait_converged(Duration::from_secs(20)).await;
    assert!(c.converged(), "after the cut: {:?}", c.pending);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bound = detect + Duration::from_secs(1);
    assert_outages(&traffic.stop(), bound, "cut");

    // The link back: found again, converged again, traffic unharmed.
    let traffic = run
        .traffic(&probes, Duration::from_millis(50))
        .expect("traffic");
    run.lab.restore_link("leaf1-spine1").expect("restore");
    assert!(
        run.wait_discovered(Duration::from_secs(15)).await,
        "the restored link was not rediscovered"
    );
    let c = run.wait_converged(Duration::from_secs(20)).await;
    assert!(c.converged(), "after the restore: {:?}", c.pending);
    assert_outages(&traffic.stop(), bound, "restore");
    ctl.stop().await;
}
