//! The per-switch part that depends on configuration and topology but not
//! on hosts or routes: port and VLAN classification, punts, packet I/O,
//! label forwarding, flooding, LAG selectors, fabric encapsulation.

use std::collections::BTreeSet;

use crate::config::{Attachment, Fabric, PortNum, PortRef, Role, VlanId, VlanMode};
use crate::p4rt::entity::{
    ActionCall, CloneSession, DigestConfig, Entity, EntityKey, MeterConfig, MulticastGroup,
    Replica, SwitchEntities, TableAction, TableKey,
};
use crate::topo::{SwitchNode, Topology};

use super::build::{direct, entry, group, mac, member, put, ternary};
use super::names::*;

/// ECMP groups never shrink below this size so a later member fits.
const GROUP_SIZE: i32 = 16;

/// The independently recomputed parts of a switch's infrastructure
/// entities, so a topology change rebuilds only what its inputs touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// Config and link existence: ports, VLANs, ACLs, packet I/O, labels in.
    Static,
    /// Link state and ECMP sets: fabric_selector members, label_fwd.
    Labels,
    /// Flood tree and designated forwarders: multicast groups.
    Flood,
    /// LAG member state: lag_selector.
    Lags,
    /// Port security: locked_sources (attachments at their MAC limit).
    PortSecurity,
}

pub const PARTS: [Part; 5] = [
    Part::Static,
    Part::Labels,
    Part::Flood,
    Part::Lags,
    Part::PortSecurity,
];

pub fn part(fabric: &Fabric, topo: &Topology, sw: &SwitchNode, part: Part) -> SwitchEntities {
    let mut out = SwitchEntities::new();
    let leaf = sw.role == Role::Leaf;
    match part {
        Part::Static => {
            packet_io(fabric, sw, &mut out);
            fabric_ports(fabric, topo, sw, &mut out);
            mpls_in(sw, &mut out);
            if leaf {
                edge_ports(fabric, topo, &sw.name, &mut out);
                for &vlan in fabric.vlans.keys() {
                    let action = ActionCall::new(A_FLOOD).param(P_GROUP, vlan);
                    put(
                        &mut out,
                        direct(TableKey::new(T_VLAN_FLOOD).exact(F_VLAN_ID, vlan), action),
                    );
                }
            }
        }
        Part::Labels => label_fwd(topo, sw, &mut out),
        Part::Flood if leaf => flooding(fabric, topo, &sw.name, &mut out),
        Part::Flood => {
            let replicas = topo.flood_ports(&sw.name).into_iter();
            let replicas = replicas.map(|port| Replica { port, instance: 0 }).collect();
            let g = MulticastGroup {
                group_id: SPINE_FLOOD_GROUP,
                replicas,
            };
            put(&mut out, Entity::Multicast(g));
        }
        Part::Lags if leaf => lag_selectors(topo, &sw.name, &mut out),
        Part::Lags => {}
        Part::PortSecurity => {
            for (port, lag) in locked_sources(topo, &sw.name) {
                let key = TableKey::new(T_LOCKED_SOURCES)
                    .exact(F_INGRESS_PORT, port)
                    .exact(F_LAG_ID, lag);
                put(
                    &mut out,
                    direct(key, ActionCall::new(A_DROP_UNKNOWN_SOURCE)),
                );
            }
        }
    }
    out
}

/// The `locked_sources` keys `(ingress_port, lag_id)` of switch `sw`: its
/// edge ports at their MAC limit as `(port, 0)`, and `(0, LAG id)` for each
/// LAG at its limit with members on it (as `learning.p4` keys `src_mac`).
fn locked_sources(topo: &Topology, sw: &str) -> BTreeSet<(PortNum, u16)> {
    topo.observed()
        .locked_sources
        .iter()
        .filter_map(|a| match a {
            Attachment::Port(p) if p.switch == sw => Some((p.port, 0)),
            Attachment::Port(_) => None,
            Attachment::Lag(name) => topo
                .lag(name)
                .filter(|g| g.members.contains_key(sw))
                .map(|g| (0, g.id)),
        })
        .collect()
}

/// Which parts of `sw` differ between two topologies of the same config.
/// Which parts of `sw` differ between two topologies of the same config;
/// `lag_leaves` are the leaves of LAGs whose state changed.
pub fn changed_parts(
    old: &Topology,
    new: &Topology,
    sw: &str,
    lag_leaves: &BTreeSet<&str>,
) -> Vec<Part> {
    let links = |t: &Topology| -> Vec<(PortNum, PortRef, bool)> {
        t.links_of(sw)
            .into_iter()
            .map(|(p, far, l)| (p, far.clone(), l.state.up))
            .collect()
    };
    let (lo, ln) = (links(old), links(new));
    let same_ends =
        lo.len() == ln.len() && lo.iter().zip(&ln).all(|(a, b)| a.0 == b.0 && a.1 == b.1);
    let lags_changed = lag_leaves.contains(sw);
    let mut out = Vec::new();
    if !same_ends {
        out.push(Part::Static);
    }
    if lo != ln || !old.destinations(sw).eq(new.destinations(sw)) {
        out.push(Part::Labels);
    }
    if old.flood_ports(sw) != new.flood_ports(sw) || lags_changed {
        out.push(Part::Flood);
    }
    if lags_changed {
        out.push(Part::Lags);
    }
    if locked_sources(old, sw) != locked_sources(new, sw) {
        out.push(Part::PortSecurity);
    }
    out
}

/// The switch's CPU port and CPU clone session by its target. A switch
/// validation would reject (a Tofino one without `cpu_port`) never gets
/// here; bmv2's are the fallback.
fn cpu_port_and_session(fabric: &Fabric, sw: &str) -> (PortNum, u32, u128) {
    fabric
        .switches
        .get(sw)
        .and_then(|s| crate::target::for_switch(sw, s).ok())
        .map_or((CPU_PORT, CPU_CLONE_SESSION, 0x1ff), |t| {
            let port_mask = (1u128 << t.port_bits().min(64)) - 1;
            (t.cpu_port(), t.cpu_clone_session(), port_mask)
        })
}

/// The ports of `sw` discovery probes (its configured fabric ports and
/// configured links' ends) and its members of LACP LAGs: the only ports
/// whose discovery frames / LACPDUs are punted.
fn control_ports(fabric: &Fabric, sw: &str) -> (BTreeSet<PortNum>, BTreeSet<PortNum>) {
    let mut fabric_ports: BTreeSet<PortNum> = fabric
        .switches
        .get(sw)
        .map(|s| s.fabric_ports.iter().copied().collect())
        .unwrap_or_default();
    for l in fabric.links.values() {
        for end in [&l.a, &l.b] {
            if end.switch == sw {
                fabric_ports.insert(end.port);
            }
        }
    }
    let lacp_members = fabric
        .lags
        .values()
        .filter(|l| l.protocol == crate::config::LagMode::Lacp)
        .flat_map(|l| l.members.iter())
        .filter(|m| m.switch == sw)
        .map(|m| m.port)
        .collect();
    (fabric_ports, lacp_members)
}

/// CPU port, punt ACLs, their meters, the CPU clone session, the learning
/// digest.
fn packet_io(fabric: &Fabric, sw: &SwitchNode, out: &mut SwitchEntities) {
    let (cpu_port, clone_session, port_mask) = cpu_port_and_session(fabric, &sw.name);
    let port_key = |p: PortNum| TableKey::new(T_PORTS).exact(F_INGRESS_PORT, p);
    put(
        out,
        direct(port_key(cpu_port), ActionCall::new(A_SET_CPU_PORT)),
    );
    let mut acl = |prio: i32, fields: &[(&'static str, u128, u128)], action: ActionCall| {
        let mut key = TableKey::new(T_ACL).priority(prio);
        for (f, v, m) in fields {
            key = key.with(f, ternary(*v, *m));
        }
        put(out, direct(key, action));
    };
    let punt = |action: &'static str, reason: u8| ActionCall::new(action).param(P_REASON, reason);
    // Discovery frames only from the ports discovery probes, LACPDUs only
    // from LACP LAG members; the same frames from any other port are
    // dropped (neither is ever forwarded). The punt meter has one cell per
    // reason: a host flooding forged probes or LACPDUs on an edge port
    // would otherwise use the fabric's own frames' share, and links and
    // bonds would go down (issue #21).
    let (fabric_ports, lacp_members) = control_ports(fabric, &sw.name);
    for (eth_type, ports, why) in [
        (ETH_TYPE_LLDP, &fabric_ports, reason::DISCOVERY),
        (ETH_TYPE_SLOW, &lacp_members, reason::LACP),
    ] {
        for p in ports {
            let f = [
                (F_ETH_TYPE, u128::from(eth_type), 0xffff),
                (F_INGRESS_PORT, u128::from(*p), port_mask),
            ];
            acl(1000, &f, punt(A_PUNT, why));
        }
        let f = [(F_ETH_TYPE, u128::from(eth_type), 0xffff)];
        acl(990, &f, ActionCall::new(A_DROP_ACL));
    }
    if sw.role == Role::Leaf {
        acl(
            900,
            &[(F_ETH_TYPE, ETH_TYPE_ARP.into(), 0xffff)],
            punt(A_COPY_TO_CPU, reason::ARP),
        );
        for icmp in [ICMPV6_NS, ICMPV6_NA] {
            let f = [
                (F_ETH_TYPE, u128::from(ETH_TYPE_IPV6), 0xffff),
                (F_IP_PROTO, IP_PROTO_ICMPV6.into(), 0xff),
                (F_ICMP_TYPE, icmp.into(), 0xff),
            ];
            acl(900, &f, punt(A_COPY_TO_CPU, reason::ND));
        }
        put(
            out,
            Entity::Digest(DigestConfig {
                digest: D_MAC_LEARN,
                max_timeout_ns: 10_000_000,
                max_list_size: 64,
                ack_timeout_ns: 1_000_000_000,
            }),
        );
    }
    // One meter cell per punt reason, so an ARP storm cannot starve LLDP.
    let pps = i64::from(fabric.settings.punt_rate_pps);
    let burst = (pps / 10).max(1);
    for r in 1..=reason::FOR_ROUTER {
        put(
            out,
            Entity::Meter(MeterConfig {
                meter: M_PUNT,
                index: r.into(),
                cir: pps,
                cburst: burst,
                pir: pps,
                pburst: burst,
            }),
        );
    }
    put(
        out,
        Entity::Clone(CloneSession {
            session_id: clone_session,
            replicas: vec![Replica {
                port: cpu_port,
                instance: 0,
            }],
            class_of_service: 0,
            packet_length_bytes: 0,
        }),
    );
}

/// Fabric port classification and egress encapsulation, for every port on
/// a known link (up or not: the entry is harmless on a down port and saves
/// churn when it flaps) and every configured fabric port.
fn fabric_ports(fabric: &Fabric, topo: &Topology, sw: &SwitchNode, out: &mut SwitchEntities) {
    let mut ports: Vec<PortNum> = fabric
        .switches
        .get(&sw.name)
        .map(|s| s.fabric_ports.clone())
        .unwrap_or_default();
    for (port, far, _) in topo.links_of(&sw.name) {
        ports.push(port);
        if let Some(peer) = topo.switch(&far.switch) {
            let encap = ActionCall::new(A_ENCAP)
                .param(P_SMAC, mac(sw.mac))
                .param(P_DMAC, mac(peer.mac));
            put(
                out,
                direct(
                    TableKey::new(T_FABRIC_PORTS).exact(F_EGRESS_PORT, port),
                    encap,
                ),
            );
        }
    }
    for p in ports {
        put(
            out,
            direct(
                TableKey::new(T_PORTS).exact(F_INGRESS_PORT, p),
                ActionCall::new(A_SET_FABRIC_PORT),
            ),
        );
    }
}

/// Labels in: pop the own label, flood labels, transit for the rest.
fn mpls_in(sw: &SwitchNode, out: &mut SwitchEntities) {
    let key = |value: u32, mask: u32, prio: i32| {
        TableKey::new(T_MPLS_IN)
            .with(F_LABEL, ternary(value, mask))
            .priority(prio)
    };
    put(
        out,
        direct(
            key(sw.label, LABEL_MASK, 30),
            ActionCall::new(A_POP_TO_BRIDGE),
        ),
    );
    let flood = match sw.role {
        // On a leaf the group is the inner VLAN's (flood.vlan_flood).
        Role::Leaf => ActionCall::new(A_FLOOD_POP),
        Role::Spine => ActionCall::new(A_FLOOD_TRANSIT).param(P_GROUP, SPINE_FLOOD_GROUP),
    };
    let (value, mask) = FLOOD_LABEL_MATCH;
    put(out, direct(key(value, mask, 20), flood));
    // Every other label transits: the label is a don't-care field (P4Runtime
    // leaves a ternary field with an all-zero mask out of the entry).
    put(
        out,
        direct(
            TableKey::new(T_MPLS_IN).priority(10),
            ActionCall::new(A_TRANSIT),
        ),
    );
}

/// label_fwd groups over the ECMP next hops to every leaf.
fn label_fwd(topo: &Topology, sw: &SwitchNode, out: &mut SwitchEntities) {
    fabric_members(topo, sw, out);
    for (label, ports) in topo.destinations(&sw.name) {
        label_route(label, ports, out);
    }
}

/// One fabric_selector member per up link.
fn fabric_members(topo: &Topology, sw: &SwitchNode, out: &mut SwitchEntities) {
    for (port, far, link) in topo.links_of(&sw.name) {
        let Some(peer) = topo.switch(&far.switch) else {
            continue;
        };
        if link.state.up {
            let action = ActionCall::new(A_TO_FABRIC_PORT)
                .param(P_PORT, port)
                .param(P_SMAC, mac(sw.mac))
                .param(P_DMAC, mac(peer.mac));
            put(out, member(P_FABRIC, port, action));
        }
    }
}

/// The label_fwd entry and group of one destination.
fn label_route(label: u32, ports: &[PortNum], out: &mut SwitchEntities) {
    if ports.is_empty() {
        return;
    }
    let members = ports.iter().map(|p| (*p, Some(*p)));
    put(out, group(P_FABRIC, label, members, GROUP_SIZE));
    let key = TableKey::new(T_LABEL_FWD).exact(F_LABEL, label);
    put(out, entry(key, TableAction::Group(label)));
}

/// Updates the `Labels` part in place for a topology change, touching only
/// the members and the destinations whose next hops changed (a link flap
/// changes one destination on most switches). Returns the (old, new) pairs.
pub fn update_labels(
    old: &Topology,
    new: &Topology,
    sw: &SwitchNode,
    slot: &mut SwitchEntities,
) -> Vec<(Option<Entity>, Option<Entity>)> {
    let mut fresh = SwitchEntities::new();
    fabric_members(new, sw, &mut fresh);
    let mut stale: Vec<EntityKey> = slot
        .keys()
        .filter(|k| matches!(k, EntityKey::Member { profile, .. } if *profile == P_FABRIC))
        .cloned()
        .collect();
    let labels: BTreeSet<u32> = old
        .destinations(&sw.name)
        .chain(new.destinations(&sw.name))
        .map(|(l, _)| l)
        .collect();
    for label in labels {
        let (o, n) = (
            old.next_hops(&sw.name, label),
            new.next_hops(&sw.name, label),
        );
        if o != n {
            label_route(label, n, &mut fresh);
            stale.push(EntityKey::Group {
                profile: P_FABRIC,
                group_id: label,
            });
            stale.push(EntityKey::Table(
                TableKey::new(T_LABEL_FWD).exact(F_LABEL, label),
            ));
        }
    }
    let mut changes = Vec::new();
    for k in stale {
        if !fresh.contains_key(&k) {
            changes.push((slot.remove(&k), None));
        }
    }
    for (k, e) in fresh {
        let old = slot.insert(k, e.clone());
        if old.as_ref() != Some(&e) {
            changes.push((old, Some(e)));
        }
    }
    changes
}

/// Classification of edge ports and LAG members, egress VLAN tagging,
/// egress LAG pruning and the LAG selectors.
fn edge_ports(fabric: &Fabric, topo: &Topology, leaf: &str, out: &mut SwitchEntities) {
    let ports = fabric
        .ports
        .range(PortRef::new(leaf, 0)..=PortRef::new(leaf, PortNum::MAX))
        .filter(|(_, p)| p.admin_up)
        .map(|(r, p)| (r.port, 0u16, &p.vlans));
    let lag_members = topo.lags().values().flat_map(|g| {
        let admin_up = fabric.lags.get(&g.name).is_some_and(|l| l.admin_up);
        g.members_on(leaf)
            .iter()
            .filter(move |_| admin_up)
            .map(move |p| (*p, g.id, &g.vlans))
    });
    for (port, lag_id, mode) in ports.chain(lag_members) {
        let classify = ActionCall::new(A_SET_EDGE_PORT).param(P_LAG_ID, lag_id);
        put(
            out,
            direct(TableKey::new(T_PORTS).exact(F_INGRESS_PORT, port), classify),
        );
        if lag_id != 0 {
            let prune = ActionCall::new(A_SET_PORT_LAG).param(P_LAG_ID, lag_id);
            put(
                out,
                direct(TableKey::new(T_PORT_LAG).exact(F_EGRESS_PORT, port), prune),
            );
        }
        vlan_membership(fabric, port, mode, out);
    }
}

/// LAG selectors: local members still serving (a drained leaf's too,
/// until its LACP actor is out of sync), else the MLAG peer leaf.
fn lag_selectors(topo: &Topology, leaf: &str, out: &mut SwitchEntities) {
    for g in topo.lags().values() {
        if g.members_on(leaf).is_empty() {
            continue;
        }
        let usable = g.serving_on(leaf);
        let members: Vec<(u32, Option<u32>)> = if !usable.is_empty() {
            for p in usable {
                put(
                    out,
                    member(P_LAG, *p, ActionCall::new(A_TO_MEMBER).param(P_PORT, *p)),
                );
            }
            usable.iter().map(|p| (*p, Some(*p))).collect()
        } else if let Some(label) = g
            .usable_peer(leaf)
            .and_then(|p| topo.switch(p))
            .map(|s| s.label)
        {
            // MLAG fallback: all local members down, the peer leaf delivers.
            let id = (1 << 24) | label;
            put(
                out,
                member(
                    P_LAG,
                    id,
                    ActionCall::new(A_LAG_TO_LEAF).param(P_LABEL, label),
                ),
            );
            vec![(id, None)]
        } else {
            continue;
        };
        put(out, group(P_LAG, g.id.into(), members, GROUP_SIZE));
        put(
            out,
            entry(
                TableKey::new(T_LAG_MEMBERS).exact(F_LAG_ID, g.id),
                TableAction::Group(g.id.into()),
            ),
        );
    }
}

/// Ingress VLAN admission and its egress mirror for one port.
fn vlan_membership(fabric: &Fabric, port: PortNum, mode: &VlanMode, out: &mut SwitchEntities) {
    let vrf = |v: VlanId| fabric.vlans.get(&v).map(|x| x.vrf);
    let mut admit = |valid: u8, tag: VlanId, vlan: VlanId| {
        let Some(vrf) = vrf(vlan) else { return };
        let key = TableKey::new(T_VLANS)
            .exact(F_INGRESS_PORT, port)
            .exact(F_VLAN_VALID, valid)
            .exact(F_VLAN_ID, tag);
        put(
            out,
            direct(
                key,
                ActionCall::new(A_SET_VLAN)
                    .param(P_VLAN_ID, vlan)
                    .param(P_VRF_ID, vrf),
            ),
        );
    };
    match mode {
        VlanMode::Access { vlan } => admit(0, 0, *vlan),
        VlanMode::Trunk { vlans, native } => {
            for v in vlans {
                admit(1, *v, *v);
            }
            if let Some(n) = native {
                admit(0, 0, *n);
            }
        }
    }
    for v in mode.member_vlans() {
        if vrf(v).is_none() {
            continue;
        }
        let action = if mode.is_untagged(v) {
            A_POP_TAG
        } else {
            A_PUSH_TAG
        };
        let key = TableKey::new(T_VLAN_OUT)
            .exact(F_EGRESS_PORT, port)
            .exact(F_VLAN_ID, v);
        put(out, direct(key, ActionCall::new(action)));
    }
}

/// One multicast group per VLAN: local edge ports, one usable member of
/// each LAG this leaf is designated forwarder for, and the tree ports.
fn flooding(fabric: &Fabric, topo: &Topology, leaf: &str, out: &mut SwitchEntities) {
    let tree = topo.flood_ports(leaf);
    for &vlan in fabric.vlans.keys() {
        let mut ports: Vec<PortNum> = fabric
            .ports
            .range(PortRef::new(leaf, 0)..=PortRef::new(leaf, PortNum::MAX))
            .filter(|(_, p)| p.admin_up && p.vlans.member_vlans().contains(&vlan))
            .map(|(r, _)| r.port)
            .collect();
        for g in topo.lags().values() {
            let member_of = g.vlans.member_vlans().contains(&vlan)
                && fabric.lags.get(&g.name).is_some_and(|l| l.admin_up);
            if member_of && g.designated_forwarder(vlan) == Some(leaf) {
                ports.extend(g.usable_on(leaf).first());
            }
        }
        ports.extend(&tree);
        ports.sort_unstable();
        ports.dedup();
        let replicas = ports
            .into_iter()
            .map(|port| Replica { port, instance: 0 })
            .collect();
        put(
            out,
            Entity::Multicast(MulticastGroup {
                group_id: vlan.into(),
                replicas,
            }),
        );
    }
}
