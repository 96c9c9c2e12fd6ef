//! Pins the exact entities of a small hand-checked fabric: 1 spine, 2
//! leaves, 2 hosts in VLAN 10 (gateway 10.0.10.1/24), one per leaf.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::config::{Attachment, EdgePort, Host, PortRef, Vlan, VlanMode};
use crate::p4rt::entity::{Entity, SwitchEntities, TableAction};
use crate::topo::{ObservedState, Topology};

use super::sample::leaf_spine;
use super::*;

pub(crate) fn small_fabric() -> Fabric {
    let mut f = leaf_spine(1, 2);
    f.vlans.insert(
        10,
        Vlan {
            name: "web".into(),
            tenant: String::new(),
            vrf: 0,
            ipv4_gateway: Some("10.0.10.1/24".parse().unwrap()),
            ipv6_gateway: None,
            gateway_mac: None,
        },
    );
    for (leaf, host, mac, ip) in [
        ("leaf01", "h1", 1u8, "10.0.10.11"),
        ("leaf02", "h2", 2, "10.0.10.12"),
    ] {
        f.ports.insert(
            PortRef::new(leaf, 10),
            EdgePort {
                vlans: VlanMode::Access { vlan: 10 },
                admin_up: true,
                description: String::new(),
                max_learned_macs: None,
            },
        );
        f.hosts.insert(
            host.into(),
            Host {
                mac: MacAddr([2, 0, 0, 0, 0, mac]),
                vlan: 10,
                ips: vec![ip.parse().unwrap()],
                attachment: Attachment::Port(PortRef::new(leaf, 10)),
            },
        );
    }
    f
}

/// One line per entity: key, then what it does.
pub(crate) fn dump(m: &SwitchEntities) -> String {
    let mut s = String::new();
    for (k, e) in m {
        let what = match e {
            Entity::Table(t) => {
                let a = match &t.action {
                    TableAction::Direct(a) => format!("{}{:x?}", short(a.name), a.params),
                    other => format!("{other:?}"),
                };
                if t.idle_timeout_ns != 0 {
                    format!("{a} idle={}s", t.idle_timeout_ns / 1_000_000_000)
                } else {
                    a
                }
            }
            Entity::Member(m) => format!("{}{:x?}", short(m.action.name), m.action.params),
            Entity::Group(g) => format!(
                "{:?} max={}",
                g.members
                    .iter()
                    .map(|m| (m.member_id, m.watch_port))
                    .collect::<Vec<_>>(),
                g.max_size
            ),
            Entity::Multicast(g) => format!(
                "{:?}",
                g.replicas.iter().map(|r| r.port).collect::<Vec<_>>()
            ),
            Entity::Clone(c) => format!(
                "{:?}",
                c.replicas.iter().map(|r| r.port).collect::<Vec<_>>()
            ),
            Entity::Digest(_) => "digest".into(),
            Entity::Meter(m) => format!("cir={} cburst={}", m.cir, m.cburst),
        };
        let _ = writeln!(s, "{} => {what}", short(&k.to_string()));
    }
    s
}

fn short(s: &str) -> String {
    s.replace("FabricIngress.", "").replace("FabricEgress.", "")
}

fn compiled() -> BTreeMap<String, SwitchEntities> {
    let f = small_fabric();
    let topo = Topology::build(&f, &ObservedState::default(), None);
    compile(&f, &topo, &Hosts::new())
}

/// Compares with the pinned file; `UPDATE_SNAPSHOTS=1` rewrites it (then
/// check the diff by hand).
fn pinned(switch: &str, want: &str, file: &str) {
    let got = dump(&compiled()[switch]);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let path = format!("{}/src/compile/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(path, &got).unwrap();
        return;
    }
    assert_eq!(got, want, "{switch} entities changed:\n{got}");
}

#[test]
fn small_fabric_spine() {
    pinned(
        "spine1",
        include_str!("testdata/small_spine1.txt"),
        "small_spine1.txt",
    );
}

#[test]
fn small_fabric_leaf() {
    pinned(
        "leaf01",
        include_str!("testdata/small_leaf01.txt"),
        "small_leaf01.txt",
    );
}

#[test]
fn small_fabric_other_leaf() {
    pinned(
        "leaf02",
        include_str!("testdata/small_leaf02.txt"),
        "small_leaf02.txt",
    );
}

#[test]
fn compile_is_deterministic() {
    assert_eq!(compiled(), compiled());
}

/// Input the validator would reject still compiles, without panics.
#[test]
fn odd_input_does_not_panic() {
    let mut f = small_fabric();
    let lag = crate::config::Lag {
        id: 0,
        members: vec![
            PortRef::new("leaf01", 20),
            PortRef::new("leaf02", 20),
            PortRef::new("spine1", 20),
        ],
        protocol: Default::default(),
        lacp: Default::default(),
        vlans: VlanMode::Trunk {
            vlans: vec![10, 4095, 0],
            native: Some(99),
        },
        admin_up: true,
        description: String::new(),
        max_learned_macs: None,
    };
    f.lags.insert("odd".into(), lag);
    f.links.insert(
        "dangling".into(),
        crate::config::Link {
            a: PortRef::new("leaf01", 1),
            b: PortRef::new("nowhere", 1),
        },
    );
    let host = |mac: u8, vlan, att| Host {
        mac: MacAddr([2, 0, 0, 0, 9, mac]),
        vlan,
        ips: vec!["10.0.10.11".parse().unwrap(), "10.0.10.1".parse().unwrap()],
        attachment: att,
    };
    f.hosts
        .insert("dup-ip".into(), host(1, 10, Attachment::Lag("odd".into())));
    f.hosts.insert(
        "on-spine".into(),
        host(2, 10, Attachment::Port(PortRef::new("spine1", 9))),
    );
    f.hosts.insert(
        "no-lag".into(),
        host(3, 77, Attachment::Lag("missing".into())),
    );
    f.routes.insert(
        "self".into(),
        crate::config::Route {
            vrf: 0,
            prefix: "10.0.10.11/32".parse().unwrap(),
            next_hops: vec!["10.0.10.12".parse().unwrap(), "::1".parse().unwrap()],
        },
    );
    let topo = Topology::build(&f, &ObservedState::default(), None);
    let out = compile(&f, &topo, &Hosts::new());
    assert_eq!(out.len(), 3);
}

#[test]
fn trace_of_the_small_fabric_reads_well() {
    use super::check::{Checker, Frame};
    let f = small_fabric();
    let topo = Topology::build(&f, &ObservedState::default(), None);
    let dp = compile(&f, &topo, &Hosts::new());
    let frame = Frame {
        dst: MacAddr([2, 0, 0, 0, 0, 2]),
        src: MacAddr([2, 0, 0, 0, 0, 1]),
        vlan: None,
        eth_type: 0x0800,
        ip_dst: None,
        ttl: 64,
    };
    let t = Checker::new(&dp, &topo).trace(&PortRef::new("leaf01", 10), frame);
    assert_eq!(
        t.to_string(),
        "hop leaf01/1 -> spine1/1 label 0x66\n\
         hop spine1/2 -> leaf02/1 label 0x66\n\
         delivered out of leaf02/10 (untagged, 02:00:00:00:00:01 -> 02:00:00:00:00:02)\n"
    );
}

#[test]
fn borrowed_view_and_diff_match_the_materialized_switch() {
    let f = small_fabric();
    let topo = Topology::build(&f, &ObservedState::default(), None);
    let c = CompiledFabric::new(&f, &topo, &Hosts::new());
    for sw in ["leaf01", "leaf02", "spine1"] {
        let full = c.switch_entities(sw);
        let view: SwitchEntities = c
            .iter_switch(sw)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        assert_eq!(view, full);
        assert_eq!(c.switch_len(sw), full.len());
        assert!(c.diff_switch(sw, &full).is_empty());
        assert_eq!(c.diff_switch(sw, &SwitchEntities::new()).len(), full.len());
    }
}

/// The host route (/32, /128) of `ip` on `m`: its `route_direct`
/// destination MAC, if it has one.
pub(crate) fn host_route_dmac(m: &SwitchEntities, ip: std::net::IpAddr) -> Option<u128> {
    let (table, value, prefix_len) = match ip {
        std::net::IpAddr::V4(a) => (names::T_IPV4, u128::from(u32::from(a)), 32),
        std::net::IpAddr::V6(a) => (names::T_IPV6, u128::from(a), 128),
    };
    let lpm = crate::p4rt::entity::Match::Lpm { value, prefix_len };
    m.values().find_map(|e| match e {
        Entity::Table(t)
            if t.key.table == table && t.key.matches.iter().any(|(_, m)| *m == lpm) =>
        {
            match &t.action {
                TableAction::Direct(a) if a.name == names::A_ROUTE_DIRECT => a
                    .params
                    .iter()
                    .find(|(p, _)| *p == names::P_DMAC)
                    .map(|(_, v)| *v),
                _ => None,
            }
        }
        _ => None,
    })
}

/// An address learned for a configured host's MAC (a second IPv4, a SLAAC
/// IPv6 address) is routed to that host like its configured ones, on the
/// full compile and incrementally; the configured attachment stays.
#[test]
fn addresses_learned_for_a_static_host_are_routed() {
    let f = small_fabric();
    let topo = Topology::build(&f, &ObservedState::default(), None);
    let h1 = MacAddr([2, 0, 0, 0, 0, 1]);
    let extra: std::net::IpAddr = "10.0.10.99".parse().unwrap();
    let learned = HostEntry {
        vlan: 10,
        mac: h1,
        ips: vec![extra],
        // Heard elsewhere: the configuration says where h1 is.
        attachment: Attachment::Port(PortRef::new("leaf02", 10)),
        learned: true,
    };
    let with: Hosts = [(learned.key(), learned.clone())].into();
    let full = compile(&f, &topo, &with);
    let plain = compile(&f, &topo, &Hosts::new());
    for leaf in ["leaf01", "leaf02"] {
        assert_eq!(
            host_route_dmac(&full[leaf], extra),
            Some(build::mac(h1)),
            "{leaf}: no host route to the learned address"
        );
        assert_eq!(host_route_dmac(&plain[leaf], extra), None);
    }
    // Nothing else of h1 changed: same bridging and learning entries.
    let without_route = |m: &SwitchEntities| -> String {
        dump(m)
            .lines()
            .filter(|l| !l.contains("routing.ipv4"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for sw in ["leaf01", "leaf02", "spine1"] {
        assert_eq!(without_route(&full[sw]), without_route(&plain[sw]), "{sw}");
    }
    // Incrementally: learned, then gone again.
    let mut c = CompiledFabric::new(&f, &topo, &Hosts::new());
    assert!(!c
        .update_host(learned.key(), Some(learned.clone()))
        .is_empty());
    assert_eq!(c.materialize(), full);
    assert!(c
        .update_host(learned.key(), Some(learned.clone()))
        .is_empty());
    assert!(!c.update_host(learned.key(), None).is_empty());
    assert_eq!(c.materialize(), plain);
}

/// The fdb action of (`vlan`, `m`) on a switch: its name.
fn fdb_action(entities: &SwitchEntities, vlan: VlanId, m: MacAddr) -> Option<&'static str> {
    let key = crate::p4rt::entity::TableKey::new(names::T_FDB)
        .exact(names::F_VLAN_ID, vlan)
        .exact(names::F_ETH_DST, build::mac(m));
    match entities.get(&crate::p4rt::entity::EntityKey::Table(key))? {
        Entity::Table(t) => match &t.action {
            TableAction::Direct(a) => Some(a.name),
            _ => None,
        },
        _ => None,
    }
}

/// A binding (`hosts/<id>`) put for the key of a learned host wins over
/// it, incrementally as on a full compile: the configured attachment, the
/// configured addresses plus the learned ones, no idle timeout. Deleting
/// the binding brings the learned host back.
#[test]
fn a_binding_wins_over_a_learned_host_incrementally() {
    let old = small_fabric();
    let topo = Topology::build(&old, &ObservedState::default(), None);
    let vm = MacAddr([2, 0, 0, 0, 0, 7]);
    let heard: std::net::IpAddr = "10.0.10.77".parse().unwrap();
    let bound: std::net::IpAddr = "10.0.10.78".parse().unwrap();
    let learned_vm = HostEntry {
        vlan: 10,
        mac: vm,
        ips: vec![heard],
        attachment: Attachment::Port(PortRef::new("leaf02", 10)),
        learned: true,
    };
    let learned: Hosts = [(learned_vm.key(), learned_vm)].into();
    let mut new = old.clone();
    new.hosts.insert(
        "vm".into(),
        Host {
            mac: vm,
            vlan: 10,
            ips: vec![bound],
            attachment: Attachment::Port(PortRef::new("leaf01", 10)),
        },
    );
    let mut c = CompiledFabric::new(&old, &topo, &learned);
    assert_eq!(
        fdb_action(&c.switch_entities("leaf02"), 10, vm),
        Some(names::A_TO_PORT)
    );
    let plans = c.update_config(&old, &new, &learned).expect("incremental");
    assert_eq!(c.materialize(), compile(&new, &topo, &learned));
    // Every leaf's fdb entry changes (the home leaf moved); the spine has
    // nothing of hosts.
    assert_eq!(
        plans.keys().map(String::as_str).collect::<Vec<_>>(),
        ["leaf01", "leaf02"]
    );
    let (leaf01, leaf02) = (c.switch_entities("leaf01"), c.switch_entities("leaf02"));
    assert_eq!(fdb_action(&leaf01, 10, vm), Some(names::A_TO_PORT));
    assert_eq!(fdb_action(&leaf02, 10, vm), Some(names::A_TO_LEAF));
    for ip in [bound, heard] {
        assert_eq!(host_route_dmac(&leaf02, ip), Some(build::mac(vm)), "{ip}");
    }
    let idle = leaf01.values().any(|e| match e {
        Entity::Table(t) => t.key.table == names::T_SRC_MAC && t.idle_timeout_ns != 0,
        _ => false,
    });
    assert!(!idle, "a binding's learning entry must not age out");
    // The binding deleted: the learned host is back where it was heard.
    c.update_config(&new, &old, &learned).expect("incremental");
    assert_eq!(c.materialize(), compile(&old, &topo, &learned));
    assert_eq!(
        fdb_action(&c.switch_entities("leaf02"), 10, vm),
        Some(names::A_TO_PORT)
    );
}

/// An edit of a configuration and the section that makes it a full
/// compile (`None`: incremental).
type Edit = (fn(&mut Fabric), Option<&'static str>);

#[test]
fn only_hosts_ports_and_vlans_have_an_incremental_path() {
    let old = small_fabric();
    let edits: [Edit; 8] = [
        (|f| f.settings.mac_aging_secs += 1, Some("settings")),
        (
            |f| f.switches.retain(|n, _| n != "leaf02"),
            Some("switches"),
        ),
        (|f| f.links.clear(), Some("links")),
        (
            |f| {
                let mut lag: crate::config::Lag = serde_json::from_str(
                    r#"{"id":1,"members":["leaf01/20"],"mode":"access","vlan":10}"#,
                )
                .unwrap();
                lag.admin_up = true;
                f.lags.insert("bond".into(), lag);
            },
            Some("lags"),
        ),
        (
            |f| {
                let r = crate::config::Route {
                    vrf: 0,
                    prefix: "10.9.0.0/16".parse().unwrap(),
                    next_hops: vec!["10.0.10.11".parse().unwrap()],
                };
                f.routes.insert("r".into(), r);
            },
            Some("routes"),
        ),
        (|f| f.hosts.retain(|n, _| n != "h1"), None),
        (|f| f.ports.retain(|p, _| p.switch != "leaf02"), None),
        (
            |f| {
                if let Some(v) = f.vlans.get_mut(&10) {
                    v.gateway_mac = Some(MacAddr([2, 9, 9, 9, 9, 9]));
                }
            },
            None,
        ),
    ];
    let topo = Topology::build(&old, &ObservedState::default(), None);
    for (edit, full) in edits {
        let mut new = old.clone();
        edit(&mut new);
        let change = classify(&old, &new);
        assert_eq!(
            change,
            match full {
                Some(what) => ConfigChange::Full(what),
                None => change.clone(),
            }
        );
        let mut c = CompiledFabric::new(&old, &topo, &Hosts::new());
        let applied = c.update_config(&old, &new, &Hosts::new());
        assert_eq!(applied.is_none(), full.is_some(), "{change:?}");
        if applied.is_some() {
            assert!(!change.is_empty());
            assert_eq!(c.materialize(), compile(&new, &topo, &Hosts::new()));
        }
    }
    assert!(classify(&old, &old).is_empty());
}

/// Two bindings of one key (which the validator rejects) are left to a
/// full compile: making one, and changing one.
#[test]
fn bindings_sharing_a_key_take_a_full_compile() {
    let old = small_fabric();
    let topo = Topology::build(&old, &ObservedState::default(), None);
    let mut dup = old.clone();
    let mut twin = dup.hosts["h1"].clone();
    twin.ips.clear();
    dup.hosts.insert("h1-twin".into(), twin);
    let mut c = CompiledFabric::new(&old, &topo, &Hosts::new());
    assert!(c.update_config(&old, &dup, &Hosts::new()).is_none());
    let mut c = CompiledFabric::new(&dup, &topo, &Hosts::new());
    let mut changed = dup.clone();
    changed.hosts.remove("h1-twin");
    assert!(c.update_config(&dup, &changed, &Hosts::new()).is_none());
    // Without the twin, the same change is incremental.
    let mut c = CompiledFabric::new(&old, &topo, &Hosts::new());
    let mut moved = old.clone();
    if let Some(h) = moved.hosts.get_mut("h1") {
        h.ips.clear();
    }
    assert!(c.update_config(&old, &moved, &Hosts::new()).is_some());
    assert_eq!(c.materialize(), compile(&moved, &topo, &Hosts::new()));
}

/// The `locked_sources` keys each switch holds.
fn locked(dp: &BTreeMap<String, SwitchEntities>, sw: &str) -> Vec<String> {
    dp[sw]
        .values()
        .filter_map(|e| match e {
            Entity::Table(t) if t.key.table == names::T_LOCKED_SOURCES => {
                Some(format!("{:?}", t.key))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_port_at_its_mac_limit_is_locked_on_its_leaf_only_and_incrementally() {
    let f = small_fabric();
    let open = Topology::build(&f, &ObservedState::default(), None);
    let mut obs = ObservedState::default();
    obs.locked_sources
        .insert(Attachment::Port(PortRef::new("leaf01", 10)));
    let shut = Topology::build(&f, &obs, Some(open.flood_tree()));
    let dp = compile(&f, &shut, &Hosts::new());
    let l1 = locked(&dp, "leaf01");
    assert_eq!(l1.len(), 1, "{l1:?}");
    assert!(
        l1[0].contains("ingress_port") && l1[0].contains("10"),
        "{l1:?}"
    );
    assert!(locked(&dp, "leaf02").is_empty());
    assert!(locked(&dp, "spine1").is_empty());
    // The lock and its release are one insert and one delete on leaf01.
    let mut c = CompiledFabric::new(&f, &open, &Hosts::new());
    let plans = c.update_topology(&f, &shut);
    assert_eq!(plans.keys().collect::<Vec<_>>(), ["leaf01"], "{plans:?}");
    assert_eq!(plans["leaf01"].len(), 1, "{plans:?}");
    assert_eq!(c.materialize(), dp);
    let plans = c.update_topology(&f, &open);
    assert_eq!(plans["leaf01"].len(), 1, "{plans:?}");
    assert_eq!(c.materialize(), compile(&f, &open, &Hosts::new()));
}

/// Sample fabrics of any size keep their switch labels off the flood
/// labels (which end in hex F), unique, and the small ones unchanged.
#[test]
fn sample_switch_labels_are_never_flood_labels() {
    use super::names::is_flood_label;
    let f = leaf_spine(8, 40);
    let labels: Vec<u32> = f.switches.values().map(|s| s.label).collect();
    assert!(labels.iter().all(|l| !is_flood_label(*l)), "{labels:?}");
    let unique: std::collections::BTreeSet<_> = labels.iter().collect();
    assert_eq!(unique.len(), labels.len(), "{labels:?}");
    let label = |name: &str| f.switches[name].label;
    assert_eq!(
        [label("leaf01"), label("leaf10"), label("leaf11")],
        [101, 110, 112]
    );
    assert_eq!(
        [label("spine1"), label("spine6"), label("spine7")],
        [1001, 1006, 1008]
    );
}
