//! Learned state recovered from what a switch holds.
//!
//! Learned hosts live only in the controller's memory and in the switches.
//! A controller that starts (a restart, or a standby taking over) reads
//! every switch back before writing; from a leaf's `learning.src_mac`
//! entries it recovers which MACs were learned where, and from its host
//! routes (`route_direct` to a MAC on a VLAN) their addresses. Fed back
//! through the learning path, they compile to exactly the entries found,
//! so nothing learned is deleted and a stable fabric sees no write.
//!
//! The same goes for LACP: the ports in a switch's LAG selector groups were
//! collecting and distributing under the previous controller; they stay in
//! service (and the new actor stays silent on them) until their partner's
//! next LACPDU, instead of being withdrawn while LACP re-synchronizes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{IdleEntry, MacLearn};
use crate::compile::names::{
    A_ROUTE_DIRECT, A_TO_MEMBER, P_DMAC, P_LAG, P_PORT, P_VLAN_ID, T_IPV4, T_IPV6,
};
use crate::config::{PortNum, VlanId};
use crate::net::MacAddr;
use crate::p4rt::entity::{Entity, Match, TableAction};

/// What one switch's entries say was learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// One row per `src_mac` entry, as the learning digest reports it.
    pub macs: Vec<MacLearn>,
    /// (VLAN, address, MAC) of every host route.
    pub bindings: Vec<(VlanId, IpAddr, MacAddr)>,
    /// Ports that are members of a LAG selector group (in service).
    pub lag_ports: Vec<PortNum>,
}

impl Recovered {
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.bindings.is_empty() && self.lag_ports.is_empty()
    }
}

/// Decodes `installed` (static hosts are recovered too; the learning path
/// skips them as it skips their digests).
pub fn from_switch<'a>(installed: impl IntoIterator<Item = &'a Entity>) -> Recovered {
    let mut out = Recovered::default();
    let mut member_ports: BTreeMap<u32, PortNum> = BTreeMap::new();
    let mut grouped: BTreeSet<u32> = BTreeSet::new();
    for e in installed {
        match e {
            Entity::Member(m) if m.profile == P_LAG && m.action.name == A_TO_MEMBER => {
                let port = m.action.params.iter().find(|(n, _)| *n == P_PORT);
                if let Some(port) = port.and_then(|(_, v)| PortNum::try_from(*v).ok()) {
                    member_ports.insert(m.member_id, port);
                }
                continue;
            }
            Entity::Group(g) if g.profile == P_LAG => {
                grouped.extend(g.members.iter().map(|m| m.member_id));
                continue;
            }
            _ => {}
        }
        let Entity::Table(t) = e else { continue };
        if let Some(i) = IdleEntry::from_key(&t.key) {
            out.macs.push(MacLearn {
                vlan: i.vlan,
                mac: i.mac,
                ingress_port: i.ingress_port,
                lag_id: i.lag_id,
            });
            continue;
        }
        if t.key.table != T_IPV4 && t.key.table != T_IPV6 {
            continue;
        }
        let TableAction::Direct(a) = &t.action else {
            continue;
        };
        if a.name != A_ROUTE_DIRECT {
            continue;
        }
        let param = |n: &str| a.params.iter().find(|(p, _)| *p == n).map(|(_, v)| *v);
        let (Some(dmac), Some(vlan)) = (param(P_DMAC), param(P_VLAN_ID)) else {
            continue;
        };
        let Ok(vlan) = VlanId::try_from(vlan) else {
            continue;
        };
        let ip = t.key.matches.iter().find_map(|(_, m)| match m {
            Match::Lpm { value, prefix_len } if t.key.table == T_IPV4 && *prefix_len == 32 => {
                u32::try_from(*value)
                    .ok()
                    .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
            }
            Match::Lpm { value, prefix_len } if t.key.table == T_IPV6 && *prefix_len == 128 => {
                Some(IpAddr::V6(Ipv6Addr::from(*value)))
            }
            _ => None,
        });
        if let Some(ip) = ip {
            out.bindings.push((vlan, ip, MacAddr::from_value(dmac)));
        }
    }
    out.lag_ports = grouped
        .iter()
        .filter_map(|id| member_ports.get(id).copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    out
}
