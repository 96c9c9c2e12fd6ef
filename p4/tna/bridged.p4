/*
 * p4fabric pipeline (TNA / T2NA): what ingress hands to egress.
 *
 * bmv2 gives egress the whole metadata struct; on Tofino the ingress
 * deparser must put whatever egress needs in front of the frame, and the
 * egress parser takes it off again. Normal frames carry bridged_kind_h,
 * bridged_mpls_h and bridged_md_h, punt and copy mirrors carry
 * cpu_mirror_h; the first byte says which.
 */
#ifndef _FABRIC_TNA_BRIDGED_P4_
#define _FABRIC_TNA_BRIDGED_P4_

/* ---------------------------------------------------------------------- */
/* Ingress -> egress                                                      */
/* ---------------------------------------------------------------------- */

/* First byte of what the egress parser sees before the frame. */
const bit<8> EGRESS_MD_BRIDGED    = 1;  /* the frame, with bridged_*_h    */
const bit<8> EGRESS_MD_CPU_MIRROR = 2;  /* a punt/copy, with cpu_mirror_h */

/* The first byte in front of a bridged frame: EGRESS_MD_BRIDGED (the
 * egress parser looks at it; a CPU mirror starts with its own `kind`). */
header bridged_kind_h {
    bit<8> kind;
}

/* What the egress controls read of fabric_metadata_t, carried from
 * ingress in front of the frame after bridged_kind_h (bmv2 keeps the whole
 * metadata struct; Tofino carries only these bits), in two headers.
 *
 * bridged_mpls_h has the MPLS label's layout: the label in the top 20 bits
 * of a 32-bit word like in the MPLS header, and the source LAG id in the
 * top 16 bits of the next word, where a flood label carries it
 * (label[19:4]; FabricMplsIn copies it from there). bf-p4c allocates a
 * field copied from another at the same offset within its container.
 * Padding is never written (@padding). */
header bridged_mpls_h {
    mpls_label_t mpls_label;
    @padding bit<12> _pad0;
    lag_id_t     src_lag_id;
    @padding bit<16> _pad1;
}

/* The rest: @flexible, so bf-p4c lays the fields out (and pads them) as
 * its PHV allocation needs, the same for the ingress deparser and the
 * egress parser. */
@flexible
header bridged_md_h {
    port_t       ingress_port;
    bit<1>       routed;
    bit<1>       fabric_unicast;
    bit<1>       outer_set;
    vlan_id_t    vlan_id;
    bit<8>       mpls_ttl;
    mac_addr_t   outer_smac;
    mac_addr_t   outer_dmac;
}

/* Prepended by the ingress mirror (punts and copies to the CPU): what
 * PacketInEgress needs. The mirrored frame itself is the frame as
 * received, like bmv2's I2E clone. Port, reason and padding sit where
 * they sit in packet_in_header_t (the low 24 bits), so that egress copies
 * them into packet_in without shifting. */
header cpu_mirror_h {
    bit<8>        kind;             /* EGRESS_MD_CPU_MIRROR */
    @padding bit<7> _pad0;
    port_t        ingress_port;
    punt_reason_t punt_reason;
}

#endif /* _FABRIC_TNA_BRIDGED_P4_ */
