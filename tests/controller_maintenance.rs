//! Drain / undrain through the real etcd API (`maintenance/<switch>`)
//! against a controller and in-process switches (examples/fabric.yaml):
//! the CLI writes the key, the controller routes around the switch, the
//! switches hold exactly that, status says so; bad values and refused
//! drains are reported and change nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use p4fabric::cli::drain::{DrainArgs, UndrainArgs};
use p4fabric::cli::EtcdArgs;
use p4fabric::compile::names::P_FABRIC;
use p4fabric::config::status::{MaintenanceState, MaintenanceStatus};
use p4fabric::p4rt::entity::Entity;
use p4fabric::p4rt::SwitchEntities;
use p4fabric::testkit::SimFabric;

/// The ports of each fabric-selector group a switch holds (member id = port).
fn fabric_groups(e: &SwitchEntities) -> BTreeMap<u32, Vec<u32>> {
    e.values()
        .filter_map(|e| match e {
            Entity::Group(g) if g.profile == P_FABRIC => {
                Some((g.group_id, g.members.iter().map(|m| m.member_id).collect()))
            }
            _ => None,
        })
        .collect()
}

async fn until<T>(timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_key_moves_traffic_and_reports_status() {
    let fabric = p4fabric::testkit::lab::run::demo_fabric().expect("example");
    let Some(lab) = SimFabric::start(fabric).await.expect("sim fabric") else {
        return;
    };
    let (targets, store) = (&*lab.targets, &lab.store);
    let ctl = lab.controller("maint").await.expect("controller");
    let etcd_args = EtcdArgs::plain(&lab.endpoint());
    // Every leaf spreads over both spines (leaf port 1: spine1, 2: spine2).
    let spread = |ports: &[u32]| {
        let ports = ports.to_vec();
        move || {
            ["leaf1", "leaf2", "leaf3", "leaf4"].iter().all(|l| {
                let g = fabric_groups(&targets[*l].entities());
                g.len() == 3 && g.values().all(|p| *p == ports)
            })
        }
    };
    let both = spread(&[1, 2]);
    assert!(
        until(Duration::from_secs(20), async || {
            (both() && ctl.agents_converged(targets.len())).then_some(())
        })
        .await
        .is_some(),
        "never converged over both spines"
    );
    // Everything but the flood group (the tree moves off a drained spine:
    // no flood copy reaches it any more, see docs/operations.md).
    let unicast = |e: SwitchEntities| -> SwitchEntities {
        e.into_iter()
            .filter(|(_, v)| !matches!(v, Entity::Multicast(_)))
            .collect()
    };
    let spine1_before = unicast(targets["spine1"].entities());

    // A bad value is reported on its key and changes nothing.
    store
        .commit(
            vec![("maintenance/spine2".into(), br#"{"drian": true}"#.to_vec())],
            vec![],
        )
        .await
        .expect("put");
    let err = until(Duration::from_secs(10), async || {
        lab.status()
            .await
            .expect("status")
            .get("config/maintenance/spine2")
            .cloned()
    })
    .await
    .expect("status/config/maintenance/spine2");
    assert!(err.to_string().contains("drian"), "{err}");
    store
        .commit(vec![], vec!["maintenance/spine2".into()])
        .await
        .expect("delete");

    // Drain spine1 with the CLI: no leaf uses it, it keeps its entries.
    p4fabric::cli::drain::drain(&DrainArgs {
        switch: "spine1".into(),
        force: false,
        reason: Some("optics".into()),
        wait: Some(20),
        etcd: etcd_args.clone(),
    })
    .await
    .expect("drain spine1");
    assert!(spread(&[2])(), "a leaf still uses spine1");
    assert!(
        unicast(targets["spine1"].entities()) == spine1_before,
        "the drained spine's unicast entries changed"
    );
    let s: MaintenanceStatus =
        serde_json::from_value(lab.status().await.expect("status")["maintenance/spine1"].clone())
            .expect("maintenance status");
    assert_eq!(s.state, MaintenanceState::Drained);
    assert!(s.detail.contains("counters not available"), "{}", s.detail);
    assert_eq!(s.reason.as_deref(), Some("optics"));

    // The last spine is refused, by the CLI and by the controller.
    let e = p4fabric::cli::drain::drain(&DrainArgs {
        switch: "spine2".into(),
        force: false,
        reason: None,
        wait: None,
        etcd: etcd_args.clone(),
    })
    .await
    .expect_err("last spine");
    assert!(e.to_string().contains("last spine"), "{e}");
    store
        .commit(
            vec![("maintenance/spine2".into(), br#"{"drain": true}"#.to_vec())],
            vec![],
        )
        .await
        .expect("put");
    let refused = until(Duration::from_secs(10), async || {
        let v = lab
            .status()
            .await
            .expect("status")
            .get("maintenance/spine2")
            .cloned()?;
        let s: MaintenanceStatus = serde_json::from_value(v).ok()?;
        (s.state == MaintenanceState::Refused).then_some(s)
    })
    .await
    .expect("spine2 refused");
    assert!(refused.detail.contains("last spine"), "{}", refused.detail);
    assert!(spread(&[2])(), "the refused drain changed the groups");
    store
        .commit(vec![], vec!["maintenance/spine2".into()])
        .await
        .expect("delete");

    // A leaf with a single-homed host: refused, naming it.
    let e = p4fabric::cli::drain::drain(&DrainArgs {
        switch: "leaf4".into(),
        force: false,
        reason: None,
        wait: None,
        etcd: etcd_args.clone(),
    })
    .await
    .expect_err("leaf4 has vm4 and vm5 alone");
    assert!(
        e.to_string().contains("vm4") && e.to_string().contains("vm5"),
        "{e}"
    );

    // Undrain: back in every leaf's groups, status gone.
    p4fabric::cli::drain::undrain(&UndrainArgs {
        switch: "spine1".into(),
        wait: Some(20),
        etcd: etcd_args.clone(),
    })
    .await
    .expect("undrain spine1");
    assert!(spread(&[1, 2])(), "spine1 not back in the groups");
    assert!(!lab
        .status()
        .await
        .expect("status")
        .contains_key("maintenance/spine1"));
    ctl.stop().await;
}
