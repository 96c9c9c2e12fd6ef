//! The controller's incremental compile path (`IncrementalCompiler`:
//! `update_config` for static hosts, edge ports and VLANs, a new
//! `CompiledFabric` for any other configuration change, `update_topology`
//! for observed-state changes, `update_host` per host) yields exactly the
//! per-switch desired state of a full `compile()` of the same inputs, after
//! every step of random sequences of host, topology and configuration
//! changes; the configuration changes with an incremental path take it;
//! and the keys an agent diffs between consecutive snapshots
//! (`FabricView::changed_keys`) cover every difference.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use p4fabric::compile::sample::{large, leaf_name};
use p4fabric::compile::{compile, FabricView, HostEntry, Hosts};
use p4fabric::config::{Attachment, EdgePort, Fabric, Host, PortRef, Route, Vlan, VlanMode};
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
    /// A static binding (`hosts/<id>` put): a new host on a port, or, with
    /// `shadow`, the key of a learned host (the binding wins).
    PutStatic {
        n: u8,
        leaf: usize,
        port: u32,
        shadow: Option<usize>,
    },
    DeleteStatic(usize),
    MoveStatic(usize, u32),
    ReaddressStatic(usize, u8),
    /// Many bindings in one configuration change (a Neutron bulk create).
    BulkStatic(u8),
    /// An edge port's VLAN membership changes.
    PortVlans(usize, usize),
    PortAdmin(usize),
    AddPort {
        leaf: usize,
        port: u32,
        vlan: usize,
    },
    RemovePort(usize),
    /// A VLAN's IPv4 gateway (and so its subnet) moves.
    VlanGateway(usize, u8),
    VlanGatewayMac(usize, u8),
    VlanVrf(usize, u8),
    RemoveVlan(usize),
    /// A port change and a link going down before the next recompute.
    PortAndLinkDown(usize, usize),
}

/// What a step changed of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Nothing,
    /// Only keys with an incremental path (hosts, ports, VLANs).
    Incremental,
    /// Something that needs a full compile (routes).
    Full,
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
        (
            any::<u8>(),
            1..=LEAVES,
            10..14u32,
            proptest::option::of(any::<usize>())
        )
            .prop_map(|(n, leaf, port, shadow)| Step::PutStatic {
                n,
                leaf,
                port,
                shadow
            }),
        any::<usize>().prop_map(Step::DeleteStatic),
        (any::<usize>(), 10..14u32).prop_map(|(h, p)| Step::MoveStatic(h, p)),
        (any::<usize>(), any::<u8>()).prop_map(|(h, a)| Step::ReaddressStatic(h, a)),
        any::<u8>().prop_map(Step::BulkStatic),
        (any::<usize>(), any::<usize>()).prop_map(|(p, v)| Step::PortVlans(p, v)),
        any::<usize>().prop_map(Step::PortAdmin),
        (1..=LEAVES, 40..44u32, any::<usize>()).prop_map(|(leaf, port, vlan)| Step::AddPort {
            leaf,
            port,
            vlan
        }),
        any::<usize>().prop_map(Step::RemovePort),
        (any::<usize>(), any::<u8>()).prop_map(|(v, n)| Step::VlanGateway(v, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(v, n)| Step::VlanGatewayMac(v, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(v, n)| Step::VlanVrf(v, n)),
        any::<usize>().prop_map(Step::RemoveVlan),
        (any::<usize>(), any::<usize>()).prop_map(|(p, l)| Step::PortAndLinkDown(p, l)),
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

/// An address of `vlan`'s IPv4 subnet (not the gateway), or none.
fn address_in(f: &Fabric, vlan: u16, n: u8) -> Vec<IpAddr> {
    let Some(gw) = f.vlans.get(&vlan).and_then(|v| v.ipv4_gateway) else {
        return Vec::new();
    };
    let size = 1u32 << (32 - u32::from(gw.prefix_len()));
    if size < 8 {
        return Vec::new();
    }
    let base = u32::from(gw.network());
    let ip = Ipv4Addr::from(base + 2 + (u32::from(n) * 7 + 3) % (size - 4));
    if ip == gw.addr() {
        return Vec::new();
    }
    vec![IpAddr::V4(ip)]
}

/// A binding named after its key, so a key is bound once.
fn put_static(w: &mut World, h: Host) {
    w.fabric
        .hosts
        .insert(format!("s-{}-{}", h.vlan, h.mac).replace(':', ""), h);
}

/// Edits the `i`-th value of `map` (none: nothing changed).
fn edit_nth<K: Ord + Clone, V>(
    map: &mut BTreeMap<K, V>,
    i: usize,
    f: impl FnOnce(&mut V),
) -> Changed {
    match nth(map.keys().cloned(), i).and_then(|k| map.get_mut(&k)) {
        Some(v) => {
            f(v);
            Changed::Incremental
        }
        None => Changed::Nothing,
    }
}

fn remove_nth<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, i: usize) -> Changed {
    match nth(map.keys().cloned(), i).and_then(|k| map.remove(&k)) {
        Some(_) => Changed::Incremental,
        None => Changed::Nothing,
    }
}

/// Applies a step; returns what kind of configuration change it is (the
/// caller sees whether it changed anything).
fn apply(w: &mut World, s: &Step) -> Changed {
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
            return Changed::Full;
        }
        Step::RemoveRoute(i) => {
            if let Some(k) = nth(w.fabric.routes.keys().cloned(), *i) {
                w.fabric.routes.remove(&k);
            }
            return Changed::Full;
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
            return Changed::Incremental;
        }
        Step::PutStatic {
            n,
            leaf,
            port,
            shadow,
        } => {
            let attachment = Attachment::Port(PortRef::new(leaf_name(*leaf), *port));
            let shadowed = shadow.and_then(|i| nth(w.hosts.values().cloned(), i));
            let (vlan, mac) = match shadowed {
                Some(h) => (h.vlan, h.mac),
                // The MAC `AddHost` learns on this leaf: either may come first.
                None => (
                    *w.fabric.vlans.keys().next().unwrap_or(&1),
                    MacAddr([0x02, 0x77, 0, 0, *leaf as u8, *n]),
                ),
            };
            let ips = address_in(&w.fabric, vlan, n.wrapping_add(100));
            put_static(
                w,
                Host {
                    mac,
                    vlan,
                    ips,
                    attachment,
                },
            );
            return Changed::Incremental;
        }
        Step::DeleteStatic(i) => return remove_nth(&mut w.fabric.hosts, *i),
        Step::MoveStatic(i, port) => {
            return edit_nth(&mut w.fabric.hosts, *i, |h| {
                if let Attachment::Port(p) = &h.attachment {
                    h.attachment = Attachment::Port(PortRef::new(p.switch.clone(), *port));
                }
            });
        }
        Step::ReaddressStatic(i, a) => {
            let f = w.fabric.clone();
            return edit_nth(&mut w.fabric.hosts, *i, |h| {
                h.ips = address_in(&f, h.vlan, *a)
            });
        }
        Step::BulkStatic(n) => {
            let vlans: Vec<u16> = w.fabric.vlans.keys().copied().collect();
            for k in 0..40u8 {
                let leaf = 1 + usize::from(k) % LEAVES;
                let vlan = vlans[usize::from(k.wrapping_add(*n)) % vlans.len()];
                let ips = address_in(&w.fabric, vlan, k.wrapping_mul(3).wrapping_add(*n));
                put_static(
                    w,
                    Host {
                        mac: MacAddr([0x02, 0x88, 0, *n, leaf as u8, k]),
                        vlan,
                        ips,
                        attachment: Attachment::Port(PortRef::new(
                            leaf_name(leaf),
                            10 + u32::from(k % 4),
                        )),
                    },
                );
            }
            return Changed::Incremental;
        }
        Step::PortVlans(i, v) => {
            let vlan = nth(w.fabric.vlans.keys().copied(), *v).unwrap_or(1);
            return edit_nth(&mut w.fabric.ports, *i, |p| {
                p.vlans = if v % 2 == 0 {
                    VlanMode::Access { vlan }
                } else {
                    VlanMode::Trunk {
                        vlans: vec![vlan],
                        native: p.vlans.member_vlans().first().copied(),
                    }
                }
            });
        }
        Step::PortAdmin(i) => {
            return edit_nth(&mut w.fabric.ports, *i, |p| p.admin_up = !p.admin_up)
        }
        Step::AddPort { leaf, port, vlan } => {
            let vlan = nth(w.fabric.vlans.keys().copied(), *vlan).unwrap_or(1);
            let p = EdgePort {
                vlans: VlanMode::Access { vlan },
                admin_up: true,
                description: String::new(),
                max_learned_macs: None,
            };
            w.fabric
                .ports
                .insert(PortRef::new(leaf_name(*leaf), *port), p);
            return Changed::Incremental;
        }
        Step::RemovePort(i) => return remove_nth(&mut w.fabric.ports, *i),
        Step::VlanGateway(i, n) => {
            return edit_nth(&mut w.fabric.vlans, *i, |v| {
                v.ipv4_gateway = format!("10.{}.{n}.1/24", 180 + n % 50).parse().ok()
            });
        }
        Step::VlanGatewayMac(i, n) => {
            return edit_nth(&mut w.fabric.vlans, *i, |v| {
                v.gateway_mac = (n % 3 != 0).then_some(MacAddr([0x02, 0x99, 0, 0, 0, *n]))
            });
        }
        Step::VlanVrf(i, n) => {
            return edit_nth(&mut w.fabric.vlans, *i, |v| v.vrf = u16::from(n % 3))
        }
        Step::RemoveVlan(i) => return remove_nth(&mut w.fabric.vlans, *i),
        Step::PortAndLinkDown(p, l) => {
            apply(w, &Step::LinkDown(*l));
            return apply(w, &Step::PortAdmin(*p));
        }
        Step::RouteAndHost(n, h) => {
            add_route(w, *n, *h);
            apply(w, &Step::RemoveHost(*h));
            return Changed::Full;
        }
    }
    Changed::Nothing
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
    // A few bindings from the start, two of them of learned hosts' keys.
    for i in [0, 7] {
        apply(
            &mut w,
            &Step::PutStatic {
                n: i as u8,
                leaf: 1,
                port: 11,
                shadow: Some(i),
            },
        );
    }
    apply(&mut w, &Step::BulkStatic(0));
    let switches: Vec<String> = w.fabric.switches.keys().cloned().collect();
    let mut ic = IncrementalCompiler::default();
    let mut current = Arc::new(w.fabric.clone());
    ic.update(&current, &w.observed, &w.hosts, true);
    for (i, s) in steps.iter().enumerate() {
        let before = ic.snapshot();
        let tree = ic.flood_tree().cloned();
        let kind = match apply(&mut w, s) {
            _ if w.fabric == *current => Changed::Nothing,
            kind => kind,
        };
        let config_changed = kind != Changed::Nothing;
        if config_changed {
            current = Arc::new(w.fabric.clone());
        }
        let full = ic.update(&current, &w.observed, &w.hosts, config_changed);
        prop_assert_eq!(
            full,
            Some(kind == Changed::Full),
            "step {} {:?}: {:?} change, compiled anew: {:?}",
            i,
            s,
            kind,
            full
        );
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
        Step::PutStatic {
            n: 1,
            leaf: 2,
            port: 12,
            shadow: None,
        },
        Step::PutStatic {
            n: 3,
            leaf: 1,
            port: 13,
            shadow: Some(4),
        },
        Step::MoveStatic(1, 11),
        Step::ReaddressStatic(2, 40),
        Step::DeleteStatic(0),
        Step::BulkStatic(9),
        Step::PortVlans(3, 1),
        Step::PortVlans(5, 2),
        Step::PortAdmin(2),
        Step::AddPort {
            leaf: 3,
            port: 41,
            vlan: 6,
        },
        Step::RemovePort(8),
        Step::VlanGateway(0, 7),
        Step::VlanGatewayMac(1, 5),
        Step::VlanVrf(2, 1),
        Step::RemoveVlan(3),
        Step::PortAndLinkDown(4, 1),
    ];
    if let Err(e) = run(&steps) {
        panic!("{e}");
    }
}
