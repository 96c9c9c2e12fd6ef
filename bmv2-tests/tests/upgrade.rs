//! Rolling pipeline upgrade (#20) on the demo topology (examples/fabric.yaml:
//! 2 spines, 4 leaves, srv1 and srv1-web dual-homed on a two-leaf LACP bond
//! over leaf1 and leaf2, every other host attached to one leaf alone), with
//! full-mesh IPv4 and IPv6 pings every 100 ms and the dual-homed server's
//! flows every 10 ms beside them (`bmv2_tests::MeshTraffic`, as
//! bmv2-tests/tests/maintenance.rs). When a flow's outage began is taken
//! from its replies' arrival times (`ping -D`), not from sequence numbers.
//!
//! `p4fabric upgrade` (the CLI's code, against the lab's etcd) names a
//! second build: p4/testing/build/fabric_v2.*, the fabric program plus one
//! table (`testkit::second_pipeline`: another P4Info, bmv2 JSON and
//! cookie). Each bmv2 really reloads (SetForwardingPipelineConfig with the
//! new JSON: its tables start empty) and is written again; the test also
//! reads the new table's P4Info entry back from every switch.
//!
//! Expected: every switch ends on the new cookie, status/upgrade says done;
//! 0 pings lost on every flow between hosts that are not single-homed (here
//! srv1 <-> srv1-web) and on every flow while the spines reload; a flow
//! from or to a single-homed host may lose while that host's leaf reloads
//! (measured: per flow, the longest gap and which switch was being
//! upgraded when it began). A baseline (the same pings, nothing happening)
//! comes first: if it loses, the figures mean nothing and the test fails
//! saying so. Figures: docs/operations.md.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bmv2_tests::MeshTraffic;
use p4fabric::cli::upgrade::UpgradeArgs;
use p4fabric::cli::EtcdArgs;
use p4fabric::config::status::UpgradeState;
use p4fabric::config::Attachment;
use p4fabric::p4rt::Pipeline;
use p4fabric::testkit::lab::run::{ns_prefix, LabRun};

/// The table p4/testing/upgrade_probe.p4 adds in the second build.
const NEW_TABLE: &str = "FabricIngress.upgrade_probe.upgrade_probe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_loses_nothing_between_dual_homed_hosts() {
    p4fabric::require_lab_run!();
    p4fabric::testkit::lab::init_test_logging();
    let fabric = p4fabric::testkit::lab::run::demo_fabric().expect("examples/fabric.yaml");
    let (run, ctl, probes) = LabRun::start_serving(&fabric, &ns_prefix("p4f-up"), "upgrade")
        .await
        .expect("lab");
    eprintln!("{}", MeshTraffic::describe(&run, &probes));
    let mut problems = Vec::new();
    // Hosts attached to one leaf alone, and that leaf.
    let alone: BTreeMap<String, String> = fabric
        .hosts
        .iter()
        .filter_map(|(n, h)| match &h.attachment {
            Attachment::Port(p) => Some((n.clone(), p.switch.clone())),
            Attachment::Lag(_) => None,
        })
        .collect();

    let traffic = MeshTraffic::start(&run, &probes).expect("traffic");
    tokio::time::sleep(Duration::from_secs(8)).await;
    for r in traffic.stop() {
        if r.lost() > 0 {
            problems.push(format!(
                "baseline (nothing happening) lost pings: this machine does not carry {}: {r}",
                MeshTraffic::describe(&run, &probes)
            ));
        }
    }

    let v2 = tempfile::tempdir().expect("tempdir");
    p4fabric::testkit::second_pipeline(v2.path()).expect("second build");
    let new = Pipeline::load(v2.path(), "fabric").expect("new build");
    let new_table = new
        .registry
        .table(NEW_TABLE)
        .expect("the second build has the added table")
        .id;
    let etcd = EtcdArgs::plain(&run.endpoint());
    let store = etcd.connect().await.expect("etcd");

    let traffic = MeshTraffic::start(&run, &probes).expect("traffic");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t0 = Instant::now();
    p4fabric::cli::upgrade::run(&UpgradeArgs {
        pipeline_dir: v2.path().to_path_buf(),
        version: Some("v2".into()),
        force: false,
        wait: None,
        etcd: etcd.clone(),
    })
    .await
    .expect("upgrade key written");
    // Which switch was being upgraded when: (from, switch), from the start
    // of the pings.
    let mut timeline: Vec<(Duration, String)> = Vec::new();
    let mut last_phase: Option<(String, Option<String>)> = None;
    // Switches the verify step passed (read back from bmv2 and the
    // forwarding checker), as status shows while each comes back.
    let mut verified: std::collections::BTreeSet<String> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(600);
    let final_state = loop {
        let s = p4fabric::cli::upgrade::read_status(&store)
            .await
            .ok()
            .flatten();
        if let Some(s) = &s {
            let at = s.switch.clone().unwrap_or_default();
            // Every phase printed (ping time: +1 s), switches timed.
            let phase = (at.clone(), s.phase.clone());
            if last_phase.as_ref() != Some(&phase) {
                eprintln!(
                    "[upgrade] +{} ms (ping time): {}",
                    (t0.elapsed() + Duration::from_secs(1)).as_millis(),
                    p4fabric::cli::upgrade::describe(s)
                );
                last_phase = Some(phase);
            }
            if s.phase.as_deref() == Some("undraining")
                && s.detail.contains("verified (")
                && verified.insert(at.clone())
            {
                eprintln!("[upgrade] {at}: {}", s.detail);
            }
            if timeline.last().map(|(_, w)| w) != Some(&at) {
                timeline.push((t0.elapsed() + Duration::from_secs(1), at));
            }
            if t0.elapsed() > Duration::from_secs(2)
                && matches!(s.state, UpgradeState::Done | UpgradeState::Failed)
                && s.pipeline_dir.ends_with(&*v2.path().to_string_lossy())
            {
                break Some(s.clone());
            }
        }
        if Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reports = traffic.stop();
    match &final_state {
        Some(s) if s.state == UpgradeState::Done => {}
        other => problems.push(format!("upgrade not done: {other:?}")),
    }
    let unverified: Vec<&String> = run
        .fabric()
        .switches
        .keys()
        .filter(|n| !verified.contains(*n))
        .collect();
    if !unverified.is_empty() {
        problems.push(format!(
            "not seen verified (read-back + forwarding checker) in status/upgrade: {unverified:?}"
        ));
    }
    // Asked of each switch itself, not of the controller's status.
    for (name, sw) in &run.fabric().switches {
        let opts = p4fabric::p4rt::ClientOptions::new(&sw.address, sw.device_id, 1);
        let Ok(client) = p4fabric::p4rt::Client::connect(opts).await else {
            problems.push(format!("{name}: no P4Runtime connection afterwards"));
            continue;
        };
        let cookie = client.pipeline_cookie().await.ok().flatten();
        if cookie != Some(new.cookie) {
            problems.push(format!(
                "{name} runs cookie {cookie:?}, not the new {:#x}",
                new.cookie
            ));
        }
        // The table only the new build has answers a read (empty: the
        // controller writes nothing to it); the old build would refuse it.
        let read = client
            .read(vec![p4runtime_proto::v1::Entity {
                entity: Some(p4runtime_proto::v1::entity::Entity::TableEntry(
                    p4runtime_proto::v1::TableEntry {
                        table_id: new_table,
                        ..Default::default()
                    },
                )),
            }])
            .await;
        match read {
            Ok(entries) if entries.is_empty() => {}
            other => problems.push(format!(
                "{name}: reading the new build's table {NEW_TABLE}: {other:?}"
            )),
        }
    }
    let c = run.wait_converged(Duration::from_secs(60)).await;
    if !c.converged() {
        problems.push(format!("not converged afterwards: {:?}", c.pending));
    }

    // Which switch was being upgraded at `t` after the pings started.
    let during = |t: Duration| -> String {
        timeline
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    eprintln!(
        "\nrolling upgrade of {} switches in {:.1} s ({})\n{:<30} {:>5} {:>6} {:>6} {:>8}  gap began while upgrading",
        run.fabric().switches.len(),
        took.as_secs_f64(),
        MeshTraffic::describe(&run, &probes),
        "flow",
        "every",
        "sent",
        "lost",
        "gap ms",
    );
    for r in &reports {
        let at = r.outage_started.map(&during).unwrap_or_default();
        eprintln!(
            "{:<30} {:>5} {:>6} {:>6} {:>8}  {}",
            format!("{} -> {} {}", r.probe.from, r.probe.to, r.probe.ip),
            format!("{}ms", r.interval.as_millis()),
            r.sent,
            r.lost(),
            r.longest_outage.as_millis(),
            if r.lost() > 0 { at.as_str() } else { "" }
        );
        if r.received == 0 {
            problems.push(format!("no answer at all: {r}"));
            continue;
        }
        if r.lost() == 0 {
            continue;
        }
        let leaves: Vec<&String> = [&r.probe.from, &r.probe.to]
            .into_iter()
            .filter_map(|h| alone.get(h))
            .collect();
        if leaves.is_empty() {
            problems.push(format!(
                "lost pings between hosts that are not single-homed: {r}"
            ));
        } else if !leaves.iter().any(|l| **l == at) {
            problems.push(format!(
                "lost pings while upgrading {at:?}, not the leaf of a single-homed end ({leaves:?}): {r}"
            ));
        }
    }

    refused_build_goes_back(&run, &probes, v2.path(), new.cookie, &mut problems).await;
    ctl.stop().await;
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The failure path on bmv2: a third build whose P4Info is the running
/// one's (rollable, so the CLI and the controller take it) and whose bmv2
/// JSON is not JSON. spine1 is drained, bmv2 refuses the push, the
/// roll-out stops there and says why, and spine1 goes back to the running
/// build, pushed again. Asserted: nothing lost on any flow (only a spine
/// left service), the other switches untouched on the second build, the
/// stop and its reason in `status/upgrade`, and spine1 either back in
/// service (converged, no maintenance left) or left drained saying so.
/// On bmv2 it is left drained today: after refusing the JSON, bmv2 keeps
/// reporting the running cookie but fails every table read and refuses
/// the old build's push too ("Unexpected error in RPC handling"); the
/// test prints which (docs/operations.md).
async fn refused_build_goes_back(
    run: &LabRun,
    probes: &[p4fabric::testkit::lab::reach::Probe],
    v2: &std::path::Path,
    running: u64,
    problems: &mut Vec<String>,
) {
    let v3 = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        v2.join("fabric.p4info.txt"),
        v3.path().join("fabric.p4info.txt"),
    )
    .expect("P4Info");
    std::fs::write(v3.path().join("fabric.json"), "not a bmv2 JSON\n").expect("json");
    let etcd = EtcdArgs::plain(&run.endpoint());
    let store = etcd.connect().await.expect("etcd");
    let traffic = MeshTraffic::start(run, probes).expect("traffic");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let written = p4fabric::cli::upgrade::run(&UpgradeArgs {
        pipeline_dir: v3.path().to_path_buf(),
        version: Some("v3-broken".into()),
        force: false,
        wait: None,
        etcd,
    })
    .await;
    if let Err(e) = written {
        problems.push(format!("the broken build's key not written: {e:#}"));
        traffic.stop();
        return;
    }
    // Stopped, and spine1 back (no phase left).
    let deadline = Instant::now() + Duration::from_secs(180);
    let last = loop {
        let s = p4fabric::cli::upgrade::read_status(&store)
            .await
            .ok()
            .flatten();
        let stopped = s.as_ref().is_some_and(|s| {
            s.version.as_deref() == Some("v3-broken")
                && s.state == UpgradeState::Failed
                && matches!(s.phase.as_deref(), None | Some("left_drained"))
        });
        if stopped || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reports = traffic.stop();
    eprintln!(
        "[refused build] {:.1} s: {:?}",
        took.as_secs_f64(),
        last.as_ref().map(p4fabric::cli::upgrade::describe)
    );
    let back = match &last {
        Some(s)
            if s.state == UpgradeState::Failed
                && s.switch.as_deref() == Some("spine1")
                && s.failure
                    .as_deref()
                    .is_some_and(|f| f.contains("pipeline push refused")) =>
        {
            s.phase.is_none()
        }
        other => {
            problems.push(format!(
                "the broken build did not stop at spine1: {other:?}"
            ));
            false
        }
    };
    if back {
        eprintln!("[refused build] spine1 back on the second build, in service");
    } else {
        eprintln!("[refused build] spine1 left drained (bmv2 refused the old build's push too)");
    }
    for (name, sw) in &run.fabric().switches {
        if name == "spine1" && !back {
            continue;
        }
        let opts = p4fabric::p4rt::ClientOptions::new(&sw.address, sw.device_id, 1);
        let cookie = match p4fabric::p4rt::Client::connect(opts).await {
            Ok(c) => c.pipeline_cookie().await.ok().flatten(),
            Err(_) => None,
        };
        if cookie != Some(running) {
            problems.push(format!(
                "after the refused build {name} runs {cookie:?}, not {running:#x}"
            ));
        }
    }
    if back {
        let status = store
            .get_dir(p4fabric::config::keys::STATUS_DIR)
            .await
            .map(|s| s.kvs)
            .unwrap_or_default();
        let left: Vec<&String> = status
            .keys()
            .filter(|k| k.contains("maintenance/"))
            .collect();
        if !left.is_empty() {
            problems.push(format!(
                "maintenance left after the refused build: {left:?}"
            ));
        }
        let c = run.wait_converged(Duration::from_secs(60)).await;
        if !c.converged() {
            problems.push(format!(
                "not converged after the refused build: {:?}",
                c.pending
            ));
        }
    }
    let lost: u32 = reports.iter().map(|r| r.lost()).sum();
    let pings: u32 = reports.iter().map(|r| r.sent).sum();
    eprintln!("[refused build] {pings} pings, {lost} lost");
    for r in reports.iter().filter(|r| r.lost() > 0 || r.received == 0) {
        problems.push(format!(
            "lost pings while spine1 was refused and went back: {r}"
        ));
    }
}
