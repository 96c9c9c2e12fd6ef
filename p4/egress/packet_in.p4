/*
 * Egress to the CPU port: prepend packet_in.
 *
 * Frames reach the CPU port only as I2E clones (session
 * CPU_CLONE_SESSION_ID), i.e. the frame exactly as it was received, with
 * ingress_port and punt_reason preserved from ingress.
 */
#ifndef _FABRIC_EGRESS_PACKET_IN_P4_
#define _FABRIC_EGRESS_PACKET_IN_P4_

control PacketInEgress(inout headers_t hdr, inout fabric_metadata_t meta) {
    apply {
        hdr.packet_in.setValid();
        hdr.packet_in.ingress_port = meta.ingress_port;
        hdr.packet_in.punt_reason = meta.punt_reason;
        hdr.packet_in._pad = 0;
    }
}

#endif
