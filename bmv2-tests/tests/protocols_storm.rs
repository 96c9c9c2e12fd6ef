//! An ARP storm from one host (thousands of requests a second from a raw
//! socket, for addresses all over its subnet) on the leaf that also
//! carries a LACP member and fabric links: discovery keeps every link up,
//! LACP stays in sync on both members (on the fabric's side and the
//! server's), the switch's punt meter bounds what reaches the controller,
//! and traffic still flows afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmv2_tests::packet::{arp_frame, mac};
use bmv2_tests::protocols::{
    fabric_with_lag, ip, lag_member_usable, ping_until, start, wait_member,
};
use p4fabric::config::PortRef;
use p4fabric::testkit::lab::run::observations;

const STORM_PPS: u64 = 3000;
const STORM: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arp_storm_breaks_neither_lacp_nor_discovery() {
    p4fabric::require_lab_run!();
    let fabric = fabric_with_lag();
    let (run, ctl) = start(&fabric, "p4f-pw-").await;
    let members: [PortRef; 2] = ["leaf1/5".parse().unwrap(), "leaf2/5".parse().unwrap()];
    for m in &members {
        assert!(
            wait_member(&run, "bond1", m, true).await,
            "{m} not usable before the storm"
        );
    }
    assert!(ping_until(&run, "srv", ip("10.0.10.11"), 5).is_some());
    // Let the status carry the counters of a quiet fabric.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ctl.protocol_counters();
    let pdus_before: Vec<u64> = run
        .lab
        .bond("bond1")
        .and_then(|b| b.lacp())
        .expect("LACP bond")
        .iter()
        .map(|m| m.pdus_rx)
        .collect();

    // The storm, from a1 (leaf1/3): ARP requests for every address of
    // 10.0.10.0/24, from a1's MAC and address, paced per millisecond.
    let sock = run
        .lab
        .host_ns("a1")
        .expect("a1")
        .packet_socket("eth0")
        .expect("raw socket in a1");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let storm = std::thread::spawn(move || {
        let src = mac("02:00:00:00:10:01");
        let started = Instant::now();
        let mut sent = 0u64;
        let mut n = 0u8;
        while started.elapsed() < STORM && !flag.load(Ordering::Relaxed) {
            let due = started.elapsed().as_millis() as u64 * STORM_PPS / 1000;
            while sent < due {
                n = n.wrapping_add(1);
                let f = arp_frame([0xff; 6], src, 1, [10, 0, 10, 11], [10, 0, 10, n]);
                if sock.send(&f).is_err() {
                    break;
                }
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    });

    // Meanwhile: every link stays up, both members stay usable.
    let mut problems = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < STORM + Duration::from_secs(1) {
        if let Ok(status) = run.status().await {
            let (observed, _, _) = observations(&status);
            for (l, up) in &observed.discovered {
                if !up {
                    problems.push(format!("{:?}: link {l:?} lost", t0.elapsed()));
                }
            }
        }
        for m in &members {
            if lag_member_usable(&run, "bond1", m).await != Some(true) {
                problems.push(format!("{:?}: {m} not usable", t0.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = storm.join().expect("storm thread");
    // The counters are copied with the status (every 200 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = ctl.protocol_counters();
    assert!(problems.is_empty(), "during the storm: {problems:#?}");
    eprintln!("storm: {sent} ARP requests sent");
    assert!(
        sent >= STORM_PPS * STORM.as_secs() / 2,
        "the storm was too weak to test anything: {sent} frames"
    );

    // The server kept hearing LACPDUs on both members and is in sync.
    let lacp = run.lab.bond("bond1").and_then(|b| b.lacp()).expect("bond");
    for (i, m) in lacp.iter().enumerate() {
        assert!(m.distributing(), "server member {i}: {m:?}");
        assert!(
            m.pdus_rx >= pdus_before[i] + STORM.as_secs() / 2,
            "server member {i} heard {} LACPDUs during the storm",
            m.pdus_rx - pdus_before[i]
        );
    }
    // Punt meters: the controller saw about the meter's rate of ARP from
    // the storm's leaf (only its edge port copies them), far less than the
    // storm; its own per-port limit dropped most of those. Generous: 1.5 x
    // the meter over the storm and a second either side.
    let host =
        (after.host_frames + after.rate_limited) - (before.host_frames + before.rate_limited);
    let secs = STORM.as_secs() + 2;
    let bound = u64::from(fabric.settings.punt_rate_pps) * secs * 3 / 2;
    eprintln!(
        "controller: {host} host frames ({} rate-limited by the controller), {} LACPDUs, {} probes",
        after.rate_limited - before.rate_limited,
        after.lacpdus - before.lacpdus,
        after.probes - before.probes
    );
    assert!(
        host <= bound && host < sent,
        "{host} host frames reached the controller from a {sent}-frame storm"
    );
    assert!(after.lacpdus > before.lacpdus && after.probes > before.probes);

    let c = run.wait_converged(Duration::from_secs(15)).await;
    assert!(c.converged(), "after the storm: {:?}", c.pending);
    for (from, to) in [
        ("srv", "10.0.10.11"),
        ("a1", "10.0.10.12"),
        ("a1", "10.0.20.30"),
    ] {
        assert!(
            ping_until(&run, from, ip(to), 5).is_some(),
            "{from} -> {to} after the storm"
        );
    }
    ctl.stop().await;
}
