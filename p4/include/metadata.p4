/*
 * p4fabric pipeline: our own metadata.
 *
 * The controls in ingress/ and egress/ only see headers_t and
 * fabric_metadata_t; the architecture glue in fabric.p4 copies what they
 * need from v1model's standard_metadata in and their decisions back out
 * (egress port, multicast group, drop, clone to CPU, digest), so a TNA
 * variant can reuse the controls with its own glue.
 */
#ifndef _FABRIC_METADATA_P4_
#define _FABRIC_METADATA_P4_

#include "constants.p4"

/* Fields the ACL, hashes and learning look at, captured by port_classify
 * before routing rewrites anything. For a frame from the fabric they are
 * the inner frame's fields. Zero where the header is absent. */
struct lookup_metadata_t {
    mac_addr_t  eth_src;
    mac_addr_t  eth_dst;
    bit<16>     eth_type;     /* after any VLAN tag */
    vlan_id_t   vlan_id;      /* classified ingress VLAN (0 if none) */
    bit<8>      ip_proto;     /* IPv4 protocol / IPv6 next header */
    ipv4_addr_t ipv4_src;
    ipv4_addr_t ipv4_dst;
    ipv6_addr_t ipv6_src;
    ipv6_addr_t ipv6_dst;
    bit<16>     l4_src_port;  /* TCP / UDP */
    bit<16>     l4_dst_port;
    bit<8>      icmp_type;    /* ICMP / ICMPv6 */
}

struct fabric_metadata_t {
    /* Preserved on the I2E clone to the CPU (field list CPU_CLONE_FIELD_LIST). */
    @field_list(1)
    port_t        ingress_port;   /* logical ingress port (packet_out may set it) */
    @field_list(1)
    punt_reason_t punt_reason;

    /* packet I/O */
    bool          bypass;         /* packet_out with do_forwarding = 0 */
    bool          from_cpu;       /* packet_out, either mode */

    /* port classification */
    port_type_t   port_type;
    lag_id_t      src_lag_id;     /* LAG of the ingress port, or from a flood label */
    bit<1>        vlan_valid;     /* the frame arrived with an 802.1Q tag */
    vlan_id_t     in_vlan_id;     /* its VLAN id (0 if untagged) */
    bool          vlan_ok;        /* admitted on an edge/CPU port */
    vlan_id_t     vlan_id;        /* current VLAN (routing may change it) */
    vrf_id_t      vrf_id;

    /* forwarding */
    fwd_type_t    fwd_type;
    port_t        egress_port;    /* ingress: chosen port; egress: actual port */
    group_id_t    mcast_grp;
    lag_id_t      dst_lag_id;
    nexthop_id_t  nexthop_id;
    bool          use_nexthop;    /* set_nexthop ran: apply nexthops */
    bool          routed;         /* router MAC hit */
    bool          route_fwd;      /* a route_direct action ran */
    bool          ipv4_update;    /* recompute the IPv4 checksum */
    bool          drop;

    /* fabric */
    bool          from_fabric;    /* MPLS frame on a fabric port */
    bool          fabric_unicast; /* own label popped: never back to the fabric */
    mpls_label_t  mpls_label;     /* label to push / forward on */
    bit<8>        mpls_ttl;       /* TTL of the MPLS header on the way out */
    bool          outer_set;      /* to_fabric_port chose the outer MACs */
    mac_addr_t    outer_smac;
    mac_addr_t    outer_dmac;

    /* ACL, punt, learning */
    acl_verdict_t acl_verdict;
    punt_reason_t acl_reason;
    punt_reason_t punt_req;       /* punt requested by routing (0: none) */
    bool          to_cpu;         /* clone to the CPU */
    bit<2>        punt_color;
    bool          learn;          /* send mac_learn_digest_t */
    bool          source_locked;  /* locked_sources hit (used on a src_mac miss) */
    bool          deny;           /* dropped after forwarding decided: ACL drop
                                     or punt, locked source, expired TTL,
                                     route miss. Apart from meta.drop so that
                                     no forwarding table waits for it */
    port_t        learn_port;     /* src_mac key: ingress port, 0 on a LAG */

    /* egress */
    lag_id_t      egress_lag_id;
    bool          egress_fabric;  /* egress port is a fabric port */
    mac_addr_t    port_smac;
    mac_addr_t    port_dmac;

    lookup_metadata_t lkp;

    FABRIC_ARCH_METADATA  /* arch_*.p4: what only an architecture's glue uses */
}

#endif /* _FABRIC_METADATA_P4_ */
