//! LACP with a real partner on bmv2: a server bonded to both leaves whose
//! user-space bond (`lab::bond` + `lab::lacp_partner`, the lab kernel has
//! no bonding driver) speaks 802.1AX. Checked against status
//! (`lags/<lag>/<port>`) and what the switches read back:
//! - both members come up (the server sees one partner system on both
//!   leaves) and traffic from the server leaves through both leaves;
//! - a member whose partner stops sending LACPDUs times out (3 s, fast
//!   rate) and leaves the LAG's selector; traffic continues on the other;
//! - while it is unsynced it stays out, and it comes back only after the
//!   LACPDU exchange syncs it again;
//! - a member losing carrier goes out within a port-status poll (the
//!   controller reads bmv2's port status over Thrift, `port_events`; the
//!   leaf keeps forwarding though its LAG group loses its only member),
//!   and returns;
//! - the same for a *static* LAG, where no protocol would notice.

use std::time::Duration;

use bmv2_tests::protocols::{
    assert_outages, assert_reachable, fabric_with_lag, ip, lag_member_usable, start, status_at,
    wait_for, wait_member,
};
use p4fabric::compile::names::P_LAG;
use p4fabric::config::PortRef;
use p4fabric::p4rt::Entity;
use p4fabric::testkit::lab::run::{probe, LabRun};

/// The worst outage a member's carrier loss may cause: bmv2 and the
/// controller each poll port status every 200 ms, plus one recompile and
/// write (measured: 150 ms).
const CARRIER_OUTAGE: Duration = Duration::from_millis(1000);

/// The member ports of LAG group `id` that `switch` holds (read back).
async fn selector_ports(run: &LabRun, switch: &str, id: u32) -> Option<Vec<u32>> {
    let c = run.check().await;
    let ents = c.installed.get(switch)?;
    ents.values().find_map(|e| match e {
        Entity::Group(g) if g.profile == P_LAG && g.group_id == id => {
            Some(g.members.iter().map(|m| m.member_id).collect())
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lacp_members_sync_time_out_and_come_back() {
    p4fabric::require_lab_run!();
    let fabric = fabric_with_lag();
    let (run, ctl) = start(&fabric, "p4f-pa-").await;
    let m1: PortRef = "leaf1/5".parse().unwrap();
    let m2: PortRef = "leaf2/5".parse().unwrap();
    let bond = || run.lab.bond("bond1").expect("bond1's forwarder");

    // Both members in sync, on both sides.
    for m in [&m1, &m2] {
        assert!(
            wait_member(&run, "bond1", m, true).await,
            "{m} never usable"
        );
    }
    let lacp = bond().lacp().expect("LACP bond");
    assert!(
        lacp.iter().all(|m| m.distributing()),
        "server side: {lacp:?}"
    );
    assert_eq!(
        lacp[0].partner.map(|p| p.system),
        lacp[1].partner.map(|p| p.system),
        "the server must see one partner system on both leaves"
    );
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "{:?}", c.pending);
    assert_eq!(selector_ports(&run, "leaf1", 1).await, Some(vec![5]));
    assert_eq!(selector_ports(&run, "leaf2", 1).await, Some(vec![5]));
    // LACPDUs are the bond's, not a host's: their sources (the lab bond's
    // 02:1a:c9:... member MACs) must not be learned.
    let status = run.status().await.expect("status");
    let lacp_hosts: Vec<&String> = status
        .keys()
        .filter(|k| k.starts_with("hosts/") && k.contains("02:1a:c9"))
        .collect();
    assert!(
        lacp_hosts.is_empty(),
        "LACPDU senders learned: {lacp_hosts:?}"
    );

    // Traffic from the server leaves through both leaves.
    let probes = [
        probe("srv", "a1", ip("10.0.10.11")),
        probe("srv", "a2", ip("10.0.10.12")),
        probe("srv", "b1", ip("10.0.20.11")),
        probe("srv", "b2", ip("10.0.20.12")),
        probe("a1", "srv", ip("10.0.20.30")),
        probe("b2", "srv", ip("10.0.20.30")),
    ];
    assert_reachable(&run, &probes, 5, "before");
    let sent_before = bond().sent();
    let traffic = run
        .traffic(&probes, Duration::from_millis(50))
        .expect("traffic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent: Vec<u64> = bond()
        .sent()
        .iter()
        .zip(&sent_before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(
        sent.iter().all(|n| *n > 0),
        "server frames per member (leaf1, leaf2): {sent:?}"
    );

    // leaf2's member: the server stops sending LACPDUs there.
    bond().set_lacp_muted(1, true);
    assert!(
        wait_member(&run, "bond1", &m2, false).await,
        "{m2} did not time out"
    );
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "after the timeout: {:?}", c.pending);
    assert_ne!(
        selector_ports(&run, "leaf2", 1).await,
        Some(vec![5]),
        "{m2} still in leaf2's selector"
    );
    // It stays out while unsynced, though the server still hears us.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lag_member_usable(&run, "bond1", &m2).await, Some(false));
    assert_eq!(lag_member_usable(&run, "bond1", &m1).await, Some(true));
    let lacp = bond().lacp().expect("LACP bond");
    assert!(
        lacp[0].distributing() && !lacp[1].distributing(),
        "server side: {lacp:?}"
    );
    assert_outages(&traffic.stop(), Duration::from_secs(4), "LACP timeout");

    // Back: only after the exchange syncs it.
    bond().set_lacp_muted(1, false);
    assert!(
        wait_member(&run, "bond1", &m2, true).await,
        "{m2} did not come back"
    );
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "after the resync: {:?}", c.pending);
    assert_eq!(selector_ports(&run, "leaf2", 1).await, Some(vec![5]));
    assert!(bond()
        .lacp()
        .expect("LACP")
        .iter()
        .all(|m| m.distributing()));
    assert_reachable(&run, &probes, 3, "after resync");

    // leaf1's member loses carrier. Its group on leaf1 has that one
    // member: the switch must not crash when it deactivates it (it did
    // while every member was watched), and the port-status event takes
    // the member out (before port status: the 3 s LACP timeout).
    let traffic = run
        .traffic(&probes, Duration::from_millis(50))
        .expect("traffic");
    run.lab.set_edge_carrier(&m1, false).expect("carrier off");
    assert!(
        wait_member(&run, "bond1", &m1, false).await,
        "{m1} did not go out without carrier"
    );
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "after carrier loss: {:?}", c.pending);
    assert_outages(&traffic.stop(), CARRIER_OUTAGE, "carrier loss");
    run.lab.set_edge_carrier(&m1, true).expect("carrier on");
    assert!(
        wait_member(&run, "bond1", &m1, true).await,
        "{m1} did not come back with carrier"
    );
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "after carrier is back: {:?}", c.pending);
    ctl.stop().await;
}

/// Ports the controller reports down (`status/observed`).
async fn ports_down(run: &LabRun) -> Vec<String> {
    status_at(run, "observed")
        .await
        .and_then(|o| serde_json::from_value(o.get("ports_down")?.clone()).ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_lag_member_losing_carrier_leaves_at_once() {
    p4fabric::require_lab_run!();
    let mut fabric = fabric_with_lag();
    for lag in fabric.lags.values_mut() {
        lag.protocol = p4fabric::config::LagMode::Static;
    }
    let (run, ctl) = start(&fabric, "p4f-ps-").await;
    let m1: PortRef = "leaf1/5".parse().unwrap();
    let probes = [
        probe("srv", "a1", ip("10.0.10.11")),
        probe("srv", "b1", ip("10.0.20.11")),
        probe("a1", "srv", ip("10.0.20.30")),
        probe("b2", "srv", ip("10.0.20.30")),
    ];
    assert_reachable(&run, &probes, 5, "before");
    for round in 0..2 {
        let traffic = run
            .traffic(&probes, Duration::from_millis(50))
            .expect("traffic");
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.lab.set_edge_carrier(&m1, false).expect("carrier off");
        let seen = wait_for(Duration::from_secs(5), || async {
            ports_down(&run)
                .await
                .contains(&m1.to_string())
                .then_some(())
        })
        .await;
        assert!(seen.is_some(), "round {round}: {m1} never reported down");
        let c = run.wait_converged(Duration::from_secs(10)).await;
        assert!(c.converged(), "after carrier loss: {:?}", c.pending);
        tokio::time::sleep(Duration::from_secs(1)).await;
        run.lab.set_edge_carrier(&m1, true).expect("carrier on");
        let back = wait_for(Duration::from_secs(5), || async {
            (!ports_down(&run).await.contains(&m1.to_string())).then_some(())
        })
        .await;
        assert!(back.is_some(), "round {round}: {m1} never reported up");
        let c = run.wait_converged(Duration::from_secs(10)).await;
        assert!(c.converged(), "after carrier is back: {:?}", c.pending);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_outages(
            &traffic.stop(),
            CARRIER_OUTAGE,
            "static member carrier loss",
        );
    }
    assert_reachable(&run, &probes, 3, "after");
    ctl.stop().await;
}
