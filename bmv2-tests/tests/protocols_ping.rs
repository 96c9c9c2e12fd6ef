//! Ping between hosts with real Linux IP stacks on a 2-spine, 2-leaf bmv2
//! fabric, IPv4 and IPv6: in one VLAN across leaves (bridged over the
//! fabric) and between VLANs through the anycast gateway. Hosts have no
//! static neighbours: they resolve the gateway with ARP / ND (answered by
//! the controller) and each other with flooded ARP / NS.

use std::time::Duration;

use bmv2_tests::protocols::{exec, ip, ping_count, ping_until, start};
use p4fabric::testkit::lab::run::probe;

/// (from, to, destination, source for routed IPv6): same VLAN on the other
/// leaf, other VLAN on the same leaf and on the other leaf, both families.
/// Routed IPv6 pings from the configured address: the hosts also take a
/// SLAAC address from our router advertisements, and Linux prefers it as
/// the source (see `routed_v6_from_the_slaac_address`).
const FLOWS: [(&str, &str, &str, Option<&str>); 9] = [
    ("a1", "a2", "10.0.10.12", None),
    ("a1", "a2", "2001:db8:10::12", None),
    ("a1", "b1", "10.0.20.11", None),
    ("a1", "b1", "2001:db8:20::11", Some("2001:db8:10::11")),
    ("a1", "b2", "10.0.20.12", None),
    ("a1", "b2", "2001:db8:20::12", Some("2001:db8:10::11")),
    ("b2", "a1", "10.0.10.11", None),
    ("b2", "a1", "2001:db8:10::11", Some("2001:db8:20::12")),
    ("b2", "b1", "2001:db8:20::11", None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_ping_v4_and_v6_across_leaves_and_vlans() {
    p4fabric::require_lab_run!();
    let fabric = bmv2_tests::protocols::fabric(|_| {});
    let (run, ctl) = start(&fabric, "p4f-pp-").await;

    // The first echo may wait for ARP / ND or a glean: a few tries each.
    let mut failed = Vec::new();
    for (from, _, to, src) in FLOWS {
        if !(0..5).any(|_| ping_count(&run, from, ip(to), src, 1) == 1) {
            failed.push(format!("{from} -> {to}"));
        }
    }
    assert!(failed.is_empty(), "no echo reply: {failed:?}");

    // The gateway was resolved for real, to the gateway MAC.
    for (host, gw) in [
        ("a1", "10.0.10.1"),
        ("a1", "2001:db8:10::1"),
        ("b2", "10.0.20.1"),
        ("b2", "2001:db8:20::1"),
    ] {
        let (_, out) = exec(&run, host, &["ip", "neigh", "show", gw]);
        assert!(
            out.contains("02:00:00:fa:b0:01"),
            "{host}: neighbour {gw} not resolved to the gateway MAC: {out:?}"
        );
    }

    // Then steady: 20 echoes per flow, all flows at once, none lost.
    let lost: Vec<String> = std::thread::scope(|s| {
        let running: Vec<_> = FLOWS
            .iter()
            .map(|(from, _, to, src)| {
                (
                    from,
                    to,
                    s.spawn(|| ping_count(&run, from, ip(to), *src, 20)),
                )
            })
            .collect();
        running
            .into_iter()
            .filter_map(|(from, to, h)| {
                let got = h.join().unwrap_or(0);
                (got != 20).then(|| format!("{from} -> {to}: {got}/20"))
            })
            .collect()
    });
    assert!(lost.is_empty(), "flows with loss: {lost:?}");
    let c = run.check().await;
    assert!(c.converged(), "after traffic: {:?}", c.pending);
    ctl.stop().await;
}

/// A host pinging another VLAN over IPv6 from the address it took by
/// SLAAC from our router advertisements (Linux's preferred source). The
/// fabric must learn that address (from the host's ND) and route the
/// replies to it (addresses learned for configured hosts become host
/// routes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_v6_from_the_slaac_address() {
    p4fabric::require_lab_run!();
    let fabric = bmv2_tests::protocols::fabric(|_| {});
    let (run, ctl) = start(&fabric, "p4f-ps-").await;
    let (_, route) = exec(&run, "a1", &["ip", "-6", "route", "get", "2001:db8:20::12"]);
    eprintln!("a1: {route}");
    assert!(
        ping_until(&run, "a1", ip("2001:db8:20::12"), 5).is_some(),
        "a1 -> b2 over IPv6 from the default source"
    );
    let traffic = run
        .traffic(
            &[probe("a1", "b2", ip("2001:db8:20::12"))],
            Duration::from_millis(100),
        )
        .expect("traffic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = traffic.stop();
    assert!(r.iter().all(|r| r.lost() == 0 && r.received > 0), "{r:?}");
    ctl.stop().await;
}
