//! Property tests of the compiler: random leaf-spine fabrics, VLANs, LAGs
//! (one and two leaves), hosts and static routes, checked end to end with
//! the forwarding checker, before and after a single failure, and the
//! incremental updates against a full compile.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use p4fabric::compile::check::{Checker, Frame, Outcome};
use p4fabric::compile::sample::{leaf_name, leaf_spine};
use p4fabric::compile::{compile, CompiledFabric, HostEntry, Hosts, OpKind, Plan};
use p4fabric::config::{
    Attachment, EdgePort, Fabric, Host, Lag, LagMode, PortRef, Route, Vlan, VlanId, VlanMode,
};
use p4fabric::net::MacAddr;
use p4fabric::p4rt::entity::{Entity, EntityKey, SwitchEntities, TableAction};
use p4fabric::topo::{LinkId, ObservedState, Topology};
use proptest::prelude::*;

const VLAN_IDS: [VlanId; 3] = [10, 11, 20];

#[derive(Debug, Clone)]
struct HostSpec {
    vlan: usize,
    /// 0 access port, 1 trunk port, 2 LAG on one leaf, 3 LAG on two leaves.
    kind: u8,
    leaf: usize,
    other_leaf: usize,
    tagged: bool,
    learned: bool,
    members: u32,
}

#[derive(Debug, Clone)]
struct Scenario {
    spines: usize,
    leaves: usize,
    vlans: usize,
    v6: bool,
    hosts: Vec<HostSpec>,
    routes: Vec<(usize, usize)>,
    failure: usize,
    pick: usize,
}

fn host_spec() -> impl Strategy<Value = HostSpec> {
    (
        0..3usize,
        0..4u8,
        0..8usize,
        0..8usize,
        any::<bool>(),
        any::<bool>(),
        1..=2u32,
    )
        .prop_map(spec)
}

/// A host spec from (vlan, kind, leaf, other leaf, tagged, learned, members).
fn spec(t: (usize, u8, usize, usize, bool, bool, u32)) -> HostSpec {
    let (vlan, kind, leaf, other_leaf, tagged, learned, members) = t;
    HostSpec {
        vlan,
        kind,
        leaf,
        other_leaf,
        tagged,
        learned,
        members,
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        1..=4usize,
        2..=8usize,
        1..=3usize,
        any::<bool>(),
        prop::collection::vec(host_spec(), 2..=9),
        prop::collection::vec((0..9usize, 0..9usize), 0..3),
        any::<usize>(),
        any::<usize>(),
    )
        .prop_map(
            |(spines, leaves, vlans, v6, hosts, routes, failure, pick)| Scenario {
                spines,
                leaves,
                vlans,
                v6,
                hosts,
                routes,
                failure,
                pick,
            },
        )
}

/// A built scenario: config, learned hosts, and every host's view.
struct World {
    fabric: Fabric,
    learned: Hosts,
    hosts: Vec<HostEntry>,
    /// Per host: VLAN mode of its attachment.
    modes: Vec<VlanMode>,
}

fn vlan_of(s: &Scenario, i: usize) -> VlanId {
    VLAN_IDS[i % s.vlans]
}

fn build(s: &Scenario) -> World {
    let mut f = leaf_spine(s.spines, s.leaves);
    for (i, &vid) in VLAN_IDS[..s.vlans].iter().enumerate() {
        f.vlans.insert(
            vid,
            Vlan {
                name: format!("v{vid}"),
                tenant: String::new(),
                // VLAN 20 is in another VRF: no routing into it from 10/11.
                vrf: if vid == 20 { 1 } else { 0 },
                ipv4_gateway: Some(format!("10.{vid}.0.1/24").parse().unwrap()),
                ipv6_gateway: (s.v6 && i != 1)
                    .then(|| format!("2001:db8:{vid}::1/64").parse().unwrap()),
                gateway_mac: (vid == 11).then_some(MacAddr([2, 0, 0, 0xfa, 0xb0, 0x11])),
            },
        );
    }
    let all_vlans: Vec<VlanId> = VLAN_IDS[..s.vlans].to_vec();
    let mut next_port: BTreeMap<String, u32> = BTreeMap::new();
    let mut port = |leaf: &str| {
        let p = next_port.entry(leaf.to_string()).or_insert(10);
        *p += 1;
        PortRef::new(leaf, *p - 1)
    };
    let mut learned = Hosts::new();
    let mut hosts = Vec::new();
    let mut modes = Vec::new();
    for (i, h) in s.hosts.iter().enumerate() {
        let vlan = vlan_of(s, h.vlan);
        let leaf = leaf_name(h.leaf % s.leaves + 1);
        // Access ports; trunks tagged with every VLAN, or with the host's
        // VLAN native (untagged); LAGs access or tagged trunks.
        let mode = match (h.kind, h.tagged) {
            (1, false) => VlanMode::Trunk {
                vlans: all_vlans.iter().copied().filter(|v| *v != vlan).collect(),
                native: Some(vlan),
            },
            (1.., true) => VlanMode::Trunk {
                vlans: all_vlans.clone(),
                native: None,
            },
            _ => VlanMode::Access { vlan },
        };
        let attachment = match h.kind {
            0 | 1 => {
                let p = port(&leaf);
                f.ports.insert(
                    p.clone(),
                    EdgePort {
                        vlans: mode.clone(),
                        admin_up: true,
                        description: String::new(),
                        max_learned_macs: None,
                    },
                );
                Attachment::Port(p)
            }
            _ => {
                let mut leaves = vec![leaf.clone()];
                if h.kind == 3 {
                    let mut o = h.other_leaf % s.leaves;
                    if leaf_name(o + 1) == leaf {
                        o = (o + 1) % s.leaves;
                    }
                    leaves.push(leaf_name(o + 1));
                }
                let per_leaf = if h.kind == 2 { 2 } else { h.members };
                let members = leaves
                    .iter()
                    .flat_map(|l| (0..per_leaf).map(|_| port(l)).collect::<Vec<_>>())
                    .collect();
                let name = format!("bond{i}");
                f.lags.insert(
                    name.clone(),
                    Lag {
                        id: 100 + i as u16,
                        members,
                        protocol: if i % 2 == 0 {
                            LagMode::Lacp
                        } else {
                            LagMode::Static
                        },
                        lacp: Default::default(),
                        vlans: mode.clone(),
                        admin_up: true,
                        description: String::new(),
                        max_learned_macs: None,
                    },
                );
                Attachment::Lag(name)
            }
        };
        let mut ips: Vec<IpAddr> = vec![format!("10.{vlan}.0.{}", 10 + i).parse().unwrap()];
        if f.vlans[&vlan].ipv6_gateway.is_some() {
            ips.push(format!("2001:db8:{vlan}::{}", 10 + i).parse().unwrap());
        }
        let mac = MacAddr([2, 0, 0, 0, 1, i as u8]);
        let entry = HostEntry {
            vlan,
            mac,
            ips: ips.clone(),
            attachment: attachment.clone(),
            learned: h.learned,
        };
        if h.learned {
            learned.insert(entry.key(), entry.clone());
        } else {
            f.hosts.insert(
                format!("h{i}"),
                Host {
                    mac,
                    vlan,
                    ips,
                    attachment,
                },
            );
        }
        hosts.push(entry);
        modes.push(mode);
    }
    for (k, (a, b)) in s.routes.iter().enumerate() {
        let nhs: BTreeSet<IpAddr> = [a, b]
            .iter()
            .filter_map(|i| hosts.get(**i % hosts.len()))
            .filter(|h| h.vlan != 20)
            .map(|h| h.ips[0])
            .collect();
        if !nhs.is_empty() {
            f.routes.insert(
                format!("r{k}"),
                Route {
                    vrf: 0,
                    prefix: format!("192.168.{k}.0/24").parse().unwrap(),
                    next_hops: nhs.into_iter().collect(),
                },
            );
        }
    }
    World {
        fabric: f,
        learned,
        hosts,
        modes,
    }
}

/// The ports a host is reachable on, and those it can send from (usable).
fn host_ports(topo: &Topology, h: &HostEntry) -> (Vec<PortRef>, Vec<PortRef>) {
    match &h.attachment {
        Attachment::Port(p) => (vec![p.clone()], vec![p.clone()]),
        Attachment::Lag(name) => {
            let g = topo.lag(name).expect("lag");
            let all = g
                .members
                .iter()
                .flat_map(|(l, ps)| ps.iter().map(move |p| PortRef::new(l.clone(), *p)))
                .collect();
            let usable = g
                .usable
                .iter()
                .flat_map(|(l, ps)| ps.iter().map(move |p| PortRef::new(l.clone(), *p)))
                .collect();
            (all, usable)
        }
    }
}

fn tag(mode: &VlanMode, vlan: VlanId) -> Option<VlanId> {
    (!mode.is_untagged(vlan)).then_some(vlan)
}

fn gw_mac(f: &Fabric, vlan: VlanId) -> MacAddr {
    f.vlans[&vlan].gateway_mac.unwrap_or(f.settings.gateway_mac)
}

/// Every property of forwarding for one compiled state.
fn check_world(
    w: &World,
    topo: &Topology,
    dp: &BTreeMap<String, SwitchEntities>,
) -> Result<(), String> {
    let c = Checker::new(dp, topo);
    let f = &w.fabric;
    for (ai, a) in w.hosts.iter().enumerate() {
        let (a_all, a_send) = host_ports(topo, a);
        for src in &a_send {
            let frame = |dst: MacAddr, ip: Option<IpAddr>| Frame {
                dst,
                src: a.mac,
                vlan: tag(&w.modes[ai], a.vlan),
                eth_type: if ip.is_some_and(|i| i.is_ipv6()) {
                    0x86dd
                } else {
                    0x0800
                },
                ip_dst: ip,
                ttl: 64,
            };
            // Broadcast: each other host of the VLAN exactly once.
            let t = c.trace(src, frame(MacAddr::BROADCAST, None));
            if t.branched {
                return Err(format!("flood from {src} went through a selector"));
            }
            let mut got: BTreeMap<&PortRef, usize> = BTreeMap::new();
            for o in &t.outcomes {
                match o {
                    Outcome::Delivered { port, .. } => *got.entry(port).or_default() += 1,
                    other => return Err(format!("flood from {src}: {other:?}")),
                }
            }
            for p in &a_all {
                if got.contains_key(p) {
                    return Err(format!("flood from {src} came back on {p}"));
                }
            }
            for (bi, b) in w.hosts.iter().enumerate() {
                if bi == ai || b.vlan != a.vlan {
                    continue;
                }
                let (b_all, _) = host_ports(topo, b);
                let n: usize = b_all.iter().map(|p| got.get(p).copied().unwrap_or(0)).sum();
                if n != 1 {
                    return Err(format!(
                        "flood from {src} reached host {bi} {n} times: {:?}",
                        t.outcomes
                    ));
                }
            }
            // Unicast to every host: bridged in the VLAN, routed across VLANs
            // of the same VRF, nothing across VRFs.
            for (bi, b) in w.hosts.iter().enumerate() {
                if bi == ai {
                    continue;
                }
                let (b_all, _) = host_ports(topo, b);
                let expect = |t: &p4fabric::compile::check::Trace,
                              smac: MacAddr,
                              what: &str|
                 -> Result<(), String> {
                    if t.outcomes.is_empty() {
                        return Err(format!("{what} {src} -> host {bi}: nothing happened"));
                    }
                    for o in &t.outcomes {
                        match o {
                            Outcome::Delivered { port, frame }
                                if b_all.contains(port)
                                    && frame.dst == b.mac
                                    && frame.src == smac
                                    && frame.vlan == tag(&w.modes[bi], b.vlan) => {}
                            other => {
                                return Err(format!(
                                    "{what} {src} -> host {bi} at {b_all:?}: {other:?}\n{:?}",
                                    t.hops
                                ))
                            }
                        }
                    }
                    Ok(())
                };
                if b.vlan == a.vlan {
                    expect(&c.trace(src, frame(b.mac, None)), a.mac, "bridged")?;
                    continue;
                }
                let (va, vb) = (&f.vlans[&a.vlan], &f.vlans[&b.vlan]);
                for ip in &b.ips {
                    let t = c.trace(src, frame(gw_mac(f, a.vlan), Some(*ip)));
                    let a_has_family = if ip.is_ipv4() {
                        va.ipv4_gateway.is_some()
                    } else {
                        va.ipv6_gateway.is_some()
                    };
                    if !a_has_family {
                        continue; // not routed: not our property
                    }
                    if va.vrf == vb.vrf {
                        expect(&t, gw_mac(f, b.vlan), "routed")?;
                    } else if t
                        .outcomes
                        .iter()
                        .any(|o| matches!(o, Outcome::Delivered { .. }))
                    {
                        return Err(format!("{src} -> host {bi} leaked across VRFs"));
                    }
                }
            }
            // Static routes: every ECMP alternative ends at a next hop.
            if f.vlans[&a.vlan].vrf == 0 {
                for r in f.routes.values() {
                    let ip: IpAddr = match r.prefix.addr() {
                        IpAddr::V4(x) => IpAddr::V4((u32::from(x) | 5).into()),
                        v6 => v6,
                    };
                    let t = c.trace(src, frame(gw_mac(f, a.vlan), Some(ip)));
                    for o in &t.outcomes {
                        let ok = match o {
                            Outcome::Delivered { port, frame } => w.hosts.iter().any(|h| {
                                r.next_hops.contains(&h.ips[0])
                                    && h.mac == frame.dst
                                    && host_ports(topo, h).0.contains(port)
                            }),
                            _ => false,
                        };
                        if !ok {
                            return Err(format!("route {} from {src}: {o:?}", r.prefix));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Applies plans to a state, checking that each op is valid when written:
/// inserts are new, modifies and deletes exist, references resolve.
fn apply(
    state: &mut BTreeMap<String, SwitchEntities>,
    plans: &BTreeMap<String, Plan>,
) -> Result<(), String> {
    for (sw, plan) in plans {
        let m = state.entry(sw.clone()).or_default();
        for stage in &plan.stages {
            for op in stage {
                let key = op.entity.key();
                let exists = m.contains_key(&key);
                match op.kind {
                    OpKind::Insert if exists => {
                        return Err(format!("{sw}: insert of existing {key}"))
                    }
                    OpKind::Modify | OpKind::Delete if !exists => {
                        return Err(format!("{sw}: {:?} of missing {key}", op.kind))
                    }
                    OpKind::Delete => {
                        m.remove(&key);
                    }
                    _ => {
                        m.insert(key, op.entity.clone());
                    }
                }
            }
            dangling(m).map_err(|e| format!("{sw} after a stage: {e}"))?;
        }
    }
    Ok(())
}

fn dangling(m: &SwitchEntities) -> Result<(), String> {
    for e in m.values() {
        match e {
            Entity::Table(t) => {
                let profile = match t.key.table {
                    p4fabric::compile::names::T_NEXTHOPS => p4fabric::compile::names::P_ECMP,
                    p4fabric::compile::names::T_LAG_MEMBERS => p4fabric::compile::names::P_LAG,
                    _ => p4fabric::compile::names::P_FABRIC,
                };
                let missing = match t.action {
                    TableAction::Member(id) => !m.contains_key(&EntityKey::Member {
                        profile,
                        member_id: id,
                    }),
                    TableAction::Group(id) => !m.contains_key(&EntityKey::Group {
                        profile,
                        group_id: id,
                    }),
                    TableAction::Direct(_) => false,
                };
                if missing {
                    return Err(format!("{} points nowhere", e.key()));
                }
            }
            Entity::Group(g) => {
                for mem in &g.members {
                    if !m.contains_key(&EntityKey::Member {
                        profile: g.profile,
                        member_id: mem.member_id,
                    }) {
                        return Err(format!("{} lacks member {}", e.key(), mem.member_id));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every single failure: fabric links; members of LAGs with a spare.
fn failures(f: &Fabric, topo: &Topology) -> (Vec<ObservedState>, Vec<ObservedState>) {
    let mut links = Vec::new();
    for l in topo.links() {
        let mut o = ObservedState::default();
        o.discovered
            .insert(LinkId::new(l.id.0.clone(), l.id.1.clone()), false);
        links.push(o);
    }
    let mut members = Vec::new();
    for lag in f.lags.values().filter(|l| l.members.len() > 1) {
        for m in &lag.members {
            let mut o = ObservedState::default();
            // LACP members alternate between "port down" and "out of sync".
            if lag.protocol == LagMode::Lacp && m.port % 2 == 0 {
                o.lacp_unsynced.insert(m.clone());
            } else {
                o.ports_down.insert(m.clone());
            }
            members.push(o);
        }
    }
    // Port security: an edge port or a LAG at its MAC limit (a topology
    // change as well: the lock is an observed state).
    for a in f
        .ports
        .keys()
        .map(|p| Attachment::Port(p.clone()))
        .chain(f.lags.keys().map(|l| Attachment::Lag(l.clone())))
    {
        let mut o = ObservedState::default();
        o.locked_sources.insert(a);
        members.push(o);
    }
    (links, members)
}

/// Equal states, or the first difference.
fn same(
    got: &BTreeMap<String, SwitchEntities>,
    want: &BTreeMap<String, SwitchEntities>,
) -> Result<(), TestCaseError> {
    for sw in got.keys().chain(want.keys()) {
        let (g, w) = (
            got.get(sw).cloned().unwrap_or_default(),
            want.get(sw).cloned().unwrap_or_default(),
        );
        for k in g.keys().chain(w.keys()) {
            if g.get(k) != w.get(k) {
                return Err(TestCaseError::fail(format!(
                    "{sw} {k}: got {:?}, want {:?}",
                    g.get(k),
                    w.get(k)
                )));
            }
        }
    }
    Ok(())
}

fn run(s: &Scenario) -> Result<(), TestCaseError> {
    let w = build(s);
    let topo = Topology::build(&w.fabric, &ObservedState::default(), None);
    let dp = compile(&w.fabric, &topo, &w.learned);
    check_world(&w, &topo, &dp).map_err(TestCaseError::fail)?;
    // Deterministic: a second compile is identical.
    same(&compile(&w.fabric, &topo, &w.learned), &dp)?;

    // Up to two link failures and two LAG-member failures, picked by the
    // case; the tree is repaired from the old one.
    let (links, members) = failures(&w.fabric, &topo);
    let picked = [&links, &links, &members, &members]
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, v)| &v[s.failure.wrapping_add(i * 7919) % v.len()])
        .collect::<Vec<_>>();
    for obs in picked {
        let topo2 = Topology::build(&w.fabric, obs, Some(topo.flood_tree()));
        if !topo2.is_connected() {
            continue;
        }
        let dp2 = compile(&w.fabric, &topo2, &w.learned);
        check_world(&w, &topo2, &dp2)
            .map_err(|e| TestCaseError::fail(format!("after {obs:?}: {e}")))?;
        // Incremental = full, and the plans apply cleanly.
        let mut cf = CompiledFabric::new(&w.fabric, &topo, &w.learned);
        let plans = cf.update_topology(&w.fabric, &topo2);
        same(&cf.materialize(), &dp2)?;
        let mut state = dp.clone();
        apply(&mut state, &plans).map_err(TestCaseError::fail)?;
        same(&state, &dp2)?;
        for old in topo
            .flood_tree()
            .links
            .iter()
            .filter(|l| !obs.discovered.contains_key(*l))
        {
            prop_assert!(
                topo2.flood_tree().contains(old),
                "tree churn: lost {:?}",
                old
            );
        }
    }

    // A learned host goes and comes back: only its entries change, and the
    // result is the full compile both times (ids unchanged).
    let learned: Vec<&HostEntry> = w.learned.values().collect();
    if !learned.is_empty() {
        let h = learned[s.pick % learned.len()].clone();
        let mut cf = CompiledFabric::new(&w.fabric, &topo, &w.learned);
        let gone = cf.update_host(h.key(), None);
        let mut without = w.learned.clone();
        without.remove(&h.key());
        let dp_without = compile(&w.fabric, &topo, &without);
        same(&cf.materialize(), &dp_without)?;
        let mut state = dp.clone();
        apply(&mut state, &gone).map_err(TestCaseError::fail)?;
        same(&state, &dp_without)?;
        for op in gone.values().flat_map(Plan::ops) {
            let own = match &op.entity {
                Entity::Table(t) => {
                    t.key.matches.iter().any(|(_, m)| match m {
                        p4fabric::p4rt::entity::Match::Exact(v) => *v == u128::from(h.mac.as_u64()),
                        p4fabric::p4rt::entity::Match::Lpm { value, .. } => {
                            h.ips.iter().any(|ip| match ip {
                                IpAddr::V4(a) => *value == u128::from(u32::from(*a)),
                                IpAddr::V6(a) => *value == u128::from(*a),
                            })
                        }
                        _ => false,
                    }) || t.key.table.ends_with("nexthops")
                        || t.key.table.contains("routing.ipv")
                }
                Entity::Member(_) | Entity::Group(_) => true,
                _ => false,
            };
            prop_assert!(own, "removing {:?} touched {}", h.key(), op.entity.key());
        }
        let back = cf.update_host(h.key(), Some(h.clone()));
        same(&cf.materialize(), &dp)?;
        apply(&mut state, &back).map_err(TestCaseError::fail)?;
        same(&state, &dp)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300), ..ProptestConfig::default() })]

    #[test]
    fn fabric_forwards_like_one_switch(s in scenario()) {
        run(&s)?;
    }
}

/// Every single failure (all links, all LAG members) of one fixed fabric
/// with every kind of attachment.
#[test]
fn every_single_failure_of_a_fixed_fabric() {
    let s = Scenario {
        spines: 2,
        leaves: 4,
        vlans: 3,
        v6: true,
        hosts: vec![
            spec((0, 0, 0, 0, false, true, 1)),
            spec((0, 1, 1, 0, true, false, 1)),
            spec((1, 1, 2, 0, false, true, 1)),
            spec((0, 2, 3, 0, true, true, 2)),
            spec((1, 3, 0, 1, false, true, 1)),
            spec((0, 3, 2, 3, true, false, 2)),
            spec((2, 0, 3, 0, false, true, 1)),
            spec((2, 3, 1, 2, false, true, 1)),
        ],
        routes: vec![(0, 1), (2, 2)],
        failure: 0,
        pick: 0,
    };
    let w = build(&s);
    let topo = Topology::build(&w.fabric, &ObservedState::default(), None);
    let (links, members) = failures(&w.fabric, &topo);
    assert_eq!(links.len(), 8);
    assert!(members.len() >= 8);
    for obs in links.iter().chain(&members) {
        let t2 = Topology::build(&w.fabric, obs, Some(topo.flood_tree()));
        assert!(t2.is_connected());
        let dp = compile(&w.fabric, &t2, &w.learned);
        if let Err(e) = check_world(&w, &t2, &dp) {
            panic!("after {obs:?}: {e}");
        }
    }
}
