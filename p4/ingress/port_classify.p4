/*
 * Ingress port classification.
 *
 *   ports: what the (logical) ingress port is: edge (with its LAG id, 0 if
 *          none), fabric, or the CPU port. Miss: unconfigured port, drop.
 *   vlans: on edge and CPU ports, which VLAN (and VRF) a frame belongs to,
 *          by (port, tagged?, VLAN id). Access port: (p, 0, 0) -> VLAN;
 *          trunk: (p, 1, v) -> v for each allowed v; native VLAN:
 *          (p, 0, 0) -> native. Miss: VLAN not allowed, drop.
 *
 * A dropped frame may still be punted by the ACL (LACP on a trunk without
 * native VLAN, discovery probes on fabric ports): port_classify only sets
 * meta.drop, the ACL decides last.
 *
 * Admitted edge/CPU frames are normalised to carry an 802.1Q tag with the
 * classified VLAN (hdr.vlan valid) for the rest of the pipeline; egress
 * vlan_out pops or keeps it per (port, VLAN).
 *
 * Also captures the lookup fields (meta.lkp) used by ACL, hashes, learning.
 */
#ifndef _FABRIC_INGRESS_PORT_CLASSIFY_P4_
#define _FABRIC_INGRESS_PORT_CLASSIFY_P4_

control PortClassify(inout headers_t hdr, inout fabric_metadata_t meta) {

    /* Neither table sets meta.drop itself (on Tofino two tables writing
     * one field cannot share a stage): a ports miss leaves port_type NONE,
     * a vlans miss leaves vlan_ok false, and apply drops either below. */
    action drop() {
    }

    action set_edge_port(lag_id_t lag_id) {
        meta.port_type = PORT_TYPE_EDGE;
        meta.src_lag_id = lag_id;
    }

    action set_fabric_port() {
        meta.port_type = PORT_TYPE_FABRIC;
    }

    action set_cpu_port() {
        meta.port_type = PORT_TYPE_CPU;
    }

    table ports {
        key = {
            meta.ingress_port : exact @name("ingress_port");
        }
        actions = {
            set_edge_port;
            set_fabric_port;
            set_cpu_port;
            drop;
        }
        const default_action = drop();
        size = PORTS_TABLE_SIZE;
    }

    action set_vlan(vlan_id_t vlan_id, vrf_id_t vrf_id) {
        meta.vlan_id = vlan_id;
        meta.lkp.vlan_id = vlan_id;   /* the ACL and learning key on it */
        meta.vrf_id = vrf_id;
        meta.vlan_ok = true;
    }

    table vlans {
        key = {
            meta.ingress_port : exact @name("ingress_port");
            meta.vlan_valid   : exact @name("vlan_valid");
            meta.in_vlan_id   : exact @name("vlan_id");
        }
        actions = {
            set_vlan;
            drop;
        }
        const default_action = drop();
        size = PORT_VLAN_TABLE_SIZE;
    }

    apply {
        /* Lookup fields (inner frame for fabric frames). */
        meta.lkp.eth_src = hdr.ethernet.src_addr;
        meta.lkp.eth_dst = hdr.ethernet.dst_addr;
        /* meta.vlan_valid / meta.in_vlan_id come from the parser so that
         * vlans can look up in the first stage on Tofino; each lkp field
         * is written once (an overwrite costs a stage there). */
        if (hdr.vlan.isValid()) {
            meta.lkp.eth_type = hdr.vlan.ether_type;
        } else {
            meta.lkp.eth_type = hdr.ethernet.ether_type;
        }
        if (hdr.ipv4.isValid()) {
            meta.lkp.ip_proto = hdr.ipv4.protocol;
            meta.lkp.ipv4_src = hdr.ipv4.src_addr;
            meta.lkp.ipv4_dst = hdr.ipv4.dst_addr;
        } else if (hdr.ipv6.isValid()) {
            meta.lkp.ip_proto = hdr.ipv6.next_hdr;
            meta.lkp.ipv6_src = hdr.ipv6.src_addr;
            meta.lkp.ipv6_dst = hdr.ipv6.dst_addr;
        }
        if (hdr.tcp.isValid()) {
            meta.lkp.l4_src_port = hdr.tcp.src_port;
            meta.lkp.l4_dst_port = hdr.tcp.dst_port;
        } else if (hdr.udp.isValid()) {
            meta.lkp.l4_src_port = hdr.udp.src_port;
            meta.lkp.l4_dst_port = hdr.udp.dst_port;
        } else if (hdr.icmp.isValid()) {
            meta.lkp.icmp_type = hdr.icmp.icmp_type;
        }

        ports.apply();
        /* vlans beside ports, not after it (one stage on Tofino): only
         * edge and CPU ports have entries, and what it decides is used
         * below only for them. */
        bool plain = hdr.ethernet.isValid() && !hdr.mpls.isValid();
        if (plain) {
            vlans.apply();
        }

        if (meta.port_type == PORT_TYPE_EDGE || meta.port_type == PORT_TYPE_CPU) {
            if (!plain) {
                /* MPLS from a server (or a truncated frame): not ours. */
                meta.drop = true;
            } else if (!meta.vlan_ok) {
                meta.drop = true;   /* VLAN not allowed on the port */
            } else {
                /* Push a tag on an untagged frame. In three steps
                 * because on Tofino an action writing part of a PHV
                 * container (the tag's 32 bits) may read at most one
                 * other field with constants, two without. */
                if (!hdr.vlan.isValid()) {
                    hdr.vlan.setValid();
                    hdr.vlan.ether_type = hdr.ethernet.ether_type;
                    hdr.ethernet.ether_type = ETHERTYPE_VLAN;
                }
                hdr.vlan.vlan_id = meta.vlan_id;
                if (meta.vlan_valid == 0) {
                    hdr.vlan.pcp = 0;
                    hdr.vlan.dei = 0;
                }
                meta.mpls_ttl = MPLS_DEFAULT_TTL;
                meta.fwd_type = FWD_BRIDGE;
            }
        } else if (meta.port_type == PORT_TYPE_FABRIC) {
            if (hdr.mpls.isValid() && hdr.mpls.bos == 1) {
                meta.from_fabric = true;
            } else {
                /* Only control frames (punted by the ACL) come unencapsulated;
                 * label stacks (bos = 0) are not ours either. */
                meta.drop = true;
            }
        } else {
            meta.drop = true;   /* unconfigured port */
        }
    }
}

#endif
