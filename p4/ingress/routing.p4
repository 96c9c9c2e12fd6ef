/*
 * Ingress routing (on the ingress leaf only; the egress leaf just bridges).
 *
 *   router_mac: (ingress VLAN, destination MAC) -> set_routed(); the
 *               anycast gateway MAC on every VLAN with a gateway.
 *   ipv4/ipv6:  (VRF, destination) LPM -> route_direct (rewrite MACs and
 *               VLAN), set_nexthop (ECMP through nexthops), punt_glean,
 *               punt_for_router, drop. Miss: drop.
 *   nexthops:   nexthop_id -> route_direct, through ecmp_selector (hash on
 *               the 5-tuple).
 *
 * After route_direct: TTL / hop limit <= 1 -> punt TTL_EXPIRED (original
 * frame to the CPU through the punt meter, not forwarded); otherwise
 * decrement (IPv4 checksum recomputed at the end) and the bridging stage
 * forwards the rewritten frame on (new VLAN, new destination MAC).
 * Router-MAC frames that are neither IPv4 (without options) nor IPv6 are
 * dropped (an ACL copy_to_cpu, e.g. of ARP, still reaches the controller).
 */
#ifndef _FABRIC_INGRESS_ROUTING_P4_
#define _FABRIC_INGRESS_ROUTING_P4_

control Routing(inout headers_t hdr, inout fabric_metadata_t meta) {

    FABRIC_SELECTOR_ANNOTATION(ECMP_MAX_GROUP_SIZE)
    FABRIC_SELECTOR(ecmp_selector, ECMP_SELECTOR_SIZE, ECMP_MAX_GROUP_SIZE, ECMP_SELECTOR_GROUPS);

    action set_routed() {
        meta.routed = true;
    }

    table router_mac {
        key = {
            meta.vlan_id        : exact @name("vlan_id");
            hdr.ethernet.dst_addr : exact @name("eth_dst");
        }
        actions = {
            set_routed;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = ROUTER_MAC_TABLE_SIZE;
    }

    action route_direct(mac_addr_t dmac, mac_addr_t smac, vlan_id_t vlan_id) {
        hdr.ethernet.dst_addr = dmac;
        hdr.ethernet.src_addr = smac;
        meta.vlan_id = vlan_id;
        meta.route_fwd = true;
    }

    action set_nexthop(nexthop_id_t nexthop_id) {
        meta.nexthop_id = nexthop_id;
        meta.use_nexthop = true;
    }

    action punt_glean() {
        meta.punt_req = PUNT_GLEAN;
        meta.drop = true;
    }

    action punt_for_router() {
        meta.punt_req = PUNT_FOR_ROUTER;
        meta.drop = true;
    }

    action drop() {
        meta.drop = true;
    }

    FABRIC_IPV4_ROUTES_IMPL
    table ipv4 {
        key = {
            meta.vrf_id       : exact @name("vrf_id");
            meta.lkp.ipv4_dst : lpm   @name("ipv4_dst");
        }
        actions = {
            route_direct;
            set_nexthop;
            punt_glean;
            punt_for_router;
            drop;
        }
        default_action = drop();
        size = IPV4_ROUTE_TABLE_SIZE;
    }

    FABRIC_IPV6_ROUTES_IMPL
    table ipv6 {
        key = {
            meta.vrf_id       : exact @name("vrf_id");
            meta.lkp.ipv6_dst : lpm   @name("ipv6_dst");
        }
        actions = {
            route_direct;
            set_nexthop;
            punt_glean;
            punt_for_router;
            drop;
        }
        default_action = drop();
        size = IPV6_ROUTE_TABLE_SIZE;
    }

    table nexthops {
        key = {
            meta.nexthop_id      : exact @name("nexthop_id");
            /* 5-tuple hash (IPv4 or IPv6; the other family's fields are 0) */
            meta.lkp.ipv4_src    : selector;
            meta.lkp.ipv4_dst    : selector;
            meta.lkp.ipv6_src    : selector;
            meta.lkp.ipv6_dst    : selector;
            meta.lkp.ip_proto    : selector;
            meta.lkp.l4_src_port : selector;
            meta.lkp.l4_dst_port : selector;
        }
        actions = {
            route_direct;
        }
        implementation = FABRIC_SELECTOR_IMPL(ecmp_selector);
        size = NEXTHOP_TABLE_SIZE;
    }

    apply {
        if (router_mac.apply().hit) {
            bool v4 = hdr.ipv4.isValid() && hdr.ipv4.ihl == 5;
            if (v4) {
                ipv4.apply();
            } else if (hdr.ipv6.isValid()) {
                ipv6.apply();
            } else {
                meta.drop = true;   /* not routable (ARP, IPv4 options...) */
            }
            if (meta.use_nexthop) {
                nexthops.apply();   /* miss: route_fwd stays false -> drop */
            }
            /* Decided after the last route lookup: meta.deny, not
             * meta.drop, so that bridging need not wait for it (on
             * Tofino it looks up in the same stage). */
            if (meta.route_fwd) {
                if (v4) {
                    if (hdr.ipv4.ttl <= 1) {
                        meta.punt_req = PUNT_TTL_EXPIRED;
                        meta.deny = true;
                    } else {
                        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
                        meta.ipv4_update = true;
                    }
                } else {
                    if (hdr.ipv6.hop_limit <= 1) {
                        meta.punt_req = PUNT_TTL_EXPIRED;
                        meta.deny = true;
                    } else {
                        hdr.ipv6.hop_limit = hdr.ipv6.hop_limit - 1;
                    }
                }
            } else if (meta.punt_req == 0) {
                meta.deny = true;   /* drop route, route miss, nexthop miss */
            }
        }
    }
}

#endif
