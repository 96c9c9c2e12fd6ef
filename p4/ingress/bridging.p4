/*
 * Ingress bridging.
 *
 *   fdb: (VLAN, destination MAC) -> to_port | to_lag | to_leaf (remote
 *        leaf's label) | drop. Miss (unknown unicast, broadcast,
 *        multicast) -> flood in the VLAN (flood.vlan_flood).
 *
 * Looked up with the current VLAN and destination MAC, i.e. after routing
 * rewrote them. On the egress leaf (own label popped) the same lookup
 * delivers locally; to_leaf there is dropped (never back to the fabric).
 */
#ifndef _FABRIC_INGRESS_BRIDGING_P4_
#define _FABRIC_INGRESS_BRIDGING_P4_

control Bridging(inout headers_t hdr, inout fabric_metadata_t meta) {

    action to_port(port_t port) {
        meta.egress_port = port;
        meta.fwd_type = FWD_PORT;
    }

    action to_lag(lag_id_t lag_id) {
        meta.dst_lag_id = lag_id;
        meta.fwd_type = FWD_LAG;
    }

    action to_leaf(mpls_label_t label) {
        meta.mpls_label = label;
        meta.fwd_type = FWD_FABRIC;
    }

    action drop() {
        meta.drop = true;
    }

    table fdb {
        key = {
            meta.vlan_id          : exact @name("vlan_id");
            hdr.ethernet.dst_addr : exact @name("eth_dst");
        }
        actions = {
            to_port;
            to_lag;
            to_leaf;
            drop;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = FDB_TABLE_SIZE;
    }

    apply {
        if (!fdb.apply().hit) {
            meta.fwd_type = FWD_FLOOD;
        }
    }
}

#endif
