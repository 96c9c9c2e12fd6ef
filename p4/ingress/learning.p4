/*
 * Ingress MAC learning.
 *
 * src_mac holds the sources the controller knows, keyed by the ingress
 * VLAN, the source MAC and where the host sits: (port, lag_id 0) on a plain
 * edge port, (0, LAG id) on any member of a LAG. A miss on a frame that
 * was admitted on an edge port (not from the controller, not dropped or
 * punted by the ACL, unicast source) sends mac_learn_digest_t. Entries
 * support idle timeout (P4Runtime idle_timeout_ns); the controller ages
 * hosts out on the notification.
 *
 * Port security: locked_sources holds the attachments (same (port, lag_id)
 * key) that reached their learned-MAC limit. There a src_mac miss drops
 * the frame (meta.deny) and sends no digest: a flooding host neither
 * reaches the other hosts with new sources nor keeps the controller busy. Known sources go
 * on; punted frames (ARP, ND) still reach the controller through the ACL.
 */
#ifndef _FABRIC_INGRESS_LEARNING_P4_
#define _FABRIC_INGRESS_LEARNING_P4_

control Learning(inout headers_t hdr, inout fabric_metadata_t meta) {

    action known_source() {
    }

    table src_mac {
        key = {
            meta.lkp.vlan_id : exact @name("vlan_id");
            meta.lkp.eth_src : exact @name("eth_src");
            meta.learn_port  : exact @name("ingress_port");
            meta.src_lag_id  : exact @name("lag_id");
        }
        actions = {
            known_source;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = SRC_MAC_TABLE_SIZE;
        FABRIC_IDLE_TIMEOUT = true;
    }

    action drop_unknown_source() {
        meta.source_locked = true;
    }

    table locked_sources {
        key = {
            meta.learn_port : exact @name("ingress_port");
            meta.src_lag_id : exact @name("lag_id");
        }
        actions = {
            drop_unknown_source;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = LOCKED_SOURCES_TABLE_SIZE;
    }

    apply {
        if (meta.src_lag_id == 0) {
            meta.learn_port = meta.ingress_port;
        } else {
            meta.learn_port = NO_PORT;
        }
        if (meta.port_type == PORT_TYPE_EDGE
                && !meta.from_cpu
                && meta.vlan_ok
                && meta.acl_verdict != ACL_DROP
                && meta.acl_verdict != ACL_PUNT
                && meta.lkp.eth_src[40:40] == 0) {
            /* Both looked up at once (one stage on Tofino); the lock only
             * matters for an unknown source. */
            bool known = src_mac.apply().hit;
            locked_sources.apply();
            if (!known) {
                if (meta.source_locked) {
                    meta.deny = true;
                } else {
                    meta.learn = true;
                }
            }
        }
    }
}

#endif
