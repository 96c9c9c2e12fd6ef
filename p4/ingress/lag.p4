/*
 * Ingress LAG member selection.
 *
 *   members: LAG id -> to_member(port) | to_leaf(label), through
 *            lag_selector (hash on MACs + 5-tuple). Group members carry
 *            watch ports so bmv2 skips members whose port is down. A LAG
 *            split over two leaves may list to_leaf(peer leaf) members as
 *            the fallback when no local member is usable, and a leaf
 *            without members of the LAG may hash over to_leaf(leaf1) and
 *            to_leaf(leaf2).
 * Miss (no group for the LAG): drop.
 */
#ifndef _FABRIC_INGRESS_LAG_P4_
#define _FABRIC_INGRESS_LAG_P4_

control Lag(inout headers_t hdr, inout fabric_metadata_t meta) {

    FABRIC_SELECTOR_ANNOTATION(LAG_MAX_GROUP_SIZE)
    FABRIC_SELECTOR(lag_selector, LAG_SELECTOR_SIZE, LAG_MAX_GROUP_SIZE, LAG_SELECTOR_GROUPS);

    action to_member(port_t port) {
        meta.egress_port = port;
        meta.fwd_type = FWD_PORT;
    }

    action to_leaf(mpls_label_t label) {
        meta.mpls_label = label;
        meta.fwd_type = FWD_FABRIC;
    }

    table members {
        key = {
            meta.dst_lag_id       : exact @name("lag_id");
            hdr.ethernet.src_addr : selector;
            hdr.ethernet.dst_addr : selector;
            meta.lkp.ipv4_src     : selector;
            meta.lkp.ipv4_dst     : selector;
            meta.lkp.ipv6_src     : selector;
            meta.lkp.ipv6_dst     : selector;
            meta.lkp.ip_proto     : selector;
            meta.lkp.l4_src_port  : selector;
            meta.lkp.l4_dst_port  : selector;
        }
        actions = {
            to_member;
            to_leaf;
        }
        implementation = FABRIC_SELECTOR_IMPL(lag_selector);
        size = LAG_TABLE_SIZE;
    }

    apply {
        if (!members.apply().hit) {
            meta.drop = true;
        }
    }
}

#endif
