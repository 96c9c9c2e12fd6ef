//! Port status over gNMI, end to end below the controller: an in-process
//! gNMI server plays a Tofino leaf's switch OS (interfaces named by the
//! front panel), the switch's target picks the gNMI source from its
//! `port_events`, and the events, fed to the protocols as the controller
//! does, take a static LAG member and a fabric link out of service in the
//! topology the compiler uses — and bring them back.

use std::time::{Duration, Instant};

use p4fabric::config::{ConfigState, Fabric, LagMode, PortRef};
use p4fabric::portstatus;
use p4fabric::portstatus::gnmi_server::GnmiTestServer;
use p4fabric::portstatus::PortEvent;
use p4fabric::protocols::Protocols;
use p4fabric::target::{for_switch, PortStatusSource};
use p4fabric::topo::{ObservedState, Topology};
use tokio::sync::mpsc;

fn tofino_fabric() -> Fabric {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fabric-tofino.yaml");
    let text = std::fs::read_to_string(path).expect("example");
    let kvs = p4fabric::config::keys::document_to_raw(&text).expect("parses");
    let (fabric, errors) = ConfigState::new().reset(kvs);
    assert!(errors.is_empty(), "{errors:?}");
    fabric
}

fn topology(f: &Fabric, p: &Protocols) -> Topology {
    let observed = ObservedState {
        discovered: p.observed_links(),
        ports_down: p.ports_down(),
        lacp_unsynced: p.lacp_unsynced(),
        ..ObservedState::default()
    };
    Topology::build(f, &observed, None)
}

/// Feeds events to the protocols until `done` holds of the topology.
async fn until(
    f: &Fabric,
    p: &mut Protocols,
    rx: &mut mpsc::Receiver<PortEvent>,
    done: impl Fn(&Topology) -> bool,
) -> Topology {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = topology(f, p);
        if done(&t) {
            return t;
        }
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the expected port events in time")
            .expect("source running");
        p.on_port_status(&ev.switch, ev.port, ev.up, Instant::now());
    }
}

#[tokio::test]
async fn gnmi_events_take_a_lag_member_and_a_fabric_link_out_of_service() {
    let mut fabric = tofino_fabric();
    // A static LAG: only port status takes its members out (an LACP one
    // without a partner is out of sync anyway).
    fabric.lags.get_mut("bond1").expect("bond1").protocol = LagMode::Static;
    let server = GnmiTestServer::start(&[
        ("1/0", true),
        ("2/0", true),
        ("3/0", true),
        ("4/0", true),
        ("mgmt0", true),
    ])
    .await
    .expect("gNMI server");
    let leaf1 = fabric.switches.get_mut("leaf1").expect("leaf1");
    leaf1.port_events = Some(format!("gnmi://{}", server.addr()));
    let target = for_switch("leaf1", leaf1).expect("tofino target");
    let source = target.port_status().expect("leaf1 has port_events");
    assert!(
        matches!(source, PortStatusSource::Gnmi { .. }),
        "a Tofino switch reads port status over gNMI: {source:?}"
    );
    let (tx, mut rx) = mpsc::channel(64);
    let task = portstatus::spawn("leaf1".into(), &source, tx);

    let mut p = Protocols::new(&fabric, Instant::now());
    let member: PortRef = "leaf1/4".parse().expect("port");
    let uplink: PortRef = "leaf1/1".parse().expect("port");
    let in_service = |t: &Topology| {
        let lag = t
            .lag("bond1")
            .expect("bond1")
            .usable_on("leaf1")
            .contains(&4);
        let link = t.peer(&uplink).expect("configured link").1.state.up;
        (lag, link)
    };
    // Every port reported up: both in service.
    let t = until(&fabric, &mut p, &mut rx, |t| {
        t.observed().ports_down.is_empty() && in_service(t) == (true, true)
    })
    .await;
    for label in [103, 104] {
        assert_eq!(t.next_hops("leaf1", label), &[1, 2], "ECMP to leaf {label}");
    }

    // The member's port goes down on the switch (front panel 4/0).
    server.set("4/0", false);
    let t = until(&fabric, &mut p, &mut rx, |t| !in_service(t).0).await;
    assert!(t.observed().ports_down.contains(&member));
    assert_eq!(
        t.lag("bond1").expect("bond1").usable_on("leaf1"),
        &[] as &[u32]
    );
    assert!(in_service(&t).1, "the uplink stays");

    // The uplink to spine1 (front panel 1/0) goes down.
    server.set("1/0", false);
    let t = until(&fabric, &mut p, &mut rx, |t| !in_service(t).1).await;
    assert!(t.observed().ports_down.contains(&uplink));
    for label in [103, 104] {
        assert_eq!(
            t.next_hops("leaf1", label),
            &[2],
            "only 2/0 to leaf {label}"
        );
    }

    // Both back.
    server.set("4/0", true);
    server.set("1/0", true);
    until(&fabric, &mut p, &mut rx, |t| in_service(t) == (true, true)).await;
    task.abort();
    server.stop().await;
}
