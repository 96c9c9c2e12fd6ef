/*
 * Ingress flooding.
 *
 *   vlan_flood: VLAN -> flood(group). The group (one per VLAN per leaf,
 *               id = VLAN id by convention) holds the VLAN's local edge
 *               ports (one port per LAG, LAGs split over two leaves only on
 *               their designated-forwarder leaf) and the leaf's flood-tree
 *               fabric ports. Miss: drop.
 *
 * A flood that leaves through a fabric port carries the flood label
 * (source LAG id << 4) | 0xF (include/constants.p4); egress prune drops
 * the copy for the ingress port and for members of the source LAG.
 */
#ifndef _FABRIC_INGRESS_FLOOD_P4_
#define _FABRIC_INGRESS_FLOOD_P4_

control Flood(inout headers_t hdr, inout fabric_metadata_t meta) {

    action flood(group_id_t group) {
        meta.mcast_grp = group;
        meta.fwd_type = FWD_MCAST;
    }

    table vlan_flood {
        key = {
            meta.vlan_id : exact @name("vlan_id");
        }
        actions = {
            flood;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = VLAN_FLOOD_TABLE_SIZE;
    }

    apply {
        if (vlan_flood.apply().hit) {
            if (!meta.from_fabric) {
                /* Ingress leaf: label the flood with its source LAG. On a
                 * leaf re-flooding a fabric flood, flood_pop kept the label. */
                meta.mpls_label = meta.src_lag_id ++ FLOOD_LABEL_MARKER;
            }
        } else {
            meta.drop = true;
        }
    }
}

#endif
