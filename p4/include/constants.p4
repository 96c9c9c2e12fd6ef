/*
 * p4fabric pipeline: constants and types shared by every architecture.
 *
 * Per architecture: port_t, CPU port, clone/mirror session, digest, meter
 * colours and table sizes (include/arch_v1model.p4, tna/arch_tna.p4). The
 * values the controller must agree with (CPU port, clone session, punt
 * reasons, label space, multicast group ids) are listed in docs/pipeline.md.
 */
#ifndef _FABRIC_CONSTANTS_P4_
#define _FABRIC_CONSTANTS_P4_

/* ---------------------------------------------------------------------- */
/* Types                                                                  */
/* ---------------------------------------------------------------------- */

/* port_t (9-bit ports) is declared per architecture: arch_v1model.p4 / arch_tna.p4 */
typedef bit<48>  mac_addr_t;
typedef bit<32>  ipv4_addr_t;
typedef bit<128> ipv6_addr_t;
typedef bit<12>  vlan_id_t;
typedef bit<16>  vrf_id_t;
typedef bit<16>  lag_id_t;       /* fabric-wide LAG id, 1..65535; 0 = none */
typedef bit<20>  mpls_label_t;
typedef bit<16>  group_id_t;     /* multicast group id                    */
typedef bit<16>  nexthop_id_t;
typedef bit<8>   punt_reason_t;
typedef bit<2>   port_type_t;
typedef bit<3>   fwd_type_t;
typedef bit<2>   acl_verdict_t;

/* ---------------------------------------------------------------------- */
/* Ports, CPU, clone session, digest                                      */
/* ---------------------------------------------------------------------- */

/* Declared per architecture (include/arch_v1model.p4, tna/arch_tna.p4):
 *   port_t                 9-bit port (TNA: P4Runtime-translated, 32 bits)
 *   CPU_PORT               v1model 255; TNA: the device CPU port (-DCPU_PORT_ID)
 *   CPU_CLONE_SESSION_ID   v1model: I2E clone session to the CPU port
 *   CPU_MIRROR_SESSION_ID  TNA: ingress mirror session to the CPU port
 *   MAC_LEARN_DIGEST_*     v1model digest receiver / TNA digest type
 *   METER_COLOR_RED        the colour that stops a punt (v1model 2, TNA 3)
 *   NO_PORT                the learning tables' ingress_port key on a LAG
 *                          (v1model 0, Tofino the CPU port)
 */

/* Port types (port_classify.ports). */
const port_type_t PORT_TYPE_NONE   = 0;   /* unconfigured: dropped       */
const port_type_t PORT_TYPE_EDGE   = 1;
const port_type_t PORT_TYPE_FABRIC = 2;
const port_type_t PORT_TYPE_CPU    = 3;

/* Values only the controller (or documentation) uses are #defines, so p4c
 * does not warn about unused constants. */

/* Forwarding decision, refined stage by stage in FabricIngress. */
#define FWD_NONE 0  /* nothing decided yet: drop            */
const fwd_type_t FWD_BRIDGE = 1;  /* needs the fdb lookup                 */
const fwd_type_t FWD_PORT   = 2;  /* meta.egress_port is final            */
const fwd_type_t FWD_LAG    = 3;  /* needs lag.members (meta.dst_lag_id)  */
const fwd_type_t FWD_FABRIC = 4;  /* needs fabric.label_fwd (meta.mpls_label) */
const fwd_type_t FWD_FLOOD  = 5;  /* needs flood.vlan_flood (meta.vlan_id) */
const fwd_type_t FWD_MCAST  = 6;  /* meta.mcast_grp is final              */

/* ACL verdicts. */
const acl_verdict_t ACL_PERMIT = 0;
const acl_verdict_t ACL_PUNT   = 1;
const acl_verdict_t ACL_COPY   = 2;
const acl_verdict_t ACL_DROP   = 3;

/* ---------------------------------------------------------------------- */
/* Punt reasons (packet_in.punt_reason; also the punt meter index)         */
/* ---------------------------------------------------------------------- */

#define PUNT_DISCOVERY 1  /* discovery probe, 0x88cc     */
#define PUNT_LACP 2  /* slow protocols, 0x8809      */
#define PUNT_ARP 3
#define PUNT_ND 4  /* ICMPv6 133..137             */
const punt_reason_t PUNT_TTL_EXPIRED = 5;
#define PUNT_ACL 6  /* operator ACL punt/copy      */
const punt_reason_t PUNT_GLEAN       = 7;  /* routed to an unresolved host */
const punt_reason_t PUNT_FOR_ROUTER  = 8;  /* addressed to a gateway address */

/* Meter colours: METER_COLOR_RED (the colour that stops a punt) is per   */
/* architecture: 2 on v1model, 3 (MeterColor_t.RED) on TNA.              */



/* ---------------------------------------------------------------------- */
/* Ethertypes, IP protocols                                               */
/* ---------------------------------------------------------------------- */

const bit<16> ETHERTYPE_IPV4      = 0x0800;
#define ETHERTYPE_ARP 0x0806
const bit<16> ETHERTYPE_VLAN      = 0x8100;
const bit<16> ETHERTYPE_IPV6      = 0x86dd;
#define ETHERTYPE_SLOW 0x8809  /* LACP, marker            */
const bit<16> ETHERTYPE_MPLS      = 0x8847;
#define ETHERTYPE_DISCOVERY 0x88cc  /* LLDP-style probes       */

const bit<8> IP_PROTO_ICMP   = 1;
const bit<8> IP_PROTO_TCP    = 6;
const bit<8> IP_PROTO_UDP    = 17;
const bit<8> IP_PROTO_ICMPV6 = 58;

/* ---------------------------------------------------------------------- */
/* Fabric label space                                                      */
/* ---------------------------------------------------------------------- */
/* Flood labels: (source LAG id << 4) | 0xF (LAG id 0 when the source is
 * not a LAG); match them with value 0xF mask 0xF. The LAG id sits in the
 * label's top 16 bits, the first two bytes of the MPLS header, because
 * Tofino moves header fields in whole bytes: a 16-bit id at any other
 * offset cannot be taken out of (or put into) the label. Switch (node)
 * labels are therefore 16 .. 0xFFFFE and never end in hex F. */
const bit<4> FLOOD_LABEL_MARKER = 0xF;
/* TTL of the MPLS header pushed by the ingress leaf. */
const bit<8>       MPLS_DEFAULT_TTL = 64;

/* Multicast groups (written by the controller; listed for reference):
 * leaf: group id = VLAN id (1..4094); spine: SPINE_FLOOD_GROUP.          */
#define SPINE_FLOOD_GROUP 4095

/* Table sizes and the selector hash width: one file per target,
 * include/sizes_v1model.p4, tna/sizes_tofino.p4, tna/sizes_tofino2.p4. */

#endif /* _FABRIC_CONSTANTS_P4_ */
