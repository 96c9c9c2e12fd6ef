//! The learned IP <-> MAC bindings of hosts, indexed both ways: by address
//! (next-hop resolution, "who has this IP") and by host (a host's IPs for
//! the compiler, dropping a host's IPs when it leaves), so neither lookup
//! scans the table. Each host holds at most `MAX_IPS_PER_HOST` addresses,
//! so a host cycling through source addresses (an ND storm from a /64)
//! cannot grow the table without bound.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::VlanId;
use crate::net::MacAddr;

pub const MAX_IPS_PER_HOST: usize = 16;

/// What `insert` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Already bound to this MAC.
    Unchanged,
    /// New, or moved from another MAC.
    Changed,
    /// The host has its maximum of addresses.
    Full,
}

#[derive(Debug, Clone, Default)]
pub struct Bindings {
    by_ip: BTreeMap<(VlanId, IpAddr), MacAddr>,
    by_host: BTreeMap<(VlanId, MacAddr), BTreeSet<IpAddr>>,
}

impl Bindings {
    pub fn get(&self, vlan: VlanId, ip: &IpAddr) -> Option<MacAddr> {
        self.by_ip.get(&(vlan, *ip)).copied()
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    pub fn insert(&mut self, vlan: VlanId, ip: IpAddr, mac: MacAddr) -> Inserted {
        let old = self.by_ip.get(&(vlan, ip)).copied();
        if old == Some(mac) {
            return Inserted::Unchanged;
        }
        if self.by_host.get(&(vlan, mac)).map_or(0, BTreeSet::len) >= MAX_IPS_PER_HOST {
            return Inserted::Full;
        }
        if let Some(old) = old {
            self.unlink(vlan, old, &ip);
        }
        self.by_ip.insert((vlan, ip), mac);
        self.by_host.entry((vlan, mac)).or_default().insert(ip);
        Inserted::Changed
    }

    fn unlink(&mut self, vlan: VlanId, mac: MacAddr, ip: &IpAddr) {
        if let Some(ips) = self.by_host.get_mut(&(vlan, mac)) {
            ips.remove(ip);
            if ips.is_empty() {
                self.by_host.remove(&(vlan, mac));
            }
        }
    }

    /// Drops every address of a host; true if it had any.
    pub fn remove_host(&mut self, vlan: VlanId, mac: MacAddr) -> bool {
        let Some(ips) = self.by_host.remove(&(vlan, mac)) else {
            return false;
        };
        for ip in ips {
            self.by_ip.remove(&(vlan, ip));
        }
        true
    }

    /// Keeps the bindings `keep` accepts; true if any was dropped.
    pub fn retain(&mut self, keep: impl Fn(VlanId, &IpAddr) -> bool) -> bool {
        let drop: Vec<((VlanId, IpAddr), MacAddr)> = self
            .by_ip
            .iter()
            .filter(|((v, ip), _)| !keep(*v, ip))
            .map(|(k, m)| (*k, *m))
            .collect();
        for ((vlan, ip), mac) in &drop {
            self.by_ip.remove(&(*vlan, *ip));
            self.unlink(*vlan, *mac, ip);
        }
        !drop.is_empty()
    }

    pub fn ips_of(&self, vlan: VlanId, mac: MacAddr) -> Vec<IpAddr> {
        self.by_host
            .get(&(vlan, mac))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8),
        RemoveHost(u8),
        RetainEven,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..40, 0u8..4).prop_map(|(ip, mac)| Op::Insert(ip, mac)),
            (0u8..4).prop_map(Op::RemoveHost),
            Just(Op::RetainEven),
        ]
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    proptest! {
        /// Both indexes always describe the same bindings, and no host
        /// holds more than the cap.
        #[test]
        fn indexes_agree(ops in proptest::collection::vec(op(), 0..80)) {
            let mut b = Bindings::default();
            for o in ops {
                match o {
                    Op::Insert(i, m) => { b.insert(1, ip(i), MacAddr([2, 0, 0, 0, 0, m])); }
                    Op::RemoveHost(m) => { b.remove_host(1, MacAddr([2, 0, 0, 0, 0, m])); }
                    Op::RetainEven => { b.retain(|_, ip| matches!(ip, IpAddr::V4(a) if a.octets()[3] % 2 == 0)); }
                }
                let mut from_hosts = 0;
                for ((v, mac), ips) in &b.by_host {
                    prop_assert!(!ips.is_empty() && ips.len() <= MAX_IPS_PER_HOST);
                    for i in ips {
                        prop_assert_eq!(b.get(*v, i), Some(*mac));
                        from_hosts += 1;
                    }
                }
                prop_assert_eq!(from_hosts, b.len());
            }
        }
    }

    #[test]
    fn cap_and_moves() {
        let mut b = Bindings::default();
        let m1 = MacAddr([2, 0, 0, 0, 0, 1]);
        let m2 = MacAddr([2, 0, 0, 0, 0, 2]);
        for i in 0..MAX_IPS_PER_HOST as u8 {
            assert_eq!(b.insert(1, ip(i), m1), Inserted::Changed);
        }
        assert_eq!(b.insert(1, ip(100), m1), Inserted::Full);
        assert_eq!(b.insert(1, ip(0), m1), Inserted::Unchanged);
        // An address moving to another host leaves the first one.
        assert_eq!(b.insert(1, ip(0), m2), Inserted::Changed);
        assert_eq!(b.ips_of(1, m2), [ip(0)]);
        assert_eq!(b.ips_of(1, m1).len(), MAX_IPS_PER_HOST - 1);
        assert!(b.remove_host(1, m1));
        assert_eq!(b.len(), 1);
    }
}
