//! ICMP from the anycast gateway: echo replies for the gateway's own
//! addresses (FOR_ROUTER punts), and time exceeded errors for packets whose
//! TTL / hop limit ran out at the gateway (TTL_EXPIRED punts), so ping to
//! the gateway works and traceroute shows the one routed hop. Errors are
//! never sent about ICMP errors, nor to multicast or unspecified sources
//! (RFC 1122 3.2.2, RFC 4443 2.4).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::frames::{
    build_eth, icmpv6_packet, internet_checksum, ETH_IPV4, ETH_IPV6, NEXT_HEADER_ICMPV6,
};
use super::gateway::{Gateway, Rx};
use super::punt;
use crate::config::VlanId;

const PROTO_ICMP: u8 = 1;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V4: u8 = 8;
const TIME_EXCEEDED_V4: u8 = 11;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const TIME_EXCEEDED_V6: u8 = 3;
const TTL: u8 = 64;
/// An ICMPv6 error must fit the IPv6 minimum MTU (1280).
const V6_ERROR_QUOTE: usize = 1280 - 40 - 8;

/// The parts of an IP packet the responder needs.
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// Protocol / next header.
    proto: u8,
    /// The whole packet (header included), cut to its stated length.
    packet: &'a [u8],
    /// What follows the header.
    payload: &'a [u8],
}

fn parse_v4(b: &[u8]) -> Option<Ip<'_>> {
    let ihl = usize::from(b.first()? & 0x0f) * 4;
    if b[0] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?));
    let packet = b.get(..total)?;
    if total < ihl || internet_checksum(&[packet.get(..ihl)?]) != 0 {
        return None;
    }
    let addr = |at: usize| -> Option<IpAddr> {
        let o: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(o)))
    };
    Some(Ip {
        src: addr(12)?,
        dst: addr(16)?,
        proto: packet[9],
        packet,
        payload: &packet[ihl..],
    })
}

fn parse_v6(b: &[u8]) -> Option<Ip<'_>> {
    if b.first()? >> 4 != 6 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes(b.get(4..6)?.try_into().ok()?));
    let packet = b.get(..40 + len)?;
    let addr = |at: usize| -> Option<IpAddr> {
        let o: [u8; 16] = packet.get(at..at + 16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(o)))
    };
    Some(Ip {
        src: addr(8)?,
        dst: addr(24)?,
        proto: packet[6],
        packet,
        payload: &packet[40..],
    })
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let csum = internet_checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 0, 0x40, 0, TTL, PROTO_ICMP, 0, 0]); // DF, no fragments
    p.extend(src.octets());
    p.extend(dst.octets());
    let csum = internet_checksum(&[&p]);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p.extend(icmp);
    p
}

fn bad_source(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    }
}

/// The ICMP answer to a punted IPv4/IPv6 packet, as a frame for the
/// ingress port, or `None` when there is nothing to say.
pub fn answer(gateways: &BTreeMap<VlanId, Gateway>, rx: Rx<'_>, reason: u8) -> Option<Vec<u8>> {
    let gw = gateways.get(&rx.vlan)?;
    let (ip, ethertype) = match rx.eth.ethertype {
        ETH_IPV4 => (parse_v4(rx.eth.payload)?, ETH_IPV4),
        ETH_IPV6 => (parse_v6(rx.eth.payload)?, ETH_IPV6),
        _ => return None,
    };
    if bad_source(&ip.src) {
        return None;
    }
    let icmp_type = (ip.proto == PROTO_ICMP || ip.proto == NEXT_HEADER_ICMPV6)
        .then(|| ip.payload.first().copied())
        .flatten();
    let packet = if reason == punt::TTL_EXPIRED {
        // Not about ICMP errors (v4: anything but echo; v6: types < 128).
        let is_error = match (ip.src, icmp_type) {
            (IpAddr::V4(_), Some(t)) => t != ECHO_REQUEST_V4 && t != ECHO_REPLY_V4,
            (IpAddr::V6(_), Some(t)) => t < 128,
            _ => false,
        };
        if is_error {
            return None;
        }
        match ip.src {
            IpAddr::V4(src) => {
                let ihl = ip.packet.len() - ip.payload.len();
                let quote = &ip.packet[..(ihl + 8).min(ip.packet.len())];
                let mut icmp = vec![TIME_EXCEEDED_V4, 0, 0, 0, 0, 0, 0, 0];
                icmp.extend(quote);
                ipv4_packet(gw.v4?.addr(), src, icmp)
            }
            IpAddr::V6(src) => {
                let quote = &ip.packet[..ip.packet.len().min(V6_ERROR_QUOTE)];
                let mut icmp = vec![TIME_EXCEEDED_V6, 0, 0, 0, 0, 0, 0, 0];
                icmp.extend(quote);
                icmpv6_packet(gw.v6?.addr(), src, TTL, icmp)
            }
        }
    } else {
        // An echo request to any gateway address of the ingress VRF.
        let ours = gateways
            .values()
            .any(|g| g.vrf == gw.vrf && g.owns(&ip.dst));
        let want = if ethertype == ETH_IPV4 {
            ECHO_REQUEST_V4
        } else {
            ECHO_REQUEST_V6
        };
        if !ours || icmp_type != Some(want) || ip.payload.len() < 8 {
            return None;
        }
        let mut icmp = ip.payload.to_vec();
        icmp[2] = 0;
        icmp[3] = 0;
        match (ip.dst, ip.src) {
            (IpAddr::V4(me), IpAddr::V4(src)) => {
                icmp[0] = ECHO_REPLY_V4;
                ipv4_packet(me, src, icmp)
            }
            (IpAddr::V6(me), IpAddr::V6(src)) => {
                icmp[0] = ECHO_REPLY_V6;
                icmpv6_packet(me, src, TTL, icmp)
            }
            _ => return None,
        }
    };
    Some(build_eth(rx.eth.src, gw.mac, rx.tag, ethertype, &packet))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::PortRef;
    use crate::net::MacAddr;
    use crate::protocols::frames::{icmpv6_checksum, parse_eth};

    const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 5]);

    use crate::protocols::gateway::test_gateways as gateways;

    fn echo_v4(dst: &str, ttl: u8) -> Vec<u8> {
        let mut icmp = vec![ECHO_REQUEST_V4, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        let c = internet_checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = ipv4_packet("10.0.10.5".parse().unwrap(), dst.parse().unwrap(), icmp);
        p[8] = ttl;
        p[10] = 0;
        p[11] = 0;
        let c = internet_checksum(&[&p[..20]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        build_eth(MacAddr([2, 0, 0, 0xfa, 0xb0, 1]), HOST, None, ETH_IPV4, &p)
    }

    fn run(frame: &[u8], reason: u8) -> Option<Vec<u8>> {
        let port = PortRef::new("leaf1", 3);
        let eth = parse_eth(frame).unwrap();
        let rx = Rx {
            port: &port,
            vlan: 10,
            tag: eth.vlan,
            eth: &eth,
        };
        answer(&gateways(), rx, reason)
    }

    #[test]
    fn echo_reply_from_gateway_addresses_in_the_vrf() {
        let reply = run(&echo_v4("10.0.20.1", 64), punt::FOR_ROUTER).unwrap();
        let e = parse_eth(&reply).unwrap();
        assert_eq!(e.dst, HOST);
        let ip = parse_v4(e.payload).unwrap();
        assert_eq!(ip.src, "10.0.20.1".parse::<IpAddr>().unwrap());
        assert_eq!(ip.dst, "10.0.10.5".parse::<IpAddr>().unwrap());
        // Checksum 0x8561 from an independent computation.
        assert_eq!(ip.payload, [0, 0, 0x85, 0x61, 0x12, 0x34, 0, 1, b'h', b'i']);
        assert_eq!(internet_checksum(&[ip.payload]), 0);
        // Another VRF's gateway, or a host, is not ours to answer.
        assert!(run(&echo_v4("10.0.30.1", 64), punt::FOR_ROUTER).is_none());
        assert!(run(&echo_v4("10.0.20.7", 64), punt::FOR_ROUTER).is_none());
    }

    #[test]
    fn ttl_expired_gets_time_exceeded_from_the_ingress_gateway() {
        let frame = echo_v4("10.0.20.7", 1);
        let reply = run(&frame, punt::TTL_EXPIRED).unwrap();
        let e = parse_eth(&reply).unwrap();
        let ip = parse_v4(e.payload).unwrap();
        assert_eq!(ip.src, "10.0.10.1".parse::<IpAddr>().unwrap());
        assert_eq!(ip.payload[0], TIME_EXCEEDED_V4);
        assert_eq!(internet_checksum(&[ip.payload]), 0);
        // The original header and 8 bytes follow.
        let original = parse_eth(&frame).unwrap().payload;
        assert_eq!(&ip.payload[8..], &original[..28]);
        // Never about an ICMP error.
        let err = run(&reply, punt::TTL_EXPIRED);
        assert!(err.is_none());
    }

    #[test]
    fn ipv6_echo_and_hop_limit_exceeded() {
        let src: Ipv6Addr = "2001:db8:10::5".parse().unwrap();
        let gw: Ipv6Addr = "2001:db8:10::1".parse().unwrap();
        let mut p = icmpv6_packet(
            src,
            gw,
            TTL,
            vec![ECHO_REQUEST_V6, 0, 0, 0, 0, 7, 0, 1, 1, 2],
        );
        let frame = build_eth(MacAddr([2, 0, 0, 0xfa, 0xb0, 1]), HOST, None, ETH_IPV6, &p);
        let reply = run(&frame, punt::FOR_ROUTER).unwrap();
        let e = parse_eth(&reply).unwrap();
        let ip = parse_v6(e.payload).unwrap();
        assert_eq!((ip.src, ip.dst), (IpAddr::V6(gw), IpAddr::V6(src)));
        assert_eq!(ip.payload[0], ECHO_REPLY_V6);
        assert_eq!(icmpv6_checksum(&gw, &src, ip.payload), 0);
        // Hop limit 1 towards another host: time exceeded from the gateway.
        p[24..40].copy_from_slice(&"2001:db8:20::9".parse::<Ipv6Addr>().unwrap().octets());
        p[7] = 1;
        let frame = build_eth(MacAddr([2, 0, 0, 0xfa, 0xb0, 1]), HOST, None, ETH_IPV6, &p);
        let reply = run(&frame, punt::TTL_EXPIRED).unwrap();
        let ip = parse_v6(parse_eth(&reply).unwrap().payload).unwrap();
        assert_eq!(ip.payload[0], TIME_EXCEEDED_V6);
        assert_eq!(&ip.payload[8..], &p[..]);
        assert_eq!(icmpv6_checksum(&gw, &src, ip.payload), 0);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..120), v6 in any::<bool>(), reason in 0u8..10) {
            let ty = if v6 { ETH_IPV6 } else { ETH_IPV4 };
            let mut f = build_eth(HOST, HOST, None, ty, &[]);
            f.truncate(14);
            f.extend(&b);
            let _ = run(&f, reason);
            let _ = parse_v4(&b);
            let _ = parse_v6(&b);
        }
    }
}
