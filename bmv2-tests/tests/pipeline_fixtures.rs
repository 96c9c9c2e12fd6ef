//! The pipeline packet tests' fixtures and entity builders encode against
//! the contract P4Info (`compile::contract`), without bmv2: a wrong table,
//! field, action, parameter or width fails here before any switch starts.

use bmv2_tests::pipeline::*;
use p4fabric::compile::contract::fabric_p4info;
use p4fabric::p4rt::{Entity, P4InfoRegistry};

/// One of every entity shape the packet tests write beyond the fixtures.
fn extra_entities() -> Vec<Entity> {
    let reason = |r: u8| act(A_PUNT, &[(P_REASON, r.into())]);
    vec![
        exact(T_PORTS, &[(F_INGRESS_PORT, 8)], act(A_PORT_DROP, &[])),
        exact(
            T_VLANS,
            &[(F_INGRESS_PORT, 3), (F_VLAN_VALID, 1), (F_VLAN_ID, 20)],
            act(A_PORT_DROP, &[]),
        ),
        exact(
            T_VLAN_OUT,
            &[(F_EGRESS_PORT, 2), (F_VLAN_ID, 10)],
            act(A_VLAN_OUT_DROP, &[]),
        ),
        acl(
            200,
            &[(F_IPV4_DST, v4(IP_H2), 0xffff_ffff)],
            act(A_DROP_ACL, &[]),
        ),
        acl(
            300,
            &[(F_IPV4_SRC, v4(IP_H1), 0xffff_ffff)],
            act(A_ACL_PERMIT, &[]),
        ),
        acl(250, &[(F_L4_DST_PORT, 2000, 0xffff)], reason(6)),
        acl(
            250,
            &[(F_L4_SRC_PORT, 1000, 0xffff)],
            act(A_COPY_TO_CPU, &[(P_REASON, 6)]),
        ),
        punt_meter(reason::ARP, 5, 5),
        learn_digest_config(),
        src_mac(10, H1, 1, 0, 2_000_000_000),
        src_mac(10, H4, 0, LEAF_LAG, 0),
        router_mac(10, GW),
        route(T_IPV4, 0, v4(IP_H3), 32, route_direct(H3, GW, 20)),
        route(T_IPV4, 0, v4([10, 0, 20, 0]), 24, act(A_PUNT_GLEAN, &[])),
        route(T_IPV4, 0, v4(IP_GW10), 32, act(A_PUNT_FOR_ROUTER, &[])),
        route(T_IPV4, 1, v4([10, 99, 0, 0]), 16, act(A_ROUTE_DROP, &[])),
        route(
            T_IPV4,
            0,
            v4([198, 51, 100, 0]),
            24,
            act(A_SET_NEXTHOP, &[(P_NEXTHOP_ID, 1)]),
        ),
        route(
            T_IPV6,
            0,
            v6(bmv2_tests::packet::ip6("2001:db8:20::")),
            64,
            act(A_PUNT_GLEAN, &[]),
        ),
        member(P_ECMP, 1, route_direct(H2, GW, 10)),
        group(P_ECMP, 1, &[(1, None), (2, None)]),
        exact_group(T_NEXTHOPS, &[(F_NEXTHOP_ID, 1)], 1),
        fdb(10, H2, to_port(2)),
        fdb(10, H4, to_lag(LEAF_LAG)),
        fdb(10, H9, to_leaf(LABEL_L2)),
        fdb(10, H3, act(A_FDB_DROP, &[])),
        member(P_LAG, 3, act(A_LAG_TO_LEAF, &[(P_LABEL, LABEL_L2.into())])),
        mpls_in(LABEL_L1, LABEL_MASK, 30, act(A_MPLS_DROP, &[])),
        mcast(10, &[1, 2, 3, 4, 5, 6, 7]),
    ]
}

#[test]
fn fixtures_and_builders_encode_against_the_contract() {
    let reg = P4InfoRegistry::new(fabric_p4info()).expect("the contract P4Info");
    let mut all = leaf_fixture().concat();
    all.extend(spine_fixture().concat());
    all.extend(extra_entities());
    for e in &all {
        if let Err(err) = reg.encode_entity(e, false) {
            panic!("{}: {err}", e.key());
        }
    }
    for fields in [
        vec![("egress_port", 2u128)],
        vec![("do_forwarding", 1), ("ingress_port", u128::from(CPU_PORT))],
    ] {
        reg.packet_out(vec![0; 60], &fields)
            .expect("packet_out fields");
    }
    let pin = reg.packet_metadata("packet_in").expect("packet_in header");
    for f in ["ingress_port", "punt_reason"] {
        assert!(
            pin.fields.iter().any(|x| x.name == f),
            "packet_in has no {f}"
        );
    }
    let digest = reg.digest(D_MAC_LEARN).expect("learning digest");
    let names: Vec<&str> = digest.fields.iter().map(|f| f.name).collect();
    assert_eq!(names, ["vlan_id", "eth_src", "ingress_port", "lag_id"]);
}
