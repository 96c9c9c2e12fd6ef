use std::net::{IpAddr, Ipv6Addr};

use super::*;
use crate::protocols::frames::{
    build_eth, icmpv6_checksum, solicited_node, Arp, NdMessage, NdPacket, ARP_REPLY, ARP_REQUEST,
};

const GW: [u8; 6] = [0x02, 0x00, 0x00, 0xfa, 0xb0, 0x01];
const HOST: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x05];

fn arp_request(sender: &str, target: &str, tag: Option<u16>) -> Vec<u8> {
    let arp = Arp {
        op: ARP_REQUEST,
        sender_mac: MacAddr(HOST),
        sender_ip: sender.parse().unwrap(),
        target_mac: MacAddr::default(),
        target_ip: target.parse().unwrap(),
    };
    build_eth(
        MacAddr::BROADCAST,
        MacAddr(HOST),
        tag,
        ETH_ARP,
        &arp.encode(),
    )
}

fn arp_reply_from(mac: MacAddr, ip: &str, tag: Option<u16>) -> Vec<u8> {
    let arp = Arp {
        op: ARP_REPLY,
        sender_mac: mac,
        sender_ip: ip.parse().unwrap(),
        target_mac: MacAddr(GW),
        target_ip: "10.0.10.1".parse().unwrap(),
    };
    build_eth(MacAddr(GW), mac, tag, ETH_ARP, &arp.encode())
}

fn golden_arp_reply(tag: Option<[u8; 4]>) -> Vec<u8> {
    let mut want = Vec::new();
    want.extend(HOST);
    want.extend(GW);
    if let Some(t) = tag {
        want.extend(t);
    }
    want.extend([0x08, 0x06]);
    want.extend([0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]);
    want.extend(GW);
    want.extend([10, 0, 10, 1]);
    want.extend(HOST);
    want.extend([10, 0, 10, 5]);
    want.resize(60, 0);
    want
}

#[test]
fn arp_request_for_gateway_gets_reply_untagged() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let got = p.on_frame(
        "leaf1",
        3,
        punt::ARP,
        &arp_request("10.0.10.5", "10.0.10.1", None),
        t0,
    );
    let out = sent(&got);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].switch.as_str(),
            out[0].egress_port,
            out[0].do_forwarding
        ),
        ("leaf1", 3, false)
    );
    assert_eq!(out[0].frame, golden_arp_reply(None));
    // The sender is learned with its address.
    assert!(got.contains(&Action::HostsChanged));
    let hosts = p.learned_hosts();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].mac, MacAddr(HOST));
    assert_eq!(hosts[0].vlan, 10);
    assert_eq!(hosts[0].ips, vec!["10.0.10.5".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        hosts[0].attachment,
        Attachment::Port("leaf1/3".parse().unwrap())
    );
    assert_eq!(hosts[0].leaf, "leaf1");
}

#[test]
fn arp_request_for_gateway_gets_reply_tagged() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let got = p.on_frame(
        "leaf2",
        3,
        punt::ARP,
        &arp_request("10.0.10.5", "10.0.10.1", Some(10)),
        t0,
    );
    let out = sent(&got);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].frame,
        golden_arp_reply(Some([0x81, 0x00, 0x00, 0x0a]))
    );
}

#[test]
fn arp_not_for_us_or_from_wrong_vlan_is_not_answered() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    // For another host: learned, not answered.
    let got = p.on_frame(
        "leaf1",
        3,
        punt::ARP,
        &arp_request("10.0.10.5", "10.0.10.7", None),
        t0,
    );
    assert!(sent(&got).is_empty());
    assert!(got.contains(&Action::HostsChanged));
    // Tagged on an access port: dropped by classification.
    let got = p.on_frame(
        "leaf1",
        3,
        punt::ARP,
        &arp_request("10.0.10.6", "10.0.10.1", Some(10)),
        t0,
    );
    assert!(got.is_empty());
    // Duplicate address probe (sender 0.0.0.0): neither answered nor learned.
    let got = p.on_frame(
        "leaf2",
        3,
        punt::ARP,
        &arp_request("0.0.0.0", "10.0.10.1", Some(10)),
        t0,
    );
    assert!(got.is_empty());
    // Outside the VLAN's subnet: the binding is not learned.
    let got = p.on_frame(
        "leaf2",
        3,
        punt::ARP,
        &arp_request("192.0.2.1", "10.0.10.1", Some(10)),
        t0,
    );
    assert!(!got.contains(&Action::HostsChanged));
}

fn ns(src: &str, target: &str) -> Vec<u8> {
    let target: Ipv6Addr = target.parse().unwrap();
    let ns = NdPacket {
        src: src.parse().unwrap(),
        dst: solicited_node(&target),
        msg: NdMessage::Solicit {
            target,
            source_mac: Some(MacAddr(HOST)),
        },
    };
    build_eth(
        frames::ipv6_multicast_mac(&ns.dst),
        MacAddr(HOST),
        None,
        ETH_IPV6,
        &ns.encode(),
    )
}

#[test]
fn ns_for_gateway_gets_router_na() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let got = p.on_frame(
        "leaf1",
        3,
        punt::ND,
        &ns("2001:db8:10::5", "2001:db8:10::1"),
        t0,
    );
    let out = sent(&got);
    assert_eq!(out.len(), 1);
    let f = &out[0].frame;
    // Golden: Ethernet, IPv6 header, NA with R|S|O, target, TLLA option.
    // The checksum 0x5945 was computed independently of our code.
    let mut want = Vec::new();
    want.extend(HOST);
    want.extend(GW);
    want.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255]);
    let gw_ip: Ipv6Addr = "2001:db8:10::1".parse().unwrap();
    let host_ip: Ipv6Addr = "2001:db8:10::5".parse().unwrap();
    want.extend(gw_ip.octets());
    want.extend(host_ip.octets());
    want.extend([136, 0, 0x59, 0x45, 0xe0, 0, 0, 0]);
    want.extend(gw_ip.octets());
    want.extend([2, 1]);
    want.extend(GW);
    assert_eq!(f, &want);
    let e = parse_eth(f).unwrap();
    assert_eq!(icmpv6_checksum(&gw_ip, &host_ip, &e.payload[40..]), 0);
    let na = NdPacket::parse(e.payload).unwrap();
    assert_eq!(
        na.msg,
        NdMessage::Advert {
            target: gw_ip,
            router: true,
            solicited: true,
            override_: true,
            target_mac: Some(MacAddr(GW)),
        }
    );
    // The solicitor's address is learned.
    assert_eq!(p.learned_hosts()[0].ips, vec![IpAddr::V6(host_ip)]);
}

#[test]
fn ns_for_gateway_link_local_and_dad() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let ll = frames::link_local(MacAddr(GW)).to_string();
    let got = p.on_frame("leaf1", 3, punt::ND, &ns("2001:db8:10::5", &ll), t0);
    assert_eq!(sent(&got).len(), 1);
    // DAD for the gateway address: defended to all nodes, not solicited.
    let got = p.on_frame("leaf1", 3, punt::ND, &ns("::", "2001:db8:10::1"), t0);
    let e = parse_eth(&sent(&got)[0].frame).unwrap().payload.to_vec();
    let na = NdPacket::parse(&e).unwrap();
    assert_eq!(na.dst, "ff02::1".parse::<Ipv6Addr>().unwrap());
    assert!(matches!(
        na.msg,
        NdMessage::Advert {
            solicited: false,
            ..
        }
    ));
    // NS for another address: learned, not answered.
    let got = p.on_frame(
        "leaf1",
        3,
        punt::ND,
        &ns("2001:db8:10::5", "2001:db8:10::9"),
        t0,
    );
    assert!(sent(&got).is_empty());
}

/// ARP requests the engine sent for `ip`, as (switch, port, tag).
fn requests_for(actions: &[Action], ip: &str) -> Vec<(String, u32, Option<u16>)> {
    sent_with_type(actions, ETH_ARP)
        .into_iter()
        .filter_map(|p| {
            let e = parse_eth(&p.frame)?;
            let arp = Arp::parse(e.payload)?;
            (arp.op == ARP_REQUEST
                && arp.target_ip.to_string() == ip
                && arp.sender_mac == MacAddr(GW))
            .then(|| (p.switch.clone(), p.egress_port, e.vlan))
        })
        .collect()
}

#[test]
fn next_hops_resolve_with_backoff_and_track_changes() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    assert_eq!(p.uninstallable_routes(), ["r1", "r6"]);
    // Retries at 0, 1, 3, 7, 15 s (1 s doubling) over 20 s.
    let mut at = Vec::new();
    for tenth in 0..200 {
        let now = t0 + secs(f64::from(tenth) / 10.0);
        let reqs = requests_for(&p.on_tick(now), "10.0.10.254");
        if !reqs.is_empty() {
            // Out of every edge attachment of VLAN 10 with its tagging
            // (bond1 has no usable member yet).
            assert_eq!(
                reqs,
                vec![("leaf1".into(), 3, None), ("leaf2".into(), 3, Some(10))]
            );
            at.push(tenth);
        }
    }
    assert_eq!(at, [0, 10, 30, 70, 150]);
    let nh = &p.next_hops()[0];
    assert_eq!((nh.vlan, nh.mac, nh.attempts), (Some(10), None, 5));
    // The router answers: resolved, route installable.
    let now = t0 + secs(20.0);
    let router = mac("02:00:00:00:01:fe");
    let got = p.on_frame(
        "leaf2",
        3,
        punt::ARP,
        &arp_reply_from(router, "10.0.10.254", Some(10)),
        now,
    );
    assert!(got.contains(&Action::NextHopsChanged));
    assert!(got.contains(&Action::HostsChanged));
    assert_eq!(
        p.route_next_hops("r1"),
        vec![("10.0.10.254".parse().unwrap(), 10, router)]
    );
    assert_eq!(p.uninstallable_routes(), ["r6"]);
    // Its MAC changes (a replaced router): reported for reprogramming.
    let router2 = mac("02:00:00:00:02:fe");
    let got = p.on_frame(
        "leaf2",
        3,
        punt::ARP,
        &arp_reply_from(router2, "10.0.10.254", Some(10)),
        now,
    );
    assert!(got.contains(&Action::NextHopsChanged));
    assert_eq!(p.route_next_hops("r1")[0].2, router2);
    // The same binding again changes nothing.
    let got = p.on_frame(
        "leaf2",
        3,
        punt::ARP,
        &arp_reply_from(router2, "10.0.10.254", Some(10)),
        now,
    );
    assert!(!got.contains(&Action::NextHopsChanged));
    // It ages out: the route is withdrawn and resolution starts over.
    let got = p.on_idle_timeout(
        "leaf2",
        &[IdleEntry {
            vlan: 10,
            mac: router2,
            ingress_port: 3,
            lag_id: 0,
        }],
        now + secs(1.0),
    );
    assert!(got.contains(&Action::NextHopsChanged) && got.contains(&Action::HostsChanged));
    assert_eq!(p.uninstallable_routes(), ["r1", "r6"]);
    assert!(!requests_for(&p.on_tick(now + secs(1.0)), "10.0.10.254").is_empty());
}

/// The NA `mac` sends for `target` to the VLAN 10 gateway (answering its
/// NS), untagged.
fn na_to_gateway(target: Ipv6Addr, mac: MacAddr, router: bool) -> Vec<u8> {
    let na = NdPacket {
        src: target,
        dst: "2001:db8:10::1".parse().unwrap(),
        msg: NdMessage::Advert {
            target,
            router,
            solicited: true,
            override_: true,
            target_mac: Some(mac),
        },
    };
    build_eth(MacAddr(GW), mac, None, ETH_IPV6, &na.encode())
}

#[test]
fn ipv6_next_hop_resolves_by_ns_and_na() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let tick = p.on_tick(t0);
    let target: Ipv6Addr = "2001:db8:10::fe".parse().unwrap();
    let nss: Vec<_> = sent_with_type(&tick, ETH_IPV6)
        .into_iter()
        .filter_map(|s| NdPacket::parse(parse_eth(&s.frame).unwrap().payload))
        .collect();
    assert_eq!(nss.len(), 2);
    assert_eq!(nss[0].dst, solicited_node(&target));
    assert_eq!(nss[0].src, "2001:db8:10::1".parse::<Ipv6Addr>().unwrap());
    // The router's NA resolves it.
    let router = mac("02:00:00:00:01:fe");
    let f = na_to_gateway(target, router, true);
    let got = p.on_frame("leaf1", 3, punt::ND, &f, t0);
    assert!(got.contains(&Action::NextHopsChanged));
    assert_eq!(
        p.route_next_hops("r6"),
        vec![(IpAddr::V6(target), 10, router)]
    );
}

#[test]
fn glean_asks_for_unknown_destination_once_a_second() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    // An IPv4 packet routed towards 10.0.20.9 (VLAN 20) punted as GLEAN.
    let mut ip = vec![
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 10, 5, 10, 0, 20, 9,
    ];
    ip.resize(28, 0);
    let f = build_eth(MacAddr(GW), MacAddr(HOST), None, ETH_IPV4, &ip);
    let got = p.on_frame("leaf1", 3, punt::GLEAN, &f, t0);
    let reqs = requests_for(&got, "10.0.20.9");
    // VLAN 20: leaf2/3 tagged, and the static LAG bond2 once (one member).
    assert_eq!(
        reqs,
        vec![("leaf2".into(), 3, Some(20)), ("leaf1".into(), 6, None)]
    );
    assert!(p
        .on_frame("leaf1", 3, punt::GLEAN, &f, t0 + secs(0.5))
        .is_empty());
    assert!(!p
        .on_frame("leaf1", 3, punt::GLEAN, &f, t0 + secs(1.0))
        .is_empty());
}

#[test]
fn engine_answers_icmp_for_the_gateway() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    // A ping to 10.0.10.1 with TTL 1: the echo is answered (FOR_ROUTER),
    // and a routed packet that expires gets time exceeded (TTL_EXPIRED).
    let mut ip = vec![
        0x45, 0, 0, 28, 0, 0, 0, 0, 1, 1, 0, 0, 10, 0, 10, 5, 10, 0, 10, 1,
    ];
    let c = frames::internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend([8, 0, 0xf7, 0xfe, 0, 1, 0, 0]);
    let f = build_eth(MacAddr(GW), MacAddr(HOST), Some(10), ETH_IPV4, &ip);
    for reason in [punt::FOR_ROUTER, punt::TTL_EXPIRED] {
        let got = p.on_frame("leaf2", 3, reason, &f, t0);
        let out = sent(&got);
        assert_eq!(out.len(), 1, "reason {reason}");
        assert_eq!((out[0].switch.as_str(), out[0].egress_port), ("leaf2", 3));
        let e = parse_eth(&out[0].frame).unwrap();
        assert_eq!(
            (e.dst, e.vlan, e.ethertype),
            (MacAddr(HOST), Some(10), ETH_IPV4)
        );
    }
}

#[test]
fn router_adverts_flood_and_answer_solicitations() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    // VLAN 10 has an IPv6 gateway: one RA per edge attachment.
    let ras: Vec<_> = sent_with_type(&p.on_tick(t0), ETH_IPV6)
        .into_iter()
        .filter(|s| parse_eth(&s.frame).unwrap().payload[40] == 134)
        .map(|s| (s.switch.clone(), s.egress_port))
        .collect();
    assert_eq!(ras, [("leaf1".to_string(), 3), ("leaf2".to_string(), 3)]);
    // A solicitation is answered out of its port (once per 3 s).
    let rs = frames::icmpv6_packet(
        "fe80::5".parse().unwrap(),
        "ff02::2".parse().unwrap(),
        255,
        vec![133, 0, 0, 0, 0, 0, 0, 0],
    );
    let f = build_eth(
        mac("33:33:00:00:00:02"),
        MacAddr(HOST),
        Some(10),
        ETH_IPV6,
        &rs,
    );
    let got = p.on_frame("leaf2", 3, punt::ND, &f, t0);
    assert_eq!(sent(&got).len(), 1);
    assert_eq!(parse_eth(&sent(&got)[0].frame).unwrap().vlan, Some(10));
    assert!(p
        .on_frame("leaf2", 3, punt::ND, &f, t0 + secs(1.0))
        .is_empty());
}

#[test]
fn gleans_are_limited_fabric_wide() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    // Hosts on two leaves scanning VLAN 20: 100 distinct destinations in
    // one second; leaf2/3 is a trunk (tagged), leaf1/3 an access port.
    let mut floods = 0;
    for i in 0..100u8 {
        let mut ip = vec![
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 10, 5, 10, 0, 20, i,
        ];
        ip.resize(28, 0);
        let (switch, tag) = if i % 2 == 0 {
            ("leaf2", Some(10))
        } else {
            ("leaf1", None)
        };
        let f = build_eth(MacAddr(GW), MacAddr(HOST), tag, ETH_IPV4, &ip);
        if !p.on_frame(switch, 3, punt::GLEAN, &f, t0).is_empty() {
            floods += 1;
        }
    }
    assert_eq!(floods, 20);
    // 99 gleans (10.0.20.1 is the gateway itself), 20 sent.
    assert_eq!(p.counters().rate_limited, 79);
}

/// A configured host's address that is not in the configuration (its
/// SLAAC address: hosts take one from our router advertisements) is
/// gleaned, the host's NA is learned for the configured host, and the
/// compiler routes it to that host: a reply to such an address is not
/// lost in a glean loop.
#[test]
fn glean_routes_an_unconfigured_address_of_a_static_host() {
    use crate::compile::tests::host_route_dmac;
    use crate::compile::{compile, HostEntry, Hosts};
    use crate::topo::{ObservedState, Topology};

    let t0 = Instant::now();
    let f = fabric();
    let mut p = Protocols::new(&f, t0);
    let static1 = mac("02:00:00:00:00:99");
    let slaac: Ipv6Addr = "2001:db8:10::ff:fe00:99".parse().unwrap();
    // An echo routed towards it, punted as GLEAN on leaf2.
    let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
    ip6.extend("2001:db8:10::5".parse::<Ipv6Addr>().unwrap().octets());
    ip6.extend(slaac.octets());
    ip6.extend([128, 0, 0, 0, 0, 1, 0, 1]);
    let f6 = build_eth(MacAddr(GW), MacAddr(HOST), Some(10), ETH_IPV6, &ip6);
    let got = p.on_frame("leaf2", 3, punt::GLEAN, &f6, t0);
    let asked = sent_with_type(&got, ETH_IPV6).into_iter().any(|o| {
        (o.switch.as_str(), o.egress_port) == ("leaf1", 3)
            && parse_eth(&o.frame)
                .and_then(|e| NdPacket::parse(e.payload))
                .is_some_and(
                    |ns| matches!(ns.msg, NdMessage::Solicit { target, .. } if target == slaac),
                )
    });
    assert!(asked, "no NS for {slaac} out of leaf1/3: {got:?}");
    // static1 answers.
    let fna = na_to_gateway(slaac, static1, false);
    let got = p.on_frame("leaf1", 3, punt::ND, &fna, t0);
    assert!(got.contains(&Action::HostsChanged), "{got:?}");
    let hosts = p.learned_hosts();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(
        (
            hosts[0].vlan,
            hosts[0].mac,
            &hosts[0].ips,
            &hosts[0].attachment
        ),
        (
            10,
            static1,
            &vec![IpAddr::V6(slaac)],
            &Attachment::Port("leaf1/3".parse().unwrap())
        )
    );
    // What the controller compiles from it: every leaf routes the address
    // to static1.
    let learned: Hosts = hosts
        .into_iter()
        .map(|h| {
            let e = HostEntry::from(h);
            (e.key(), e)
        })
        .collect();
    let topo = Topology::build(&f, &ObservedState::default(), None);
    let compiled = compile(&f, &topo, &learned);
    for leaf in ["leaf1", "leaf2"] {
        assert_eq!(
            host_route_dmac(&compiled[leaf], IpAddr::V6(slaac)),
            Some(u128::from(static1.as_u64())),
            "{leaf}: no host route to {slaac}"
        );
    }
}
