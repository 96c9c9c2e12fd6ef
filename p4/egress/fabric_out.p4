/*
 * Egress fabric encapsulation.
 *
 *   fabric_ports: egress port -> encap(smac, dmac) for every fabric port:
 *                 the outer MACs of the link (this switch's MAC, the
 *                 neighbour's MAC).
 *
 * A frame leaving through a fabric port gets (or keeps, on a spine)
 *   outer Ethernet (dst, src, 0x8847) | MPLS (meta.mpls_label, tc 0,
 *   bos 1, meta.mpls_ttl) | inner Ethernet (0x8100) | 802.1Q (VLAN) | ...
 * The outer MACs come from label_fwd's to_fabric_port for unicast, from
 * this table for flood copies. Dropped instead: a copy of a unicast frame
 * that came from the fabric (unknown unicast flooded on the egress leaf),
 * and a frame whose MPLS TTL ran out.
 */
#ifndef _FABRIC_EGRESS_FABRIC_OUT_P4_
#define _FABRIC_EGRESS_FABRIC_OUT_P4_

control FabricOut(inout headers_t hdr, inout fabric_metadata_t meta) {

    action encap(mac_addr_t smac, mac_addr_t dmac) {
        meta.egress_fabric = true;
        meta.port_smac = smac;
        meta.port_dmac = dmac;
    }

    table fabric_ports {
        key = {
            meta.egress_port : exact @name("egress_port");
        }
        actions = {
            encap;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = FABRIC_PORTS_TABLE_SIZE;
    }

    apply {
        fabric_ports.apply();
        if (meta.egress_fabric) {
            if (meta.fabric_unicast || meta.mpls_ttl == 0) {
                meta.drop = true;
            } else {
                hdr.outer_eth.setValid();
                if (meta.outer_set) {
                    hdr.outer_eth.dst_addr = meta.outer_dmac;
                    hdr.outer_eth.src_addr = meta.outer_smac;
                } else {
                    hdr.outer_eth.dst_addr = meta.port_dmac;
                    hdr.outer_eth.src_addr = meta.port_smac;
                }
                hdr.outer_eth.ether_type = ETHERTYPE_MPLS;
                hdr.mpls.setValid();
                hdr.mpls.label = meta.mpls_label;
                hdr.mpls.tc = 0;
                hdr.mpls.bos = 1;
                hdr.mpls.ttl = meta.mpls_ttl;
                if (hdr.vlan.isValid()) {
                    hdr.vlan.vlan_id = meta.vlan_id;
                }
            }
        }
    }
}

#endif
