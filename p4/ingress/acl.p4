/*
 * Ingress ACL and punt, in two controls.
 *
 * AclLookup (instance "acl"), right after port classification, on the
 * lookup fields captured before routing rewrites anything (meta.lkp), so
 * it sees the frame as received:
 *
 *   punt(reason)        to the CPU only (also for frames the VLAN check or
 *                       the fabric-port check dropped: LACP, discovery)
 *   copy_to_cpu(reason) to the CPU and forwarded as usual (only frames that
 *                       were admitted on their VLAN)
 *   drop()              dropped
 *   permit()            no change (overrides lower-priority entries)
 *
 * Not applied to frames from the controller (no loops), frames that came
 * encapsulated from the fabric (the ingress leaf already ran the ACL), or
 * frames from unconfigured ports.
 *
 * AclVerdict (instance "acl_verdict"; its meter keeps the P4Runtime name
 * FabricIngress.acl.punt_meter), last in ingress, acts on the verdict:
 * a drop or punt sets meta.deny (forwarding has run; the glue drops the
 * frame), and routing's punts (TTL_EXPIRED, GLEAN, FOR_ROUTER) are taken
 * when the ACL did not punt, copy or drop the frame itself. Every frame
 * to the CPU passes punt_meter, indexed by the punt reason; red -> the
 * glue sends no copy (the original frame is still forwarded or dropped as
 * decided). Split in two so that on Tofino the lookup and learning run in
 * the first stages, beside forwarding rather than after it.
 */
#ifndef _FABRIC_INGRESS_ACL_P4_
#define _FABRIC_INGRESS_ACL_P4_

control AclLookup(inout headers_t hdr, inout fabric_metadata_t meta) {

    action punt(punt_reason_t reason) {
        meta.acl_verdict = ACL_PUNT;
        meta.acl_reason = reason;
    }

    action copy_to_cpu(punt_reason_t reason) {
        meta.acl_verdict = ACL_COPY;
        meta.acl_reason = reason;
    }

    action drop() {
        meta.acl_verdict = ACL_DROP;
    }

    action permit() {
        meta.acl_verdict = ACL_PERMIT;
    }

    table acl {
        key = {
            meta.ingress_port     : ternary @name("ingress_port");
            meta.lkp.eth_src      : ternary @name("eth_src");
            meta.lkp.eth_dst      : ternary @name("eth_dst");
            meta.lkp.eth_type     : ternary @name("eth_type");
            meta.lkp.vlan_id      : ternary @name("vlan_id");
            meta.lkp.ip_proto     : ternary @name("ip_proto");
            meta.lkp.ipv4_src     : ternary @name("ipv4_src");
            meta.lkp.ipv4_dst     : ternary @name("ipv4_dst");
            meta.lkp.ipv6_src     : ternary @name("ipv6_src");
            meta.lkp.ipv6_dst     : ternary @name("ipv6_dst");
            meta.lkp.l4_src_port  : ternary @name("l4_src_port");
            meta.lkp.l4_dst_port  : ternary @name("l4_dst_port");
            meta.lkp.icmp_type    : ternary @name("icmp_type");
        }
        actions = {
            punt;
            copy_to_cpu;
            drop;
            permit;
        }
        const default_action = permit();
        size = ACL_TABLE_SIZE;
    }

    apply {
        /* Not on frames from the controller, from unconfigured ports or
         * encapsulated from the fabric (meta.from_fabric, spelled out from
         * what it is made of so that the lookup need not wait for it). */
        bool encapsulated = meta.port_type == PORT_TYPE_FABRIC
                && hdr.mpls.isValid() && hdr.mpls.bos == 1;
        if (!meta.from_cpu && meta.port_type != PORT_TYPE_NONE && !encapsulated) {
            acl.apply();
        }
    }
}

control AclVerdict(inout headers_t hdr, inout fabric_metadata_t meta) {

    @name(".FabricIngress.acl.punt_meter")
    FABRIC_PUNT_METER(punt_meter);

    apply {
        if (!meta.from_cpu) {
            if (meta.acl_verdict == ACL_PUNT) {
                meta.to_cpu = true;
                meta.punt_reason = meta.acl_reason;
                meta.deny = true;
            } else if (meta.acl_verdict == ACL_DROP) {
                meta.deny = true;
            } else if (meta.acl_verdict == ACL_COPY && meta.vlan_ok) {
                meta.to_cpu = true;
                meta.punt_reason = meta.acl_reason;
            } else if (meta.punt_req != 0) {
                meta.to_cpu = true;
                meta.punt_reason = meta.punt_req;
            }
            if (meta.to_cpu) {
                /* Red: the architecture glue sends no copy (checked there,
                 * not by clearing to_cpu here: one stage less on Tofino). */
                FABRIC_METER_EXECUTE(punt_meter, meta.punt_reason, meta.punt_color);
            }
        }
    }
}

#endif
