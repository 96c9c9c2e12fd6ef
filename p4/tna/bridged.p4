/*
 * p4fabric pipeline (TNA / T2NA): what ingress hands to egress.
 *
 * bmv2 gives egress the whole metadata struct; on Tofino the ingress
 * deparser must put whatever egress needs in front of the frame, and the
 * egress parser takes it off again. Normal frames carry bridged_md_h, punt
 * and copy mirrors carry cpu_mirror_h; the first byte says which.
 */
#ifndef _FABRIC_TNA_BRIDGED_P4_
#define _FABRIC_TNA_BRIDGED_P4_

/* ---------------------------------------------------------------------- */
/* Ingress -> egress                                                      */
/* ---------------------------------------------------------------------- */

/* First byte of what the egress parser sees before the frame. */
const bit<8> EGRESS_MD_BRIDGED    = 1;  /* the frame, with bridged_md_h  */
const bit<8> EGRESS_MD_CPU_MIRROR = 2;  /* a punt/copy, with cpu_mirror_h */

/* What the egress controls read of fabric_metadata_t, carried from
 * ingress in front of the frame (bmv2 keeps the whole metadata struct;
 * Tofino carries only these bits). 176 bits. */
header bridged_md_h {
    bit<8>       kind;              /* EGRESS_MD_BRIDGED */
    port_t       ingress_port;
    bit<1>       routed;
    bit<1>       fabric_unicast;
    bit<1>       outer_set;
    bit<4>       _pad0;
    lag_id_t     src_lag_id;
    mpls_label_t mpls_label;
    vlan_id_t    vlan_id;
    bit<8>       mpls_ttl;
    mac_addr_t   outer_smac;
    mac_addr_t   outer_dmac;
}

/* Prepended by the ingress mirror (punts and copies to the CPU): what
 * PacketInEgress needs. The mirrored frame itself is the frame as
 * received, like bmv2's I2E clone. */
header cpu_mirror_h {
    bit<8>        kind;             /* EGRESS_MD_CPU_MIRROR */
    port_t        ingress_port;
    bit<7>        _pad0;
    punt_reason_t punt_reason;
}

#endif /* _FABRIC_TNA_BRIDGED_P4_ */
