//! The anycast gateway's ARP and IPv6 neighbour discovery, done by the
//! controller: every leaf answers for each VLAN's gateway addresses with the
//! gateway MAC, hosts' IP <-> MAC bindings are learned from the ARP and ND
//! traffic punted to us, and static routes' next hops are resolved by
//! sending ARP requests / neighbour solicitations from the gateway.
//!
//! Only addresses inside a VLAN's gateway subnet are learned: those are the
//! ones the fabric routes to (host routes /32, /128). A next hop that stays
//! unresolved is retried with exponential backoff (1 s doubling to 30 s,
//! forever: the router may come later); a resolved one is refreshed every
//! third of the MAC aging time so its MAC entry stays alive.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::bindings::{Bindings, Inserted};
use super::frames::{
    build_eth, ipv6_multicast_mac, solicited_node, Arp, NdMessage, NdPacket, ARP_REPLY,
    ARP_REQUEST, ETH_ARP, ETH_IPV6,
};
use super::gateway::Gateway;
pub use super::gateway::Rx;
use crate::config::{Fabric, PortRef, Route, Section, VlanId, VrfId};
use crate::net::MacAddr;

pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NeighborOutput {
    /// Frames to send straight out of a port.
    pub replies: Vec<(PortRef, Vec<u8>)>,
    /// (vlan, mac) of a sender we heard: the engine learns it at the port.
    pub heard: Option<(VlanId, MacAddr)>,
    /// Some host's IP set changed.
    pub hosts_changed: bool,
    /// Some next hop's MAC changed (resolved, moved, or lost).
    pub next_hops_changed: bool,
}

impl NeighborOutput {
    fn merge(&mut self, o: NeighborOutput) {
        self.replies.extend(o.replies);
        self.heard = self.heard.or(o.heard);
        self.hosts_changed |= o.hosts_changed;
        self.next_hops_changed |= o.next_hops_changed;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NextHop {
    vlan: Option<VlanId>,
    mac: Option<MacAddr>,
    attempts: u32,
    next_try: Instant,
}

/// A static route next hop as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHopStatus {
    pub vrf: VrfId,
    pub ip: IpAddr,
    /// The VLAN whose subnet holds it (`None`: no connected subnet).
    pub vlan: Option<VlanId>,
    pub mac: Option<MacAddr>,
    /// Resolution attempts since it was last resolved.
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct ArpNd {
    gateways: BTreeMap<VlanId, Gateway>,
    learned: Bindings,
    statics: BTreeMap<(VlanId, IpAddr), MacAddr>,
    /// The configured routes, shared with the configuration they came from.
    routes: Section<String, Route>,
    next_hops: BTreeMap<(VrfId, IpAddr), NextHop>,
    refresh: Duration,
    /// Last glean request per destination, to send at most one a second.
    gleaned: BTreeMap<IpAddr, Instant>,
}

impl ArpNd {
    pub fn new(fabric: &Fabric, now: Instant) -> Self {
        let mut a = ArpNd {
            gateways: BTreeMap::new(),
            learned: Bindings::default(),
            statics: BTreeMap::new(),
            routes: Section::default(),
            next_hops: BTreeMap::new(),
            refresh: Duration::from_secs(100),
            gleaned: BTreeMap::new(),
        };
        a.configure(fabric, now);
        a
    }

    /// Applies a new configuration: gateways, static bindings, routes.
    /// Learned bindings outside the new subnets are dropped.
    pub fn configure(&mut self, fabric: &Fabric, now: Instant) -> NeighborOutput {
        self.refresh = Duration::from_secs(u64::from(fabric.settings.mac_aging_secs / 3).max(1));
        self.gateways = Gateway::all(fabric);
        self.statics = fabric
            .hosts
            .values()
            .flat_map(|h| h.ips.iter().map(move |ip| ((h.vlan, *ip), h.mac)))
            .collect();
        let gateways = &self.gateways;
        let dropped = self
            .learned
            .retain(|vlan, ip| gateways.get(&vlan).is_some_and(|g| g.covers(ip)));
        // 100k routes at scale: their next hops are collected again only
        // when the routes changed (a binding shares them with the last
        // configuration).
        if !Section::same(&self.routes, &fabric.routes) {
            self.routes = fabric.routes.clone();
            let wanted: BTreeSet<(VrfId, IpAddr)> = self
                .routes
                .values()
                .flat_map(|r| r.next_hops.iter().map(move |ip| (r.vrf, *ip)))
                .collect();
            self.next_hops.retain(|k, _| wanted.contains(k));
            for k in wanted {
                self.next_hops.entry(k).or_insert(NextHop {
                    vlan: None,
                    mac: None,
                    attempts: 0,
                    next_try: now,
                });
            }
        }
        NeighborOutput {
            hosts_changed: dropped,
            next_hops_changed: self.update_next_hops(now),
            ..Default::default()
        }
    }

    /// Recomputes every next hop's VLAN and MAC; true if any MAC changed.
    fn update_next_hops(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for ((vrf, ip), nh) in self.next_hops.iter_mut() {
            let vlan = self
                .gateways
                .iter()
                .find(|(_, g)| g.vrf == *vrf && g.covers(ip))
                .map(|(v, _)| *v);
            let mac = vlan.and_then(|v| {
                let k = (v, *ip);
                self.statics.get(&k).copied().or(self.learned.get(v, ip))
            });
            if mac != nh.mac {
                changed = true;
                if mac.is_none() {
                    // Lost: start resolving again right away.
                    nh.attempts = 0;
                    nh.next_try = now;
                }
            }
            nh.vlan = vlan;
            nh.mac = mac;
        }
        changed
    }

    /// Records `ip` at `mac` on `vlan` when it is a routable host address.
    fn learn(&mut self, vlan: VlanId, ip: IpAddr, mac: MacAddr, now: Instant) -> NeighborOutput {
        let mut out = NeighborOutput::default();
        if ip.is_unspecified() || mac.is_multicast() || mac == MacAddr::default() {
            return out;
        }
        if !self.gateways.get(&vlan).is_some_and(|g| g.covers(&ip)) {
            return out;
        }
        out.heard = Some((vlan, mac));
        if self.statics.contains_key(&(vlan, ip)) {
            return out;
        }
        if self.learned.insert(vlan, ip, mac) == Inserted::Changed {
            out.hosts_changed = true;
            out.next_hops_changed = self.update_next_hops(now);
        }
        out
    }

    /// A binding read back from a switch's host route (recovery).
    pub fn restore(
        &mut self,
        vlan: VlanId,
        ip: IpAddr,
        mac: MacAddr,
        now: Instant,
    ) -> NeighborOutput {
        self.learn(vlan, ip, mac, now)
    }

    /// Drops every binding of a host that left (aged out or removed).
    pub fn forget_mac(&mut self, vlan: VlanId, mac: MacAddr, now: Instant) -> NeighborOutput {
        NeighborOutput {
            hosts_changed: self.learned.remove_host(vlan, mac),
            next_hops_changed: self.update_next_hops(now),
            ..Default::default()
        }
    }

    /// The learned IPs of a host.
    pub fn ips_of(&self, vlan: VlanId, mac: MacAddr) -> Vec<IpAddr> {
        self.learned.ips_of(vlan, mac)
    }

    /// An ARP packet punted from an edge port.
    pub fn on_arp(&mut self, rx: Rx<'_>, arp: &Arp, now: Instant) -> NeighborOutput {
        let mut out = self.learn(rx.vlan, IpAddr::V4(arp.sender_ip), arp.sender_mac, now);
        let Some(gw) = self.gateways.get(&rx.vlan) else {
            return out;
        };
        let ours = gw.v4.is_some_and(|n| n.addr() == arp.target_ip);
        if arp.op == ARP_REQUEST && ours && !arp.sender_ip.is_unspecified() {
            let reply = Arp {
                op: ARP_REPLY,
                sender_mac: gw.mac,
                sender_ip: arp.target_ip,
                target_mac: arp.sender_mac,
                target_ip: arp.sender_ip,
            };
            let frame = build_eth(arp.sender_mac, gw.mac, rx.tag, ETH_ARP, &reply.encode());
            out.replies.push((rx.port.clone(), frame));
        }
        out
    }

    /// An ND message punted from an edge port.
    pub fn on_nd(&mut self, rx: Rx<'_>, nd: &NdPacket, now: Instant) -> NeighborOutput {
        let mut out = NeighborOutput::default();
        match nd.msg {
            NdMessage::Solicit { target, source_mac } => {
                if !nd.src.is_unspecified() {
                    let mac = source_mac.unwrap_or(rx.eth.src);
                    out.merge(self.learn(rx.vlan, IpAddr::V6(nd.src), mac, now));
                }
                let Some(gw) = self.gateways.get(&rx.vlan) else {
                    return out;
                };
                if !gw.owns_v6(&target) {
                    return out;
                }
                // RFC 4861 7.2.4: to the solicitor, or to all nodes when
                // it has no address yet (duplicate address detection).
                let dad = nd.src.is_unspecified();
                let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                let (dst_ip, dst_mac) = if dad {
                    (all_nodes, ipv6_multicast_mac(&all_nodes))
                } else {
                    (nd.src, source_mac.unwrap_or(rx.eth.src))
                };
                let na = NdPacket {
                    src: target,
                    dst: dst_ip,
                    msg: NdMessage::Advert {
                        target,
                        router: true,
                        solicited: !dad,
                        override_: true,
                        target_mac: Some(gw.mac),
                    },
                };
                let frame = build_eth(dst_mac, gw.mac, rx.tag, ETH_IPV6, &na.encode());
                out.replies.push((rx.port.clone(), frame));
            }
            NdMessage::Advert {
                target, target_mac, ..
            } => {
                let mac = target_mac.unwrap_or(rx.eth.src);
                out.merge(self.learn(rx.vlan, IpAddr::V6(target), mac, now));
            }
        }
        out
    }

    /// Next hops due for an ARP request / NS now, as (vlan, ip); each is
    /// rescheduled with backoff (unresolved) or the refresh period.
    pub fn due_requests(&mut self, now: Instant) -> Vec<(VlanId, IpAddr)> {
        let mut out = Vec::new();
        for ((_, ip), nh) in self.next_hops.iter_mut() {
            let Some(vlan) = nh.vlan else { continue };
            if nh.next_try > now {
                continue;
            }
            if nh.mac.is_some() {
                nh.next_try = now + self.refresh;
            } else {
                let backoff = RETRY_INITIAL.saturating_mul(1 << nh.attempts.min(16));
                nh.next_try = now + backoff.min(RETRY_MAX);
                nh.attempts = nh.attempts.saturating_add(1);
            }
            out.push((vlan, *ip));
        }
        out
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_hops
            .values()
            .filter(|nh| nh.vlan.is_some())
            .map(|nh| nh.next_try)
            .min()
    }

    /// The ARP request / NS asking for `ip` on `vlan`, from the gateway,
    /// tagged with `tag`; `None` when the VLAN has no gateway of the family.
    pub fn request_frame(&self, vlan: VlanId, ip: IpAddr, tag: Option<u16>) -> Option<Vec<u8>> {
        let gw = self.gateways.get(&vlan)?;
        match ip {
            IpAddr::V4(target) => {
                let arp = Arp {
                    op: ARP_REQUEST,
                    sender_mac: gw.mac,
                    sender_ip: gw.v4?.addr(),
                    target_mac: MacAddr::default(),
                    target_ip: target,
                };
                Some(build_eth(
                    MacAddr::BROADCAST,
                    gw.mac,
                    tag,
                    ETH_ARP,
                    &arp.encode(),
                ))
            }
            IpAddr::V6(target) => {
                let dst = solicited_node(&target);
                let ns = NdPacket {
                    src: gw.v6?.addr(),
                    dst,
                    msg: NdMessage::Solicit {
                        target,
                        source_mac: Some(gw.mac),
                    },
                };
                Some(build_eth(
                    ipv6_multicast_mac(&dst),
                    gw.mac,
                    tag,
                    ETH_IPV6,
                    &ns.encode(),
                ))
            }
        }
    }

    pub fn next_hops(&self) -> Vec<NextHopStatus> {
        self.next_hops
            .iter()
            .map(|((vrf, ip), nh)| NextHopStatus {
                vrf: *vrf,
                ip: *ip,
                vlan: nh.vlan,
                mac: nh.mac,
                attempts: nh.attempts,
            })
            .collect()
    }

    /// The resolved next hops of a route; empty means "do not install".
    pub fn route_next_hops(&self, route: &str) -> Vec<(IpAddr, VlanId, MacAddr)> {
        let Some(r) = self.routes.get(route) else {
            return Vec::new();
        };
        r.next_hops
            .iter()
            .filter_map(|ip| {
                let nh = self.next_hops.get(&(r.vrf, *ip))?;
                Some((*ip, nh.vlan?, nh.mac?))
            })
            .collect()
    }

    /// Routes none of whose next hops is resolved.
    pub fn uninstallable_routes(&self) -> Vec<String> {
        self.routes
            .keys()
            .filter(|r| self.route_next_hops(r).is_empty())
            .cloned()
            .collect()
    }

    /// A routed packet to `dst` found no host route (GLEAN punt): ask for
    /// it on the VLAN whose subnet holds it, at most once a second.
    pub fn glean(
        &mut self,
        vrf: Option<VrfId>,
        dst: IpAddr,
        now: Instant,
    ) -> Option<(VlanId, IpAddr)> {
        let (vlan, _) = self
            .gateways
            .iter()
            .find(|(_, g)| vrf.is_none_or(|v| g.vrf == v) && g.covers(&dst))?;
        if self.learned.get(*vlan, &dst).is_some() {
            return None;
        }
        self.gleaned
            .retain(|_, t| now.saturating_duration_since(*t) < RETRY_INITIAL);
        if self.gleaned.contains_key(&dst) {
            return None;
        }
        self.gleaned.insert(dst, now);
        Some((*vlan, dst))
    }

    pub fn vrf_of(&self, vlan: VlanId) -> Option<VrfId> {
        self.gateways.get(&vlan).map(|g| g.vrf)
    }

    pub fn gateways(&self) -> &BTreeMap<VlanId, Gateway> {
        &self.gateways
    }
}
