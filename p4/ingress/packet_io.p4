/*
 * Ingress packet I/O: the packet_out header from the controller.
 *
 *   do_forwarding = 0: the frame goes straight out of egress_port; no
 *                      lookups, no egress processing (the controller built
 *                      the exact bytes).
 *   do_forwarding = 1: the frame runs through the whole pipeline as if it
 *                      had arrived on packet_out.ingress_port (which may be
 *                      CPU_PORT); it is never learned, never ACL-matched and
 *                      never punted back to the controller.
 */
#ifndef _FABRIC_INGRESS_PACKET_IO_P4_
#define _FABRIC_INGRESS_PACKET_IO_P4_

control PacketIoIngress(inout headers_t hdr, inout fabric_metadata_t meta) {
    apply {
        if (hdr.packet_out.isValid()) {
            meta.from_cpu = true;
            if (hdr.packet_out.do_forwarding == 0) {
                meta.bypass = true;
                meta.egress_port = hdr.packet_out.egress_port;
                meta.fwd_type = FWD_PORT;
            } else {
                meta.ingress_port = hdr.packet_out.ingress_port;
            }
            hdr.packet_out.setInvalid();
        }
    }
}

#endif
