//! The controller's incremental compile path (`IncrementalCompiler`: a new
//! `CompiledFabric` per configuration change, `update_topology` for
//! observed-state changes, `update_host` per host) yields exactly the
//! per-switch desired state of a full `compile()` of the same inputs, after
//! every step of random sequences of host, topology and configuration
//! changes; and the keys an agent diffs between consecutive snapshots
//! (`FabricView::changed_keys`) cover every difference.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use p4fabric::compile::sample::{large, leaf_name};
use p4fabric::compile::{compile, FabricView, HostEntry, Hosts};
use p4fabric::config::{Attachment, Fabric, PortRef, Route, Vlan};
use p4fabric::controller::IncrementalCompiler;
use p4fabric::net::MacAddr;
use p4fabric::p4rt::entity::SwitchEntities;
use p4fabric::topo::{LinkId, ObservedState, Topology};
use proptest::prelude::*;

const LEAVES: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    AddHost {
        n: u8,
        leaf: usize,
        port: u32,
    },
    RemoveHost(usize),
    MoveHost(usize, u32),
    Readdress(usize, u8),
    LinkDown(usize),
    LinkUp(usize),
    PortDown(usize),
    PortUp(usize),
    LacpUnsynced(usize),
    LacpSynced(usize),
    AddRoute(u8, usize),
    RemoveRoute(usize),
    AddVlan(u8),
    /// A config change and a host change before the next recompute.
    RouteAndHost(u8, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<u8>(), 1..=LEAVES, 10..14u32).prop_map(|(n, leaf, port)| Step::AddHost {
            n,
            leaf,
            port
        }),
        any::<usize>().prop_map(Step::RemoveHost),
        (any::<usize>(), 10..14u32).prop_map(|(h, p)| Step::MoveHost(h, p)),
        (any::<usize>(), any::<u8>()).prop_map(|(h, a)| Step::Readdress(h, a)),
        any::<usize>().prop_map(Step::LinkDown),
        any::<usize>().prop_map(Step::LinkUp),
        any::<usize>().prop_map(Step::PortDown),
        any::<usize>().prop_map(Step::PortUp),
        any::<usize>().prop_map(Step::LacpUnsynced),
        any::<usize>().prop_map(Step::LacpSynced),
        (any::<u8>(), any::<usize>()).prop_map(|(n, h)| Step::AddRoute(n, h)),
        any::<usize>().prop_map(Step::RemoveRoute),
        any::<u8>().prop_map(Step::AddVlan),
        (any::<u8>(), any::<usize>()).prop_map(|(n, h)| Step::RouteAndHost(n, h)),
    ]
}

struct World {
    fabric: Fabric,
    observed: ObservedState,
    hosts: Hosts,
}

fn nth<T: Clone>(items: impl Iterator<Item = T>, i: usize) -> Option<T> {
    let v: Vec<T> = items.collect();
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}

fn lag_members(f: &Fabric) -> Vec<PortRef> {
    f.lags.values().flat_map(|l| l.members.clone()).collect()
}

fn add_route(w: &mut World, n: u8, h: usize) {
    let hop = nth(w.hosts.values().flat_map(|h| h.ips.clone()), h);
    let next_hops: Vec<IpAddr> = hop.into_iter().filter(IpAddr::is_ipv4).collect();
    let route = Route {
        vrf: 0,
        prefix: format!("30.{n}.0.0/16").parse().unwrap_or_default(),
        next_hops,
    };
    w.fabric.routes.insert(format!("t{n:03}"), route);
}

/// Applies a step; returns whether the configuration changed.
fn apply(w: &mut World, s: &Step) -> bool {
    match s {
        Step::AddHost { n, leaf, port } => {
            let mac = MacAddr([0x02, 0x77, 0, 0, *leaf as u8, *n]);
            let vlan = *w.fabric.vlans.keys().next().unwrap_or(&1);
            let e = HostEntry {
                vlan,
                mac,
                ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 200, *n))],
                attachment: Attachment::Port(PortRef::new(leaf_name(*leaf), *port)),
                learned: true,
            };
            w.hosts.insert(e.key(), e);
        }
        Step::RemoveHost(i) => {
            if let Some(k) = nth(w.hosts.keys().copied(), *i) {
                w.hosts.remove(&k);
            }
        }
        Step::MoveHost(i, port) => {
            if let Some(k) = nth(w.hosts.keys().copied(), *i) {
                if let Some(h) = w.hosts.get_mut(&k) {
                    if let Attachment::Port(p) = &h.attachment {
                        h.attachment = Attachment::Port(PortRef::new(p.switch.clone(), *port));
                    }
                }
            }
        }
        Step::Readdress(i, a) => {
            if let Some(k) = nth(w.hosts.keys().copied(), *i) {
                if let Some(h) = w.hosts.get_mut(&k) {
                    h.ips = vec![IpAddr::V4(Ipv4Addr::new(10, 0, 201, *a))];
                }
            }
        }
        Step::LinkDown(i) | Step::LinkUp(i) => {
            if let Some(l) = nth(w.fabric.links.values().cloned(), *i) {
                let id = LinkId::new(l.a.clone(), l.b.clone());
                w.observed
                    .discovered
                    .insert(id, matches!(s, Step::LinkUp(_)));
            }
        }
        Step::PortDown(i) => {
            if let Some(p) = nth(lag_members(&w.fabric).into_iter(), *i) {
                w.observed.ports_down.insert(p);
            }
        }
        Step::PortUp(i) => {
            if let Some(p) = nth(w.observed.ports_down.iter().cloned(), *i) {
                w.observed.ports_down.remove(&p);
            }
        }
        Step::LacpUnsynced(i) => {
            if let Some(p) = nth(lag_members(&w.fabric).into_iter(), *i) {
                w.observed.lacp_unsynced.insert(p);
            }
        }
        Step::LacpSynced(i) => {
            if let Some(p) = nth(w.observed.lacp_unsynced.iter().cloned(), *i) {
                w.observed.lacp_unsynced.remove(&p);
            }
        }
        Step::AddRoute(n, h) => {
            add_route(w, *n, *h);
            return true;
        }
        Step::RemoveRoute(i) => {
            if let Some(k) = nth(w.fabric.routes.keys().cloned(), *i) {
                w.fabric.routes.remove(&k);
            }
            return true;
        }
        Step::AddVlan(n) => {
            let v = Vlan {
                name: format!("extra{n}"),
                tenant: "t0".into(),
                vrf: 0,
                ipv4_gateway: format!("10.250.{n}.1/24").parse().ok(),
                ipv6_gateway: None,
                gateway_mac: None,
            };
            w.fabric.vlans.insert(3000 + u16::from(*n), v);
            return true;
        }
        Step::RouteAndHost(n, h) => {
            add_route(w, *n, *h);
            apply(w, &Step::RemoveHost(*h));
            return true;
        }
    }
    false
}

fn per_switch(v: &FabricView, switches: &[String]) -> BTreeMap<String, SwitchEntities> {
    switches
        .iter()
        .map(|s| (s.clone(), v.switch_entities(s)))
        .collect()
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let (fabric, hosts) = large(2, LEAVES, 60, 40);
    let mut w = World {
        fabric,
        observed: ObservedState::default(),
        hosts,
    };
    let switches: Vec<String> = w.fabric.switches.keys().cloned().collect();
    let mut ic = IncrementalCompiler::default();
    ic.update(&w.fabric, &w.observed, &w.hosts, true);
    for (i, s) in steps.iter().enumerate() {
        let before = ic.snapshot();
        let tree = ic.flood_tree().cloned();
        let config_changed = apply(&mut w, s);
        ic.update(&w.fabric, &w.observed, &w.hosts, config_changed);
        let after = ic.snapshot();
        let topo = Topology::build(&w.fabric, &w.observed, tree.as_ref());
        let want = compile(&w.fabric, &topo, &w.hosts);
        let have = per_switch(&after, &switches);
        for sw in &switches {
            let (h, x) = (&have[sw], &want[sw]);
            prop_assert!(
                h == x,
                "step {i} {s:?}: {sw} differs from a full compile ({} vs {} entities)",
                h.len(),
                x.len()
            );
            // An agent that installed `before` and diffs only the changed
            // keys reaches `after` exactly.
            let mut patched = before.switch_entities(sw);
            for k in after.changed_keys(&before, sw) {
                match after.get(sw, &k) {
                    Some(e) => patched.insert(k, e.clone()),
                    None => patched.remove(&k),
                };
            }
            prop_assert!(
                patched == *h,
                "step {i} {s:?}: {sw}: changed_keys misses a difference"
            );
            prop_assert_eq!(after.switch_len(sw), h.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_controller_equals_full_compile(steps in proptest::collection::vec(step(), 1..14)) {
        run(&steps)?;
    }
}

#[test]
fn a_fixed_sequence_of_every_kind() {
    let steps = vec![
        Step::AddHost {
            n: 1,
            leaf: 1,
            port: 10,
        },
        Step::LinkDown(0),
        Step::MoveHost(3, 12),
        Step::AddRoute(1, 5),
        Step::PortDown(1),
        Step::LacpUnsynced(2),
        Step::Readdress(7, 9),
        Step::LinkUp(0),
        Step::AddVlan(4),
        Step::RemoveHost(2),
        Step::PortUp(0),
        Step::LacpSynced(0),
        Step::RouteAndHost(2, 11),
        Step::RemoveRoute(0),
    ];
    if let Err(e) = run(&steps) {
        panic!("{e}");
    }
}
