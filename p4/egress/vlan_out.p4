/*
 * Egress VLAN tagging on edge ports.
 *
 *   vlans: (egress port, VLAN) -> push_tag() (frame leaves tagged with the
 *          VLAN) | pop_tag() (leaves untagged: access VLAN or native VLAN).
 *          Miss: the VLAN is not allowed on the port, drop.
 *
 * Inside the pipeline every bridged/routed frame carries an 802.1Q tag
 * (port_classify adds one to untagged frames; fabric frames carry one), so
 * "push" keeps the tag with the current VLAN id and "pop" removes it.
 */
#ifndef _FABRIC_EGRESS_VLAN_OUT_P4_
#define _FABRIC_EGRESS_VLAN_OUT_P4_

control VlanOut(inout headers_t hdr, inout fabric_metadata_t meta) {

    action push_tag() {
        hdr.vlan.vlan_id = meta.vlan_id;
    }

    action pop_tag() {
        hdr.ethernet.ether_type = hdr.vlan.ether_type;
        hdr.vlan.setInvalid();
    }

    action drop() {
        meta.drop = true;
    }

    table vlans {
        key = {
            meta.egress_port : exact @name("egress_port");
            meta.vlan_id     : exact @name("vlan_id");
        }
        actions = {
            push_tag;
            pop_tag;
            drop;
        }
        const default_action = drop();
        size = EGRESS_VLAN_TABLE_SIZE;
    }

    apply {
        if (!hdr.vlan.isValid()) {
            hdr.vlan.setValid();
            hdr.vlan.pcp = 0;
            hdr.vlan.dei = 0;
            hdr.vlan.ether_type = hdr.ethernet.ether_type;
            hdr.ethernet.ether_type = ETHERTYPE_VLAN;
        }
        vlans.apply();
    }
}

#endif
