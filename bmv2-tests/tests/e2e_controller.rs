//! The running controller end to end (issue #6) on real bmv2 switches and
//! a real etcd: a 2-leaf, 1-spine fabric built by `LabRun`.
//!
//! Convergence is always checked by reading the switches back and
//! comparing with a desired state compiled by the harness (from the config
//! and the controller's reported observations), never by trusting the
//! controller. Writes are counted with the agents' `updates_written` and
//! compared with the difference between two read-backs.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use bmv2_tests::readback;
use bmv2_tests::{packet, reach};
use p4fabric::config::Fabric;
use p4fabric::p4rt::SwitchEntities;
use p4fabric::testkit::lab::run::{LabController, LabRun};

const FABRIC: &str = r#"
switches:
  leaf1: {address: "127.0.0.1:1", device_id: 1, role: leaf, label: 101, fabric_ports: [1]}
  leaf2: {address: "127.0.0.1:2", device_id: 2, role: leaf, label: 102, fabric_ports: [1]}
  spine1: {address: "127.0.0.1:3", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}
links:
  leaf1-spine1: {a: leaf1/1, b: spine1/1}
  leaf2-spine1: {a: leaf2/1, b: spine1/2}
ports:
  leaf1/3: {mode: access, vlan: 10}
  leaf2/3: {mode: access, vlan: 10}
  leaf2/4: {mode: access, vlan: 20}
  leaf2/5: {mode: access, vlan: 10, description: "a host the config does not name"}
vlans:
  10: {name: web, ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {name: db, ipv4_gateway: 10.0.20.1/24}
hosts:
  h1: {mac: "02:00:00:00:00:01", vlan: 10, ips: [10.0.10.11, "2001:db8:10::11"], attachment: {port: leaf1/3}}
  h2: {mac: "02:00:00:00:00:02", vlan: 10, ips: [10.0.10.12, "2001:db8:10::12"], attachment: {port: leaf2/3}}
  h3: {mac: "02:00:00:00:00:03", vlan: 20, ips: [10.0.20.13], attachment: {port: leaf2/4}}
"#;

/// A named edit of the configuration.
type Change = fn(&mut Fabric);

async fn until<F: Future<Output = bool>>(timeout: Duration, mut f: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Reads every switch back until each holds what the harness compiled.
async fn converge(run: &LabRun, what: &str) -> BTreeMap<String, SwitchEntities> {
    let started = Instant::now();
    let c = run.wait_converged(Duration::from_secs(60)).await;
    assert!(c.converged(), "{what}: not converged: {:?}", c.pending);
    eprintln!(
        "{what}: converged (read back) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    c.installed
}

/// Waits until the controller's agents hold their latest desired state.
async fn agents_settle(ctl: &LabController, what: &str) {
    assert!(
        until(Duration::from_secs(30), || async {
            ctl.agents_converged(3)
        })
        .await,
        "{what}: agents did not converge"
    );
}

/// Entities that differ between two read-backs (added, removed, changed).
fn delta(a: &BTreeMap<String, SwitchEntities>, b: &BTreeMap<String, SwitchEntities>) -> u64 {
    let empty = SwitchEntities::new();
    let switches: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut n = 0;
    for sw in switches {
        let (x, y) = (a.get(sw).unwrap_or(&empty), b.get(sw).unwrap_or(&empty));
        n += x.iter().filter(|(k, v)| y.get(*k) != Some(*v)).count();
        n += y.keys().filter(|k| !x.contains_key(*k)).count();
    }
    n as u64
}

fn pings_ok(run: &LabRun, what: &str) {
    let results = run.lab.ping_all(&reach::probes(run.fabric()));
    let failed = reach::failures(&results);
    assert!(
        failed.is_empty(),
        "{what}: pings failed:\n{}",
        failed.join("\n")
    );
    eprintln!("{what}: {} pings ok", results.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_on_bmv2_converges_writes_deltas_restores_and_restarts_silently() {
    p4fabric::require_lab_run!();
    p4fabric::testkit::lab::init_test_logging();
    let t0 = Instant::now();
    let mut fabric: Fabric = serde_yaml::from_str(FABRIC).expect("fabric");
    let prefix = format!("e2e{}-", bmv2_tests::unique_tag());
    let mut run = LabRun::start(&fabric, &prefix).await.expect("lab");

    // 1. Apply, converge (read back), real traffic across the spine.
    let ctl = run.start_controller("e2e").await.expect("controller");
    assert!(
        run.wait_discovered(Duration::from_secs(30)).await,
        "discovery did not see every configured link"
    );
    converge(&run, "initial").await;
    agents_settle(&ctl, "initial").await;
    pings_ok(&run, "initial");

    // 1b. A host the configuration does not name is learned from its ARP
    // (MAC learning + the binding): host entries on every leaf.
    let sock = run
        .lab
        .switch("leaf2")
        .expect("leaf2")
        .port_socket(5)
        .expect("leaf2/5");
    let learned_mac = "02:00:00:00:0a:01";
    let arp = packet::pad(packet::arp_frame(
        [0xff; 6],
        packet::mac(learned_mac),
        1,
        [10, 0, 10, 77],
        [10, 0, 10, 1],
    ));
    let path = format!("hosts/10/{learned_mac}");
    let learned = until(Duration::from_secs(20), || {
        let (sock, arp, run, path) = (&sock, &arp, &run, &path);
        async move {
            let _ = sock.send(arp);
            run.status().await.is_ok_and(|s| {
                s.get(path)
                    .and_then(|h| h["ips"].as_array())
                    .is_some_and(|ips| !ips.is_empty())
            })
        }
    })
    .await;
    assert!(learned, "{learned_mac} (10.0.10.77) learned");
    let base = converge(&run, "host learned").await;
    agents_settle(&ctl, "host learned").await;

    // 2. Config changes write exactly their delta.
    let changes: [(&str, Change); 3] = [
        ("add VLAN 30 + port leaf1/5", |f| {
            f.vlans.insert(
                30,
                serde_yaml::from_str("{name: storage, ipv4_gateway: 10.0.30.1/24}").expect("vlan"),
            );
            f.ports.insert(
                "leaf1/5".parse().expect("port"),
                serde_yaml::from_str("{mode: access, vlan: 30}").expect("port"),
            );
        }),
        ("add route 192.0.2.0/24 via h2", |f| {
            f.routes.insert(
                "r1".into(),
                serde_yaml::from_str("{prefix: 192.0.2.0/24, next_hops: [10.0.10.12]}")
                    .expect("route"),
            );
        }),
        ("remove VLAN 30, port leaf1/5 and the route", |f| {
            f.vlans.remove(&30);
            f.ports.remove(&"leaf1/5".parse().expect("port"));
            f.routes.remove("r1");
        }),
    ];
    let mut before = base.clone();
    for (what, change) in changes {
        let writes_before = ctl.writes();
        change(&mut fabric);
        run.apply(&fabric).await.expect("apply");
        let after = converge(&run, what).await;
        agents_settle(&ctl, what).await;
        // The metrics are published every status interval: the switches
        // may hold the change before they show it (the writes counted
        // would be those of the previous publication).
        let total: usize = after.values().map(|m| m.len()).sum();
        assert!(
            until(Duration::from_secs(10), || async {
                ctl.entities_installed() == total
            })
            .await,
            "{what}: agents report {} entities, the switches hold {total}",
            ctl.entities_installed()
        );
        let written = ctl.writes() - writes_before;
        let d = delta(&before, &after);
        assert!(d > 0, "{what}: nothing changed on the switches");
        assert_eq!(
            written, d,
            "{what}: {written} writes for a delta of {d} entities"
        );
        eprintln!("{what}: {written} writes (of {total} entities)");
        before = after;
    }
    assert_eq!(
        before, base,
        "removing the changes restores the first state"
    );

    // 3. kill -9 leaf2; leaf1 keeps being updated (a route local to it is
    // added meanwhile); leaf2 is restored in full once it is back.
    run.lab.switch_mut("leaf2").expect("leaf2").kill();
    let old_leaf1 = readback::expected(run.fabric())
        .remove("leaf1")
        .unwrap_or_default();
    fabric.routes.insert(
        "r2".into(),
        serde_yaml::from_str("{prefix: 198.51.100.0/24, next_hops: [10.0.10.11]}").expect("route"),
    );
    run.apply(&fabric).await.expect("apply");
    let new_leaf1 = readback::expected(run.fabric())
        .remove("leaf1")
        .unwrap_or_default();
    let added: Vec<_> = new_leaf1
        .keys()
        .filter(|k| !old_leaf1.contains_key(*k))
        .cloned()
        .collect();
    assert!(!added.is_empty(), "r2 adds entries on leaf1");
    let leaf1 = run.fabric().switches["leaf1"].clone();
    let reg = run.pipelines["fabric"].registry.clone();
    let leaf1_updated = until(Duration::from_secs(30), || {
        let (leaf1, reg, added) = (&leaf1, &reg, &added);
        async move {
            readback::read_switch(leaf1, reg)
                .await
                .is_ok_and(|got| added.iter().all(|k| got.contains_key(k)))
        }
    })
    .await;
    assert!(leaf1_updated, "leaf1 updated while leaf2 is down");
    let restart = Instant::now();
    run.lab
        .switch_mut("leaf2")
        .expect("leaf2")
        .restart_same_address()
        .expect("restart leaf2");
    assert!(
        run.wait_discovered(Duration::from_secs(30)).await,
        "leaf2's link is seen again"
    );
    converge(&run, "leaf2 restarted").await;
    eprintln!(
        "leaf2 restored {:.1}s after its restart",
        restart.elapsed().as_secs_f64()
    );
    pings_ok(&run, "after leaf2 restart");

    // 4. A controller restart reads back, recovers the learned host and
    // writes nothing.
    agents_settle(&ctl, "before the controller restart").await;
    let state = converge(&run, "before the controller restart").await;
    ctl.stop().await;
    let ctl = run.start_controller("e2e-2").await.expect("controller");
    agents_settle(&ctl, "after the controller restart").await;
    assert!(
        run.wait_discovered(Duration::from_secs(30)).await,
        "the new controller sees every link"
    );
    let after = converge(&run, "after controller restart").await;
    agents_settle(&ctl, "after the controller restart").await;
    assert_eq!(ctl.writes(), 0, "a restarted controller writes nothing");
    assert_eq!(after, state, "the switches hold what they held");
    let status = run.status().await.expect("status");
    assert!(
        status.contains_key(&path),
        "the new controller knows the learned host"
    );
    pings_ok(&run, "after controller restart");
    ctl.stop().await;
    eprintln!("e2e_controller: {:.1}s", t0.elapsed().as_secs_f64());
}
