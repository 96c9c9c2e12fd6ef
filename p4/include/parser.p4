/*
 * p4fabric pipeline: parser and deparser (v1model).
 *
 * CPU port: packet_out first. Then, if the first Ethernet type is MPLS
 * (a fabric frame), outer_eth + mpls and the inner Ethernet; otherwise the
 * Ethernet header. Then an optional 802.1Q tag, ARP (not parsed), IPv4,
 * IPv6, and TCP / UDP / ICMP / ICMPv6 so the 5-tuple of the (inner) frame
 * is available for hashing.
 *
 * v1model does not drop on parser errors by itself; FabricIngress drops
 * frames with a parser error (e.g. truncated headers).
 */
#ifndef _FABRIC_PARSER_P4_
#define _FABRIC_PARSER_P4_

#include "headers.p4"
#include "metadata.p4"

parser FabricParser(packet_in packet,
                    out headers_t hdr,
                    inout fabric_metadata_t meta,
                    inout standard_metadata_t standard_metadata) {

    state start {
        transition select(standard_metadata.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_l2;
        }
    }

    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition parse_l2;
    }

    /* Look at the first Ethernet type without extracting: MPLS means the
     * first Ethernet header is the outer one of a fabric frame. */
    state parse_l2 {
        transition select(packet.lookahead<ethernet_t>().ether_type) {
            ETHERTYPE_MPLS: parse_outer_ethernet;
            default: parse_ethernet;
        }
    }

    state parse_outer_ethernet {
        packet.extract(hdr.outer_eth);
        packet.extract(hdr.mpls);
        /* One label only: anything else is left unparsed (and dropped). */
        transition select(hdr.mpls.bos) {
            1: parse_ethernet;
            default: accept;
        }
    }

    state parse_ethernet {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_VLAN: parse_vlan;
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            default: accept;
        }
    }

    state parse_vlan {
        packet.extract(hdr.vlan);
        meta.vlan_valid = 1;
        meta.in_vlan_id = hdr.vlan.vlan_id;
        transition select(hdr.vlan.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            default: accept;
        }
    }

    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        /* L4 only without options and on first (or un-) fragments. */
        transition select(hdr.ipv4.ihl, hdr.ipv4.frag_offset, hdr.ipv4.protocol) {
            (5, 0, IP_PROTO_TCP):  parse_tcp;
            (5, 0, IP_PROTO_UDP):  parse_udp;
            (5, 0, IP_PROTO_ICMP): parse_icmp;
            default: accept;
        }
    }

    state parse_ipv6 {
        packet.extract(hdr.ipv6);
        transition select(hdr.ipv6.next_hdr) {
            IP_PROTO_TCP:    parse_tcp;
            IP_PROTO_UDP:    parse_udp;
            IP_PROTO_ICMPV6: parse_icmp;
            default: accept;
        }
    }

    state parse_tcp {
        packet.extract(hdr.tcp);
        transition accept;
    }

    state parse_udp {
        packet.extract(hdr.udp);
        transition accept;
    }

    state parse_icmp {
        packet.extract(hdr.icmp);
        transition accept;
    }
}

control FabricDeparser(packet_out packet, in headers_t hdr) {
    apply {
        /* packet_out is never emitted: ingress invalidates it. */
        packet.emit(hdr.packet_in);
        packet.emit(hdr.outer_eth);
        packet.emit(hdr.mpls);
        packet.emit(hdr.ethernet);
        packet.emit(hdr.vlan);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.ipv6);
        packet.emit(hdr.tcp);
        packet.emit(hdr.udp);
        packet.emit(hdr.icmp);
    }
}

#endif /* _FABRIC_PARSER_P4_ */
