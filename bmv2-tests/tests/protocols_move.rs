//! A host the configuration does not list is learned (ARP / ND and the
//! learning digest), then moves to an access port of the same VLAN on the
//! other leaf, like a migrating VM: its old port loses carrier, nothing is
//! announced. The fabric must find it at its first packet from the new
//! port and move everything (bridging on every leaf, host routes), so it
//! keeps working: bridged and routed traffic to it resumes, bounded.

use std::time::Duration;

use bmv2_tests::protocols::{
    assert_outages, assert_reachable, ip, learned_host, ping_count, ping_until, start,
    unlisted_host, wait_for,
};
use p4fabric::config::Attachment;
use p4fabric::testkit::lab::run::probe;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_host_moves_to_another_leaf_and_keeps_working() {
    p4fabric::require_lab_run!();
    let fabric = bmv2_tests::protocols::fabric(|_| {});
    let (mut run, ctl) = start(&fabric, "p4f-pm-").await;
    let host = unlisted_host(&mut run, "m", &["leaf1/6", "leaf2/6"]);

    // Learned at leaf1/6 from its own traffic, with its addresses.
    assert!(
        ping_until(&run, "m", ip("10.0.10.12"), 5).is_some(),
        "m -> a2"
    );
    assert!(
        ping_until(&run, "m", ip("2001:db8:10::12"), 5).is_some(),
        "m -> a2 v6"
    );
    assert!(
        ping_until(&run, "m", ip("10.0.20.12"), 5).is_some(),
        "m -> b2 routed"
    );
    let at = |port: &'static str| {
        let run = &run;
        let host = &host;
        move || async move {
            let h = learned_host(run, host.vlan, host.mac).await?;
            (h.attachment == Attachment::Port(port.parse().ok()?)
                && h.ips.contains(&ip("10.0.10.99")))
            .then_some(h)
        }
    };
    let h = wait_for(Duration::from_secs(5), at("leaf1/6")).await;
    assert!(h.is_some(), "m not learned at leaf1/6 with 10.0.10.99");
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "{:?}", c.pending);
    let probes = [
        probe("a2", "m", ip("10.0.10.99")),
        probe("b2", "m", ip("10.0.10.99")),
        probe("a1", "m", ip("10.0.10.99")),
    ];
    assert_reachable(&run, &probes, 5, "before the move");

    let traffic = run
        .traffic(&probes, Duration::from_millis(50))
        .expect("traffic");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let f = run.fabric().clone();
    run.lab.move_host(&f, "m", 1).expect("move");
    // Its first packet from the new port: an ARP request for a2 (Linux
    // keeps neighbours per interface), then the echo.
    let tries = ping_until(&run, "m", ip("10.0.10.12"), 5);
    assert!(tries.is_some(), "m -> a2 after the move");
    let h = wait_for(Duration::from_secs(5), at("leaf2/6")).await;
    assert!(h.is_some(), "m not moved to leaf2/6");
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "after the move: {:?}", c.pending);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_outages(&traffic.stop(), Duration::from_secs(3), "move");
    // And steady afterwards, both families, bridged and routed.
    for (from, to) in [
        ("a2", "10.0.10.99"),
        ("a1", "10.0.10.99"),
        ("b2", "10.0.10.99"),
        ("a2", "2001:db8:10::99"),
        ("m", "10.0.20.11"),
    ] {
        assert_eq!(
            ping_count(&run, from, ip(to), None, 10),
            10,
            "{from} -> {to} after the move"
        );
    }
    ctl.stop().await;
}
