//! Fabric pipeline on bmv2: IPv4 and IPv6 routing with MAC rewrite, TTL /
//! hop limit, longest-prefix match, VRFs, routing punts and ECMP
//! (docs/pipeline.md test plan cases 27-36).

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::{Flow, Punted, Rig};

const H1_6: &str = "2001:db8:10::11";
const H3_6: &str = "2001:db8:20::13";

/// The routing entries every case shares: gateway MAC on VLANs 10 and 20,
/// the hosts in the fdb.
fn routing_base() -> Vec<p4fabric::p4rt::Entity> {
    vec![
        router_mac(10, GW),
        router_mac(20, GW),
        fdb(20, H3, to_port(3)),
        fdb(10, H1, to_port(1)),
        fdb(10, H2, to_port(2)),
        fdb(10, H9, to_leaf(LABEL_L2)),
        route(T_IPV4, 0, v4(IP_H3), 32, route_direct(H3, GW, 20)),
        route(T_IPV6, 0, v6(ip6(H3_6)), 128, route_direct(H3, GW, 20)),
    ]
}

/// H1 (port 1, VLAN 10) to `dip` through the gateway.
fn from_h1(dip: [u8; 4], ttl: u8) -> Vec<u8> {
    udp4_frame(GW, H1, IP_H1, dip, 1000, 2000, ttl)
}

async fn routing_cases(rig: &mut Rig) -> Result<()> {
    rig.insert(&routing_base()).await?;

    // 27. IPv4 route_direct: MACs rewritten, VLAN 20 (tagged on port 3),
    // TTL 63, header checksum recomputed; UDP unchanged.
    let f = from_h1(IP_H3, 64);
    let routed = push_vlan(&udp4_frame(H3, GW, IP_H1, IP_H3, 1000, 2000, 63), 20);
    rig.check("27 IPv4 route_direct", 1, &f, &[(3, routed.clone())], &[])
        .await?;

    // 28. IPv6 route_direct: hop limit 63.
    let f6 = udp6_frame(GW, H1, ip6(H1_6), ip6(H3_6), 1000, 2000, 64);
    let routed6 = push_vlan(
        &udp6_frame(H3, GW, ip6(H1_6), ip6(H3_6), 1000, 2000, 63),
        20,
    );
    rig.check("28 IPv6 route_direct", 1, &f6, &[(3, routed6)], &[])
        .await?;

    // 29. Longest prefix: the /32 wins over the /24 glean; another host of
    // the /24 is gleaned (the original frame to the CPU, reason 7).
    rig.insert(&[route(
        T_IPV4,
        0,
        v4([10, 0, 20, 0]),
        24,
        act(A_PUNT_GLEAN, &[]),
    )])
    .await?;
    rig.check("29 /32 over /24", 1, &f, &[(3, routed.clone())], &[])
        .await?;
    let to14 = from_h1([10, 0, 20, 14], 64);
    rig.check(
        "29b glean",
        1,
        &to14,
        &[],
        &[Punted::new(1, reason::GLEAN, &to14)],
    )
    .await?;
    // IPv6 glean on the /64.
    rig.insert(&[route(
        T_IPV6,
        0,
        v6(ip6("2001:db8:20::")),
        64,
        act(A_PUNT_GLEAN, &[]),
    )])
    .await?;
    let to6_14 = udp6_frame(GW, H1, ip6(H1_6), ip6("2001:db8:20::14"), 1000, 2000, 64);
    rig.check(
        "29c IPv6 glean",
        1,
        &to6_14,
        &[],
        &[Punted::new(1, reason::GLEAN, &to6_14)],
    )
    .await?;

    // 30. punt_for_router: a ping to the gateway address.
    rig.insert(&[route(
        T_IPV4,
        0,
        v4(IP_GW10),
        32,
        act(A_PUNT_FOR_ROUTER, &[]),
    )])
    .await?;
    let ping = icmp4_echo_frame(GW, H1, IP_H1, IP_GW10, 64);
    rig.check(
        "30 for the router",
        1,
        &ping,
        &[],
        &[Punted::new(1, reason::FOR_ROUTER, &ping)],
    )
    .await?;

    // 31. drop() route and route miss.
    rig.insert(&[route(
        T_IPV4,
        0,
        v4([10, 99, 0, 0]),
        16,
        act(A_ROUTE_DROP, &[]),
    )])
    .await?;
    rig.check("31 drop route", 1, &from_h1([10, 99, 1, 1], 64), &[], &[])
        .await?;
    rig.check("31b no route", 1, &from_h1([192, 0, 2, 1], 64), &[], &[])
        .await?;

    // 31b. VRF: VLAN 20 on port 3 in VRF 1 only reaches VRF 1 routes.
    rig.modify(&[vlan_in(3, true, 20, 20, 1)]).await?;
    rig.insert(&[route(T_IPV4, 0, v4(IP_H1), 32, route_direct(H1, GW, 10))])
        .await?;
    let from_h3 = push_vlan(&udp4_frame(GW, H3, IP_H3, IP_H1, 3000, 4000, 64), 20);
    rig.check("31c VRF 1, route only in VRF 0", 3, &from_h3, &[], &[])
        .await?;
    rig.insert(&[route(T_IPV4, 1, v4(IP_H1), 32, route_direct(H1, GW, 10))])
        .await?;
    let to_h1 = udp4_frame(H1, GW, IP_H3, IP_H1, 3000, 4000, 63);
    rig.check("31d VRF 1 route", 3, &from_h3, &[(1, to_h1)], &[])
        .await?;
    rig.modify(&[vlan_in(3, true, 20, 20, 0)]).await?;

    // 32. TTL expiry: TTL 1 / hop limit 1 punted as received (reason 5);
    // TTL 2 forwarded with TTL 1.
    let ttl1 = from_h1(IP_H3, 1);
    rig.check(
        "32 TTL 1",
        1,
        &ttl1,
        &[],
        &[Punted::new(1, reason::TTL_EXPIRED, &ttl1)],
    )
    .await?;
    let hl1 = udp6_frame(GW, H1, ip6(H1_6), ip6(H3_6), 1000, 2000, 1);
    rig.check(
        "32b hop limit 1",
        1,
        &hl1,
        &[],
        &[Punted::new(1, reason::TTL_EXPIRED, &hl1)],
    )
    .await?;
    let ttl2 = from_h1(IP_H3, 2);
    let out2 = push_vlan(&udp4_frame(H3, GW, IP_H1, IP_H3, 1000, 2000, 1), 20);
    rig.check("32c TTL 2", 1, &ttl2, &[(3, out2)], &[]).await?;
    let hl2 = udp6_frame(GW, H1, ip6(H1_6), ip6(H3_6), 1000, 2000, 2);
    let out_hl = push_vlan(&udp6_frame(H3, GW, ip6(H1_6), ip6(H3_6), 1000, 2000, 1), 20);
    rig.check("32d hop limit 2", 1, &hl2, &[(3, out_hl)], &[])
        .await?;

    // 33. Router MAC miss: bridged (flooded in VLAN 10), TTL unchanged.
    let not_gw = udp4_frame([0, 0, 0, 0, 0x99, 0x99], H1, IP_H1, IP_H3, 1000, 2000, 64);
    rig.check(
        "33 router MAC miss",
        1,
        &not_gw,
        &leaf_flood(&not_gw, 10, 1, 0, 64),
        &[],
    )
    .await?;
    // The router MAC of VLAN 10 is not one of VLAN 20.
    let gw_in_20 = push_vlan(&udp4_frame(GW, H2, [10, 0, 20, 12], IP_H3, 1, 2, 64), 20);
    rig.delete(&[router_mac(20, GW)]).await?;
    rig.check(
        "33b router MAC of another VLAN",
        2,
        &gw_in_20,
        &leaf_flood(&pop_vlan(&gw_in_20), 20, 2, 0, 64),
        &[],
    )
    .await?;
    rig.insert(&[router_mac(20, GW)]).await?;

    // Not routable at the router MAC: IPv4 with options is dropped; ARP
    // is dropped too, but the ACL's ARP copy still reaches the controller.
    let mut opts = from_h1(IP_H3, 64);
    opts.splice(34..34, [1u8, 1, 1, 0]); // NOP NOP NOP EOL
    opts[14] = 0x46;
    let total = u16::from_be_bytes([opts[16], opts[17]]) + 4;
    opts[16..18].copy_from_slice(&total.to_be_bytes());
    opts[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&opts[14..38]);
    opts[24..26].copy_from_slice(&c.to_be_bytes());
    rig.check("IPv4 options at the router MAC", 1, &opts, &[], &[])
        .await?;
    let arp_gw = arp_frame(GW, H1, 1, IP_H1, IP_GW10);
    rig.check(
        "ARP at the router MAC",
        1,
        &arp_gw,
        &[],
        &[Punted::new(1, reason::ARP, &arp_gw)],
    )
    .await?;

    // 35. Routed into a remote host: pushed onto the fabric with the
    // remote leaf's label, routed inner frame (TTL 63) tagged VLAN 10.
    rig.insert(&[route(T_IPV4, 0, v4(IP_H9), 32, route_direct(H9, GW, 10))])
        .await?;
    let tcp_in = push_vlan(&tcp4_frame(GW, H3, IP_H3, IP_H9, 5555, 80, 64), 20);
    let inner = tcp4_frame(H9, GW, IP_H3, IP_H9, 5555, 80, 63);
    let alts = vec![
        (6, leaf_fabric_out(6, 10, &inner, LABEL_L2, 64)),
        (7, leaf_fabric_out(7, 10, &inner, LABEL_L2, 64)),
    ];
    rig.spread(
        "35 routed to a remote leaf",
        &[Flow {
            port: 3,
            frame: tcp_in,
            out: alts,
        }],
    )
    .await?;

    // 36. Router on a stick: routed back out of its ingress port.
    rig.insert(&[route(T_IPV4, 0, v4(IP_H2), 32, route_direct(H2, GW, 10))])
        .await?;
    let stick_in = push_vlan(&udp4_frame(GW, H2, [10, 0, 20, 50], IP_H2, 7, 8, 64), 20);
    let stick_out = push_vlan(&udp4_frame(H2, GW, [10, 0, 20, 50], IP_H2, 7, 8, 63), 10);
    rig.check("36 router on a stick", 2, &stick_in, &[(2, stick_out)], &[])
        .await?;
    Ok(())
}

/// Case 34: set_nexthop into an ECMP group of two next hops: 64 flows use both,
/// each flow always the same one.
async fn ecmp_case(rig: &mut Rig) -> Result<()> {
    rig.insert(&[
        router_mac(10, GW),
        fdb(10, H2, to_port(2)),
        fdb(20, H3, to_port(3)),
        member(P_ECMP, 1, route_direct(H2, GW, 10)),
        member(P_ECMP, 2, route_direct(H3, GW, 20)),
    ])
    .await?;
    rig.insert(&[group(P_ECMP, 1, &[(1, None), (2, None)])])
        .await?;
    rig.insert(&[
        exact_group(T_NEXTHOPS, &[(F_NEXTHOP_ID, 1)], 1),
        route(
            T_IPV4,
            0,
            v4([198, 51, 100, 0]),
            24,
            act(A_SET_NEXTHOP, &[(P_NEXTHOP_ID, 1)]),
        ),
    ])
    .await?;
    let dst = [198, 51, 100, 1];
    let flows: Vec<Flow> = (1000..1064u16)
        .map(|sport| Flow {
            port: 1,
            frame: udp4_frame(GW, H1, IP_H1, dst, sport, 53, 64),
            out: vec![
                (
                    2,
                    push_vlan(&udp4_frame(H2, GW, IP_H1, dst, sport, 53, 63), 10),
                ),
                (
                    3,
                    push_vlan(&udp4_frame(H3, GW, IP_H1, dst, sport, 53, 63), 20),
                ),
            ],
        })
        .collect();
    let first = rig.spread("34 ECMP", &flows).await?;
    let again = rig.spread("34 ECMP again", &flows).await?;
    let mut per_port = BTreeMap::new();
    for p in &first {
        *per_port.entry(*p).or_insert(0) += 1;
    }
    println!("ECMP over 2 next hops, 64 flows: {per_port:?}");
    ensure!(
        per_port.len() == 2,
        "34: flows all on one next hop: {per_port:?}"
    );
    ensure!(first == again, "34: a flow changed next hop between runs");

    // A nexthop id without an entry: dropped.
    rig.insert(&[route(
        T_IPV4,
        0,
        v4([198, 51, 101, 0]),
        24,
        act(A_SET_NEXTHOP, &[(P_NEXTHOP_ID, 2)]),
    )])
    .await?;
    rig.check(
        "34b nexthop miss",
        1,
        &udp4_frame(GW, H1, IP_H1, [198, 51, 101, 1], 1, 2, 64),
        &[],
        &[],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_routing() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    routing_cases(&mut rig).await.expect("routing cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecmp_spreads_flows_over_next_hops() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    ecmp_case(&mut rig).await.expect("ECMP case");
}
