//! IPv6 router advertisements from the anycast gateway (RFC 4861 6.2), so
//! hosts on a VLAN with an IPv6 gateway get their default route (via the
//! gateway MAC's link-local address) and, on a /64, their SLAAC prefix
//! without per-host configuration. Unsolicited RAs go out of every edge
//! attachment of the VLAN each interval; a router solicitation is answered
//! out of the port it came in on, at most once per VLAN every 3 s
//! (MIN_DELAY_BETWEEN_RAS).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use super::frames::{
    build_eth, icmpv6_checksum, icmpv6_packet, ipv6_multicast_mac, link_local, ETH_IPV6,
    NEXT_HEADER_ICMPV6,
};
use super::gateway::Gateway;
use crate::config::VlanId;

const ROUTER_SOLICIT: u8 = 133;
const ROUTER_ADVERT: u8 = 134;
const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
const ROUTER_LIFETIME_SECS: u16 = 1800;
const VALID_LIFETIME_SECS: u32 = 2_592_000;
const PREFERRED_LIFETIME_SECS: u32 = 604_800;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The RA frame for `gw`'s VLAN (`None` without an IPv6 gateway).
pub fn advert_frame(gw: &Gateway, tag: Option<u16>) -> Option<Vec<u8>> {
    let net = gw.v6?;
    let mut icmp = vec![ROUTER_ADVERT, 0, 0, 0, 64, 0];
    icmp.extend(ROUTER_LIFETIME_SECS.to_be_bytes());
    icmp.extend([0; 8]); // reachable time, retrans timer: unspecified
    icmp.extend([1, 1]); // source link-layer address
    icmp.extend(gw.mac.0);
    // Prefix information: on-link, and autonomous on a /64 (SLAAC).
    let flags = 0x80 | if net.prefix_len() == 64 { 0x40 } else { 0 };
    icmp.extend([3, 4, net.prefix_len(), flags]);
    icmp.extend(VALID_LIFETIME_SECS.to_be_bytes());
    icmp.extend(PREFERRED_LIFETIME_SECS.to_be_bytes());
    icmp.extend([0; 4]);
    icmp.extend(net.network().octets());
    let packet = icmpv6_packet(link_local(gw.mac), ALL_NODES, 255, icmp);
    Some(build_eth(
        ipv6_multicast_mac(&ALL_NODES),
        gw.mac,
        tag,
        ETH_IPV6,
        &packet,
    ))
}

/// Is this IPv6 packet a valid router solicitation (hop limit 255, code
/// 0, checksum right)?
pub fn is_router_solicit(b: &[u8]) -> bool {
    let check = || -> Option<bool> {
        if b.first()? >> 4 != 6 || *b.get(6)? != NEXT_HEADER_ICMPV6 || *b.get(7)? != 255 {
            return Some(false);
        }
        let len = usize::from(u16::from_be_bytes(b.get(4..6)?.try_into().ok()?));
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(b.get(8..24)?).ok()?);
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(b.get(24..40)?).ok()?);
        let icmp = b.get(40..40 + len)?;
        Some(
            icmp.len() >= 8
                && icmp[0] == ROUTER_SOLICIT
                && icmp[1] == 0
                && icmpv6_checksum(&src, &dst, icmp) == 0,
        )
    };
    check().unwrap_or(false)
}

/// When each VLAN advertises next, and when it last answered a
/// solicitation.
#[derive(Debug, Clone)]
pub struct RouterAdverts {
    interval: Option<Duration>,
    next: BTreeMap<VlanId, Instant>,
    answered: BTreeMap<VlanId, Instant>,
}

impl RouterAdverts {
    /// `interval: None` turns router advertisements off.
    pub fn new(interval: Option<Duration>) -> Self {
        RouterAdverts {
            interval,
            next: BTreeMap::new(),
            answered: BTreeMap::new(),
        }
    }

    /// VLANs (with an IPv6 gateway) due for an unsolicited RA now.
    pub fn due(&mut self, gateways: &BTreeMap<VlanId, Gateway>, now: Instant) -> Vec<VlanId> {
        let Some(interval) = self.interval else {
            return Vec::new();
        };
        self.next
            .retain(|v, _| gateways.get(v).is_some_and(|g| g.v6.is_some()));
        let mut out = Vec::new();
        for (vlan, gw) in gateways {
            if gw.v6.is_none() {
                continue;
            }
            let next = self.next.entry(*vlan).or_insert(now);
            if *next <= now {
                *next = now + interval;
                out.push(*vlan);
            }
        }
        out
    }

    /// A solicitation arrived on `vlan`: answer it?
    pub fn on_solicit(&mut self, vlan: VlanId, now: Instant) -> bool {
        if self.interval.is_none() {
            return false;
        }
        let last = self.answered.get(&vlan);
        if last.is_some_and(|t| now.saturating_duration_since(*t) < MIN_DELAY_BETWEEN_RAS) {
            return false;
        }
        self.answered.insert(vlan, now);
        true
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.next.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::net::MacAddr;
    use crate::protocols::frames::parse_eth;

    use crate::protocols::gateway::test_gateways as gateways;

    #[test]
    fn advert_layout() {
        let gws = gateways();
        let f = advert_frame(&gws[&10], Some(10)).unwrap();
        let e = parse_eth(&f).unwrap();
        assert_eq!(e.dst, MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(e.vlan, Some(10));
        let p = e.payload;
        assert_eq!(p[7], 255, "hop limit");
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
        assert_eq!(src, link_local(gws[&10].mac));
        let icmp = &p[40..];
        assert_eq!(icmpv6_checksum(&src, &ALL_NODES, icmp), 0);
        assert_eq!(&icmp[..8], &[134, 0, icmp[2], icmp[3], 64, 0, 0x07, 0x08]);
        assert_eq!(&icmp[16..24], &[1, 1, 2, 0, 0, 0xfa, 0xb0, 1]);
        assert_eq!(&icmp[24..28], &[3, 4, 64, 0xc0]);
        let prefix: Ipv6Addr = "2001:db8:10::".parse().unwrap();
        assert_eq!(&icmp[40..56], &prefix.octets());
        assert!(advert_frame(&gws[&20], None).is_none());
    }

    #[test]
    fn schedule_and_solicitations() {
        let gws = gateways();
        let t0 = Instant::now();
        let mut ra = RouterAdverts::new(Some(Duration::from_secs(30)));
        assert_eq!(ra.due(&gws, t0), [10]);
        assert!(ra.due(&gws, t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(ra.due(&gws, t0 + Duration::from_secs(30)), [10]);
        assert!(ra.on_solicit(10, t0));
        assert!(!ra.on_solicit(10, t0 + Duration::from_secs(1)));
        assert!(ra.on_solicit(10, t0 + Duration::from_secs(3)));
        let mut off = RouterAdverts::new(None);
        assert!(off.due(&gws, t0).is_empty() && !off.on_solicit(10, t0));
    }

    #[test]
    fn recognises_solicitations() {
        let src: Ipv6Addr = "fe80::5".parse().unwrap();
        let dst: Ipv6Addr = "ff02::2".parse().unwrap();
        let rs = icmpv6_packet(src, dst, 255, vec![133, 0, 0, 0, 0, 0, 0, 0]);
        assert!(is_router_solicit(&rs));
        let routed = icmpv6_packet(src, dst, 64, vec![133, 0, 0, 0, 0, 0, 0, 0]);
        assert!(!is_router_solicit(&routed));
    }

    proptest! {
        #[test]
        fn solicit_check_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = is_router_solicit(&b);
        }
    }
}
