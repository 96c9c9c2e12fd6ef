/*
 * Egress pruning.
 *
 *   port_lag: egress port -> set_port_lag(lag_id) for every LAG member
 *             port on this switch.
 *
 * A bridged copy (flood replica or unicast) is dropped when it would leave
 * through the port it came in on, or through a member of the LAG it came
 * from (the ingress port's LAG, or the source LAG carried in a flood
 * label). Routed packets may leave through their ingress port (another
 * VLAN) and are not pruned.
 */
#ifndef _FABRIC_EGRESS_PRUNE_P4_
#define _FABRIC_EGRESS_PRUNE_P4_

control Prune(inout headers_t hdr, inout fabric_metadata_t meta) {

    action set_port_lag(lag_id_t lag_id) {
        meta.egress_lag_id = lag_id;
    }

    table port_lag {
        key = {
            meta.egress_port : exact @name("egress_port");
        }
        actions = {
            set_port_lag;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = PORT_LAG_TABLE_SIZE;
    }

    apply {
        port_lag.apply();
        if (!meta.routed) {
            if (meta.egress_port == meta.ingress_port) {
                meta.drop = true;
            } else if (meta.src_lag_id != 0 && meta.egress_lag_id == meta.src_lag_id) {
                meta.drop = true;
            }
        }
    }
}

#endif
