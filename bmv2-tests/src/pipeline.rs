//! The fabric pipeline's names, small entity constructors, and the test
//! fixtures of docs/pipeline.md ("Test plan"): fixture A, one leaf L1, and
//! fixture B, one spine S1.

use p4fabric::p4rt::{
    ActionCall, ActionProfileGroup, ActionProfileMember, CloneSession, DigestConfig, Entity,
    GroupMember, Match, MeterConfig, MulticastGroup, Replica, TableAction, TableEntry, TableKey,
    Value,
};

pub use p4fabric::compile::names::*;

use crate::rig::Rig;

// Actions the compiler does not write (yet), by their P4Info names.
pub const A_PORT_DROP: &str = "FabricIngress.port_classify.drop";
pub const A_ACL_PERMIT: &str = "FabricIngress.acl.permit";
pub const A_ROUTE_DROP: &str = "FabricIngress.routing.drop";
pub const A_FDB_DROP: &str = "FabricIngress.bridging.drop";
pub const A_MPLS_DROP: &str = "FabricIngress.fabric.drop";
pub const A_VLAN_OUT_DROP: &str = "FabricEgress.vlan_out.drop";
// Match fields of the ACL the compiler does not use.
pub const F_IPV4_SRC: &str = "ipv4_src";
pub const F_IPV6_SRC: &str = "ipv6_src";
pub const F_L4_SRC_PORT: &str = "l4_src_port";
pub const F_L4_DST_PORT: &str = "l4_dst_port";

// ---- addresses of the test plan -------------------------------------------

pub const H1: [u8; 6] = [0, 0, 0, 0, 0, 0x01];
pub const H2: [u8; 6] = [0, 0, 0, 0, 0, 0x02];
pub const H3: [u8; 6] = [0, 0, 0, 0, 0, 0x03];
pub const H4: [u8; 6] = [0, 0, 0, 0, 0, 0x04];
pub const H9: [u8; 6] = [0, 0, 0, 0, 0, 0x09];
pub const BCAST: [u8; 6] = [0xff; 6];
/// The anycast gateway MAC.
pub const GW: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];
pub const L1: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
pub const L2: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
pub const L3: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x03];
pub const S1: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x01];
pub const S2: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x02];

pub const IP_H1: [u8; 4] = [10, 0, 10, 11];
pub const IP_H2: [u8; 4] = [10, 0, 10, 12];
pub const IP_H3: [u8; 4] = [10, 0, 20, 13];
pub const IP_H9: [u8; 4] = [10, 0, 10, 19];
pub const IP_GW10: [u8; 4] = [10, 0, 10, 1];

/// Labels: L1 (the leaf of fixture A), L2, L3, S1 (the spine of fixture B).
pub const LABEL_L1: u32 = 101;
pub const LABEL_L2: u32 = 102;
pub const LABEL_L3: u32 = 103;
pub const LABEL_S1: u32 = 201;

/// Ports of fixture A: 1..=7 as in the plan, 8 left unconfigured.
pub const LEAF_PORTS: [u32; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
pub const LEAF_LAG: u32 = 7;
/// The flood label of a flood from no LAG (0x0000F).
pub const FLOOD_NO_LAG: u32 = flood_label(0);
/// The flood label of a flood from `LEAF_LAG` (0x0007F).
pub const FLOOD_LEAF_LAG: u32 = flood_label(LEAF_LAG as u16);
/// A LAG id that uses all 16 bits, for the cases that give fixture A's
/// LAG this id: the flood label carries it in its top 16 bits (0xA5C3F).
pub const WIDE_LAG: u32 = 0xA5C3;
/// Ports of fixture B.
pub const SPINE_PORTS: [u32; 4] = [1, 2, 3, 4];

/// A MAC as a value.
pub fn m(mac: [u8; 6]) -> Value {
    mac.iter().fold(0, |acc, b| (acc << 8) | Value::from(*b))
}

/// An IPv4 address as a value.
pub fn v4(ip: [u8; 4]) -> Value {
    Value::from(u32::from_be_bytes(ip))
}

/// An IPv6 address as a value.
pub fn v6(ip: [u8; 16]) -> Value {
    u128::from_be_bytes(ip)
}

// ---- entity constructors --------------------------------------------------

pub fn act(name: &'static str, params: &[(&'static str, Value)]) -> ActionCall {
    ActionCall {
        name,
        params: params.to_vec(),
    }
}

fn table_entry(key: TableKey, action: TableAction) -> Entity {
    Entity::Table(TableEntry {
        key,
        action,
        idle_timeout_ns: 0,
    })
}

/// A table entry with exact match fields and a direct action.
pub fn exact(table: &'static str, keys: &[(&'static str, Value)], action: ActionCall) -> Entity {
    let key = keys
        .iter()
        .fold(TableKey::new(table), |k, (f, v)| k.exact(f, *v));
    table_entry(key, TableAction::Direct(action))
}

/// A table entry with exact match fields pointing at a selector group.
pub fn exact_group(table: &'static str, keys: &[(&'static str, Value)], group: u32) -> Entity {
    let key = keys
        .iter()
        .fold(TableKey::new(table), |k, (f, v)| k.exact(f, *v));
    table_entry(key, TableAction::Group(group))
}

/// An ACL entry: ternary (field, value, mask) and a priority.
pub fn acl(priority: i32, fields: &[(&'static str, Value, Value)], action: ActionCall) -> Entity {
    let key = fields.iter().fold(
        TableKey::new(T_ACL).priority(priority),
        |k, (f, value, mask)| {
            k.with(
                f,
                Match::Ternary {
                    value: *value,
                    mask: *mask,
                },
            )
        },
    );
    table_entry(key, TableAction::Direct(action))
}

/// A route: (VRF, prefix) in `routing.ipv4` or `routing.ipv6`.
pub fn route(
    table: &'static str,
    vrf: u32,
    addr: Value,
    prefix_len: u32,
    action: ActionCall,
) -> Entity {
    let field = if table == T_IPV6 {
        F_IPV6_DST
    } else {
        F_IPV4_DST
    };
    let key = TableKey::new(table).exact(F_VRF_ID, vrf).with(
        field,
        Match::Lpm {
            value: addr,
            prefix_len,
        },
    );
    table_entry(key, TableAction::Direct(action))
}

/// An `mpls_in` entry: label/mask with a priority (mask 0: the field is
/// left out, as P4Runtime wants don't-care fields).
pub fn mpls_in(label: u32, mask: u32, priority: i32, action: ActionCall) -> Entity {
    let mut key = TableKey::new(T_MPLS_IN).priority(priority);
    if mask != 0 {
        key = key.with(
            F_LABEL,
            Match::Ternary {
                value: label.into(),
                mask: mask.into(),
            },
        );
    }
    table_entry(key, TableAction::Direct(action))
}

pub fn member(profile: &'static str, member_id: u32, action: ActionCall) -> Entity {
    Entity::Member(ActionProfileMember {
        profile,
        member_id,
        action,
    })
}

/// A selector group of (member id, watch port).
pub fn group(profile: &'static str, group_id: u32, members: &[(u32, Option<u32>)]) -> Entity {
    let mut members: Vec<GroupMember> = members
        .iter()
        .map(|(member_id, watch_port)| GroupMember {
            member_id: *member_id,
            weight: 1,
            watch_port: *watch_port,
        })
        .collect();
    members.sort();
    Entity::Group(ActionProfileGroup {
        profile,
        group_id,
        members,
        max_size: 16,
    })
}

pub fn mcast(group_id: u32, ports: &[u32]) -> Entity {
    let mut replicas: Vec<Replica> = ports
        .iter()
        .map(|p| Replica {
            port: *p,
            instance: 0,
        })
        .collect();
    replicas.sort();
    Entity::Multicast(MulticastGroup { group_id, replicas })
}

/// Clone session 511 to the CPU port.
pub fn cpu_clone_session() -> Entity {
    Entity::Clone(CloneSession {
        session_id: CPU_CLONE_SESSION,
        replicas: vec![Replica {
            port: CPU_PORT,
            instance: 0,
        }],
        class_of_service: 0,
        packet_length_bytes: 0,
    })
}

/// The learning digest, one message per list, sent at once.
pub fn learn_digest_config() -> Entity {
    Entity::Digest(DigestConfig {
        digest: D_MAC_LEARN,
        max_timeout_ns: 0,
        max_list_size: 1,
        ack_timeout_ns: 10_000_000_000,
    })
}

/// A punt meter cell: `rate` packets/s, bursts of `burst` packets.
pub fn punt_meter(reason: u8, rate: i64, burst: i64) -> Entity {
    Entity::Meter(MeterConfig {
        meter: M_PUNT,
        index: i64::from(reason),
        cir: rate,
        cburst: burst,
        pir: rate,
        pburst: burst,
    })
}

// ---- entries by table -------------------------------------------------------

pub fn port_edge(port: u32, lag: u32) -> Entity {
    exact(
        T_PORTS,
        &[(F_INGRESS_PORT, port.into())],
        act(A_SET_EDGE_PORT, &[(P_LAG_ID, lag.into())]),
    )
}

pub fn port_fabric(port: u32) -> Entity {
    exact(
        T_PORTS,
        &[(F_INGRESS_PORT, port.into())],
        act(A_SET_FABRIC_PORT, &[]),
    )
}

pub fn port_cpu() -> Entity {
    exact(
        T_PORTS,
        &[(F_INGRESS_PORT, CPU_PORT.into())],
        act(A_SET_CPU_PORT, &[]),
    )
}

/// `port_classify.vlans`: (port, tagged, vid) -> (vlan, vrf).
pub fn vlan_in(port: u32, tagged: bool, vid: u16, vlan: u16, vrf: u32) -> Entity {
    exact(
        T_VLANS,
        &[
            (F_INGRESS_PORT, port.into()),
            (F_VLAN_VALID, u128::from(tagged)),
            (F_VLAN_ID, vid.into()),
        ],
        act(
            A_SET_VLAN,
            &[(P_VLAN_ID, vlan.into()), (P_VRF_ID, vrf.into())],
        ),
    )
}

/// `vlan_out.vlans`: (port, vlan) -> push (tagged) or pop.
pub fn vlan_out(port: u32, vlan: u16, tagged: bool) -> Entity {
    exact(
        T_VLAN_OUT,
        &[(F_EGRESS_PORT, port.into()), (F_VLAN_ID, vlan.into())],
        act(if tagged { A_PUSH_TAG } else { A_POP_TAG }, &[]),
    )
}

pub fn port_lag(port: u32, lag: u32) -> Entity {
    exact(
        T_PORT_LAG,
        &[(F_EGRESS_PORT, port.into())],
        act(A_SET_PORT_LAG, &[(P_LAG_ID, lag.into())]),
    )
}

pub fn fabric_port_encap(port: u32, smac: [u8; 6], dmac: [u8; 6]) -> Entity {
    exact(
        T_FABRIC_PORTS,
        &[(F_EGRESS_PORT, port.into())],
        act(A_ENCAP, &[(P_SMAC, m(smac)), (P_DMAC, m(dmac))]),
    )
}

pub fn vlan_flood(vlan: u16, group: u32) -> Entity {
    exact(
        T_VLAN_FLOOD,
        &[(F_VLAN_ID, vlan.into())],
        act(A_FLOOD, &[(P_GROUP, group.into())]),
    )
}

/// `bridging.fdb`: (vlan, dst MAC) -> action.
pub fn fdb(vlan: u16, mac: [u8; 6], action: ActionCall) -> Entity {
    exact(
        T_FDB,
        &[(F_VLAN_ID, vlan.into()), (F_ETH_DST, m(mac))],
        action,
    )
}

pub fn to_port(port: u32) -> ActionCall {
    act(A_TO_PORT, &[(P_PORT, port.into())])
}

pub fn to_lag(lag: u32) -> ActionCall {
    act(A_TO_LAG, &[(P_LAG_ID, lag.into())])
}

pub fn to_leaf(label: u32) -> ActionCall {
    act(A_TO_LEAF, &[(P_LABEL, label.into())])
}

pub fn router_mac(vlan: u16, mac: [u8; 6]) -> Entity {
    exact(
        T_ROUTER_MAC,
        &[(F_VLAN_ID, vlan.into()), (F_ETH_DST, m(mac))],
        act(A_SET_ROUTED, &[]),
    )
}

pub fn route_direct(dmac: [u8; 6], smac: [u8; 6], vlan: u16) -> ActionCall {
    act(
        A_ROUTE_DIRECT,
        &[
            (P_DMAC, m(dmac)),
            (P_SMAC, m(smac)),
            (P_VLAN_ID, vlan.into()),
        ],
    )
}

pub fn to_fabric_port(port: u32, smac: [u8; 6], dmac: [u8; 6]) -> ActionCall {
    act(
        A_TO_FABRIC_PORT,
        &[(P_PORT, port.into()), (P_SMAC, m(smac)), (P_DMAC, m(dmac))],
    )
}

/// `learning.src_mac`: a known source (vlan, mac, port or 0, LAG or 0).
pub fn src_mac(vlan: u16, mac: [u8; 6], port: u32, lag: u32, idle_timeout_ns: i64) -> Entity {
    let key = TableKey::new(T_SRC_MAC)
        .exact(F_VLAN_ID, vlan)
        .exact(F_ETH_SRC, m(mac))
        .exact(F_INGRESS_PORT, port)
        .exact(F_LAG_ID, lag);
    Entity::Table(TableEntry {
        key,
        action: TableAction::Direct(act(A_KNOWN_SOURCE, &[])),
        idle_timeout_ns,
    })
}

/// A `locked_sources` entry: port security locks `(port, lag)` (a plain
/// edge port as `(port, 0)`, a LAG as `(0, id)`, as `src_mac` keys them).
pub fn locked_source(port: u32, lag: u32) -> Entity {
    let key = TableKey::new(T_LOCKED_SOURCES)
        .exact(F_INGRESS_PORT, port)
        .exact(F_LAG_ID, lag);
    Entity::Table(TableEntry {
        key,
        action: TableAction::Direct(act(A_DROP_UNKNOWN_SOURCE, &[])),
        idle_timeout_ns: 0,
    })
}

/// The key of a `src_mac` entry, as idle-timeout notifications name it.
pub fn src_mac_key(vlan: u16, mac: [u8; 6], port: u32, lag: u32) -> TableKey {
    match src_mac(vlan, mac, port, lag, 0) {
        Entity::Table(t) => t.key,
        _ => TableKey::new(T_SRC_MAC),
    }
}

/// Control-protocol ACL entries of the plan: discovery and LACP punts, ARP
/// and neighbour-solicitation copies.
pub fn control_acls() -> Vec<Entity> {
    let ty = |t: u16| (F_ETH_TYPE, Value::from(t), 0xffff);
    vec![
        acl(
            100,
            &[ty(ETH_TYPE_LLDP)],
            act(A_PUNT, &[(P_REASON, reason::DISCOVERY.into())]),
        ),
        acl(
            90,
            &[ty(ETH_TYPE_SLOW)],
            act(A_PUNT, &[(P_REASON, reason::LACP.into())]),
        ),
        acl(
            80,
            &[ty(ETH_TYPE_ARP)],
            act(A_COPY_TO_CPU, &[(P_REASON, reason::ARP.into())]),
        ),
        acl(
            70,
            &[
                ty(ETH_TYPE_IPV6),
                (F_IP_PROTO, IP_PROTO_ICMPV6.into(), 0xff),
                (F_ICMP_TYPE, ICMPV6_NS.into(), 0xff),
            ],
            act(A_COPY_TO_CPU, &[(P_REASON, reason::ND.into())]),
        ),
    ]
}

/// Fixture A (leaf L1, label 101), in dependency stages.
///
/// Ports: 1 access VLAN 10; 2 trunk VLANs 10, 20; 3 trunk VLAN 20 + native
/// 10; 4, 5 LAG 7 (access VLAN 10); 6, 7 fabric (to S1, S2); 8 unconfigured.
pub fn leaf_fixture() -> Vec<Vec<Entity>> {
    let mut base = vec![
        port_edge(1, 0),
        port_edge(2, 0),
        port_edge(3, 0),
        port_edge(4, LEAF_LAG),
        port_edge(5, LEAF_LAG),
        port_fabric(6),
        port_fabric(7),
        port_cpu(),
        vlan_in(1, false, 0, 10, 0),
        vlan_in(2, true, 10, 10, 0),
        vlan_in(2, true, 20, 20, 0),
        vlan_in(3, true, 20, 20, 0),
        vlan_in(3, false, 0, 10, 0),
        vlan_in(4, false, 0, 10, 0),
        vlan_in(5, false, 0, 10, 0),
        vlan_in(CPU_PORT, true, 10, 10, 0),
        vlan_in(CPU_PORT, true, 20, 20, 0),
        vlan_out(1, 10, false),
        vlan_out(2, 10, true),
        vlan_out(2, 20, true),
        vlan_out(3, 20, true),
        vlan_out(3, 10, false),
        vlan_out(4, 10, false),
        vlan_out(5, 10, false),
        port_lag(4, LEAF_LAG),
        port_lag(5, LEAF_LAG),
        fabric_port_encap(6, L1, S1),
        fabric_port_encap(7, L1, S2),
        vlan_flood(10, 10),
        vlan_flood(20, 20),
        mcast(10, &[1, 2, 3, 4, 6]),
        mcast(20, &[2, 3, 6]),
        cpu_clone_session(),
        mpls_in(LABEL_L1, LABEL_MASK, 20, act(A_POP_TO_BRIDGE, &[])),
        mpls_in(
            FLOOD_LABEL_MATCH.0,
            FLOOD_LABEL_MATCH.1,
            10,
            act(A_FLOOD_POP, &[]),
        ),
        member(P_FABRIC, 1, to_fabric_port(6, L1, S1)),
        member(P_FABRIC, 2, to_fabric_port(7, L1, S2)),
        member(P_LAG, 1, act(A_TO_MEMBER, &[(P_PORT, 4)])),
        member(P_LAG, 2, act(A_TO_MEMBER, &[(P_PORT, 5)])),
    ];
    base.extend(control_acls());
    let groups = vec![
        group(P_FABRIC, 1, &[(1, Some(6)), (2, Some(7))]),
        group(P_LAG, 7, &[(1, Some(4)), (2, Some(5))]),
    ];
    let users = vec![
        exact_group(T_LABEL_FWD, &[(F_LABEL, LABEL_L2.into())], 1),
        exact_group(T_LAG_MEMBERS, &[(F_LAG_ID, LEAF_LAG.into())], 7),
    ];
    vec![base, groups, users]
}

/// Fixture B (spine S1, label 201): ports 1 -> L1, 2 and 3 -> L2, 4 -> L3.
pub fn spine_fixture() -> Vec<Vec<Entity>> {
    let base = vec![
        port_fabric(1),
        port_fabric(2),
        port_fabric(3),
        port_fabric(4),
        port_cpu(),
        fabric_port_encap(1, S1, L1),
        fabric_port_encap(2, S1, L2),
        fabric_port_encap(3, S1, L2),
        fabric_port_encap(4, S1, L3),
        mpls_in(
            FLOOD_LABEL_MATCH.0,
            FLOOD_LABEL_MATCH.1,
            10,
            act(A_FLOOD_TRANSIT, &[(P_GROUP, SPINE_FLOOD_GROUP.into())]),
        ),
        mpls_in(0, 0, 1, act(A_TRANSIT, &[])),
        mcast(SPINE_FLOOD_GROUP, &[1, 2, 4]),
        cpu_clone_session(),
        control_acls().swap_remove(0),
        member(P_FABRIC, 1, to_fabric_port(1, S1, L1)),
        member(P_FABRIC, 2, to_fabric_port(2, S1, L2)),
        member(P_FABRIC, 3, to_fabric_port(3, S1, L2)),
    ];
    let groups = vec![
        group(P_FABRIC, 101, &[(1, Some(1))]),
        group(P_FABRIC, 102, &[(2, Some(2)), (3, Some(3))]),
    ];
    let users = vec![
        exact_group(T_LABEL_FWD, &[(F_LABEL, LABEL_L1.into())], 101),
        exact_group(T_LABEL_FWD, &[(F_LABEL, LABEL_L2.into())], 102),
    ];
    vec![base, groups, users]
}

impl Rig {
    /// A leaf with fixture A installed.
    pub async fn leaf() -> anyhow::Result<Rig> {
        let rig = Rig::start(1, &LEAF_PORTS).await?;
        rig.insert_stages(&leaf_fixture()).await?;
        Ok(rig)
    }

    /// A spine with fixture B installed.
    pub async fn spine() -> anyhow::Result<Rig> {
        let rig = Rig::start(2, &SPINE_PORTS).await?;
        rig.insert_stages(&spine_fixture()).await?;
        Ok(rig)
    }
}

// ---- expected frames under fixture A -----------------------------------------

/// Members of the flood groups of fixture A.
pub fn leaf_flood_group(vlan: u16) -> &'static [u32] {
    match vlan {
        10 => &[1, 2, 3, 4, 6],
        20 => &[2, 3, 6],
        _ => &[],
    }
}

/// How an untagged frame of `vlan` leaves edge port `port` of fixture A
/// (ports 2, and 3 for VLAN 20, are tagged; the others untagged).
pub fn leaf_edge_out(port: u32, vlan: u16, untagged: &[u8]) -> Vec<u8> {
    if port == 2 || (port == 3 && vlan == 20) {
        crate::packet::push_vlan(untagged, vlan)
    } else {
        untagged.to_vec()
    }
}

/// How a frame of `vlan` (given untagged) leaves fabric port 6 or 7 of
/// fixture A: encapsulated towards S1 or S2, inner 802.1Q tag with the VLAN.
pub fn leaf_fabric_out(port: u32, vlan: u16, untagged: &[u8], label: u32, ttl: u8) -> Vec<u8> {
    let spine = if port == 7 { S2 } else { S1 };
    crate::packet::mpls_encap(
        &crate::packet::push_vlan(untagged, vlan),
        spine,
        L1,
        label,
        ttl,
    )
}

/// Every copy fixture A makes when it floods `untagged` (a frame of
/// `vlan`) that came in on `in_port` from source LAG `src_lag` (0: none):
/// the VLAN's group minus the ingress port and the LAG's members, fabric
/// copies with the flood label `flood_label(src_lag)` and MPLS TTL `ttl`.
pub fn leaf_flood(
    untagged: &[u8],
    vlan: u16,
    in_port: u32,
    src_lag: u32,
    ttl: u8,
) -> Vec<(u32, Vec<u8>)> {
    let label = flood_label(u16::try_from(src_lag).expect("LAG ids have 16 bits"));
    leaf_flood_group(vlan)
        .iter()
        .filter(|p| **p != in_port && !(src_lag == LEAF_LAG && (**p == 4 || **p == 5)))
        .map(|p| {
            let f = if *p == 6 || *p == 7 {
                leaf_fabric_out(*p, vlan, untagged, label, ttl)
            } else {
                leaf_edge_out(*p, vlan, untagged)
            };
            (*p, f)
        })
        .collect()
}

/// The broadcast UDP frame of the plan (untagged) from `src`/`sip`.
pub fn bcast_udp(src: [u8; 6], sip: [u8; 4]) -> Vec<u8> {
    crate::packet::udp4_frame(BCAST, src, sip, [10, 0, 10, 255], 1000, 2000, 64)
}

/// A unicast UDP frame (untagged) `src` -> `dst` in VLAN 10's subnet.
pub fn ucast_udp(dst: [u8; 6], src: [u8; 6], sport: u16) -> Vec<u8> {
    crate::packet::udp4_frame(dst, src, IP_H1, IP_H2, sport, 2000, 64)
}
