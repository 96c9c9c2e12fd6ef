//! Every P4 name the compiler writes, in one place, exactly as in
//! `docs/pipeline.md` (fully qualified P4Info names). The P4 program and
//! this file change together.

// ---- tables -------------------------------------------------------------
pub const T_PORTS: &str = "FabricIngress.port_classify.ports";
pub const T_VLANS: &str = "FabricIngress.port_classify.vlans";
pub const T_ACL: &str = "FabricIngress.acl.acl";
pub const T_SRC_MAC: &str = "FabricIngress.learning.src_mac";
pub const T_LOCKED_SOURCES: &str = "FabricIngress.learning.locked_sources";
pub const T_ROUTER_MAC: &str = "FabricIngress.routing.router_mac";
pub const T_IPV4: &str = "FabricIngress.routing.ipv4";
pub const T_IPV6: &str = "FabricIngress.routing.ipv6";
pub const T_NEXTHOPS: &str = "FabricIngress.routing.nexthops";
pub const T_FDB: &str = "FabricIngress.bridging.fdb";
pub const T_LAG_MEMBERS: &str = "FabricIngress.lag.members";
pub const T_VLAN_FLOOD: &str = "FabricIngress.flood.vlan_flood";
pub const T_MPLS_IN: &str = "FabricIngress.fabric.mpls_in";
pub const T_LABEL_FWD: &str = "FabricIngress.fabric.label_fwd";
pub const T_PORT_LAG: &str = "FabricEgress.prune.port_lag";
pub const T_VLAN_OUT: &str = "FabricEgress.vlan_out.vlans";
pub const T_FABRIC_PORTS: &str = "FabricEgress.fabric_out.fabric_ports";

// ---- action profiles / selectors -----------------------------------------
pub const P_ECMP: &str = "FabricIngress.routing.ecmp_selector";
pub const P_LAG: &str = "FabricIngress.lag.lag_selector";
pub const P_FABRIC: &str = "FabricIngress.fabric.fabric_selector";

// ---- meters, digests ----------------------------------------------------
pub const M_PUNT: &str = "FabricIngress.acl.punt_meter";
pub const D_MAC_LEARN: &str = "mac_learn_digest_t";

// ---- match fields -------------------------------------------------------
pub const F_INGRESS_PORT: &str = "ingress_port";
pub const F_EGRESS_PORT: &str = "egress_port";
pub const F_VLAN_VALID: &str = "vlan_valid";
pub const F_VLAN_ID: &str = "vlan_id";
pub const F_ETH_SRC: &str = "eth_src";
pub const F_ETH_DST: &str = "eth_dst";
pub const F_ETH_TYPE: &str = "eth_type";
pub const F_IP_PROTO: &str = "ip_proto";
pub const F_ICMP_TYPE: &str = "icmp_type";
pub const F_VRF_ID: &str = "vrf_id";
pub const F_IPV4_DST: &str = "ipv4_dst";
pub const F_IPV6_DST: &str = "ipv6_dst";
pub const F_NEXTHOP_ID: &str = "nexthop_id";
pub const F_LAG_ID: &str = "lag_id";
pub const F_LABEL: &str = "label";

// ---- actions ------------------------------------------------------------
pub const A_SET_EDGE_PORT: &str = "FabricIngress.port_classify.set_edge_port";
pub const A_SET_FABRIC_PORT: &str = "FabricIngress.port_classify.set_fabric_port";
pub const A_SET_CPU_PORT: &str = "FabricIngress.port_classify.set_cpu_port";
pub const A_SET_VLAN: &str = "FabricIngress.port_classify.set_vlan";
pub const A_PUNT: &str = "FabricIngress.acl.punt";
pub const A_COPY_TO_CPU: &str = "FabricIngress.acl.copy_to_cpu";
pub const A_DROP_ACL: &str = "FabricIngress.acl.drop";
pub const A_KNOWN_SOURCE: &str = "FabricIngress.learning.known_source";
pub const A_DROP_UNKNOWN_SOURCE: &str = "FabricIngress.learning.drop_unknown_source";
pub const A_SET_ROUTED: &str = "FabricIngress.routing.set_routed";
pub const A_ROUTE_DIRECT: &str = "FabricIngress.routing.route_direct";
pub const A_SET_NEXTHOP: &str = "FabricIngress.routing.set_nexthop";
pub const A_PUNT_GLEAN: &str = "FabricIngress.routing.punt_glean";
pub const A_PUNT_FOR_ROUTER: &str = "FabricIngress.routing.punt_for_router";
pub const A_TO_PORT: &str = "FabricIngress.bridging.to_port";
pub const A_TO_LAG: &str = "FabricIngress.bridging.to_lag";
pub const A_TO_LEAF: &str = "FabricIngress.bridging.to_leaf";
pub const A_TO_MEMBER: &str = "FabricIngress.lag.to_member";
pub const A_LAG_TO_LEAF: &str = "FabricIngress.lag.to_leaf";
pub const A_FLOOD: &str = "FabricIngress.flood.flood";
pub const A_POP_TO_BRIDGE: &str = "FabricIngress.fabric.pop_to_bridge";
pub const A_FLOOD_POP: &str = "FabricIngress.fabric.flood_pop";
pub const A_FLOOD_TRANSIT: &str = "FabricIngress.fabric.flood_transit";
pub const A_TRANSIT: &str = "FabricIngress.fabric.transit";
pub const A_TO_FABRIC_PORT: &str = "FabricIngress.fabric.to_fabric_port";
pub const A_SET_PORT_LAG: &str = "FabricEgress.prune.set_port_lag";
pub const A_PUSH_TAG: &str = "FabricEgress.vlan_out.push_tag";
pub const A_POP_TAG: &str = "FabricEgress.vlan_out.pop_tag";
pub const A_ENCAP: &str = "FabricEgress.fabric_out.encap";

// ---- action parameters --------------------------------------------------
pub const P_LAG_ID: &str = "lag_id";
pub const P_VLAN_ID: &str = "vlan_id";
pub const P_VRF_ID: &str = "vrf_id";
pub const P_REASON: &str = "reason";
pub const P_DMAC: &str = "dmac";
pub const P_SMAC: &str = "smac";
pub const P_NEXTHOP_ID: &str = "nexthop_id";
pub const P_PORT: &str = "port";
pub const P_LABEL: &str = "label";
pub const P_GROUP: &str = "group";

// ---- constants of the contract ------------------------------------------
/// bmv2's CPU port; a switch's own is `target::for_switch(..).cpu_port()`.
pub const CPU_PORT: u32 = crate::target::bmv2::CPU_PORT;
pub const CPU_CLONE_SESSION: u32 = 511;
/// Multicast group of a spine (its flood-tree ports); leaves use the VLAN id.
pub const SPINE_FLOOD_GROUP: u32 = 4095;
/// Flood labels are `(source LAG id << 4) | 0xF`; `mpls_in` takes them
/// all with `FLOOD_LABEL_MATCH` (defined in `net`, beside the label space
/// config validation keeps switch labels out of).
pub use crate::net::{flood_label, flood_label_lag, is_flood_label, FLOOD_LABEL_MATCH};
pub const LABEL_MASK: u32 = crate::net::MAX_LABEL;

pub const ETH_TYPE_LLDP: u16 = 0x88cc;
pub const ETH_TYPE_SLOW: u16 = 0x8809;
pub const ETH_TYPE_ARP: u16 = 0x0806;
pub const ETH_TYPE_IPV6: u16 = 0x86dd;
pub const IP_PROTO_ICMPV6: u8 = 58;
pub const ICMPV6_NS: u8 = 135;
pub const ICMPV6_NA: u8 = 136;

/// Punt reasons (`packet_in.punt_reason`).
pub mod reason {
    pub const DISCOVERY: u8 = 1;
    pub const LACP: u8 = 2;
    pub const ARP: u8 = 3;
    pub const ND: u8 = 4;
    pub const TTL_EXPIRED: u8 = 5;
    pub const ACL: u8 = 6;
    pub const GLEAN: u8 = 7;
    pub const FOR_ROUTER: u8 = 8;
}
