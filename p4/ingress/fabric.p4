/*
 * Ingress fabric (leaf-spine) forwarding.
 *
 * FabricMplsIn (instance "fabric"), for MPLS frames on fabric ports:
 *   mpls_in: label (ternary, priority) ->
 *     pop_to_bridge()        own label (exact): pop outer Ethernet + MPLS,
 *                            bridge the inner frame on its VLAN; it never
 *                            goes back to the fabric;
 *     flood_pop()            flood label on a leaf (0xF/0xF): pop,
 *                            flood in the inner VLAN (flood.vlan_flood),
 *                            pruning the source LAG carried in the label
 *                            and the ingress port; copies to other
 *                            flood-tree fabric ports keep the label;
 *     flood_transit(group)   flood label on a spine: replicate to group
 *                            (the spine's flood-tree ports), label kept;
 *     transit()              any other label (spine): forward on the label
 *                            through label_fwd;
 *     drop()                 default.
 *   The MPLS TTL of a forwarded frame is decremented; a frame whose TTL
 *   would reach 0 is not sent to a fabric port.
 *
 * FabricLabelFwd (instance "fabric_label_fwd"; P4Runtime names under
 * FabricIngress.fabric because it is the same stage, applied after
 * bridging and LAG selection):
 *   label_fwd: label (exact) -> to_fabric_port(port, smac, dmac), through
 *              fabric_selector (hash on the inner 5-tuple), watch ports.
 *              Miss: drop.
 */
#ifndef _FABRIC_INGRESS_FABRIC_P4_
#define _FABRIC_INGRESS_FABRIC_P4_

control FabricMplsIn(inout headers_t hdr, inout fabric_metadata_t meta) {

    action pop_to_bridge() {
        hdr.outer_eth.setInvalid();
        hdr.mpls.setInvalid();
        meta.fabric_unicast = true;
        meta.fwd_type = FWD_BRIDGE;
    }

    action flood_pop() {
        meta.mpls_label = hdr.mpls.label;
        meta.src_lag_id = hdr.mpls.label[19:4];   /* (LAG id << 4) | 0xF */
        hdr.outer_eth.setInvalid();
        hdr.mpls.setInvalid();
        meta.fwd_type = FWD_FLOOD;
    }

    action flood_transit(group_id_t group) {
        meta.mpls_label = hdr.mpls.label;
        meta.src_lag_id = hdr.mpls.label[19:4];
        meta.mcast_grp = group;
        meta.fwd_type = FWD_MCAST;
    }

    action transit() {
        meta.mpls_label = hdr.mpls.label;
        meta.fwd_type = FWD_FABRIC;
    }

    action drop() {
        meta.drop = true;
    }

    table mpls_in {
        key = {
            hdr.mpls.label : ternary @name("label");
        }
        actions = {
            pop_to_bridge;
            flood_pop;
            flood_transit;
            transit;
            drop;
        }
        const default_action = drop();
        size = MPLS_IN_TABLE_SIZE;
    }

    apply {
        if (hdr.mpls.ttl > 1) {
            meta.mpls_ttl = hdr.mpls.ttl - 1;
        } else {
            meta.mpls_ttl = 0;
        }
        if (hdr.vlan.isValid()) {
            meta.vlan_id = hdr.vlan.vlan_id;
        }
        mpls_in.apply();
        if ((meta.fwd_type == FWD_BRIDGE || meta.fwd_type == FWD_FLOOD)
                && !hdr.vlan.isValid()) {
            /* A leaf needs the inner 802.1Q tag to deliver the frame. */
            meta.drop = true;
        }
    }
}

control FabricLabelFwd(inout headers_t hdr, inout fabric_metadata_t meta) {

    @name(".FabricIngress.fabric.fabric_selector")
    FABRIC_SELECTOR_ANNOTATION(FABRIC_MAX_GROUP_SIZE)
    FABRIC_SELECTOR(fabric_selector, FABRIC_SELECTOR_SIZE, FABRIC_MAX_GROUP_SIZE, FABRIC_SELECTOR_GROUPS);

    @name(".FabricIngress.fabric.to_fabric_port")
    action to_fabric_port(port_t port, mac_addr_t smac, mac_addr_t dmac) {
        meta.egress_port = port;
        meta.outer_set = true;
        meta.outer_smac = smac;
        meta.outer_dmac = dmac;
        meta.fwd_type = FWD_PORT;
    }

    @name(".FabricIngress.fabric.label_fwd")
    table label_fwd {
        key = {
            meta.mpls_label      : exact @name("label");
            /* inner 5-tuple */
            meta.lkp.ipv4_src    : selector;
            meta.lkp.ipv4_dst    : selector;
            meta.lkp.ipv6_src    : selector;
            meta.lkp.ipv6_dst    : selector;
            meta.lkp.ip_proto    : selector;
            meta.lkp.l4_src_port : selector;
            meta.lkp.l4_dst_port : selector;
        }
        actions = {
            to_fabric_port;
        }
        implementation = FABRIC_SELECTOR_IMPL(fabric_selector);
        size = LABEL_FWD_TABLE_SIZE;
    }

    apply {
        if (meta.fabric_unicast) {
            /* A unicast frame from the fabric never goes back to it. */
            meta.drop = true;
        } else if (!label_fwd.apply().hit) {
            meta.drop = true;
        }
    }
}

#endif
