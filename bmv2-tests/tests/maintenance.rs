//! Zero-loss maintenance (#20) on the demo topology (examples/fabric.yaml:
//! 2 spines, 4 leaves, srv1 dual-homed on a two-leaf LACP bond over leaf1
//! and leaf2), with full-mesh IPv4 and IPv6 pings (every 100 ms) and the
//! dual-homed server's flows to every attachment every 10 ms beside them
//! (`bmv2_tests::MeshTraffic`: 10 ms for all 48 flows is more than bmv2
//! carries on a 2-core machine).
//!
//! Each phase drains a switch through `p4fabric drain` (the CLI's code,
//! against the lab's etcd), checks the traffic really moved — the drained
//! spine's ports (a drained leaf's bond member) carry no more than the
//! discovery / LACP frames for 2 s, by the kernel's counters of its
//! interfaces — and undrains it with `p4fabric undrain`. With
//! `P4F_MAINT_KILL=1` the drained switch is also killed and started again
//! empty before the undrain (a reboot in maintenance). Expected: each
//! spine, 0 pings lost
//! on every flow; leaf1, 0 lost on every flow not from or to vm1 (the host
//! attached to leaf1 alone, which needs `--force` and loses while leaf1 is
//! down). A table of per-flow gaps is printed per phase, after a baseline
//! (the same pings with nothing happening: if it loses, the machine cannot
//! carry the traffic and the figures mean nothing; the test fails saying
//! so). Measured figures: docs/operations.md.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bmv2_tests::MeshTraffic;
use p4fabric::cli::drain::{DrainArgs, UndrainArgs};
use p4fabric::cli::EtcdArgs;
use p4fabric::testkit::lab::reach::Probe;
use p4fabric::testkit::lab::run::{ns_prefix, FlowReport, LabController, LabRun};

/// Whether to kill and restart the drained switch (`P4F_MAINT_KILL=1`).
fn kill_while_drained() -> bool {
    std::env::var("P4F_MAINT_KILL").is_ok_and(|v| v == "1")
}

/// The ports whose counters must go quiet once `switch` is drained: every
/// port of a spine; a leaf's LACP bond members (its single-homed hosts'
/// traffic still crosses its other ports).
fn quiet_ports(run: &LabRun, switch: &str) -> Vec<u32> {
    let fabric = run.fabric();
    if let Some(s) = fabric
        .switches
        .get(switch)
        .filter(|s| s.role == p4fabric::config::Role::Spine)
    {
        let mut ports: BTreeSet<u32> = s.fabric_ports.iter().copied().collect();
        for l in fabric.links.values() {
            for end in [&l.a, &l.b] {
                if end.switch == switch {
                    ports.insert(end.port);
                }
            }
        }
        return ports.into_iter().collect();
    }
    fabric
        .lags
        .values()
        .flat_map(|l| l.members.iter())
        .filter(|m| m.switch == switch)
        .map(|m| m.port)
        .collect()
}

/// Only these phases (`P4F_MAINT_PHASES=baseline,spine1`), for a quick look.
fn wanted(phase: &str) -> bool {
    std::env::var("P4F_MAINT_PHASES")
        .map(|v| v.split(',').any(|p| p == phase))
        .unwrap_or(true)
}

fn etcd(run: &LabRun) -> EtcdArgs {
    EtcdArgs::plain(&run.endpoint())
}

/// The agent's session count and convergence for `name`.
fn agent(ctl: &LabController, name: &str) -> (u64, bool) {
    let m = ctl.metrics.lock().unwrap_or_else(|p| p.into_inner());
    m.agents
        .get(name)
        .map_or((0, false), |a| (a.counters.sessions, a.converged()))
}

struct Phase {
    name: String,
    reports: Vec<FlowReport>,
}

/// Drain `switch`, kill it, start it again empty, wait until the controller
/// programmed it, undrain; pings run throughout.
async fn phase(
    run: &mut LabRun,
    ctl: &LabController,
    probes: &[Probe],
    switch: &str,
    force: bool,
    problems: &mut Vec<String>,
) -> Phase {
    let traffic = MeshTraffic::start(run, probes).expect("traffic");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let drained = p4fabric::cli::drain::drain(&DrainArgs {
        switch: switch.to_string(),
        force,
        reason: Some("maintenance test".into()),
        wait: Some(60),
        etcd: etcd(run),
    })
    .await;
    if let Err(e) = drained {
        problems.push(format!("{switch}: drain failed: {e:#}"));
    }
    eprintln!(
        "[{switch}] drained after {} ms",
        started.elapsed().as_millis()
    );
    // The traffic moved: the drained switch's ports carry only control
    // frames (discovery probes and LACPDUs, about one a second each way
    // per port) while every flow keeps going.
    let ports = quiet_ports(run, switch);
    let frames = |run: &LabRun| run.lab.switch(switch).map_or(0, |s| s.port_frames(&ports));
    let before = frames(run);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let carried = frames(run).saturating_sub(before);
    let control = 10 * ports.len().max(1) as u64;
    eprintln!("[{switch}] drained: its ports carried {carried} frames in 2 s (control frames alone: < {control})");
    if !ports.is_empty() && carried >= control {
        problems.push(format!(
            "{switch}: drained, but its ports still carried {carried} frames in 2 s (more than control frames)"
        ));
    }
    if kill_while_drained() {
        let (sessions, _) = agent(ctl, switch);
        {
            let sw = run.lab.switch_mut(switch).expect("switch");
            sw.kill();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        run.lab
            .switch_mut(switch)
            .expect("switch")
            .restart_same_address()
            .expect("restart");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (n, converged) = agent(ctl, switch);
            if n > sessions && converged {
                break;
            }
            if Instant::now() > deadline {
                problems.push(format!("{switch}: not programmed again after its restart"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "[{switch}] restarted and programmed after {} ms",
            started.elapsed().as_millis()
        );
    }
    let undrained = p4fabric::cli::drain::undrain(&UndrainArgs {
        switch: switch.to_string(),
        wait: Some(60),
        etcd: etcd(run),
    })
    .await;
    if let Err(e) = undrained {
        problems.push(format!("{switch}: undrain failed: {e:#}"));
    }
    eprintln!(
        "[{switch}] in service again after {} ms",
        started.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reports = traffic.stop();
    let c = run.wait_converged(Duration::from_secs(60)).await;
    if !c.converged() {
        problems.push(format!(
            "{switch}: not converged afterwards: {:?}",
            c.pending
        ));
    }
    if !run.wait_discovered(Duration::from_secs(60)).await {
        problems.push(format!("{switch}: links not rediscovered"));
    }
    Phase {
        name: switch.to_string(),
        reports,
    }
}

fn table(phases: &[Phase]) {
    eprintln!(
        "\n{:<8} {:<28} {:>5} {:>6} {:>6} {:>10}",
        "drained", "flow", "every", "sent", "lost", "gap ms"
    );
    for p in phases {
        for r in &p.reports {
            eprintln!(
                "{:<8} {:<28} {:>5} {:>6} {:>6} {:>10}",
                p.name,
                format!("{} -> {} {}", r.probe.from, r.probe.to, r.probe.ip),
                format!("{}ms", r.interval.as_millis()),
                r.sent,
                r.lost(),
                r.longest_outage.as_millis()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_undrain_lose_nothing() {
    p4fabric::require_lab_run!();
    p4fabric::testkit::lab::init_test_logging();
    let fabric = p4fabric::testkit::lab::run::demo_fabric().expect("examples/fabric.yaml");
    let (mut run, ctl, probes) =
        LabRun::start_serving(&fabric, &ns_prefix("p4f-mt"), "maintenance")
            .await
            .expect("lab");
    eprintln!("{}", MeshTraffic::describe(&run, &probes));
    let mut problems = Vec::new();
    let mut phases = Vec::new();

    // The same traffic with nothing happening: what the machine carries.
    if wanted("baseline") {
        let traffic = MeshTraffic::start(&run, &probes).expect("traffic");
        tokio::time::sleep(Duration::from_secs(8)).await;
        phases.push(Phase {
            name: "none".into(),
            reports: traffic.stop(),
        });
    }

    // Draining leaf1 without --force is refused, naming vm1, and writes
    // nothing.
    let refused = p4fabric::cli::drain::drain(&DrainArgs {
        switch: "leaf1".into(),
        force: false,
        reason: None,
        wait: None,
        etcd: etcd(&run),
    })
    .await;
    match refused {
        Err(e) if e.to_string().contains("vm1") => {}
        other => problems.push(format!("leaf1 drain without --force: {other:?}")),
    }

    for (switch, force) in [("spine1", false), ("spine2", false), ("leaf1", true)] {
        if !wanted(switch) {
            continue;
        }
        phases.push(phase(&mut run, &ctl, &probes, switch, force, &mut problems).await);
    }
    table(&phases);
    let single_homed: BTreeSet<&str> = ["vm1"].into();
    for p in &phases {
        for r in &p.reports {
            let exposed = p.name == "leaf1"
                && (single_homed.contains(r.probe.from.as_str())
                    || single_homed.contains(r.probe.to.as_str()));
            if r.received == 0 {
                problems.push(format!("{}: no answer at all: {r}", p.name));
            }
            if p.name == "none" && r.lost() > 0 {
                problems.push(format!(
                    "baseline (nothing happening) lost pings: this machine does not carry {} (set P4F_MAINT_INTERVAL_MS / P4F_MAINT_FINE_MS): {r}",
                    MeshTraffic::describe(&run, &probes)
                ));
            } else if !exposed && r.lost() > 0 {
                problems.push(format!("{}: lost pings: {r}", p.name));
            }
        }
    }
    ctl.stop().await;
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
