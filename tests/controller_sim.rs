//! The whole controller (config -> topology -> compile -> agents) against
//! in-process switches running the fabric pipeline's P4Info: every switch
//! ends up holding exactly what the compiler says, a config change writes
//! only its delta, and a controller restart writes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p4fabric::compile;
use p4fabric::config::watch::ConfigUpdate;
use p4fabric::config::{ConfigState, Fabric};
use p4fabric::controller::{Controller, ControllerOptions};
use p4fabric::p4rt::{Pipeline, SwitchEntities};
use p4fabric::testkit::sim::SimSwitch;
use p4fabric::topo::{ObservedState, Topology};
use tokio::sync::{oneshot, watch};

/// Simulated switches: the compiled pipeline, or the contract's P4Info.
fn options(id: &str) -> ControllerOptions {
    let mut o = ControllerOptions::new(id);
    o.simulated = true;
    o.status_interval = Duration::from_millis(20);
    o
}

fn example() -> Fabric {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fabric.yaml"))
            .expect("example");
    let kvs = p4fabric::config::keys::document_to_raw(&text).expect("example parses");
    let (fabric, errors) = ConfigState::new().reset(kvs);
    assert!(errors.is_empty(), "{errors:?}");
    fabric
}

/// What the controller should install: no packets flow between in-process
/// switches, so discovery never sees a link (configured links count as up)
/// and no LACP partner ever answers (LACP members are out of sync).
/// One in-process switch per configured switch; the config is pointed at
/// their addresses.
async fn start_targets(fabric: &mut Fabric) -> Vec<(String, SimSwitch)> {
    let mut targets = Vec::new();
    for (name, sw) in fabric.switches.iter_mut() {
        let t = SimSwitch::start(sw.device_id).await.unwrap();
        sw.address = t.addr().to_string();
        targets.push((name.clone(), t));
    }
    targets
}

fn expected(f: &Fabric) -> std::collections::BTreeMap<String, SwitchEntities> {
    let mut observed = ObservedState::default();
    for lag in f.lags.values() {
        if lag.protocol == p4fabric::config::LagMode::Lacp {
            observed.lacp_unsynced.extend(lag.members.iter().cloned());
        }
    }
    let topo = Topology::build(f, &observed, None);
    compile::compile(f, &topo, &compile::Hosts::new())
}

fn update(f: &Fabric, rev: i64) -> ConfigUpdate {
    ConfigUpdate {
        revision: rev,
        fabric: Arc::new(f.clone()),
        errors: Default::default(),
        generation: rev as u64,
    }
}

async fn all_hold(
    targets: &[(String, SimSwitch)],
    want: &std::collections::BTreeMap<String, SwitchEntities>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let bad: Vec<String> = targets
            .iter()
            .filter(|(n, t)| want.get(n).map(|w| *w != t.entities()).unwrap_or(true))
            .map(|(n, t)| {
                let w = want.get(n).cloned().unwrap_or_default();
                let have = t.entities();
                let missing = w.keys().filter(|k| !have.contains_key(k)).count();
                let extra = have.keys().filter(|k| !w.contains_key(k)).count();
                format!("{n}: {missing} missing, {extra} extra of {}", w.len())
            })
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(bad.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_example_fabric_and_writes_only_deltas() {
    let mut fabric = example();
    let targets = start_targets(&mut fabric).await;
    let (tx, rx) = watch::channel(update(&fabric, 1));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let controller = Controller::new(options("test"), rx.clone(), None);
    let task = tokio::spawn(controller.run(async {
        let _ = stop_rx.await;
    }));
    let want = expected(&fabric);
    assert!(want.values().all(|e| !e.is_empty()));
    all_hold(&targets, &want, Duration::from_secs(20))
        .await
        .expect("converged to the compiled state");

    // Remove one host: exactly the entities that differ are written.
    let before: Vec<u64> = targets
        .iter()
        .map(|(_, t)| t.stats().updates_applied)
        .collect();
    let mut changed = fabric.clone();
    changed.hosts.remove("vm5");
    let want2 = expected(&changed);
    let delta: usize = targets
        .iter()
        .map(|(n, _)| compile::diff(&want2[n], &want[n]).len())
        .sum();
    assert!(delta > 0);
    tx.send_replace(update(&changed, 2));
    all_hold(&targets, &want2, Duration::from_secs(20))
        .await
        .expect("converged after the change");
    let written: u64 = targets
        .iter()
        .zip(&before)
        .map(|((_, t), b)| t.stats().updates_applied - b)
        .sum();
    assert_eq!(written as usize, delta, "only the delta is written");

    // Restart the controller: it reads back and writes nothing.
    let _ = stop_tx.send(());
    let _ = task.await;
    let before: Vec<u64> = targets
        .iter()
        .map(|(_, t)| t.stats().updates_applied)
        .collect();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let controller = Controller::new(options("test2"), rx, None);
    let metrics = controller.metrics();
    let task = tokio::spawn(controller.run(async {
        let _ = stop_rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = {
            let m = metrics.lock().unwrap();
            m.agents.len() == targets.len() && m.agents.values().all(|a| a.converged())
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written: u64 = targets
        .iter()
        .zip(&before)
        .map(|((_, t), b)| t.stats().updates_applied - b)
        .sum();
    assert_eq!(written, 0, "a restarted controller rewrote entries");
    all_hold(&targets, &want2, Duration::from_secs(1))
        .await
        .unwrap();
    let _ = stop_tx.send(());
    let _ = task.await;
}

use p4fabric::testkit::cables::{egress_port_id, learn_digest, packet_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_answer_arp_and_learn_from_digests_through_the_controller() {
    use p4fabric::net::MacAddr;
    use p4fabric::protocols::frames::{build_eth, parse_eth, Arp, ARP_REPLY, ARP_REQUEST};
    use p4runtime_proto::v1 as p4;
    let (pipeline, _) = compile::contract::simulation_pipeline(&Pipeline::default_dir());
    let reg = pipeline.registry.clone();
    let mut fabric = example();
    let targets = start_targets(&mut fabric).await;
    let (_tx, rx) = watch::channel(update(&fabric, 1));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(Controller::new(options("test"), rx, None).run(async {
        let _ = stop_rx.await;
    }));
    all_hold(&targets, &expected(&fabric), Duration::from_secs(20))
        .await
        .expect("converged");
    let target = |n: &str| &targets.iter().find(|(x, _)| x == n).unwrap().1;

    // vm1 (leaf1/3, VLAN 10 access) asks for its gateway's MAC.
    let vm1 = MacAddr([2, 0, 0, 0, 1, 1]);
    let req = Arp {
        op: ARP_REQUEST,
        sender_mac: vm1,
        sender_ip: "10.0.10.11".parse().unwrap(),
        target_mac: MacAddr([0; 6]),
        target_ip: "10.0.10.1".parse().unwrap(),
    };
    let frame = build_eth(MacAddr::BROADCAST, vm1, None, 0x0806, &req.encode());
    target("leaf1").take_packet_outs();
    assert!(
        target("leaf1").send_to_primary(p4::stream_message_response::Update::Packet(packet_in(
            &reg, frame, 3, 3
        )))
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        let outs = target("leaf1").take_packet_outs();
        let found = outs.into_iter().find_map(|p| {
            let eth = parse_eth(&p.payload)?;
            let arp = Arp::parse(eth.payload)?;
            (arp.op == ARP_REPLY).then_some((p, arp))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no ARP reply sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reply.1.sender_ip.to_string(), "10.0.10.1");
    assert_eq!(reply.1.sender_mac, fabric.settings.gateway_mac);
    assert_eq!(reply.1.target_mac, vm1);
    let port_meta = egress_port_id(&reg).unwrap();
    let egress = reply
        .0
        .metadata
        .iter()
        .find(|m| m.metadata_id == port_meta)
        .unwrap();
    assert_eq!(
        egress.value,
        vec![3],
        "reply goes out of the port the request came in"
    );

    // A new MAC behind leaf4/4 (VLAN 10) is learned from a digest and
    // bridged to from every leaf.
    let newmac: u128 = 0x0200_0000_9901;
    let digest = learn_digest(&reg, 10, newmac as u64, 4, 7).expect("learn digest");
    let info_id = digest.digest_id;
    assert!(target("leaf4").send_to_primary(p4::stream_message_response::Update::Digest(digest)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let learned = ["leaf1", "leaf2", "leaf3", "leaf4"].iter().all(|l| {
            target(l).entities().keys().any(|k| match k {
                p4fabric::p4rt::EntityKey::Table(t) => {
                    t.table == "FabricIngress.bridging.fdb"
                        && t.matches
                            .iter()
                            .any(|(_, m)| *m == p4fabric::p4rt::Match::Exact(newmac))
                }
                _ => false,
            })
        });
        if learned {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "learned MAC not bridged on every leaf"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        target("leaf4").digest_acks().contains(&(info_id, 7)),
        "digest list not acknowledged"
    );
    let _ = stop_tx.send(());
    let _ = task.await;
}

/// The example's cabling: leafN/S <-> spineS/N.
fn example_cables() -> Vec<(p4fabric::config::PortRef, p4fabric::config::PortRef)> {
    let mut cables = Vec::new();
    for leaf in 1..=4u32 {
        for spine in 1..=2u32 {
            cables.push((
                p4fabric::config::PortRef::new(format!("leaf{leaf}"), spine),
                p4fabric::config::PortRef::new(format!("spine{spine}"), leaf),
            ));
        }
    }
    cables
}

/// A fabric without `links:`: every fabric path exists because discovery
/// found the link. A new controller must hear the links again before its
/// first desired state — which otherwise removes every fabric path and
/// puts it back (issue #16: 54 updates and 1 s of loss on bmv2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_discovered_links_writes_nothing() {
    let mut fabric = example();
    fabric.links.clear();
    let Some(targets) = converge_on_discovered_links_and_restart(fabric, "v1model").await else {
        return;
    };
    drop(targets);
}

/// `fabric` (no `links:`) on in-process switches cabled as the example
/// (`example_cables`, on each switch's device ports): a first controller
/// converges it over the links discovery finds, and a second one, taking
/// over, writes nothing. `arch`: the P4Info the cables encode packet-ins
/// with (`compile::contract::simulation_pipeline_for`). Returns the
/// switches (`None`: no etcd here, SKIPPED).
async fn converge_on_discovered_links_and_restart(
    mut fabric: Fabric,
    arch: &str,
) -> Option<Vec<(String, SimSwitch)>> {
    // The flood tree is history: built as links came up one by one. A
    // successor builds on the tree its predecessor published in
    // `status/observed` (etcd), as `p4fabric run` does.
    let etcd = p4fabric::testkit::EtcdServer::start_or_skip().await?;
    let store = p4fabric::config::etcd::EtcdOptions::new([etcd.endpoint()])
        .connect()
        .await
        .expect("etcd");
    let (pipeline, _) = compile::contract::simulation_pipeline_for(&Pipeline::default_dir(), arch);
    let targets = Arc::new(start_targets(&mut fabric).await);
    let cables = example_cables()
        .into_iter()
        .map(|(a, b)| (device_port(&fabric, &a), device_port(&fabric, &b)))
        .collect();
    let wires =
        p4fabric::testkit::cables::wire(targets.clone(), pipeline.registry.clone(), cables, None);
    // What the switches must hold: the example's cabling, found by
    // discovery; no LACP partner answers here.
    let mut observed = ObservedState::default();
    for leaf in 1..=4u32 {
        for spine in 1..=2u32 {
            observed.discovered.insert(
                p4fabric::topo::LinkId::new(
                    p4fabric::config::PortRef::new(format!("leaf{leaf}"), spine),
                    p4fabric::config::PortRef::new(format!("spine{spine}"), leaf),
                ),
                true,
            );
        }
    }
    for lag in fabric.lags.values() {
        observed.lacp_unsynced.extend(lag.members.iter().cloned());
    }
    let (_tx, rx) = watch::channel(update(&fabric, 1));
    let run = |id: &str, status: Arc<p4fabric::config::status::StatusWriter>| {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(Controller::new(options(id), rx.clone(), Some(status)).run(
            async {
                let _ = stop_rx.await;
            },
        ));
        (stop_tx, task)
    };
    let status = |id: &str| {
        let me = p4fabric::config::status::ControllerStatus::this_process(id);
        let store = &store;
        async move {
            Arc::new(
                p4fabric::config::status::StatusWriter::start(store, &me, Duration::from_secs(10))
                    .await
                    .expect("status"),
            )
        }
    };
    let (stop, task) = run("first", status("first").await);
    // Converged over the discovered links: everything a fresh compile has
    // (on device ports) but the flood groups (the tree is history: it may
    // differ).
    let want = on_device(
        &fabric,
        compile::compile(
            &fabric,
            &Topology::build(&fabric, &observed, None),
            &compile::Hosts::new(),
        ),
    );
    let no_floods = |m: Vec<SwitchEntities>| -> Vec<Vec<String>> {
        m.iter()
            .map(|e| {
                e.iter()
                    .filter(|(k, _)| !k.to_string().contains("multicast"))
                    .map(|(k, v)| format!("{k} {v:?}"))
                    .collect()
            })
            .collect()
    };
    let wanted = no_floods(targets.iter().map(|(n, _)| want[n].clone()).collect());
    let deadline = Instant::now() + Duration::from_secs(20);
    while no_floods(targets.iter().map(|(_, t)| t.entities()).collect()) != wanted {
        assert!(
            Instant::now() < deadline,
            "the first controller never converged over the discovered links"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Quiet: nothing more to write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<SwitchEntities> = targets.iter().map(|(_, t)| t.entities()).collect();
    let _ = stop.send(());
    let _ = task.await;
    let applied: Vec<u64> = targets
        .iter()
        .map(|(_, t)| t.stats().updates_applied)
        .collect();

    let (stop, task) = run("second", status("second").await);
    // Past the read-backs, the discovery round and the first desired state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<SwitchEntities> = targets.iter().map(|(_, t)| t.entities()).collect();
    assert!(before == after, "the switches' entities changed");
    let now: Vec<u64> = targets
        .iter()
        .map(|(_, t)| t.stats().updates_applied)
        .collect();
    assert_eq!(
        applied, now,
        "the second controller wrote to a stable fabric"
    );
    let _ = stop.send(());
    let _ = task.await;
    wires.abort();
    let _ = wires.await;
    Arc::into_inner(targets)
}

/// The switch's device port of configured port `p` (its port map).
fn device_port(f: &Fabric, p: &p4fabric::config::PortRef) -> p4fabric::config::PortRef {
    let t = p4fabric::target::for_switch(&p.switch, &f.switches[&p.switch]).expect("target");
    let dev = p4fabric::target::ports::port_to_device(t.as_ref(), p.port).expect("mapped");
    p4fabric::config::PortRef::new(p.switch.clone(), dev)
}

/// Compiled entities as each switch holds them: on its device ports.
fn on_device(
    f: &Fabric,
    compiled: std::collections::BTreeMap<String, SwitchEntities>,
) -> std::collections::BTreeMap<String, SwitchEntities> {
    compiled
        .into_iter()
        .map(|(n, es)| {
            let t = p4fabric::target::for_switch(&n, &f.switches[&n]).expect("target");
            let dev = p4fabric::target::ports::to_device(t.as_ref(), &es)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, dev)
        })
        .collect()
}

/// What the in-process switches hold, on configured port numbers (their
/// port maps undone), for the forwarding checker.
fn held_configured(
    f: &Fabric,
    targets: &[(String, SimSwitch)],
) -> std::collections::BTreeMap<String, SwitchEntities> {
    targets
        .iter()
        .map(|(n, s)| {
            let t = p4fabric::target::for_switch(n, &f.switches[n]).expect("target");
            let es = p4fabric::target::ports::to_config(t.as_ref(), &s.entities())
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            (n.clone(), es)
        })
        .collect()
}

fn fabric_file(name: &str) -> Fabric {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example");
    let kvs = p4fabric::config::keys::document_to_raw(&text).expect("example parses");
    let (fabric, errors) = ConfigState::new().reset(kvs);
    assert!(errors.is_empty(), "{path}: {errors:?}");
    fabric
}

/// Every (ingress port, frame) a host of `f` sends to every other host:
/// bridged to its MAC, routed to each of its IPs.
fn host_traces<D: compile::check::DataPlane>(f: &Fabric, dp: &D) -> Vec<String> {
    use p4fabric::compile::check::{Checker, Frame};
    use p4fabric::config::Attachment;
    let topo = Topology::build(f, &ObservedState::default(), None);
    let checker = Checker::new(dp, &topo);
    let mut out = Vec::new();
    for (src_name, src) in &f.hosts {
        let ingress = match &src.attachment {
            Attachment::Port(p) => p.clone(),
            Attachment::Lag(l) => f.lags[l].members[0].clone(),
        };
        let tagged = f.lags.values().any(|l| l.members.contains(&ingress))
            || matches!(f.ports.get(&ingress).map(|p| &p.vlans), Some(v) if !v.is_untagged(src.vlan));
        for (dst_name, dst) in &f.hosts {
            if src_name == dst_name {
                continue;
            }
            let gw = f.vlans[&src.vlan]
                .gateway_mac
                .unwrap_or(f.settings.gateway_mac);
            let mut frames = vec![(dst.mac, 0x0800, None)];
            frames.extend(dst.ips.iter().map(|ip| {
                let et = if ip.is_ipv4() { 0x0800 } else { 0x86dd };
                (gw, et, Some(*ip))
            }));
            for (mac, eth_type, ip_dst) in frames {
                let frame = Frame {
                    dst: mac,
                    src: src.mac,
                    vlan: tagged.then_some(src.vlan),
                    eth_type,
                    ip_dst,
                    ttl: 64,
                };
                let t = checker.trace(&ingress, frame);
                out.push(format!("{src_name} -> {dst_name} {ip_dst:?}:\n{t}"));
            }
        }
    }
    out
}

/// The Tofino example fabric (Tofino 1 on bf_switchd, Tofino 2 on Stratum,
/// port maps, CPU ports 320 and 0) validates, compiles with each switch's
/// own CPU port and every port mapped, converges through the controller on
/// in-process switches, and forwards host to host exactly as the same
/// fabric of bmv2 switches (forwarding checker over every host pair).
///
/// The simulated switches are loaded with the compiled Tofino pipelines
/// (bf-p4c's P4Info and device configs from `p4/build/tofino*/`; the
/// contract's TNA form only where a build is missing); they hold device
/// ports (the port maps applied on the wire), which the checker reads
/// back through the maps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tofino_fabric_converges_and_forwards_like_bmv2() {
    let bmv2 = example();
    let mut tofino = fabric_file("fabric-tofino.yaml");
    assert!(p4fabric::config::validate(&tofino).is_empty());
    // Its gNMI servers are not here (the test below runs one).
    for sw in tofino.switches.values_mut() {
        sw.port_events = None;
    }
    for (name, sw) in &tofino.switches {
        let t = p4fabric::target::for_switch(name, sw).expect("target");
        assert_ne!(t.name(), "bmv2", "{name}");
        let cpu = t.cpu_port();
        let want = expected(&tofino);
        let dev = p4fabric::target::ports::to_device(t.as_ref(), &want[name])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(dev.len(), want[name].len());
        let cpu_entry = p4fabric::p4rt::EntityKey::Table(
            p4fabric::p4rt::TableKey::new(compile::names::T_PORTS)
                .exact(compile::names::F_INGRESS_PORT, cpu),
        );
        assert!(
            want[name].contains_key(&cpu_entry),
            "{name}: CPU port {cpu}"
        );
        // Where the target's compiled pipeline is checked in, every entity
        // (on device ports) encodes against its P4Info.
        match Pipeline::load_for(&Pipeline::default_dir(), &sw.pipeline, t.as_ref()) {
            Ok(p) => {
                for e in dev.values() {
                    if let Err(err) = p.registry.encode_entity(e, false) {
                        panic!("{name}: {e:?} does not fit the {} P4Info: {err}", t.name());
                    }
                }
            }
            Err(e @ p4fabric::p4rt::PipelineError::Missing { .. }) => {
                use std::io::Write;
                // Past the test harness's capture, like the other SKIPPED lines.
                let _ = writeln!(std::io::stderr(), "SKIPPED (TNA P4Info part): {name}: {e}");
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
    let targets = start_targets(&mut tofino).await;
    let (_tx, rx) = watch::channel(update(&tofino, 1));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(Controller::new(options("tofino"), rx, None).run(async {
        let _ = stop_rx.await;
    }));
    // On each switch's device ports.
    let want = on_device(&tofino, expected(&tofino));
    all_hold(&targets, &want, Duration::from_secs(20))
        .await
        .expect("converged to the compiled state");
    let _ = stop_tx.send(());
    let _ = task.await;
    let on_tofino = host_traces(&tofino, &held_configured(&tofino, &targets));
    let on_bmv2 = host_traces(&bmv2, &expected(&bmv2));
    assert!(on_bmv2.len() > 40, "{} traces", on_bmv2.len());
    assert!(on_bmv2.iter().any(|t| t.contains("delivered")));
    assert_eq!(on_tofino, on_bmv2);
}

/// The Tofino example fabric with a port map per switch, each its own
/// (configured port N -> device port 128 + 4N + 32i on the i-th switch),
/// and no `links:`: the switches are cabled on their device ports and the
/// fabric's paths exist only where discovery found the link (its probes
/// leave on device ports and come back on device ports, mapped both
/// ways); the controller converges it with the switches holding device
/// ports, the forwarding checker gives the bmv2 fabric's result (floods
/// by where they end up: the tree is history), and a controller restart
/// writes nothing (the read-back maps back to the configured state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tofino_port_maps_on_the_wire_with_discovery_and_a_restart() {
    use p4fabric::config::MappedPort;
    let mut tofino = fabric_file("fabric-tofino.yaml");
    for (i, sw) in tofino.switches.values_mut().enumerate() {
        sw.port_events = None;
        for (port, m) in sw.port_map.iter_mut() {
            *m = MappedPort {
                device_port: 128 + 4 * port + 32 * i as u32,
                name: m.name.take(),
            };
        }
    }
    let with_links = tofino.clone();
    tofino.links.clear();
    assert!(p4fabric::config::validate(&tofino).is_empty());
    let leaf1 = &tofino.switches["leaf1"].port_map;
    let leaf2 = &tofino.switches["leaf2"].port_map;
    assert_eq!(leaf1[&3].device_port, 140);
    assert_ne!(leaf1[&3].device_port, leaf2[&3].device_port);
    let Some(targets) = converge_on_discovered_links_and_restart(tofino.clone(), "tna").await
    else {
        return;
    };
    // leaf1 holds vm1's edge port (configured 3) as device port 140, and
    // its configured number nowhere.
    let ports_entry = |port: u32| {
        p4fabric::p4rt::EntityKey::Table(
            p4fabric::p4rt::TableKey::new(compile::names::T_PORTS)
                .exact(compile::names::F_INGRESS_PORT, port),
        )
    };
    let held = targets[0].1.entities();
    assert_eq!(targets[0].0, "leaf1");
    assert!(
        held.contains_key(&ports_entry(140)),
        "device port 140 on leaf1"
    );
    assert!(
        !held.contains_key(&ports_entry(3)),
        "configured port 3 on leaf1"
    );
    // The flood tree is history (links discovered in another order build
    // another tree): floods are compared by where they end up.
    let on_tofino = without_flood_hops(host_traces(
        &with_links,
        &held_configured(&with_links, &targets),
    ));
    let bmv2 = example();
    let on_bmv2 = without_flood_hops(host_traces(&bmv2, &expected(&bmv2)));
    assert!(on_bmv2.iter().any(|t| t.contains("delivered")));
    assert!(
        on_bmv2.iter().any(|t| t.contains("hop ")),
        "unicast hops kept"
    );
    assert_eq!(on_tofino.len(), on_bmv2.len());
    for (t, b) in on_tofino.iter().zip(&on_bmv2) {
        assert_eq!(t, b);
    }
    // `p4fabric trace` reads the Tofino switches as the controller does:
    // decoded with the P4Info each switch says it runs (no build on disk
    // here) and mapped back to configured ports; and traces over them.
    let mut reachable = with_links.clone();
    for (n, t) in &targets {
        if let Some(sw) = reachable.switches.get_mut(n) {
            sw.address = t.addr().to_string();
        }
    }
    let nowhere = std::path::Path::new("/nonexistent/p4fabric-build");
    let read = p4fabric::cli::trace::read_fabric(&reachable, nowhere).await;
    assert_eq!(read, held_configured(&with_links, &targets));
    let topo = Topology::build(&with_links, &ObservedState::default(), None);
    // (Not the bonded servers: no LACP partner answers here, their LAGs
    // carry nothing.)
    for (from, to) in [("vm1", "vm4"), ("vm3", "vm5"), ("router", "vm1")] {
        let report = p4fabric::cli::trace::trace_hosts(
            &with_links,
            &topo,
            &read,
            (from, &with_links.hosts[from]),
            (to, &with_links.hosts[to]),
            false,
        )
        .expect("trace");
        assert!(report.ok(), "{from} -> {to}:\n{report}");
    }
}

/// Host traces (`host_traces`) without the hops of floods (flood labels,
/// `(source LAG << 4) | 0xF`), each trace's lines after its first sorted:
/// where every frame ends up, and the unicast paths it takes.
fn without_flood_hops(traces: Vec<String>) -> Vec<String> {
    let flood_hop = |l: &str| {
        let label = l
            .strip_prefix("hop ")
            .and_then(|h| h.rsplit(" label 0x").next());
        label
            .and_then(|x| u32::from_str_radix(x, 16).ok())
            .is_some_and(compile::names::is_flood_label)
    };
    traces
        .iter()
        .map(|t| {
            let mut lines = t.lines();
            let head = lines.next().unwrap_or_default();
            let mut rest: Vec<&str> = lines.filter(|l| !flood_hop(l)).collect();
            rest.sort_unstable();
            std::iter::once(head)
                .chain(rest)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// The data plane the in-process switches hold (on configured ports):
/// where a frame from host `from` to host `to`'s MAC goes.
fn trace_held(
    f: &Fabric,
    targets: &[(String, SimSwitch)],
    from: &str,
    to: &str,
) -> compile::check::Trace {
    use p4fabric::compile::check::{Checker, Frame};
    use p4fabric::config::Attachment;
    let held = held_configured(f, targets);
    let topo = Topology::build(f, &ObservedState::default(), None);
    let (src, dst) = (&f.hosts[from], &f.hosts[to]);
    let Attachment::Port(ingress) = &src.attachment else {
        panic!("{from} is on a port");
    };
    let frame = Frame {
        dst: dst.mac,
        src: src.mac,
        vlan: None,
        eth_type: 0x0800,
        ip_dst: None,
        ttl: 64,
    };
    Checker::new(&held, &topo).trace(ingress, frame)
}

/// gNMI port status through the whole controller: leaf1 (a Tofino) reads
/// its ports from an in-process gNMI server (the controller picks the
/// source by the switch's target); when front-panel ports 4/0 (a member of
/// the static bond1) and 1/0 (the uplink to spine1) go down, the switches
/// stop using both: vm1's frames to srv1 leave through leaf2's member,
/// over the other uplink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnmi_port_events_take_a_lag_member_and_a_fabric_link_out_of_service() {
    use p4fabric::compile::check::Outcome;
    use p4fabric::config::{LagMode, PortRef};
    use p4fabric::portstatus::gnmi_server::GnmiTestServer;
    let mut fabric = fabric_file("fabric-tofino.yaml");
    // Static: only port status takes its members out (an LACP member has
    // no partner here and is out of sync anyway).
    fabric.lags.get_mut("bond1").expect("bond1").protocol = LagMode::Static;
    let ports = [("1/0", true), ("2/0", true), ("3/0", true), ("4/0", true)];
    let server = GnmiTestServer::start(&ports).await.expect("gNMI server");
    for sw in fabric.switches.values_mut() {
        sw.port_events = None;
    }
    fabric.switches.get_mut("leaf1").expect("leaf1").port_events =
        Some(format!("gnmi://{}", server.addr()));
    assert!(p4fabric::config::validate(&fabric).is_empty());
    let targets = start_targets(&mut fabric).await;
    let (_tx, rx) = watch::channel(update(&fabric, 1));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(Controller::new(options("gnmi"), rx, None).run(async {
        let _ = stop_rx.await;
    }));
    let port = |p: &str| p.parse::<PortRef>().expect("port");
    let delivered_at = |t: &compile::check::Trace, p: &PortRef| {
        t.outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Delivered { port, .. } if port == p))
    };
    let wait = |want: &'static str, done: &dyn Fn(&compile::check::Trace) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = trace_held(&fabric, &targets, "vm1", "srv1-web");
            if done(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "{want}; the trace:\n{t}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let before = tokio::task::block_in_place(|| {
        wait("vm1 -> srv1 out of leaf1's member", &|t| {
            delivered_at(t, &port("leaf1/4"))
        })
    });
    assert!(
        before.hops.is_empty(),
        "local member, no fabric hop:\n{before}"
    );
    server.set("4/0", false);
    server.set("1/0", false);
    // Both events handled (they may land in two compiles).
    let after = tokio::task::block_in_place(|| {
        wait(
            "vm1 -> srv1 through leaf2's member, not over the uplink 1/0",
            &|t| {
                !delivered_at(t, &port("leaf1/4"))
                    && delivered_at(t, &port("leaf2/4"))
                    && t.hops.iter().all(|h| h.from != port("leaf1/1"))
            },
        )
    });
    assert_eq!(after.hops.first().map(|h| &h.from), Some(&port("leaf1/2")));
    // Back up: the local member again.
    server.set("4/0", true);
    server.set("1/0", true);
    tokio::task::block_in_place(|| {
        wait("vm1 -> srv1 out of leaf1's member again", &|t| {
            delivered_at(t, &port("leaf1/4"))
        })
    });
    let _ = stop_tx.send(());
    let _ = task.await;
    server.stop().await;
}

/// The controller loads each switch's pipeline as its target runs it: a
/// Tofino 1 switch on bf_switchd gets the PI packing of `p4/build/tofino/`,
/// a Tofino 2 switch on Stratum the BfPipelineConfig of
/// `p4/build/tofino2/` (told apart by the cookie each switch holds), and a
/// switch whose target's build is missing gets no pipeline and no writes.
/// (The "build" here is the contract's TNA-form P4Info with stand-in
/// binaries in a temporary directory, so the test decides what is missing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_loaded_by_target() {
    use p4fabric::config::Target;
    use prost::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fabric = fabric_file("fabric-tofino.yaml");
    for sw in fabric.switches.values_mut() {
        sw.port_events = None;
    }
    let targets = start_targets(&mut fabric).await;
    let build = |sw: &str, contents: &[&[u8]]| {
        let t = p4fabric::target::for_switch(sw, &fabric.switches[sw]).expect("target");
        let a = t.artifacts(dir.path(), "fabric");
        std::fs::create_dir_all(a.files[0].path.parent().expect("pipe dir")).expect("mkdir");
        let p4info = compile::contract::tna_p4info(t.arch()).encode_to_vec();
        let bin = a.p4info.with_file_name("p4info.bin");
        std::fs::write(bin, p4info).expect("p4info");
        for (f, bytes) in a.files.iter().zip(contents) {
            std::fs::write(&f.path, bytes).expect("artifact");
        }
        Pipeline::load_for(dir.path(), "fabric", t.as_ref())
            .expect("loads")
            .cookie
    };
    let (_tx, rx) = watch::channel(update(&fabric, 1));
    let run = |id: &str| {
        let mut opts = ControllerOptions::new(id);
        opts.pipeline_dir = dir.path().to_path_buf();
        opts.status_interval = Duration::from_millis(20);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(Controller::new(opts, rx.clone(), None).run(async {
            let _ = stop_rx.await;
        }));
        (stop_tx, task)
    };
    let want = on_device(&fabric, expected(&fabric));
    let converged = |chip: Target, cookie: u64| {
        targets
            .iter()
            .filter(|(n, _)| fabric.switches[n].target == chip)
            .all(|(n, t)| t.pipeline_cookie() == Some(cookie) && t.entities() == want[n])
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Tofino 1's build only: the Tofino 2 switches wait for theirs.
    let t1 = build("leaf1", &[b"\xab\xcd", b"{\"ctx\":1}"]);
    let (stop, task) = run("first");
    tokio::task::block_in_place(|| {
        wait("Tofino 1 switches converged", &|| {
            converged(Target::Tofino, t1)
        })
    });
    for (n, t) in targets
        .iter()
        .filter(|(n, _)| fabric.switches[n].target == Target::Tofino2)
    {
        assert_eq!(
            t.pipeline_cookie(),
            None,
            "{n}: no Tofino 2 build, no pipeline"
        );
        assert!(t.entities().is_empty(), "{n}");
    }
    let _ = stop.send(());
    let _ = task.await;

    // With the Tofino 2 build (Stratum format) a controller brings up all.
    let t2 = build("leaf3", &[b"\xef", b"{}", b"{\"bfrt\":1}"]);
    assert_ne!(t1, t2);
    let (stop, task) = run("second");
    tokio::task::block_in_place(|| {
        wait("every switch converged on its target's pipeline", &|| {
            converged(Target::Tofino, t1) && converged(Target::Tofino2, t2)
        })
    });
    let _ = stop.send(());
    let _ = task.await;
}
