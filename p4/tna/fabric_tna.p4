/*
 * p4fabric: the fabric pipeline for Tofino (TNA) and Tofino 2 (T2NA).
 *
 * The same controls as the v1model build (p4/fabric.p4) under the same
 * instance names, so the P4Runtime names of every table, action, selector,
 * meter, digest and controller header are the same; the differences are
 * listed in docs/pipeline.md ("Tofino (TNA / T2NA)"). This file is the
 * architecture glue: it copies what the controls need from the intrinsic
 * metadata into fabric_metadata_t and turns their decisions into TNA
 * (unicast port, multicast group, drop, CPU mirror, digest, egress
 * bypass). bf-p4c defines __TARGET_TOFINO__ (1 or 2); p4/compile.sh builds
 * both targets.
 */
#include <core.p4>
#if __TARGET_TOFINO__ == 2
#include <t2na.p4>
#else
#include <tna.p4>
#endif

#include "arch_tna.p4"
#include "../include/constants.p4"
#include "bridged.p4"
#include "../include/headers.p4"
#include "../include/metadata.p4"
#include "parser_tna.p4"

#include "../ingress/port_classify.p4"
#include "../ingress/acl.p4"
#include "../ingress/learning.p4"
#include "../ingress/routing.p4"
#include "../ingress/bridging.p4"
#include "../ingress/lag.p4"
#include "../ingress/flood.p4"
#include "../ingress/fabric.p4"

#include "../egress/prune.p4"
#include "../egress/vlan_out.p4"
#include "../egress/fabric_out.p4"
#include "../egress/packet_in.p4"

/* The MPLS TTL in a container of its own: FabricMplsIn's `ttl - 1` writes
 * a whole container, and bf-p4c must not share it with the label. */
@pa_container_size("ingress", "hdr.mpls.ttl", 8)
control FabricIngress(inout headers_t hdr,
                      inout fabric_metadata_t meta,
                      in ingress_intrinsic_metadata_t ig_intr_md,
                      in ingress_intrinsic_metadata_from_parser_t ig_prsr_md,
                      inout ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md,
                      inout ingress_intrinsic_metadata_for_tm_t ig_tm_md) {

    PortClassify() port_classify;
    AclLookup() acl;
    Learning() learning;
    FabricMplsIn() fabric;
    Routing() routing;
    Bridging() bridging;
    Lag() lag;
    Flood() flood;
    FabricLabelFwd() fabric_label_fwd;
    AclVerdict() acl_verdict;

    apply {
        /* meta.ingress_port and the packet_out decisions (PacketIoIngress
         * on v1model) are set by the parser. */
        bool parsed = ig_prsr_md.parser_err == PARSER_ERROR_OK;

        /* The same stage sequence as FabricIngress in p4/fabric.p4. */
        if (parsed && !meta.bypass) {
            port_classify.apply(hdr, meta);
            acl.apply(hdr, meta);
            learning.apply(hdr, meta);

            /* Forwarding: each stage refines meta.fwd_type. */
            if (!meta.drop) {
                if (meta.from_fabric) {
                    fabric.apply(hdr, meta);
                } else if (meta.vlan_ok) {
                    routing.apply(hdr, meta);
                }
            }
            if (!meta.drop && meta.fwd_type == FWD_BRIDGE) {
                bridging.apply(hdr, meta);
            }
            if (!meta.drop) {
                if (meta.fwd_type == FWD_LAG) {
                    lag.apply(hdr, meta);
                } else if (meta.fwd_type == FWD_FLOOD) {
                    flood.apply(hdr, meta);
                }
            }
            if (!meta.drop && meta.fwd_type == FWD_FABRIC) {
                fabric_label_fwd.apply(hdr, meta);
            }

            /* Punts, copies and drops from the ACL and routing last. */
            acl_verdict.apply(hdr, meta);
        }

        /* TNA glue. Punts and copies: ingress mirror of the frame as
         * received to CPU_MIRROR_SESSION_ID (the controller's clone
         * session), with what packet_in needs. */
        if (meta.to_cpu && meta.punt_color != METER_COLOR_RED) {
            ig_dprsr_md.mirror_type = CPU_MIRROR_TYPE;
            meta.mirror_session = CPU_MIRROR_SESSION_ID;
#if __TARGET_TOFINO__ == 2
            ig_dprsr_md.mirror_io_select = 0;   /* the incoming frame */
#endif
            hdr.cpu_mirror.setValid();
            hdr.cpu_mirror.kind = EGRESS_MD_CPU_MIRROR;
            hdr.cpu_mirror.ingress_port = meta.ingress_port;
            hdr.cpu_mirror.punt_reason = meta.punt_reason;
        }
        if (meta.learn) {
            ig_dprsr_md.digest_type = MAC_LEARN_DIGEST_TYPE;
        }

        if (meta.bypass) {
            /* packet_out with do_forwarding = 0: straight out, no egress
             * processing, nothing in front of the frame. */
            ig_tm_md.ucast_egress_port = (PortId_t) meta.egress_port;
            ig_tm_md.bypass_egress = 1;
        } else {
            hdr.bridged_kind.setValid();
            hdr.bridged_kind.kind = EGRESS_MD_BRIDGED;
            hdr.bridged.setValid();
            hdr.bridged_mpls.setValid();
            hdr.bridged.ingress_port = meta.ingress_port;
            hdr.bridged.routed = (bit<1>) meta.routed;
            hdr.bridged.fabric_unicast = (bit<1>) meta.fabric_unicast;
            hdr.bridged.outer_set = (bit<1>) meta.outer_set;
            hdr.bridged_mpls.src_lag_id = meta.src_lag_id;
            hdr.bridged_mpls.mpls_label = meta.mpls_label;
            hdr.bridged.vlan_id = meta.vlan_id;
            hdr.bridged.mpls_ttl = meta.mpls_ttl;
            hdr.bridged.outer_smac = meta.outer_smac;
            hdr.bridged.outer_dmac = meta.outer_dmac;

            if (meta.drop || meta.deny || !parsed) {
                ig_dprsr_md.drop_ctl = 1;   /* the mirror still goes */
            } else if (meta.fwd_type == FWD_PORT) {
                ig_tm_md.ucast_egress_port = (PortId_t) meta.egress_port;
            } else if (meta.fwd_type == FWD_MCAST) {
                ig_tm_md.mcast_grp_a = meta.mcast_grp;
            } else {
                ig_dprsr_md.drop_ctl = 1;
            }
        }
    }
}

control FabricEgress(inout headers_t hdr,
                     inout fabric_metadata_t meta,
                     in egress_intrinsic_metadata_t eg_intr_md,
                     in egress_intrinsic_metadata_from_parser_t eg_prsr_md,
                     inout egress_intrinsic_metadata_for_deparser_t eg_dprsr_md,
                     inout egress_intrinsic_metadata_for_output_port_t eg_oport_md) {

    Prune() prune;
    FabricOut() fabric_out;
    VlanOut() vlan_out;
    PacketInEgress() cpu_out;

    apply {
        meta.egress_port = (port_t) eg_intr_md.egress_port;

        if (hdr.cpu_mirror.isValid()) {
            /* A punt or copy (the mirror session sends it to the CPU port). */
            meta.ingress_port = hdr.cpu_mirror.ingress_port;
            meta.punt_reason = hdr.cpu_mirror.punt_reason;
            cpu_out.apply(hdr, meta);
        } else {
            meta.ingress_port = hdr.bridged.ingress_port;
            meta.routed = (bool) hdr.bridged.routed;
            meta.fabric_unicast = (bool) hdr.bridged.fabric_unicast;
            meta.outer_set = (bool) hdr.bridged.outer_set;
            meta.src_lag_id = hdr.bridged_mpls.src_lag_id;
            meta.mpls_label = hdr.bridged_mpls.mpls_label;
            meta.vlan_id = hdr.bridged.vlan_id;
            meta.mpls_ttl = hdr.bridged.mpls_ttl;
            meta.outer_smac = hdr.bridged.outer_smac;
            meta.outer_dmac = hdr.bridged.outer_dmac;

            /* The same sequence as FabricEgress in p4/fabric.p4. */
            prune.apply(hdr, meta);
            if (!meta.drop) {
                fabric_out.apply(hdr, meta);
                if (!meta.drop && !meta.egress_fabric) {
                    vlan_out.apply(hdr, meta);
                }
            }
        }

        if (meta.drop) {
            eg_dprsr_md.drop_ctl = 1;
        }
    }
}

Pipeline(FabricIngressParser(),
         FabricIngress(),
         FabricIngressDeparser(),
         FabricEgressParser(),
         FabricEgress(),
         FabricEgressDeparser()) pipe;

/* Metadata starts zeroed, as on v1model: the controls rely on it. */
@pa_auto_init_metadata
Switch(pipe) main;
