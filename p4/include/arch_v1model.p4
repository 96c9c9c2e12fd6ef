/*
 * p4fabric pipeline: what the shared controls take from v1model.
 *
 * The controls under ingress/ and egress/ never name an architecture's
 * extern directly; they use the macros below, which tna/arch_tna.p4
 * defines for TNA/T2NA. Each v1model macro expands to exactly the text the
 * controls held before the macros existed, so the v1model build (JSON and
 * P4Info) does not change.
 */
#ifndef _FABRIC_ARCH_V1MODEL_P4_
#define _FABRIC_ARCH_V1MODEL_P4_

#include "sizes_v1model.p4"

typedef bit<9> port_t;
/* Port 0: the src_mac ingress_port key of a host behind a LAG. */
#define NO_PORT 0

/* bmv2: simple_switch_grpc --cpu-port 255 */
const port_t   CPU_PORT = 255;
/* I2E clone session that the agent programs to replicate to CPU_PORT.    */
const bit<32>  CPU_CLONE_SESSION_ID = 511;
/* Index of the field list preserved on clones to the CPU
 * (the @field_list(1) annotations in metadata.p4 must use the same value). */
const bit<8>   CPU_CLONE_FIELD_LIST = 1;
/* v1model digest receiver for mac_learn_digest_t. */
const bit<32>  MAC_LEARN_DIGEST_RECEIVER = 1;

/* v1model meter colours (V1MODEL_METER_COLOR_* in v1model.p4). */
const bit<2> METER_COLOR_RED    = 2;

/* Punt meter (FabricIngress.acl.punt_meter): indexed, packets. */
#define FABRIC_PUNT_METER(name) meter(PUNT_METER_SIZE, MeterType.packets) name
#define FABRIC_METER_EXECUTE(m, index, color) m.execute_meter((bit<32>) index, color)

/* Action selectors: crc16 over the table's selector keys. The annotation
 * line and the declaration line are separate macros so each expands on
 * the line it replaced. groups (number of groups) only matters on TNA. */
#define FABRIC_SELECTOR_ANNOTATION(max_group) @max_group_size(max_group)
#define FABRIC_SELECTOR(name, size, max_group, groups) action_selector(HashAlgorithm.crc16, size, SELECTOR_HASH_WIDTH) name
/* What a table's `implementation` names for a selector declared above. */
#define FABRIC_SELECTOR_IMPL(name) name

/* Table property for idle-timeout support. */
#define FABRIC_IDLE_TIMEOUT support_timeout

/* Headers only an architecture's glue uses (none on v1model: egress sees
 * the whole metadata struct). */
#define FABRIC_ARCH_HEADERS

/* Metadata only an architecture's glue uses (none on v1model). */
#define FABRIC_ARCH_METADATA

/* Route tables: plain LPM on bmv2. */
#define FABRIC_IPV4_ROUTES_IMPL
#define FABRIC_IPV6_ROUTES_IMPL

#endif /* _FABRIC_ARCH_V1MODEL_P4_ */
