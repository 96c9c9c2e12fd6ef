/*
 * p4fabric pipeline: table sizes for bmv2 (v1model).
 *
 * bmv2 keeps tables in host memory, so these are what the CI fabrics and
 * the benchmarks need, not a hardware limit. The Tofino sizes are in
 * tna/sizes_tofino.p4 and tna/sizes_tofino2.p4 (docs/pipeline.md compares
 * them). src/compile/contract.rs transcribes these values.
 */
#ifndef _FABRIC_SIZES_V1MODEL_P4_
#define _FABRIC_SIZES_V1MODEL_P4_

/* ingress */
#define PORTS_TABLE_SIZE          512
#define PORT_VLAN_TABLE_SIZE      8192
#define ACL_TABLE_SIZE            1024
#define PUNT_METER_SIZE           256     /* indexed by punt reason       */
#define SRC_MAC_TABLE_SIZE        16384
#define LOCKED_SOURCES_TABLE_SIZE 1024
#define ROUTER_MAC_TABLE_SIZE     4096
#define IPV4_ROUTE_TABLE_SIZE     16384
#define IPV6_ROUTE_TABLE_SIZE     8192
#define NEXTHOP_TABLE_SIZE        4096
#define ECMP_SELECTOR_SIZE        8192    /* members                      */
#define ECMP_MAX_GROUP_SIZE       64
#define ECMP_SELECTOR_GROUPS      NEXTHOP_TABLE_SIZE  /* unused on v1model */
#define FDB_TABLE_SIZE            16384
#define LAG_TABLE_SIZE            1024
#define LAG_SELECTOR_SIZE         4096
#define LAG_MAX_GROUP_SIZE        16
#define LAG_SELECTOR_GROUPS       LAG_TABLE_SIZE      /* unused on v1model */
#define VLAN_FLOOD_TABLE_SIZE     4096
#define MPLS_IN_TABLE_SIZE        64
#define LABEL_FWD_TABLE_SIZE      4096
#define FABRIC_SELECTOR_SIZE      8192
#define FABRIC_MAX_GROUP_SIZE     64
#define FABRIC_SELECTOR_GROUPS    LABEL_FWD_TABLE_SIZE /* unused on v1model */
/* egress */
#define PORT_LAG_TABLE_SIZE       512
#define EGRESS_VLAN_TABLE_SIZE    8192
#define FABRIC_PORTS_TABLE_SIZE   512

/* Selector hash output width (bits). */
#define SELECTOR_HASH_WIDTH       16

#endif /* _FABRIC_SIZES_V1MODEL_P4_ */
