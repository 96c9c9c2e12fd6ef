/*
 * p4fabric pipeline: table sizes for Tofino (TNA, 12 MAU stages per pipe;
 * per stage 80 SRAM blocks of 1K x 128 bits and 24 TCAM blocks of
 * 512 x 44 bits).
 *
 * Chosen for production leaves and spines, at least the v1model sizes and
 * well above what stratum/fabric-tna ships (1024 each for bridging, IPv4
 * and IPv6 routes and hashed next hops, 1024 selector members, groups of
 * at most 16). What limits each and what growing it would cost is in
 * docs/pipeline.md, with the figures of bf-p4c's resource report for
 * this build (p4/build/tofino/pipe/logs/).
 */
#ifndef _FABRIC_SIZES_TOFINO_P4_
#define _FABRIC_SIZES_TOFINO_P4_

/* ingress */
#define PORTS_TABLE_SIZE          512     /* every 9-bit device port      */
#define PORT_VLAN_TABLE_SIZE      8192
#define ACL_TABLE_SIZE            1024    /* TCAM: 501-bit key, 12 wide   */
#define PUNT_METER_SIZE           256     /* indexed by punt reason       */
#define SRC_MAC_TABLE_SIZE        32768   /* SRAM, idle timeout           */
#define LOCKED_SOURCES_TABLE_SIZE 1024   /* SRAM: edge ports + LAGs     */
#define ROUTER_MAC_TABLE_SIZE     4096
#define IPV4_ROUTE_TABLE_SIZE     16384   /* TCAM: hosts' /32 + subnets   */
#define IPV6_ROUTE_TABLE_SIZE     8192    /* TCAM: 144-bit key, 4 wide    */
#define IPV4_ALPM_PARTITIONS      2048
#define IPV6_ALPM_PARTITIONS      1024
#define NEXTHOP_TABLE_SIZE        4096
#define ECMP_SELECTOR_SIZE        8192    /* members                      */
#define ECMP_MAX_GROUP_SIZE       64
#define ECMP_SELECTOR_GROUPS      NEXTHOP_TABLE_SIZE
#define FDB_TABLE_SIZE            32768   /* SRAM: hosts, local + remote  */
#define LAG_TABLE_SIZE            1024
#define LAG_SELECTOR_SIZE         4096
#define LAG_MAX_GROUP_SIZE        16
#define LAG_SELECTOR_GROUPS       LAG_TABLE_SIZE
#define VLAN_FLOOD_TABLE_SIZE     4096
#define MPLS_IN_TABLE_SIZE        64
#define LABEL_FWD_TABLE_SIZE      4096    /* switch labels of the fabric  */
#define FABRIC_SELECTOR_SIZE      8192
#define FABRIC_MAX_GROUP_SIZE     64
#define FABRIC_SELECTOR_GROUPS    LABEL_FWD_TABLE_SIZE
/* egress */
#define PORT_LAG_TABLE_SIZE       512
#define EGRESS_VLAN_TABLE_SIZE    8192
#define FABRIC_PORTS_TABLE_SIZE   512

/* Selector hash output width (bits). */
#define SELECTOR_HASH_WIDTH       16

#endif /* _FABRIC_SIZES_TOFINO_P4_ */
