//! Switch agents against simulated switches: convergence under injected
//! failures, isolation of slow switches, latest-wins coalescing, restarts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use p4fabric::agent::Desired;
use p4fabric::p4rt::*;
use p4fabric::testkit::chaos::{self, ChaosConfig};
use p4fabric::testkit::sim::{Faults, SimSwitch};

#[tokio::test]
async fn converges_exactly_after_chaos() {
    for seed in [1u64, 2, 3] {
        let targets = [
            SimSwitch::start(1).await.unwrap(),
            SimSwitch::start(2).await.unwrap(),
            SimSwitch::start(3).await.unwrap(),
        ];
        let agents: Vec<_> = targets.iter().map(|t| start_agent(t, 10).0).collect();
        let want = Arc::new(desired(50, seed));
        for a in &agents {
            desire(a, 1, &want);
        }
        // Change the desired state while the switches misbehave.
        let refs: Vec<&SimSwitch> = targets.iter().collect();
        let cfg = ChaosConfig::new(seed);
        let final_want = Arc::new(desired(60, seed + 1));
        let (log, ()) = tokio::join!(chaos::run(&refs, &cfg), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for a in &agents {
                desire(a, 2, &final_want);
            }
        });
        for (a, t) in agents.iter().zip(&targets) {
            assert!(
                eventually_equal(t, &final_want, Duration::from_secs(20)).await,
                "seed {seed}: {} did not converge after {log:?}: {} (agent: {:?} failing {})",
                a.name,
                difference(&t.entities(), &final_want),
                a.status().state,
                a.status().failing_count,
            );
        }
    }
}

#[tokio::test]
async fn slow_switch_does_not_delay_a_fast_one() {
    let slow = SimSwitch::start(1).await.unwrap();
    let fast = SimSwitch::start(2).await.unwrap();
    slow.set_faults(Faults {
        delay: Duration::from_secs(3),
        ..Default::default()
    });
    let (a_slow, _) = start_agent(&slow, 10);
    let (a_fast, _) = start_agent(&fast, 10);
    let want = Arc::new(desired(20, 0));
    desire(&a_slow, 1, &want);
    desire(&a_fast, 1, &want);
    let started = std::time::Instant::now();
    assert!(
        a_fast.wait_converged(1, Duration::from_secs(2)).await,
        "{:?}",
        a_fast.status()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        !a_slow.status().converged(),
        "slow switch converged implausibly fast"
    );
    assert_eq!(fast.entities(), *want);
}

#[tokio::test]
async fn latest_desired_state_wins_and_stale_ones_are_skipped() {
    let t = SimSwitch::start(1).await.unwrap();
    let (a, _) = start_agent(&t, 10);
    a.set_desired(Desired {
        generation: 1,
        entities: Arc::new(desired(5, 0)).into(),
    });
    assert!(a.wait_converged(1, Duration::from_secs(5)).await);
    // Slow the switch down, then publish 20 versions in a burst.
    t.set_faults(Faults {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let before = a.status().counters.reconciles;
    for g in 2..=21u64 {
        a.set_desired(Desired {
            generation: g,
            entities: Arc::new(desired(5 + g, g)).into(),
        });
    }
    assert!(
        a.wait_converged(21, Duration::from_secs(10)).await,
        "{:?}",
        a.status()
    );
    let passes = a.status().counters.reconciles - before;
    assert!(
        passes <= 4,
        "{passes} reconcile passes for a burst of 20 versions"
    );
    let want = desired(26, 21);
    assert!(t.entities() == want, "{}", difference(&t.entities(), &want));
}

/// A switch holding 30 entries written by an agent (election id 10) that
/// has stopped since; the switch's counters then.
async fn installed_by_a_stopped_agent() -> (
    SimSwitch,
    Arc<SwitchEntities>,
    p4fabric::testkit::sim::SimStats,
) {
    let t = SimSwitch::start(1).await.unwrap();
    let want = Arc::new(desired(30, 0));
    let (a, _) = start_agent(&t, 10);
    desire(&a, 1, &want);
    assert!(a.wait_converged(1, Duration::from_secs(5)).await);
    a.stop().await;
    let before = t.stats();
    (t, want, before)
}

#[tokio::test]
async fn restarted_controller_writes_nothing_when_nothing_changed() {
    let (t, want, before) = installed_by_a_stopped_agent().await;
    let (b, _) = start_agent(&t, 11);
    desire(&b, 1, &want);
    assert!(b.wait_converged(1, Duration::from_secs(5)).await);
    let after = t.stats();
    assert_eq!(
        after.updates_applied, before.updates_applied,
        "a restart rewrote entries"
    );
    assert_eq!(
        after.pipeline_pushes, before.pipeline_pushes,
        "a restart re-pushed the pipeline"
    );
    assert!(
        t.entities() == *want,
        "{}",
        difference(&t.entities(), &want)
    );
}

/// A rolling upgrade's rollback (`AgentConfig::push_once`): the switch
/// reports the agent's cookie, yet the pipeline is pushed again — once:
/// the agent's later sessions adopt it as usual — and the entries are
/// written again.
#[tokio::test]
async fn push_once_reloads_a_switch_reporting_our_cookie_once() {
    let (t, want, before) = installed_by_a_stopped_agent().await;
    let mut cfg = agent_config(&t, 11);
    cfg.push_once = true;
    cfg.reconnect = backoff::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    let (tx, _rx) = tokio::sync::mpsc::channel(1024);
    let b = p4fabric::agent::spawn(cfg, tx);
    desire(&b, 1, &want);
    assert!(b.wait_converged(1, Duration::from_secs(5)).await);
    assert_eq!(t.stats().pipeline_pushes, before.pipeline_pushes + 1);
    assert!(
        t.entities() == *want,
        "{}",
        difference(&t.entities(), &want)
    );
    // A new session of the same agent adopts the pipeline.
    t.drop_streams();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.wait_converged(1, Duration::from_secs(5)).await);
    assert_eq!(t.stats().pipeline_pushes, before.pipeline_pushes + 1);
    b.stop().await;
}

#[tokio::test]
async fn switch_restart_is_restored_and_strays_are_removed() {
    let t = SimSwitch::start(1).await.unwrap();
    let want = Arc::new(desired(10, 0));
    let (a, _) = start_agent(&t, 10);
    desire(&a, 1, &want);
    assert!(a.wait_converged(1, Duration::from_secs(5)).await);
    t.restart();
    assert!(
        eventually_equal(&t, &want, Duration::from_secs(5)).await,
        "not restored"
    );
    assert_eq!(t.stats().pipeline_pushes, 2);
    // A stray entry written behind the controller's back is removed by the
    // next periodic read-back.
    let stray = Entity::Table(TableEntry {
        key: TableKey::new("TestIngress.dmac").exact("hdr.ethernet.dst_addr", 0x0bad_0000_0001u64),
        action: TableAction::Direct(ActionCall::new("TestIngress.drop")),
        idle_timeout_ns: 0,
    });
    t.inject_entity(stray);
    assert!(t.entities() != *want);
    assert!(
        eventually_equal(&t, &want, Duration::from_secs(5)).await,
        "stray not removed"
    );
    desire(&a, 3, &want);
    assert!(a.wait_converged(3, Duration::from_secs(5)).await);
    assert!(
        t.entities() == *want,
        "{}",
        difference(&t.entities(), &want)
    );
}

/// More entries than a table holds: the switch refuses the excess (table
/// full, hundreds of errors in one batch's trailer), the rest is installed
/// and the session survives (no reconnect-and-reread loop).
#[tokio::test]
async fn a_full_table_refuses_the_excess_and_the_session_survives() {
    let t = SimSwitch::start(7).await.unwrap();
    let (a, _events) = start_agent(&t, 10);
    let want = Arc::new(desired(1500, 0)); // TestIngress.dmac holds 1024
    desire(&a, 1, &want);
    let mut status = a.status_watch();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.failing_count == 1500 - 1024),
    )
    .await;
    assert!(refused.is_ok(), "status: {:?}", a.status());
    let s = a.status();
    assert!(
        s.failing.iter().any(|(_, why)| why.contains("full")),
        "{:?}",
        s.failing.first()
    );
    assert_eq!(s.counters.sessions, 1, "the session was torn down");
    let dmac = t
        .entities()
        .keys()
        .filter(|k| matches!(k, EntityKey::Table(tk) if tk.table == "TestIngress.dmac"))
        .count();
    assert_eq!(dmac, 1024);
}

/// The session-start read-back and the pass after it wait for a bulk
/// permit, so a cold start of many switches holds a few switches' write
/// plans at a time; packet-outs go on while it waits, the pass runs as
/// soon as a permit is free and gives it back, and a later single change
/// needs none.
#[tokio::test]
async fn a_full_pass_waits_for_a_bulk_permit_while_packet_io_goes_on() {
    use p4fabric::agent::SessionState;
    use p4fabric::testkit::within;
    use p4runtime_proto::v1 as p4;

    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let held = permits.clone().acquire_owned().await.unwrap();
    let t = SimSwitch::start(1).await.unwrap();
    let mut cfg = agent_config(&t, 10);
    cfg.bulk_permits = Some(permits.clone());
    let a = spawn(cfg);
    let want = Arc::new(desired(20, 0));
    desire(&a, 1, &want);
    assert!(
        within(Duration::from_secs(5), || a.status().state
            == SessionState::Primary)
        .await
        .is_some(),
        "{:?}",
        a.status()
    );
    let frame = p4::PacketOut {
        payload: vec![0xaa; 60],
        metadata: Vec::new(),
    };
    assert!(a.send_packet(frame.clone()));
    let mut out = Vec::new();
    assert!(
        within(Duration::from_secs(2), || {
            out.extend(t.take_packet_outs());
            !out.is_empty()
        })
        .await
        .is_some(),
        "a packet-out waited behind the bulk permit"
    );
    assert_eq!(out, vec![frame]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.stats().updates_applied, 0, "wrote without a permit");
    assert!(!a.status().converged());

    drop(held);
    assert!(
        a.wait_converged(1, Duration::from_secs(5)).await,
        "{:?}",
        a.status()
    );
    assert_eq!(t.entities(), *want);
    assert!(
        within(Duration::from_secs(1), || permits.available_permits() == 1)
            .await
            .is_some(),
        "the permit was not given back after the pass"
    );

    let _all = permits.clone().acquire_owned().await.unwrap();
    let want = Arc::new(desired(21, 0));
    desire(&a, 2, &want);
    assert!(
        a.wait_converged(2, Duration::from_secs(5)).await,
        "a single change waited for a bulk permit: {:?}",
        a.status()
    );
    assert_eq!(t.entities(), *want);
}

/// The controller's interval for a large fabric overrides a shorter
/// per-agent one: no re-read before it (here 1 h against 50 ms).
#[tokio::test]
async fn a_fabric_wide_resync_interval_holds_back_resyncs() {
    let t = SimSwitch::start(1).await.unwrap();
    let mut cfg = agent_config(&t, 10);
    cfg.resync_interval = Duration::from_millis(50);
    let fabric = Arc::new(std::sync::atomic::AtomicU64::new(0));
    cfg.fabric_resync_ms = Some(fabric.clone());
    let a = spawn(cfg);
    a.set_desired(Desired {
        generation: 1,
        entities: Arc::new(desired(5, 0)).into(),
    });
    assert!(a.wait_converged(1, Duration::from_secs(5)).await);
    // With the agent's own 50 ms the switch is re-read over and over.
    let reads = t.stats().read_rpcs;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(t.stats().read_rpcs > reads, "no resync at 50 ms");
    // Once the fabric's interval is an hour, the reads stop (after at most
    // the one already scheduled).
    fabric.store(3_600_000, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reads = t.stats().read_rpcs;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.stats().read_rpcs, reads, "resynced within the hour");
}

/// A resync's read-back waits for a bulk permit (it holds a whole switch
/// in memory); a single change meanwhile does not wait for it.
#[tokio::test]
async fn a_resync_waits_for_a_bulk_permit_and_single_changes_do_not() {
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let t = SimSwitch::start(1).await.unwrap();
    let mut cfg = agent_config(&t, 10);
    cfg.resync_interval = Duration::from_millis(50);
    cfg.bulk_permits = Some(permits.clone());
    let a = spawn(cfg);
    a.set_desired(Desired {
        generation: 1,
        entities: Arc::new(desired(5, 0)).into(),
    });
    assert!(a.wait_converged(1, Duration::from_secs(5)).await);
    let held = permits.clone().acquire_owned().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reads = t.stats().read_rpcs;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.stats().read_rpcs, reads, "re-read without a permit");
    let want = Arc::new(desired(6, 1));
    desire(&a, 2, &want);
    assert!(
        a.wait_converged(2, Duration::from_secs(5)).await,
        "a single change waited behind the resync: {:?}",
        a.status()
    );
    assert_eq!(t.entities(), *want);
    drop(held);
    assert!(
        p4fabric::testkit::within(Duration::from_secs(2), || t.stats().read_rpcs > reads)
            .await
            .is_some(),
        "the resync never ran once the permit was free"
    );
}

/// A new controller's agent reports its read-back and writes nothing until
/// the controller hands out a desired state: waiting longer than
/// `read_back_wait` must not make it "reconcile" against generation 0 (an
/// empty state: it would wipe the switch). Once reported, the bulk permit
/// is free for the next switch, and the first pass takes one again.
#[tokio::test]
async fn after_the_read_back_nothing_is_written_before_a_desired_state() {
    let t = SimSwitch::start(1).await.unwrap();
    // The switch runs the pipeline and holds entries (a previous
    // controller's).
    let held = Arc::new(desired(10, 0));
    let (before, _) = start_agent(&t, 5);
    desire(&before, 1, &held);
    assert!(before.wait_converged(1, Duration::from_secs(5)).await);
    before.stop().await;
    let applied = t.stats().updates_applied;
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let mut cfg = agent_config(&t, 10);
    let (rb_tx, mut rb_rx) = tokio::sync::mpsc::channel(4);
    cfg.report_read_back = Some(rb_tx);
    cfg.read_back_wait = Duration::from_millis(100);
    cfg.bulk_permits = Some(permits.clone());
    let a = spawn(cfg);
    let rb = tokio::time::timeout(Duration::from_secs(5), rb_rx.recv())
        .await
        .expect("no read-back reported")
        .unwrap();
    assert_eq!(rb.installed.len(), held.len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.stats().updates_applied,
        applied,
        "wrote before any desired state"
    );
    assert_eq!(t.entities(), *held);
    // The permit came back with the report; holding it now keeps the
    // first pass waiting even once the desired state is there.
    let permit = permits.clone().try_acquire_owned().expect("permit kept");
    let want = Arc::new(desired(12, 1));
    desire(&a, 1, &want);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.stats().updates_applied,
        applied,
        "the first pass took no permit"
    );
    drop(permit);
    assert!(
        a.wait_converged(1, Duration::from_secs(5)).await,
        "{:?}",
        a.status()
    );
    assert_eq!(t.entities(), *want);
}

/// An agent with a port map (a benchmark leaf as a Tofino: configured port
/// N -> device port 1024 + 4N) against an in-process switch running the
/// TNA-form P4Info: the switch holds device ports; a restarted agent reads
/// them back as configured numbers and writes nothing; what an earlier map
/// left on the switch (entries on the configured numbers as device ports)
/// is deleted or rewritten; an update on a port outside the map fails
/// alone, naming switch and port.
#[tokio::test]
async fn a_port_map_writes_device_ports_and_reads_them_back_as_configured() {
    use p4fabric::compile::{self, sample};
    use p4fabric::config::{MappedPort, Target};
    use p4fabric::target::{self, ports};
    let (mut fabric, hosts) = sample::large(2, 2, 40, 4);
    let name = sample::leaf_name(1);
    let sw = fabric.switches.get_mut(&name).expect("leaf");
    sw.target = Target::Tofino;
    sw.cpu_port = Some(320);
    sw.port_map = (0..=64)
        .map(|p| {
            let m = MappedPort {
                device_port: 1024 + 4 * p,
                name: None,
            };
            (p, m)
        })
        .collect();
    let sw = sw.clone();
    let topo = p4fabric::topo::Topology::build(&fabric, &Default::default(), None);
    let want = Arc::new(
        compile::compile(&fabric, &topo, &hosts)
            .remove(&name)
            .expect("leaf"),
    );
    let t: Arc<dyn target::SwitchTarget> = target::for_switch(&name, &sw).expect("tofino").into();
    assert!(t.maps_entities());
    let on_device = ports::to_device(t.as_ref(), &want).expect("all mapped");
    let (pipeline, _) = compile::contract::simulation_pipeline_for(&Pipeline::default_dir(), "tna");
    let pipeline = Arc::new(pipeline);
    let s = SimSwitch::start(1).await.unwrap();
    let start = |election_id| {
        let opts = ClientOptions::new(s.addr().to_string(), 1, election_id);
        let mut cfg = p4fabric::agent::AgentConfig::new(&name, opts, pipeline.clone());
        cfg.retry = backoff::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
        cfg.ports = Some(t.clone());
        spawn(cfg)
    };
    // An agent (election id `id`) on `want`, once the switch holds it.
    let converged = |id| {
        let a = start(id);
        desire(&a, 1, &want);
        let (s, on_device) = (&s, &on_device);
        async move {
            assert!(
                a.wait_converged(1, Duration::from_secs(20)).await,
                "{:?}",
                a.status()
            );
            assert!(
                s.entities() == *on_device,
                "{}",
                difference(&s.entities(), on_device)
            );
            a
        }
    };
    converged(10).await.stop().await;

    // A restart reads the device ports back as configured: nothing to write.
    let before = s.stats().updates_applied;
    converged(11).await.stop().await;
    assert_eq!(
        s.stats().updates_applied,
        before,
        "a restart rewrote entries"
    );

    // Left by an earlier map (identity): a port entry on the configured
    // number as its device port (in no map now) and a multicast group's
    // replicas on the configured numbers.
    let on_a_port = |e: &&Entity| match e {
        Entity::Table(t) => t.key.matches.iter().any(|(f, m)| {
            *f == "ingress_port" && matches!(m, Match::Exact(p) if (1..=64).contains(p))
        }),
        _ => false,
    };
    let stray = want
        .values()
        .find(on_a_port)
        .cloned()
        .expect("a port entry");
    let old = want
        .values()
        .find(|e| matches!(e, Entity::Multicast(g) if g.replicas.iter().any(|r| r.port != 320)))
        .cloned()
        .expect("a multicast group");
    assert!(!on_device.contains_key(&stray.key()));
    s.inject_entity(stray.clone());
    s.inject_entity(old.clone());
    assert!(s.entities() != on_device);
    let before = s.stats().updates_applied;
    let c = converged(12).await;
    assert_eq!(
        s.stats().updates_applied - before,
        2,
        "a delete and a modify"
    );

    // A port outside the map: that update fails, naming switch and port.
    let mut bad = (*want).clone();
    let e = Entity::Multicast(MulticastGroup {
        group_id: 4000,
        replicas: vec![Replica {
            port: 99,
            instance: 0,
        }],
    });
    bad.insert(e.key(), e);
    desire(&c, 2, &Arc::new(bad));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.status().failing_count == 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", c.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = c.status();
    assert_eq!(st.failing_count, 1, "{:?}", st.failing);
    assert!(
        st.failing[0]
            .1
            .contains(&format!("port 99 is not in the port_map of {name}")),
        "{:?}",
        st.failing
    );
    assert!(
        s.entities() == on_device,
        "{}",
        difference(&s.entities(), &on_device)
    );
}
