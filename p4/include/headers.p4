/*
 * p4fabric pipeline: packet headers.
 *
 * Frames on a fabric link (switch to switch):
 *   outer_eth (type 0x8847) | mpls (bos=1) | ethernet (type 0x8100) | vlan |
 *   original payload (ARP / IPv4 / IPv6 ...)
 * Frames on an edge port: ethernet | [vlan] | payload.
 * The inner Ethernet/VLAN of a fabric frame and the only Ethernet/VLAN of
 * an edge frame are the same header instances (hdr.ethernet, hdr.vlan), so
 * every stage works on them whatever side the frame came from.
 */
#ifndef _FABRIC_HEADERS_P4_
#define _FABRIC_HEADERS_P4_

#include "constants.p4"

/* Controller packet I/O: packet_in is 3 bytes, packet_out 4 bytes on the
 * CPU port. Every port field ends on a byte boundary: Tofino moves them in
 * whole bytes. */

@controller_header("packet_in")
header packet_in_header_t {
    bit<7>        _pad;
    port_t        ingress_port;   /* physical port the frame came in on   */
    punt_reason_t punt_reason;
}

@controller_header("packet_out")
header packet_out_header_t {
    bit<7>  _pad0;
    port_t  egress_port;    /* do_forwarding = 0: send straight out here  */
    bit<6>  _pad1;
    bit<1>  do_forwarding;  /* 1: run the pipeline as if from ingress_port */
    port_t  ingress_port;
}

header ethernet_t {
    mac_addr_t dst_addr;
    mac_addr_t src_addr;
    bit<16>    ether_type;
}

header vlan_tag_t {
    bit<3>    pcp;
    bit<1>    dei;
    vlan_id_t vlan_id;
    bit<16>   ether_type;
}

header mpls_t {
    mpls_label_t label;
    bit<3>       tc;
    bit<1>       bos;
    bit<8>       ttl;
}

header ipv4_t {
    bit<4>      version;
    bit<4>      ihl;
    bit<6>      dscp;
    bit<2>      ecn;
    bit<16>     total_len;
    bit<16>     identification;
    bit<3>      flags;
    bit<13>     frag_offset;
    bit<8>      ttl;
    bit<8>      protocol;
    bit<16>     hdr_checksum;
    ipv4_addr_t src_addr;
    ipv4_addr_t dst_addr;
}

header ipv6_t {
    bit<4>      version;
    bit<8>      traffic_class;
    bit<20>     flow_label;
    bit<16>     payload_len;
    bit<8>      next_hdr;
    bit<8>      hop_limit;
    ipv6_addr_t src_addr;
    ipv6_addr_t dst_addr;
}

header tcp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4>  data_offset;
    bit<4>  res;
    bit<8>  flags;
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

header udp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> len;
    bit<16> checksum;
}

/* First 4 bytes of ICMP and ICMPv6; the rest stays payload. */
header icmp_t {
    bit<8>  icmp_type;
    bit<8>  icmp_code;
    bit<16> checksum;
}

struct headers_t {
    packet_out_header_t packet_out;
    packet_in_header_t  packet_in;
    ethernet_t          outer_eth;   /* fabric links only */
    mpls_t              mpls;        /* fabric links only */
    ethernet_t          ethernet;
    vlan_tag_t          vlan;
    ipv4_t              ipv4;
    ipv6_t              ipv6;
    tcp_t               tcp;
    udp_t               udp;
    icmp_t              icmp;
    FABRIC_ARCH_HEADERS  /* arch_*.p4: TNA bridged metadata, CPU mirror */
}
/* MAC learning digest (P4Info digest "mac_learn_digest_t"). */
struct mac_learn_digest_t {
    vlan_id_t  vlan_id;
    mac_addr_t eth_src;
    port_t     ingress_port;
    lag_id_t   lag_id;
}

#endif /* _FABRIC_HEADERS_P4_ */
