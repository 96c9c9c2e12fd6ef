//! Byte-level codecs for the frames the controller sends and receives
//! through packet-in/out: Ethernet with an optional 802.1Q tag, ARP, and
//! IPv6 + ICMPv6 neighbour discovery. Parsers take arbitrary bytes (whatever
//! a switch punts) and return `None` instead of panicking.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::net::MacAddr;

pub use crate::net::{ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_LLDP, ETH_SLOW, ETH_VLAN};

/// Ethernet frames shorter than this (without FCS) are padded on the wire.
const MIN_FRAME: usize = 60;

/// A parsed Ethernet frame; `payload` borrows from the input and may carry
/// trailing padding (upper layers use their own length fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eth<'a> {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// The 802.1Q VLAN id when the frame is tagged.
    pub vlan: Option<u16>,
    pub ethertype: u16,
    pub payload: &'a [u8],
}

fn mac_at(b: &[u8], at: usize) -> Option<MacAddr> {
    Some(MacAddr(b.get(at..at + 6)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Parses Ethernet with at most one 802.1Q tag (QinQ is not used in the
/// fabric; a second tag stays in the payload as ethertype 0x8100).
pub fn parse_eth(b: &[u8]) -> Option<Eth<'_>> {
    let dst = mac_at(b, 0)?;
    let src = mac_at(b, 6)?;
    let mut ethertype = u16_at(b, 12)?;
    let mut off = 14;
    let mut vlan = None;
    if ethertype == ETH_VLAN {
        vlan = Some(u16_at(b, 14)? & 0x0fff);
        ethertype = u16_at(b, 16)?;
        off = 18;
    }
    Some(Eth {
        dst,
        src,
        vlan,
        ethertype,
        payload: b.get(off..)?,
    })
}

/// Builds an Ethernet frame (tagged when `vlan` is set, priority 0),
/// padded to the 60-byte minimum.
pub fn build_eth(
    dst: MacAddr,
    src: MacAddr,
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len().max(46));
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(v) = vlan {
        f.extend_from_slice(&ETH_VLAN.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// An Ethernet/IPv4 ARP packet (RFC 826).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

fn ipv4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn ipv6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(o))
}

impl Arp {
    pub const LEN: usize = 28;

    /// Parses an ARP payload; only Ethernet hardware / IPv4 protocol
    /// addresses are accepted.
    pub fn parse(b: &[u8]) -> Option<Arp> {
        if u16_at(b, 0)? != 1 || u16_at(b, 2)? != ETH_IPV4 || b.get(4..6)? != [6, 4] {
            return None;
        }
        Some(Arp {
            op: u16_at(b, 6)?,
            sender_mac: mac_at(b, 8)?,
            sender_ip: ipv4_at(b, 14)?,
            target_mac: mac_at(b, 18)?,
            target_ip: ipv4_at(b, 24)?,
        })
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&ETH_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }
}

const IPV6_HEADER: usize = 40;
pub const NEXT_HEADER_ICMPV6: u8 = 58;
pub const ICMPV6_NS: u8 = 135;
pub const ICMPV6_NA: u8 = 136;
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;

/// An ND message body (RFC 4861 section 4.3/4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdMessage {
    Solicit {
        target: Ipv6Addr,
        /// Source link-layer address option.
        source_mac: Option<MacAddr>,
    },
    Advert {
        target: Ipv6Addr,
        router: bool,
        solicited: bool,
        override_: bool,
        /// Target link-layer address option.
        target_mac: Option<MacAddr>,
    },
}

/// An IPv6 packet carrying an ND message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdPacket {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub msg: NdMessage,
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for b in parts.iter().flat_map(|p| p.iter()) {
        match odd.take() {
            Some(hi) => {
                sum += u32::from(hi) << 8 | u32::from(*b);
                sum = (sum & 0xffff) + (sum >> 16);
            }
            None => odd = Some(*b),
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(hi) << 8;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMPv6 checksum: the Internet checksum over the IPv6 pseudo-header
/// (source, destination, upper-layer length, next header) and the message.
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let len = (msg.len() as u32).to_be_bytes();
    internet_checksum(&[
        &src.octets(),
        &dst.octets(),
        &len,
        &[0, 0, 0, NEXT_HEADER_ICMPV6],
        msg,
    ])
}

impl NdPacket {
    /// Parses an IPv6 payload as an ND NS/NA. Per RFC 4861 7.1.1/7.1.2 the
    /// hop limit must be 255 (the packet was not routed), the code 0 and the
    /// checksum valid; other ICMPv6 types and extension headers give `None`.
    pub fn parse(b: &[u8]) -> Option<NdPacket> {
        if b.first()? >> 4 != 6 || *b.get(6)? != NEXT_HEADER_ICMPV6 || *b.get(7)? != 255 {
            return None;
        }
        let len = usize::from(u16_at(b, 4)?);
        let src = ipv6_at(b, 8)?;
        let dst = ipv6_at(b, 24)?;
        let icmp = b.get(IPV6_HEADER..IPV6_HEADER + len)?;
        if icmp.len() < 24 || icmp[1] != 0 || icmpv6_checksum(&src, &dst, icmp) != 0 {
            return None;
        }
        let target = ipv6_at(icmp, 8)?;
        let option = |want: u8| -> Option<MacAddr> {
            let mut opts = icmp.get(24..)?;
            while opts.len() >= 8 {
                let olen = usize::from(opts[1]) * 8;
                if olen == 0 || olen > opts.len() {
                    return None;
                }
                if opts[0] == want && olen == 8 {
                    return mac_at(opts, 2);
                }
                opts = &opts[olen..];
            }
            None
        };
        let msg = match icmp[0] {
            ICMPV6_NS => NdMessage::Solicit {
                target,
                source_mac: option(OPT_SOURCE_LLA),
            },
            ICMPV6_NA => NdMessage::Advert {
                target,
                router: icmp[4] & 0x80 != 0,
                solicited: icmp[4] & 0x40 != 0,
                override_: icmp[4] & 0x20 != 0,
                target_mac: option(OPT_TARGET_LLA),
            },
            _ => return None,
        };
        if target.is_multicast() {
            return None;
        }
        Some(NdPacket { src, dst, msg })
    }

    /// The IPv6 packet (header + ICMPv6 with checksum), hop limit 255.
    pub fn encode(&self) -> Vec<u8> {
        let mut icmp = Vec::with_capacity(32);
        let (ty, flags, target, opt) = match self.msg {
            NdMessage::Solicit { target, source_mac } => (
                ICMPV6_NS,
                0u8,
                target,
                source_mac.map(|m| (OPT_SOURCE_LLA, m)),
            ),
            NdMessage::Advert {
                target,
                router,
                solicited,
                override_,
                target_mac,
            } => {
                let flags =
                    u8::from(router) << 7 | u8::from(solicited) << 6 | u8::from(override_) << 5;
                (
                    ICMPV6_NA,
                    flags,
                    target,
                    target_mac.map(|m| (OPT_TARGET_LLA, m)),
                )
            }
        };
        icmp.extend_from_slice(&[ty, 0, 0, 0, flags, 0, 0, 0]);
        icmp.extend_from_slice(&target.octets());
        if let Some((kind, mac)) = opt {
            icmp.extend_from_slice(&[kind, 1]);
            icmp.extend_from_slice(&mac.0);
        }
        icmpv6_packet(self.src, self.dst, 255, icmp)
    }
}

/// An IPv6 packet carrying the ICMPv6 message `icmp`, whose checksum field
/// (bytes 2..4) is filled in here.
pub fn icmpv6_packet(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, mut icmp: Vec<u8>) -> Vec<u8> {
    if icmp.len() >= 4 {
        icmp[2..4].copy_from_slice(&[0, 0]);
        let csum = icmpv6_checksum(&src, &dst, &icmp);
        icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    }
    let mut p = Vec::with_capacity(IPV6_HEADER + icmp.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[NEXT_HEADER_ICMPV6, hop_limit]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

/// `ff02::1:ffXX:XXXX`, the group a neighbour solicitation for `ip` goes to.
pub fn solicited_node(ip: &Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from(o[14]) << 8 | u16::from(o[15]),
    )
}

/// The Ethernet group address of an IPv6 multicast address (RFC 2464).
pub fn ipv6_multicast_mac(ip: &Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The modified EUI-64 link-local address of `mac` (`fe80::...`), which
/// hosts may use as the router address when they learned it by RA.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn eth_round_trip_tagged_and_untagged() {
        let a = mac("02:00:00:00:00:01");
        let b = mac("02:00:00:00:00:02");
        for vlan in [None, Some(10)] {
            let f = build_eth(a, b, vlan, ETH_ARP, &[1, 2, 3]);
            assert_eq!(f.len(), 60);
            let e = parse_eth(&f).unwrap();
            assert_eq!((e.dst, e.src, e.vlan, e.ethertype), (a, b, vlan, ETH_ARP));
            assert_eq!(&e.payload[..3], &[1, 2, 3]);
        }
        assert!(parse_eth(&[0; 13]).is_none());
        let mut short_tag = [0u8; 17];
        short_tag[12] = 0x81;
        assert!(parse_eth(&short_tag).is_none());
    }

    #[test]
    fn arp_round_trip() {
        let a = Arp {
            op: ARP_REQUEST,
            sender_mac: mac("02:00:00:00:00:01"),
            sender_ip: "10.0.0.5".parse().unwrap(),
            target_mac: MacAddr::default(),
            target_ip: "10.0.0.1".parse().unwrap(),
        };
        assert_eq!(Arp::parse(&a.encode()), Some(a));
        let mut bad = a.encode();
        bad[5] = 16;
        assert_eq!(Arp::parse(&bad), None);
    }

    #[test]
    fn nd_round_trip_and_checksum() {
        let p = NdPacket {
            src: "2001:db8::5".parse().unwrap(),
            dst: solicited_node(&"2001:db8::1".parse().unwrap()),
            msg: NdMessage::Solicit {
                target: "2001:db8::1".parse().unwrap(),
                source_mac: Some(mac("02:00:00:00:00:05")),
            },
        };
        let bytes = p.encode();
        assert_eq!(NdPacket::parse(&bytes), Some(p));
        // A checksum over the whole ICMPv6 message including the checksum
        // field sums to zero.
        assert_eq!(icmpv6_checksum(&p.src, &p.dst, &bytes[40..]), 0);
        let mut bad = bytes.clone();
        bad[50] ^= 1;
        assert_eq!(NdPacket::parse(&bad), None);
        assert_eq!(p.dst, "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ipv6_multicast_mac(&p.dst), mac("33:33:ff:00:00:01"));
    }

    #[test]
    fn link_local_is_eui64() {
        assert_eq!(
            link_local(mac("02:00:00:fa:b0:01")),
            "fe80::ff:fefa:b001".parse::<Ipv6Addr>().unwrap()
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(e) = parse_eth(&b) {
                let _ = Arp::parse(e.payload);
                let _ = NdPacket::parse(e.payload);
            }
            let _ = Arp::parse(&b);
            let _ = NdPacket::parse(&b);
        }

        #[test]
        fn nd_parses_mutated_headers_without_panic(
            flip in 0usize..72, bits in any::<u8>(), len in any::<u16>()
        ) {
            let p = NdPacket {
                src: "fe80::1".parse().unwrap(),
                dst: "ff02::1".parse().unwrap(),
                msg: NdMessage::Advert {
                    target: "2001:db8::1".parse().unwrap(),
                    router: true, solicited: false, override_: true,
                    target_mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
                },
            };
            let mut b = p.encode();
            b[flip] ^= bits;
            b[4..6].copy_from_slice(&len.to_be_bytes());
            let _ = NdPacket::parse(&b);
        }

        // What a hostile host sends: well-formed frames round-trip, every
        // truncation and bogus length is refused without a panic.

        #[test]
        fn eth_round_trips_and_truncations_are_refused(
            dst in any::<[u8; 6]>(), src in any::<[u8; 6]>(),
            vlan in proptest::option::of(0u16..4096), ethertype in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            prop_assume!(ethertype != ETH_VLAN);
            let f = build_eth(MacAddr(dst), MacAddr(src), vlan, ethertype, &payload);
            let e = parse_eth(&f).unwrap();
            prop_assert_eq!((e.dst, e.src, e.vlan, e.ethertype), (MacAddr(dst), MacAddr(src), vlan, ethertype));
            prop_assert!(e.payload.starts_with(&payload));
            let header = if vlan.is_some() { 18 } else { 14 };
            for cut in 0..header {
                prop_assert!(parse_eth(&f[..cut]).is_none(), "{} bytes parsed", cut);
            }
        }

        #[test]
        fn arp_round_trips_and_truncations_are_refused(
            op in any::<u16>(), sm in any::<[u8; 6]>(), si in any::<[u8; 4]>(),
            tm in any::<[u8; 6]>(), ti in any::<[u8; 4]>(),
        ) {
            let arp = Arp {
                op, sender_mac: MacAddr(sm), sender_ip: si.into(),
                target_mac: MacAddr(tm), target_ip: ti.into(),
            };
            let b = arp.encode();
            prop_assert_eq!(Arp::parse(&b), Some(arp));
            for cut in 0..Arp::LEN {
                prop_assert!(Arp::parse(&b[..cut]).is_none(), "{} bytes parsed", cut);
            }
        }

        #[test]
        fn arp_with_bogus_lengths_is_refused(hlen in any::<u8>(), plen in any::<u8>(), htype in any::<u16>()) {
            prop_assume!((hlen, plen, htype) != (6, 4, 1));
            let mut b = Arp {
                op: ARP_REQUEST, sender_mac: mac("02:00:00:00:00:01"), sender_ip: [10, 0, 0, 1].into(),
                target_mac: MacAddr::default(), target_ip: [10, 0, 0, 2].into(),
            }.encode();
            b[0..2].copy_from_slice(&htype.to_be_bytes());
            b[4] = hlen;
            b[5] = plen;
            prop_assert!(Arp::parse(&b).is_none());
        }

        #[test]
        fn nd_round_trips_and_truncations_are_refused(
            target in any::<[u8; 16]>(), lla in proptest::option::of(any::<[u8; 6]>()),
            solicit in any::<bool>(), flags in any::<[bool; 3]>(),
        ) {
            let target = Ipv6Addr::from(target);
            prop_assume!(!target.is_multicast());
            let msg = if solicit {
                NdMessage::Solicit { target, source_mac: lla.map(MacAddr) }
            } else {
                NdMessage::Advert {
                    target, router: flags[0], solicited: flags[1], override_: flags[2],
                    target_mac: lla.map(MacAddr),
                }
            };
            let p = NdPacket { src: "fe80::5".parse().unwrap(), dst: "ff02::1".parse().unwrap(), msg };
            let b = p.encode();
            prop_assert_eq!(NdPacket::parse(&b), Some(p));
            for cut in 0..b.len() {
                prop_assert!(NdPacket::parse(&b[..cut]).is_none(), "{} bytes parsed", cut);
            }
        }

        /// A solicitation with a valid header and checksum but garbage
        /// options (zero and overlong lengths included): parsed without a
        /// panic or an endless loop; a link-layer address is taken only
        /// from a well-formed option.
        #[test]
        fn nd_with_garbage_options(opts in proptest::collection::vec(any::<u8>(), 0..64)) {
            let target: Ipv6Addr = "2001:db8::7".parse().unwrap();
            let mut icmp = vec![ICMPV6_NS, 0, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&target.octets());
            icmp.extend_from_slice(&opts);
            let b = icmpv6_packet("fe80::5".parse().unwrap(), solicited_node(&target), 255, icmp);
            let p = NdPacket::parse(&b).unwrap();
            let NdMessage::Solicit { target: t, source_mac } = p.msg else {
                panic!("not a solicitation: {:?}", p.msg);
            };
            prop_assert_eq!(t, target);
            if let Some(m) = source_mac {
                // Found in an option of type 1, length 1 (8 bytes).
                prop_assert!(opts.windows(8).any(|w| w[0] == OPT_SOURCE_LLA && w[1] == 1 && w[2..8] == m.0));
            }
        }
    }

    #[test]
    fn nd_option_of_length_zero_ends_the_walk() {
        let target: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut icmp = vec![ICMPV6_NS, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        // A zero-length option first (RFC 4861 4.6: drop), then a valid SLLA.
        icmp.extend_from_slice(&[14, 0, 0, 0, 0, 0, 0, 0]);
        icmp.extend_from_slice(&[OPT_SOURCE_LLA, 1, 2, 0, 0, 0, 0, 9]);
        let b = icmpv6_packet(
            "fe80::5".parse().unwrap(),
            solicited_node(&target),
            255,
            icmp,
        );
        let p = NdPacket::parse(&b).unwrap();
        assert_eq!(
            p.msg,
            NdMessage::Solicit {
                target,
                source_mac: None
            }
        );
    }
}
