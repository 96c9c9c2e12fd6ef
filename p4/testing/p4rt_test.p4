/*
 * A small program for testing the P4Runtime client itself on bmv2: one
 * table of each match kind, an action selector, a multicast flood, a
 * learning digest on a table with idle timeout, and packet I/O. The fabric
 * pipeline is p4/fabric.p4; this one stays small so client tests do not
 * depend on fabric behaviour.
 */
#include <core.p4>
#include <v1model.p4>

const bit<9> CPU_PORT = 255;
const bit<16> ETH_IPV4 = 0x0800;

@controller_header("packet_in")
header packet_in_t {
    bit<9> ingress_port;
    bit<7> _pad;
}

@controller_header("packet_out")
header packet_out_t {
    bit<9> egress_port;
    bit<7> _pad;
}

header ethernet_t {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  dscp_ecn;
    bit<16> total_len;
    bit<16> identification;
    bit<16> flags_frag;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdr_checksum;
    bit<32> src_addr;
    bit<32> dst_addr;
}

struct learn_digest_t {
    bit<48> src_addr;
    bit<9>  ingress_port;
}

struct headers_t {
    packet_out_t packet_out;
    packet_in_t  packet_in;
    ethernet_t   ethernet;
    ipv4_t       ipv4;
}

struct metadata_t {
    bit<16> nexthop_id;
}

parser TestParser(packet_in pkt, out headers_t hdr, inout metadata_t meta,
                  inout standard_metadata_t std) {
    state start {
        transition select(std.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }
    state parse_packet_out {
        pkt.extract(hdr.packet_out);
        transition parse_ethernet;
    }
    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETH_IPV4: parse_ipv4;
            default: accept;
        }
    }
    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        transition accept;
    }
}

control TestVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control TestIngress(inout headers_t hdr, inout metadata_t meta,
                    inout standard_metadata_t std) {
    action drop() {
        mark_to_drop(std);
    }
    action nop() { }

    // Exact match with idle timeout: a source MAC miss asks the controller
    // to learn it.
    action learn() {
        digest<learn_digest_t>(1, { hdr.ethernet.src_addr, std.ingress_port });
    }
    table smac {
        key = { hdr.ethernet.src_addr : exact; }
        actions = { nop; learn; }
        default_action = learn();
        support_timeout = true;
        size = 1024;
    }

    action forward(bit<9> port) {
        std.egress_spec = port;
    }
    action flood(bit<16> group) {
        std.mcast_grp = group;
    }
    table dmac {
        key = { hdr.ethernet.dst_addr : exact; }
        actions = { forward; flood; drop; }
        default_action = drop();
        size = 1024;
    }

    action punt() {
        std.egress_spec = CPU_PORT;
    }
    table acl {
        key = {
            hdr.ethernet.ether_type : ternary;
            hdr.ethernet.dst_addr   : ternary;
            hdr.ipv4.dst_addr       : ternary;
        }
        actions = { punt; drop; nop; }
        default_action = nop();
        size = 256;
    }

    action set_nexthop(bit<16> id) {
        meta.nexthop_id = id;
    }
    table ipv4_lpm {
        key = { hdr.ipv4.dst_addr : lpm; }
        actions = { set_nexthop; drop; }
        default_action = drop();
        size = 1024;
    }

    action route(bit<9> port, bit<48> dmac, bit<48> smac) {
        std.egress_spec = port;
        hdr.ethernet.dst_addr = dmac;
        hdr.ethernet.src_addr = smac;
        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
    }
    action_selector(HashAlgorithm.crc16, 64, 10) ecmp;
    table nexthop {
        key = {
            meta.nexthop_id   : exact;
            hdr.ipv4.src_addr : selector;
            hdr.ipv4.dst_addr : selector;
            hdr.ipv4.protocol : selector;
        }
        actions = { route; }
        implementation = ecmp;
        size = 64;
    }

    apply {
        if (hdr.packet_out.isValid()) {
            std.egress_spec = hdr.packet_out.egress_port;
            hdr.packet_out.setInvalid();
            exit;
        }
        smac.apply();
        switch (acl.apply().action_run) {
            punt: { exit; }
            drop: { exit; }
            default: { }
        }
        if (hdr.ipv4.isValid() && ipv4_lpm.apply().hit) {
            nexthop.apply();
        } else {
            dmac.apply();
        }
    }
}

control TestEgress(inout headers_t hdr, inout metadata_t meta,
                   inout standard_metadata_t std) {
    apply {
        // A flooded copy never goes back out of the port it came in on.
        if (std.mcast_grp != 0 && std.egress_port == std.ingress_port) {
            mark_to_drop(std);
        }
        if (std.egress_port == CPU_PORT) {
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = std.ingress_port;
            hdr.packet_in._pad = 0;
        }
    }
}

control TestComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp_ecn, hdr.ipv4.total_len,
              hdr.ipv4.identification, hdr.ipv4.flags_frag, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum, HashAlgorithm.csum16);
    }
}

control TestDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.ipv4);
    }
}

V1Switch(TestParser(), TestVerifyChecksum(), TestIngress(), TestEgress(),
         TestComputeChecksum(), TestDeparser()) main;
