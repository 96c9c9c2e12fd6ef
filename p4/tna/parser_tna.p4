/*
 * p4fabric pipeline (TNA / T2NA): parsers and deparsers.
 *
 * The frame is parsed the same way as on v1model (include/parser.p4):
 * optional outer Ethernet + one MPLS label (fabric links), Ethernet,
 * optional 802.1Q, IPv4 / IPv6, TCP / UDP / ICMP(v6). FabricFrameParser
 * holds that graph once for the ingress and the egress parser here.
 *
 * Ingress: intrinsic metadata, the port metadata block (unused), then
 * packet_out on the CPU port, then the frame. The ingress deparser emits
 * bridged_md_h in front of the frame, the learning digest, the CPU mirror
 * (with cpu_mirror_h) and the IPv4 checksum of routed packets.
 *
 * Egress: intrinsic metadata, then either cpu_mirror_h (a punt or copy:
 * the rest is the frame as received, left unparsed) or bridged_md_h and
 * the frame. The egress deparser emits packet_in (CPU copies) and the
 * headers.
 */
#ifndef _FABRIC_TNA_PARSER_P4_
#define _FABRIC_TNA_PARSER_P4_

parser FabricFrameParser(packet_in packet, inout headers_t hdr, inout fabric_metadata_t meta) {

    /* MPLS as the first Ethernet type: a fabric frame, whose first
     * Ethernet header is the outer one. */
    state start {
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

/* Every header the frame can carry, in wire order (packet_out is never
 * emitted: ingress invalidates it; packet_in only exists in egress). */
#define FABRIC_EMIT_FRAME(packet, hdr) \
    packet.emit(hdr.packet_in); \
    packet.emit(hdr.outer_eth); \
    packet.emit(hdr.mpls); \
    packet.emit(hdr.ethernet); \
    packet.emit(hdr.vlan); \
    packet.emit(hdr.ipv4); \
    packet.emit(hdr.ipv6); \
    packet.emit(hdr.tcp); \
    packet.emit(hdr.udp); \
    packet.emit(hdr.icmp)

parser FabricIngressParser(packet_in packet,
                           out headers_t hdr,
                           out fabric_metadata_t meta,
                           out ingress_intrinsic_metadata_t ig_intr_md) {

    FabricFrameParser() frame_parser;

    state start {
        packet.extract(ig_intr_md);
        /* No resubmit; the per-port metadata block is not used. */
        packet.advance(PORT_METADATA_SIZE);
        transition select(ig_intr_md.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_port;
        }
    }

    state parse_port {
        meta.ingress_port = (port_t) ig_intr_md.ingress_port;
        transition parse_frame;
    }

    /* What PacketIoIngress does on v1model, here so that the ingress
     * port is known from the first stage on. Each path writes
     * meta.ingress_port once (a bypassed frame needs none). */
    state parse_packet_out {
        transition select(packet.lookahead<packet_out_header_t>().do_forwarding) {
            0: packet_out_direct;
            default: packet_out_forward;
        }
    }

    state packet_out_direct {
        packet.extract(hdr.packet_out);
        meta.from_cpu = true;
        meta.bypass = true;
        meta.egress_port = hdr.packet_out.egress_port;
        meta.fwd_type = FWD_PORT;
        transition parse_frame;
    }

    state packet_out_forward {
        packet.extract(hdr.packet_out);
        meta.from_cpu = true;
        meta.ingress_port = hdr.packet_out.ingress_port;
        transition parse_frame;
    }

    state parse_frame {
        frame_parser.apply(packet, hdr, meta);
        transition accept;
    }
}

control FabricIngressDeparser(packet_out packet,
                              inout headers_t hdr,
                              in fabric_metadata_t meta,
                              in ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md) {

    Checksum() ipv4_checksum;
    /* P4Runtime name "mac_learn_digest_t", as on v1model (there the digest
     * is named after its struct). */
    @name(".mac_learn_digest_t")
    Digest<mac_learn_digest_t>(MAC_LEARN_DIGEST_TYPE) mac_learn_digest;
    Mirror() cpu_mirror;

    apply {
        /* Routing decremented the TTL: recompute the header checksum (the
         * 20-byte header; routing drops IPv4 with options). */
        if (meta.ipv4_update) {
            hdr.ipv4.hdr_checksum = ipv4_checksum.update({
                hdr.ipv4.version,
                hdr.ipv4.ihl,
                hdr.ipv4.dscp,
                hdr.ipv4.ecn,
                hdr.ipv4.total_len,
                hdr.ipv4.identification,
                hdr.ipv4.flags,
                hdr.ipv4.frag_offset,
                hdr.ipv4.ttl,
                hdr.ipv4.protocol,
                hdr.ipv4.src_addr,
                hdr.ipv4.dst_addr });
        }
        if (ig_dprsr_md.digest_type == MAC_LEARN_DIGEST_TYPE) {
            mac_learn_digest.pack({meta.lkp.vlan_id,
                                   meta.lkp.eth_src,
                                   meta.ingress_port,
                                   meta.src_lag_id});
        }
        if (ig_dprsr_md.mirror_type == CPU_MIRROR_TYPE) {
            cpu_mirror.emit<cpu_mirror_h>(meta.mirror_session, hdr.cpu_mirror);
        }
        packet.emit(hdr.bridged_kind);
        packet.emit(hdr.bridged_mpls);
        packet.emit(hdr.bridged);
        FABRIC_EMIT_FRAME(packet, hdr);
    }
}

parser FabricEgressParser(packet_in packet,
                          out headers_t hdr,
                          out fabric_metadata_t meta,
                          out egress_intrinsic_metadata_t eg_intr_md) {

    FabricFrameParser() frame_parser;

    state start {
        packet.extract(eg_intr_md);
        transition select(packet.lookahead<bit<8>>()) {
            EGRESS_MD_CPU_MIRROR: parse_cpu_mirror;
            default: parse_bridged;
        }
    }

    /* A punt or copy: the frame goes to the CPU byte for byte. */
    state parse_cpu_mirror {
        packet.extract(hdr.cpu_mirror);
        transition accept;
    }

    state parse_bridged {
        packet.extract(hdr.bridged_kind);
        packet.extract(hdr.bridged_mpls);
        packet.extract(hdr.bridged);
        frame_parser.apply(packet, hdr, meta);
        transition accept;
    }
}

control FabricEgressDeparser(packet_out packet,
                             inout headers_t hdr,
                             in fabric_metadata_t meta,
                             in egress_intrinsic_metadata_for_deparser_t eg_dprsr_md) {
    apply {
        FABRIC_EMIT_FRAME(packet, hdr);
    }
}

#endif /* _FABRIC_TNA_PARSER_P4_ */
