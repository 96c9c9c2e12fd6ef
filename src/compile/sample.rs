//! Synthetic leaf-spine fabrics for tests, benchmarks and demos.
//!
//! Naming: `spine1..`, `leaf01..` (zero-padded so name order is index
//! order). Leaf `i` uplink to spine `s` is leaf port `s` (1-based) and
//! spine port `i`; edge ports start at 10. Labels: leaves 101.., spines
//! 1001.., counting up and skipping labels that end in hex F (flood
//! labels): leaves 101..=110, 112.., spines 1001..=1006, 1008...

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::{HostEntry, Hosts};
use crate::config::{
    Attachment, EdgePort, Fabric, Lag, LagMode, Link, PortRef, Role, Route, Switch, Vlan, VlanId,
    VlanMode,
};
use crate::net::MacAddr;

pub fn spine_name(s: usize) -> String {
    format!("spine{s}")
}

pub fn leaf_name(i: usize) -> String {
    format!("leaf{i:02}")
}

/// LAG `bond` (id 7, LACP, trunk VLANs 10 and 11) over port 10 of
/// leaf01 and leaf02.
pub fn with_two_leaf_lag(mut f: Fabric) -> Fabric {
    f.lags.insert(
        "bond".into(),
        crate::config::Lag {
            id: 7,
            members: vec![
                crate::config::PortRef::new("leaf01", 10),
                crate::config::PortRef::new("leaf02", 10),
            ],
            protocol: crate::config::LagMode::Lacp,
            lacp: Default::default(),
            vlans: crate::config::VlanMode::Trunk {
                vlans: vec![10, 11],
                native: None,
            },
            admin_up: true,
            description: String::new(),
            max_learned_macs: None,
        },
    );
    f
}

/// The `n`th (0-based) switch label from `first` on, skipping labels
/// that end in hex F: those are flood labels (`net::is_flood_label`).
pub fn switch_label(first: u32, n: usize) -> u32 {
    (first..)
        .filter(|l| !crate::net::is_flood_label(*l))
        .nth(n)
        .expect("the label space holds every sample fabric")
}

/// A full mesh of `spines` x `leaves` links, no edge ports yet.
pub fn leaf_spine(spines: usize, leaves: usize) -> Fabric {
    let mut f = Fabric::default();
    let switch = |role, label: u32, n: usize| Switch {
        address: format!("127.0.0.1:{}", 50000 + n),
        device_id: n as u64,
        role,
        label,
        target: Default::default(),
        pipeline: "fabric".into(),
        fabric_ports: Vec::new(),
        mac: None,
        port_events: None,
        device_config: None,
        cpu_port: None,
        port_map: Default::default(),
    };
    for s in 1..=spines {
        f.switches.insert(
            spine_name(s),
            switch(Role::Spine, switch_label(1001, s - 1), s),
        );
    }
    for l in 1..=leaves {
        f.switches.insert(
            leaf_name(l),
            switch(Role::Leaf, switch_label(101, l - 1), 100 + l),
        );
        for s in 1..=spines {
            f.links.insert(
                format!("{}-{}", spine_name(s), leaf_name(l)),
                Link {
                    a: PortRef::new(spine_name(s), l as u32),
                    b: PortRef::new(leaf_name(l), s as u32),
                },
            );
        }
    }
    f
}

/// The benchmark fabric: `spines` x `leaves`, 100 VLANs in 4 VRFs (IPv4 and
/// IPv6 gateways), 24 trunk ports of 5 VLANs per leaf, 2 two-leaf LAGs per
/// leaf pair, `hosts` learned hosts (every 20th on a LAG) and `routes`
/// static /24 routes, each over 1-2 of 32 next-hop hosts of its VRF.
pub fn large(spines: usize, leaves: usize, hosts: usize, routes: usize) -> (Fabric, Hosts) {
    let mut f = leaf_spine(spines, leaves);
    const VLANS: usize = 100;
    const PORTS: u32 = 24;
    let vlan_id = |i: usize| 100 + i as VlanId;
    for i in 0..VLANS {
        let v = Vlan {
            name: format!("net{i}"),
            tenant: format!("t{}", i % 4),
            vrf: (i % 4) as u16,
            ipv4_gateway: format!("10.{i}.0.1/16").parse().ok(),
            ipv6_gateway: format!("2001:db8:{i:x}::1/64").parse().ok(),
            gateway_mac: None,
        };
        f.vlans.insert(vlan_id(i), v);
    }
    let port_vlans = |leaf: usize, port: u32| -> Vec<VlanId> {
        let base = leaf * 7 + port as usize;
        (0..5).map(|k| vlan_id((base + k * 20) % VLANS)).collect()
    };
    for l in 1..=leaves {
        for p in 0..PORTS {
            let mode = VlanMode::Trunk {
                vlans: port_vlans(l, p),
                native: None,
            };
            let port = EdgePort {
                vlans: mode,
                admin_up: true,
                description: String::new(),
                max_learned_macs: None,
            };
            f.ports.insert(PortRef::new(leaf_name(l), 10 + p), port);
        }
    }
    for pair in 0..leaves / 2 {
        for j in 0..2u32 {
            let (a, b) = (leaf_name(2 * pair + 1), leaf_name(2 * pair + 2));
            let lag = Lag {
                id: (pair * 2) as u16 + j as u16 + 1,
                members: vec![PortRef::new(a, 40 + j), PortRef::new(b, 40 + j)],
                protocol: LagMode::Lacp,
                lacp: Default::default(),
                vlans: VlanMode::Trunk {
                    vlans: port_vlans(pair, j + 100),
                    native: None,
                },
                admin_up: true,
                description: String::new(),
                max_learned_macs: None,
            };
            f.lags.insert(format!("bond{pair}-{j}"), lag);
        }
    }
    let mut learned = Hosts::new();
    let mut per_vlan = vec![0u32; VLANS];
    let mut pools: Vec<Vec<IpAddr>> = vec![Vec::new(); 4];
    for h in 0..hosts {
        let l = h % leaves + 1;
        let (attachment, vlans) = if h % 20 == 19 && leaves >= 2 {
            let pair = (l - 1) / 2 % (leaves / 2);
            let name = format!("bond{pair}-{}", h % 2);
            let vlans = match &f.lags[&name].vlans {
                VlanMode::Trunk { vlans, .. } => vlans.clone(),
                VlanMode::Access { vlan } => vec![*vlan],
            };
            (Attachment::Lag(name), vlans)
        } else {
            let p = (h / leaves) as u32 % PORTS;
            (
                Attachment::Port(PortRef::new(leaf_name(l), 10 + p)),
                port_vlans(l, p),
            )
        };
        let vlan = vlans[(h / (leaves * PORTS as usize)) % vlans.len()];
        let vi = usize::from(vlan - 100);
        let n = per_vlan[vi];
        per_vlan[vi] += 1;
        let v4: IpAddr = Ipv4Addr::new(10, vi as u8, (n / 250) as u8, (n % 250 + 2) as u8).into();
        let v6: IpAddr = format!("2001:db8:{vi:x}::{:x}", n + 2)
            .parse()
            .unwrap_or(v4);
        let pool = &mut pools[vi % 4];
        if pool.len() < 32 {
            pool.push(v4);
        }
        let mac = MacAddr([
            0x02,
            0x10,
            (h >> 24) as u8,
            (h >> 16) as u8,
            (h >> 8) as u8,
            h as u8,
        ]);
        let e = HostEntry {
            vlan,
            mac,
            ips: vec![v4, v6],
            attachment,
            learned: true,
        };
        learned.insert(e.key(), e);
    }
    for r in 0..routes {
        let vrf = r % 4;
        let pool = &pools[vrf];
        if pool.is_empty() {
            continue;
        }
        let mut next_hops = vec![pool[(r * 7) % pool.len()], pool[(r * 13 + 5) % pool.len()]];
        next_hops.dedup();
        let prefix = Ipv4Addr::new(20 + (r >> 16) as u8, (r >> 8) as u8, r as u8, 0);
        let route = Route {
            vrf: vrf as u16,
            prefix: IpNet::V4(Ipv4Net::new(prefix, 24).unwrap_or_default()),
            next_hops,
        };
        f.routes.insert(format!("r{r:06}"), route);
    }
    (f, learned)
}

/// A port-attached host of `hosts` and the same host moved to another port
/// of its leaf (port 10 <-> 11), for single-change measurements.
pub fn host_move(hosts: &Hosts) -> Option<(HostEntry, HostEntry)> {
    let host = hosts
        .values()
        .find(|h| matches!(h.attachment, Attachment::Port(_)))?;
    let mut moved = host.clone();
    if let Attachment::Port(p) = &host.attachment {
        let port = if p.port == 10 { 11 } else { 10 };
        moved.attachment = Attachment::Port(PortRef::new(p.switch.clone(), port));
    }
    Some((host.clone(), moved))
}
