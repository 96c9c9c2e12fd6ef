/*
 * p4fabric: the fabric pipeline (P4_16, v1model).
 *
 * One program for leaves and spines; what a switch does follows from the
 * entries the controller writes. See docs/pipeline.md for every table,
 * frame format, punt reason, group and clone session.
 *
 * This file holds the v1model glue: it copies what the controls need from
 * standard_metadata into fabric_metadata_t and turns their decisions
 * (meta.drop / meta.deny, egress_port, mcast_grp, to_cpu and the punt
 * meter's colour, learn) into v1model calls.
 * The controls under ingress/ and egress/ do not touch standard_metadata.
 */
#include <core.p4>
#include <v1model.p4>
#include "include/arch_v1model.p4"
#include "include/constants.p4"
#include "include/headers.p4"
#include "include/metadata.p4"
#include "include/parser.p4"
#include "include/checksum.p4"

#include "ingress/packet_io.p4"
#include "ingress/port_classify.p4"
#include "ingress/acl.p4"
#include "ingress/learning.p4"
#include "ingress/routing.p4"
#include "ingress/bridging.p4"
#include "ingress/lag.p4"
#include "ingress/flood.p4"
#include "ingress/fabric.p4"
#ifdef FABRIC_V2
#include "testing/upgrade_probe.p4"
#endif

#include "egress/prune.p4"
#include "egress/vlan_out.p4"
#include "egress/fabric_out.p4"
#include "egress/packet_in.p4"

control FabricIngress(inout headers_t hdr,
                      inout fabric_metadata_t meta,
                      inout standard_metadata_t standard_metadata) {

    PacketIoIngress() packet_io;
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
#ifdef FABRIC_V2
    UpgradeProbe() upgrade_probe;
#endif

    apply {
        meta.ingress_port = standard_metadata.ingress_port;

        if (standard_metadata.parser_error != error.NoError) {
            meta.drop = true;
        } else {
            packet_io.apply(hdr, meta);
        }

        /* The stage sequence; p4/tna/fabric_tna.p4 has the same. The ACL
         * lookup and learning come first: they read only what
         * port_classify decided and the frame as received (meta.lkp). */
        if (!meta.drop && !meta.bypass) {
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

            /* Punts, copies and policy drops (meta.deny) last. */
            acl_verdict.apply(hdr, meta);
#ifdef FABRIC_V2
            upgrade_probe.apply(hdr, meta);
#endif
        }

        /* v1model glue. */
        if (meta.to_cpu && meta.punt_color != METER_COLOR_RED) {
            clone_preserving_field_list(CloneType.I2E, CPU_CLONE_SESSION_ID,
                                        CPU_CLONE_FIELD_LIST);
        }
        if (meta.learn) {
            digest<mac_learn_digest_t>(MAC_LEARN_DIGEST_RECEIVER,
                {meta.lkp.vlan_id, meta.lkp.eth_src, meta.ingress_port, meta.src_lag_id});
        }
        if (meta.drop || meta.deny) {
            mark_to_drop(standard_metadata);
        } else if (meta.fwd_type == FWD_PORT) {
            standard_metadata.egress_spec = meta.egress_port;
        } else if (meta.fwd_type == FWD_MCAST) {
            standard_metadata.mcast_grp = meta.mcast_grp;
        } else {
            mark_to_drop(standard_metadata);
        }
    }
}

control FabricEgress(inout headers_t hdr,
                     inout fabric_metadata_t meta,
                     inout standard_metadata_t standard_metadata) {

    Prune() prune;
    FabricOut() fabric_out;
    VlanOut() vlan_out;
    PacketInEgress() cpu_out;

    apply {
        meta.egress_port = standard_metadata.egress_port;

        if (meta.bypass) {
            /* packet_out with do_forwarding = 0: bytes as the controller sent them. */
        } else if (meta.egress_port == CPU_PORT) {
            cpu_out.apply(hdr, meta);
        } else {
            prune.apply(hdr, meta);
            if (!meta.drop) {
                fabric_out.apply(hdr, meta);
                if (!meta.drop && !meta.egress_fabric) {
                    vlan_out.apply(hdr, meta);
                }
            }
        }

        if (meta.drop) {
            mark_to_drop(standard_metadata);
        }
    }
}

V1Switch(FabricParser(),
         FabricVerifyChecksum(),
         FabricIngress(),
         FabricEgress(),
         FabricComputeChecksum(),
         FabricDeparser()) main;
