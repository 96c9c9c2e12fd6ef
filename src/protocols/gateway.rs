//! The anycast gateway of each VLAN as the protocols see it: its VRF, MAC
//! and addresses. Every leaf answers for it (ARP, ND, ICMP).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::frames::{link_local, Eth};
use crate::config::{Fabric, PortRef, VlanId, VrfId};
use crate::net::MacAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub vrf: VrfId,
    pub mac: MacAddr,
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

impl Gateway {
    /// The gateways of every VLAN.
    pub fn all(fabric: &Fabric) -> BTreeMap<VlanId, Gateway> {
        fabric
            .vlans
            .iter()
            .map(|(id, v)| {
                let gw = Gateway {
                    vrf: v.vrf,
                    mac: v.gateway_mac.unwrap_or(fabric.settings.gateway_mac),
                    v4: v.ipv4_gateway,
                    v6: v.ipv6_gateway,
                };
                (*id, gw)
            })
            .collect()
    }

    /// Is `ip` a host address of this VLAN's subnet (not the gateway)?
    pub fn covers(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.is_some_and(|n| n.contains(a) && n.addr() != *a),
            IpAddr::V6(a) => self.v6.is_some_and(|n| n.contains(a) && n.addr() != *a),
        }
    }

    /// Is `ip` one of the gateway's own addresses (for IPv6 also the
    /// EUI-64 link-local of its MAC, which RA-configured hosts use)?
    pub fn owns(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.is_some_and(|n| n.addr() == *a),
            IpAddr::V6(a) => self.owns_v6(a),
        }
    }

    pub fn owns_v6(&self, a: &Ipv6Addr) -> bool {
        self.v6.is_some_and(|n| n.addr() == *a) || (self.v6.is_some() && link_local(self.mac) == *a)
    }
}

/// A frame punted from an edge port, classified.
#[derive(Debug, Clone, Copy)]
pub struct Rx<'a> {
    pub port: &'a PortRef,
    pub vlan: VlanId,
    /// The 802.1Q tag as received; replies carry the same.
    pub tag: Option<u16>,
    pub eth: &'a Eth<'a>,
}

/// Gateways for unit tests: VLANs 10 (v4 + v6) and 20 (v4) in VRF 0, 30
/// (v4) in VRF 1.
#[cfg(test)]
pub(crate) fn test_gateways() -> BTreeMap<VlanId, Gateway> {
    let f: Fabric = serde_yaml::from_str(
        r#"
vlans:
  10: {ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {ipv4_gateway: 10.0.20.1/24}
  30: {ipv4_gateway: 10.0.30.1/24, vrf: 1}
"#,
    )
    .unwrap_or_default();
    Gateway::all(&f)
}
