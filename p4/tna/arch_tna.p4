/*
 * p4fabric pipeline: what the shared controls take from TNA / T2NA.
 *
 * The same macros as include/arch_v1model.p4, defined with Tofino externs,
 * plus the constants only the TNA glue (fabric_tna.p4, parser_tna.p4)
 * uses. Everything here that the controller must agree with is listed in
 * docs/pipeline.md ("Tofino (TNA / T2NA)").
 */
#ifndef _FABRIC_ARCH_TNA_P4_
#define _FABRIC_ARCH_TNA_P4_

#if __TARGET_TOFINO__ == 2
#include "sizes_tofino2.p4"
#else
#include "sizes_tofino.p4"
#endif

/* Ports are 9-bit device ports in the data plane. In P4Runtime they are
 * translated (P4Runtime spec, "Translation of port numbers"): the
 * controller reads and writes 32-bit SDN port numbers and the server
 * (Stratum) maps them to device ports. Every table key, action parameter,
 * packet_in/packet_out field and digest field of type port_t is
 * translated; the v1model build keeps plain 9-bit ports. */
@p4runtime_translation("tna/PortId_t", 32)
type bit<9> port_t;
/* The learning tables' ingress_port key of a host behind a LAG. Not 0 as
 * on v1model: under port translation the controller can only write ports
 * the server maps, and the CPU port always is one (no host frame comes in
 * on it). SwitchTarget::lag_key_port on the controller's side. */
#define NO_PORT ((port_t) CPU_PORT_ID)

/* The device's CPU (PCIe) port: packet_out frames arrive on it. It depends
 * on the chip and SKU (Tofino: 192 on 2-pipe parts, 320 on 4-pipe parts,
 * 64 = the CPU Ethernet port, e.g. on the Tofino model; Tofino 2: 0), so
 * it is a compile-time choice: p4/compile.sh passes -DCPU_PORT_ID. */
#ifndef CPU_PORT_ID
#if __TARGET_TOFINO__ == 2
#define CPU_PORT_ID 0
#else
#define CPU_PORT_ID 320
#endif
#endif
const PortId_t CPU_PORT = CPU_PORT_ID;

/* Ingress mirror session the controller programs (P4Runtime
 * CloneSessionEntry) with one replica to the CPU port: punts and copies.
 * MirrorId_t is 10 bits on Tofino and 8 bits on Tofino 2, so Tofino 2
 * cannot use the v1model session number 511. */
#if __TARGET_TOFINO__ == 2
const MirrorId_t CPU_MIRROR_SESSION_ID = 255;
#else
const MirrorId_t CPU_MIRROR_SESSION_ID = 511;
#endif

/* Deparser selectors (intrinsic digest_type / mirror_type values). */
const DigestType_t MAC_LEARN_DIGEST_TYPE = 1;
const MirrorType_t CPU_MIRROR_TYPE = 1;

/* TNA meters return MeterColor_t as bit<8>: GREEN 0, YELLOW 1, RED 3. */
const bit<2> METER_COLOR_RED = 3;

/* Punt meter (FabricIngress.acl.punt_meter): indexed by the punt reason,
 * packets. */
#define FABRIC_PUNT_METER(name) Meter<punt_reason_t>(PUNT_METER_SIZE, MeterType_t.PACKETS) name
#define FABRIC_METER_EXECUTE(m, index, color) color = (bit<2>) m.execute(index)

/* Action selectors. P4Runtime sees the ActionProfile (it carries the
 * selector's name, size and, through the ActionSelector, max_group_size
 * once bf-p4c runs with --p4runtime-force-std-externs); the ActionSelector
 * (<name>_sel, in bfrt.json only) hashes the table's selector keys with
 * CRC16 like bmv2. An annotation in front of the macro (FabricLabelFwd's
 * absolute @name) lands on the ActionProfile, which is what P4Runtime
 * names. */
#define FABRIC_SELECTOR_ANNOTATION(max_group)
#define FABRIC_SELECTOR(name, size, max_group, groups) \
    ActionProfile(size) name; \
    Hash<bit<SELECTOR_HASH_WIDTH> >(HashAlgorithm_t.CRC16) name##_hash; \
    ActionSelector(name, name##_hash, SelectorMode_t.FAIR, max_group, groups) name##_sel
#define FABRIC_SELECTOR_IMPL(name) name##_sel

/* Route tables: algorithmic LPM (a TCAM pre-classifier picks a partition,
 * SRAM holds the prefixes), sizes in sizes_tofino*.p4. */
#define FABRIC_IPV4_ROUTES_IMPL @alpm(1) @alpm_partitions(IPV4_ALPM_PARTITIONS)
#define FABRIC_IPV6_ROUTES_IMPL @alpm(1) @alpm_partitions(IPV6_ALPM_PARTITIONS)

/* Table property for idle-timeout support. */
#define FABRIC_IDLE_TIMEOUT idle_timeout

/* Headers in headers_t only the TNA glue uses (tna/bridged.p4): what
 * ingress hands to egress in front of the frame, and what the CPU mirror
 * carries. Neither is emitted on a port. */
#define FABRIC_ARCH_HEADERS \
    bridged_kind_h      bridged_kind; \
    bridged_mpls_h      bridged_mpls; \
    bridged_md_h        bridged; \
    cpu_mirror_h        cpu_mirror;

/* Metadata only the TNA glue uses: the mirror session of a CPU mirror
 * (the deparser's Mirror.emit takes the session from a field, not a
 * constant). */
#define FABRIC_ARCH_METADATA \
    MirrorId_t          mirror_session;

#endif /* _FABRIC_ARCH_TNA_P4_ */
