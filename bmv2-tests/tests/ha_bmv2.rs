//! Controller HA on real bmv2 (issue #8): two `p4fabric run` processes on
//! one etcd, a 2-leaf 2-spine fabric, pings between hosts on different
//! leaves the whole time.
//!
//! - SIGKILL the leader: the standby leads within lease TTL + 1 s, no ping
//!   is lost, and the new leader writes nothing to the stable fabric; a
//!   configuration change applied afterwards reaches the switches.
//! - SIGTERM the leader: leadership is released at once (well under the
//!   TTL), again no ping lost and no write.

use std::time::{Duration, Instant};

use p4fabric::config::Fabric;
use p4fabric::lab::process::ControllerProcess;
use p4fabric::lab::reach;
use p4fabric::lab::run::{FlowReport, LabRun};
use p4fabric::testing::within;

const TTL: Duration = Duration::from_secs(2);
const SWITCHES: usize = 4;

const FABRIC: &str = r#"
switches:
  leaf1: {address: "127.0.0.1:1", device_id: 1, role: leaf, label: 101, fabric_ports: [1, 2]}
  leaf2: {address: "127.0.0.1:2", device_id: 2, role: leaf, label: 102, fabric_ports: [1, 2]}
  spine1: {address: "127.0.0.1:3", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}
  spine2: {address: "127.0.0.1:4", device_id: 4, role: spine, label: 202, fabric_ports: [1, 2]}
links:
  leaf1-spine1: {a: leaf1/1, b: spine1/1}
  leaf1-spine2: {a: leaf1/2, b: spine2/1}
  leaf2-spine1: {a: leaf2/1, b: spine1/2}
  leaf2-spine2: {a: leaf2/2, b: spine2/2}
ports:
  leaf1/3: {mode: access, vlan: 10}
  leaf2/3: {mode: access, vlan: 10}
  leaf2/4: {mode: access, vlan: 20}
vlans:
  10: {name: a, ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {name: b, ipv4_gateway: 10.0.20.1/24}
hosts:
  h1: {mac: "02:00:00:00:0a:01", vlan: 10, ips: [10.0.10.11, "2001:db8:10::11"], attachment: {port: leaf1/3}}
  h2: {mac: "02:00:00:00:0a:02", vlan: 10, ips: [10.0.10.12, "2001:db8:10::12"], attachment: {port: leaf2/3}}
  h3: {mac: "02:00:00:00:0b:03", vlan: 20, ips: [10.0.20.13], attachment: {port: leaf2/4}}
"#;

fn fabric() -> Fabric {
    serde_yaml::from_str(FABRIC).expect("test fabric")
}

/// Every switch has the instance's primary session and holds its desired
/// state (the agents' own view; the read-back check comes separately).
fn settled(c: &ControllerProcess) -> bool {
    c.metrics().is_ok_and(|m| {
        m.sum("p4fabric_switch_sessions_up") as usize == SWITCHES
            && m.per_switch("p4fabric_switch_converged").len() == SWITCHES
            && m.sum("p4fabric_switch_converged") as usize == SWITCHES
    })
}

/// Prints the flows; asserts none lost a ping (with the controllers' logs
/// if one did).
fn lossless(what: &str, reports: &[FlowReport], ctls: &[&ControllerProcess]) {
    for r in reports {
        eprintln!("{what}: {r}");
    }
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| r.received == 0 || r.lost() > 0)
        .map(|r| r.to_string())
        .collect();
    if !bad.is_empty() {
        for c in ctls {
            eprintln!("---- {} ----\n{}", c.id, c.log());
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: flows with loss:\n{}",
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_or_stopped_standby_takes_over_hitless_and_writes_nothing() {
    p4fabric::require_lab_run!();
    p4fabric::lab::init_test_logging();
    let started = Instant::now();
    let mut run = LabRun::start(&fabric(), &p4fabric::lab::run::ns_prefix("p4f-ha"))
        .await
        .expect("lab");
    let logs = tempfile::tempdir().expect("tempdir");
    let ep = run.endpoint();
    let mut a = ControllerProcess::start(&ep, "ha-a", TTL, logs.path()).expect("controller a");
    assert!(
        within(Duration::from_secs(15), || a.is_leader())
            .await
            .is_some(),
        "a never led:\n{}",
        a.log()
    );
    let mut b = ControllerProcess::start(&ep, "ha-b", TTL, logs.path()).expect("controller b");
    assert!(
        run.wait_discovered(Duration::from_secs(60)).await,
        "discovery did not see every link:\n{}",
        a.log()
    );
    let c = run.wait_converged(Duration::from_secs(60)).await;
    assert!(c.converged(), "not converged: {:?}", c.pending);
    assert!(!b.is_leader(), "two leaders");

    // Flows between the leaves (v4 bridged + routed, v6 bridged).
    let probes: Vec<_> = reach::probes(run.fabric())
        .into_iter()
        .filter(|p| (p.from == "h1") != (p.to == "h1"))
        .collect();
    let interval = Duration::from_millis(20);

    // 1. kill -9 the leader.
    let traffic = run.traffic(&probes, interval).expect("traffic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    a.kill();
    let took = within(TTL + Duration::from_secs(3), || b.is_leader()).await;
    let took = took.unwrap_or_else(|| panic!("b did not lead:\n{}", b.log()));
    eprintln!(
        "SIGKILL failover: b leads {} ms after the kill",
        took.as_millis()
    );
    assert!(
        took <= TTL + Duration::from_secs(1),
        "b led only after {took:?} (TTL {TTL:?})"
    );
    assert!(
        within(Duration::from_secs(15), || settled(&b))
            .await
            .is_some(),
        "b did not settle:\n{}",
        b.log()
    );
    eprintln!(
        "b primary on every switch {} ms after the kill",
        killed.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports = traffic.stop();
    let b_writes = b.writes().expect("b metrics");
    let c = run.check().await;
    assert!(c.converged(), "after the failover: {:?}", c.pending);
    lossless("SIGKILL failover", &reports, &[&b]);
    assert_eq!(b_writes, 0, "the new leader wrote to a stable fabric");

    // 2. A change after the failover reaches the switches.
    let changed = p4fabric::lab::run::extended(
        run.fabric(),
        r#"
ports:
  leaf1/5: {mode: access, vlan: 30}
vlans:
  30: {name: c, ipv4_gateway: 10.0.30.1/24}
routes:
  test-net: {prefix: 192.0.2.0/24, next_hops: [10.0.20.13]}
"#,
    )
    .expect("change");
    run.apply(&changed).await.expect("apply");
    let c = run.wait_converged(Duration::from_secs(30)).await;
    assert!(c.converged(), "change not installed: {:?}", c.pending);
    // /metrics is a snapshot the controller refreshes every status
    // interval (500 ms): a fast (release) build converges before the
    // counter shows the writes, so wait for it rather than read it once.
    let wrote = within(Duration::from_secs(3), || b.writes().is_ok_and(|w| w > 0)).await;
    let b_writes = b.writes().expect("b metrics");
    assert!(
        wrote.is_some() && b_writes > 0,
        "the change was installed by nobody?"
    );
    eprintln!("change after failover: {b_writes} updates written by b");

    // 3. SIGTERM the leader: leadership is handed over at once.
    let mut a2 = ControllerProcess::start(&ep, "ha-a2", TTL, logs.path()).expect("controller a2");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!a2.is_leader(), "two leaders");
    let traffic = run.traffic(&probes, interval).expect("traffic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = Instant::now();
    let status = b.terminate(Duration::from_secs(10)).expect("b stops");
    assert!(status.success(), "b exited with {status}:\n{}", b.log());
    within(TTL + Duration::from_secs(3), || a2.is_leader())
        .await
        .unwrap_or_else(|| panic!("a2 did not lead:\n{}", a2.log()));
    let took = stopping.elapsed();
    eprintln!(
        "SIGTERM handover: a2 leads {} ms after SIGTERM",
        took.as_millis()
    );
    assert!(took < TTL, "a2 waited for the lease to expire ({took:?})");
    assert!(
        within(Duration::from_secs(15), || settled(&a2))
            .await
            .is_some(),
        "a2 did not settle:\n{}",
        a2.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports = traffic.stop();
    let a2_writes = a2.writes().expect("a2 metrics");
    let c = run.check().await;
    assert!(c.converged(), "after the handover: {:?}", c.pending);
    eprintln!("a2 wrote {a2_writes} updates");
    lossless("SIGTERM handover", &reports, &[&b, &a2]);
    assert_eq!(a2_writes, 0, "the new leader wrote to a stable fabric");
    let _ = a2.terminate(Duration::from_secs(10));
    eprintln!("ha_bmv2 took {} s", started.elapsed().as_secs());
}
