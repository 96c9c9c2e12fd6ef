/*
 * p4fabric pipeline: checksums (v1model).
 *
 * Incoming checksums are not verified (a switch forwards what it gets).
 * The IPv4 header checksum is recomputed only for packets this switch
 * routed (TTL decremented). Routing drops IPv4 packets with options
 * (ihl != 5), so the 20-byte header below is the whole header.
 */
#ifndef _FABRIC_CHECKSUM_P4_
#define _FABRIC_CHECKSUM_P4_

#include "headers.p4"
#include "metadata.p4"

control FabricVerifyChecksum(inout headers_t hdr, inout fabric_metadata_t meta) {
    apply { }
}

control FabricComputeChecksum(inout headers_t hdr, inout fabric_metadata_t meta) {
    apply {
        update_checksum(
            hdr.ipv4.isValid() && meta.ipv4_update,
            { hdr.ipv4.version,
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
              hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum,
            HashAlgorithm.csum16);
    }
}

#endif /* _FABRIC_CHECKSUM_P4_ */
