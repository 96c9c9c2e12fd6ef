//! Routing: router MACs, gateway and subnet punts, host routes, static
//! routes over ECMP next-hop groups. Every leaf holds the same L3 entries
//! (anycast gateway), so they all live in the `common` layer.
//!
//! A routing table key (VRF, prefix) can be wanted by several sources; the
//! winner is, in order: the gateway address (for_router), a host route, a
//! static route with at least one resolved next hop, the subnet (glean).
//! `refresh_prefix` re-decides one key, which keeps incremental updates
//! and the full compile identical.
//!
//! Static routes point at a next-hop group named by their *configured*
//! next-hop set; the group's members are the resolved next hops. A next hop
//! coming or going modifies the groups it is in, not the (many) routes
//! using them; routes change only when a set gains its first or loses its
//! last resolved next hop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{Fabric, Vlan, VlanId, VrfId};
use crate::p4rt::entity::{ActionCall, EntityKey, TableAction, TableKey};

use super::build::{direct, entry, group, mac, member};
use super::ids::{fnv1a, IdSpace};
use super::names::*;
use super::state::CompiledFabric;
use super::HostKey;

/// A next hop: an address in a VRF.
pub(super) type NhKey = (VrfId, IpAddr);
type NhSet = Arc<[NhKey]>;

const ECMP_GROUP_SIZE: i32 = 64;

/// A configured next-hop set and what of it is resolved and installed.
#[derive(Debug)]
struct HopSet {
    hops: NhSet,
    /// Routes using this set.
    routes: Vec<u32>,
    /// Hops owned by a known host (sorted).
    resolved: Vec<NhKey>,
    /// (nexthop id, group id when more than one hop is configured) while
    /// at least one hop is resolved.
    ids: Option<(u32, Option<u32>)>,
}

#[derive(Debug)]
pub(super) struct L3 {
    /// Hosts claiming each routable address; the first one owns it.
    pub ip_hosts: BTreeMap<NhKey, BTreeSet<HostKey>>,
    gateways: BTreeSet<NhKey>,
    subnets: BTreeSet<(VrfId, IpNet)>,
    /// Static routes in name order: (VRF, prefix, next-hop set index).
    routes: Vec<(VrfId, IpNet, u32)>,
    by_prefix: HashMap<(VrfId, IpNet), Vec<u32>>,
    sets: Vec<HopSet>,
    /// Next hop -> sets containing it.
    by_next_hop: HashMap<NhKey, Vec<u32>>,
    /// Resolved next hop -> (sets it is installed in, member id).
    members: HashMap<NhKey, (u32, u32)>,
    member_ids: IdSpace<NhKey>,
    group_ids: IdSpace<NhSet>,
    nexthop_ids: IdSpace<NhSet>,
    /// Routes follow host changes only once the initial build resolved them.
    routes_live: bool,
}

impl L3 {
    pub fn new(fabric: &Fabric) -> L3 {
        let mut l3 = L3 {
            ip_hosts: BTreeMap::new(),
            gateways: BTreeSet::new(),
            subnets: BTreeSet::new(),
            routes: Vec::new(),
            by_prefix: HashMap::new(),
            sets: Vec::new(),
            by_next_hop: HashMap::new(),
            members: HashMap::new(),
            member_ids: IdSpace::new(31),
            group_ids: IdSpace::new(31),
            nexthop_ids: IdSpace::new(16),
            routes_live: false,
        };
        (l3.gateways, l3.subnets) = gateways_and_subnets(&fabric.vlans);
        let mut set_index: HashMap<NhSet, u32> = HashMap::new();
        for (i, r) in fabric.routes.values().enumerate() {
            let i = i as u32;
            let mut hops: Vec<NhKey> = r.next_hops.iter().map(|ip| (r.vrf, *ip)).collect();
            hops.sort_unstable();
            hops.dedup();
            let hops: NhSet = hops.into();
            let s = *set_index.entry(hops.clone()).or_insert_with(|| {
                let s = l3.sets.len() as u32;
                for nh in hops.iter() {
                    l3.by_next_hop.entry(*nh).or_default().push(s);
                }
                l3.sets.push(HopSet {
                    hops,
                    routes: Vec::new(),
                    resolved: Vec::new(),
                    ids: None,
                });
                s
            });
            l3.sets[s as usize].routes.push(i);
            l3.routes.push((r.vrf, r.prefix.trunc(), s));
            l3.by_prefix
                .entry((r.vrf, r.prefix.trunc()))
                .or_default()
                .push(i);
        }
        l3
    }
}

/// The gateway addresses and subnets of `vlans`, per VRF.
fn gateways_and_subnets(
    vlans: &BTreeMap<VlanId, Vlan>,
) -> (BTreeSet<NhKey>, BTreeSet<(VrfId, IpNet)>) {
    let (mut gateways, mut subnets) = (BTreeSet::new(), BTreeSet::new());
    for v in vlans.values() {
        if let Some(g) = v.ipv4_gateway {
            gateways.insert((v.vrf, IpAddr::V4(g.addr())));
            subnets.insert((v.vrf, IpNet::V4(g.trunc())));
        }
        if let Some(g) = v.ipv6_gateway {
            gateways.insert((v.vrf, IpAddr::V6(g.addr())));
            subnets.insert((v.vrf, IpNet::V6(g.trunc())));
        }
    }
    (gateways, subnets)
}

fn nh_bytes(nh: &NhKey, out: &mut Vec<u8>) {
    out.extend(nh.0.to_be_bytes());
    match nh.1 {
        IpAddr::V4(a) => out.extend([4].iter().chain(a.octets().iter())),
        IpAddr::V6(a) => out.extend([6].iter().chain(a.octets().iter())),
    }
}

fn set_hash(set: &[NhKey]) -> u64 {
    let mut b = Vec::with_capacity(set.len() * 19);
    for nh in set {
        nh_bytes(nh, &mut b);
    }
    fnv1a(&b)
}

fn prefix_key(vrf: VrfId, net: IpNet) -> TableKey {
    let (table, field, value) = match net {
        IpNet::V4(n) => (T_IPV4, F_IPV4_DST, u128::from(u32::from(n.network()))),
        IpNet::V6(n) => (T_IPV6, F_IPV6_DST, u128::from(n.network())),
    };
    super::build::route_key(table, field, vrf, value, u32::from(net.prefix_len()))
}

impl CompiledFabric {
    /// Router MAC entries: every VLAN with a gateway, on every leaf.
    pub(super) fn router_macs(&mut self) {
        let vlans: Vec<VlanId> = self.ctx.vlans.keys().copied().collect();
        self.router_macs_of(&vlans, true);
    }

    /// Sets (`add`) or removes the router MAC entries of `vlans` as the
    /// current VLAN settings give them.
    pub(super) fn router_macs_of(&mut self, vlans: &[VlanId], add: bool) {
        let entries: Vec<_> = vlans
            .iter()
            .filter_map(|id| Some((id, self.ctx.vlans.get(id)?)))
            .filter(|(_, v)| v.ipv4_gateway.is_some() || v.ipv6_gateway.is_some())
            .map(|(id, v)| {
                let gw = v.gateway_mac.unwrap_or(self.ctx.settings.gateway_mac);
                let key = TableKey::new(T_ROUTER_MAC)
                    .exact(F_VLAN_ID, *id)
                    .exact(F_ETH_DST, mac(gw));
                direct(key, ActionCall::new(A_SET_ROUTED))
            })
            .collect();
        for e in entries {
            if add {
                self.set_common(e);
            } else {
                self.remove_common(&e.key());
            }
        }
    }

    /// The VLANs (`ctx.vlans`) changed: re-decides the gateway and subnet
    /// keys that came or went.
    pub(super) fn l3_gateways_changed(&mut self) {
        let (gateways, subnets) = gateways_and_subnets(&self.ctx.vlans);
        let old_gateways = std::mem::replace(&mut self.l3.gateways, gateways);
        let old_subnets = std::mem::replace(&mut self.l3.subnets, subnets);
        let gateways: Vec<NhKey> = old_gateways
            .symmetric_difference(&self.l3.gateways)
            .copied()
            .collect();
        for (vrf, ip) in gateways {
            self.refresh_prefix(vrf, IpNet::from(ip));
        }
        let subnets: Vec<(VrfId, IpNet)> = old_subnets
            .symmetric_difference(&self.l3.subnets)
            .copied()
            .collect();
        for (vrf, net) in subnets {
            self.refresh_prefix(vrf, net);
        }
    }

    /// Gateway addresses and subnets (before any host or route).
    pub(super) fn l3_static_entries(&mut self) {
        let gws: Vec<NhKey> = self.l3.gateways.iter().copied().collect();
        for (vrf, ip) in gws {
            self.refresh_prefix(vrf, IpNet::from(ip));
        }
        let subnets: Vec<_> = self.l3.subnets.iter().copied().collect();
        for (vrf, net) in subnets {
            self.refresh_prefix(vrf, net);
        }
    }

    /// Resolves every static route (once, after all hosts are in).
    pub(super) fn l3_resolve_all_routes(&mut self) {
        self.l3.routes_live = true;
        for s in 0..self.l3.sets.len() {
            self.refresh_set(s as u32);
        }
    }

    /// The owner of an address changed (host came, went or moved).
    pub(super) fn l3_refresh_ip(&mut self, nh: NhKey) {
        self.refresh_prefix(nh.0, IpNet::from(nh.1));
        if !self.l3.routes_live {
            return;
        }
        let sets = self.l3.by_next_hop.get(&nh).cloned().unwrap_or_default();
        for s in sets {
            self.refresh_set(s);
        }
        if let Some(&(_, id)) = self.l3.members.get(&nh) {
            if let Some(action) = self.route_direct_to(&nh) {
                self.set_common(member(P_ECMP, id, action));
            }
        }
    }

    /// `route_direct` to the owner of an address.
    fn route_direct_to(&self, nh: &NhKey) -> Option<ActionCall> {
        let key = self.l3.ip_hosts.get(nh)?.first()?;
        let h = self.hosts.get(key)?;
        let v = self.ctx.vlans.get(&h.vlan);
        let gw = v
            .and_then(|v| v.gateway_mac)
            .unwrap_or(self.ctx.settings.gateway_mac);
        Some(
            ActionCall::new(A_ROUTE_DIRECT)
                .param(P_DMAC, mac(h.mac))
                .param(P_SMAC, mac(gw))
                .param(P_VLAN_ID, h.vlan),
        )
    }

    /// Re-decides the routing entry of one (VRF, prefix).
    fn refresh_prefix(&mut self, vrf: VrfId, net: IpNet) {
        let net = net.trunc();
        let tk = prefix_key(vrf, net);
        match self.decide(vrf, net) {
            Some(action) => self.set_common(direct(tk, action)),
            None => self.remove_common(&EntityKey::Table(tk)),
        }
    }

    fn decide(&self, vrf: VrfId, net: IpNet) -> Option<ActionCall> {
        if net.prefix_len() == net.max_prefix_len() {
            let nh = (vrf, net.addr());
            if self.l3.gateways.contains(&nh) {
                return Some(ActionCall::new(A_PUNT_FOR_ROUTER));
            }
            if let Some(a) = self.route_direct_to(&nh) {
                return Some(a);
            }
        }
        let routes = self.l3.by_prefix.get(&(vrf, net)).into_iter().flatten();
        let installed = routes.filter_map(|r| {
            let (_, _, s) = self.l3.routes.get(*r as usize)?;
            self.l3.sets.get(*s as usize)?.ids
        });
        if let Some((nexthop_id, _)) = installed.into_iter().next() {
            return Some(ActionCall::new(A_SET_NEXTHOP).param(P_NEXTHOP_ID, nexthop_id));
        }
        let glean = self.l3.subnets.contains(&(vrf, net));
        glean.then(|| ActionCall::new(A_PUNT_GLEAN))
    }

    /// Re-resolves one next-hop set: its group follows the resolved hops;
    /// its routes are re-decided only when it starts or stops resolving.
    fn refresh_set(&mut self, s: u32) {
        let Some(set) = self.l3.sets.get(s as usize) else {
            return;
        };
        let hops = set.hops.clone();
        let want: Vec<NhKey> = hops
            .iter()
            .copied()
            .filter(|nh| self.l3.ip_hosts.contains_key(nh))
            .collect();
        if want == set.resolved {
            return;
        }
        let old = std::mem::take(&mut self.l3.sets[s as usize].resolved);
        let was_installed = self.l3.sets[s as usize].ids.is_some();
        let ids = if want.is_empty() {
            None
        } else {
            self.set_ids(s, &hops)
        };
        let want = if ids.is_some() { want } else { Vec::new() };
        for nh in want.iter().filter(|nh| !old.contains(nh)) {
            self.acquire_member(*nh);
        }
        let nexthop_key = |id: u32| TableKey::new(T_NEXTHOPS).exact(F_NEXTHOP_ID, id);
        match ids {
            Some((nexthop_id, Some(gid))) => {
                let members: Vec<(u32, Option<u32>)> = want
                    .iter()
                    .filter_map(|nh| self.l3.members.get(nh))
                    .map(|m| (m.1, None))
                    .collect();
                self.set_common(group(P_ECMP, gid, members, ECMP_GROUP_SIZE));
                self.set_common(entry(nexthop_key(nexthop_id), TableAction::Group(gid)));
            }
            Some((nexthop_id, None)) => {
                let mid = want
                    .first()
                    .and_then(|nh| self.l3.members.get(nh))
                    .map_or(0, |m| m.1);
                self.set_common(entry(nexthop_key(nexthop_id), TableAction::Member(mid)));
            }
            None => {
                if let Some((nexthop_id, gid)) = self.l3.sets[s as usize].ids.take() {
                    self.remove_common(&EntityKey::Table(nexthop_key(nexthop_id)));
                    self.l3.nexthop_ids.release(&hops);
                    if let Some(gid) = gid {
                        self.remove_common(&EntityKey::Group {
                            profile: P_ECMP,
                            group_id: gid,
                        });
                        self.l3.group_ids.release(&hops);
                    }
                }
            }
        }
        for nh in old.iter().filter(|nh| !want.contains(nh)) {
            self.release_member(nh);
        }
        let set = &mut self.l3.sets[s as usize];
        set.resolved = want;
        set.ids = ids;
        if was_installed != ids.is_some() {
            let routes = set.routes.clone();
            for r in routes {
                if let Some(&(vrf, prefix, _)) = self.l3.routes.get(r as usize) {
                    self.refresh_prefix(vrf, prefix);
                }
            }
        }
    }

    /// The ids of an installed set (allocated on first install); `None`
    /// when an id space is full (the set's routes stay uninstalled).
    fn set_ids(&mut self, s: u32, hops: &NhSet) -> Option<(u32, Option<u32>)> {
        if let Some(ids) = self.l3.sets.get(s as usize).and_then(|x| x.ids) {
            return Some(ids);
        }
        let hash = set_hash(hops);
        let nexthop_id = self.l3.nexthop_ids.alloc(hops, hash)?;
        if hops.len() == 1 {
            return Some((nexthop_id, None));
        }
        match self.l3.group_ids.alloc(hops, hash) {
            Some(gid) => Some((nexthop_id, Some(gid))),
            None => {
                self.l3.nexthop_ids.release(hops);
                None
            }
        }
    }

    fn acquire_member(&mut self, nh: NhKey) -> u32 {
        if let Some((refs, id)) = self.l3.members.get_mut(&nh) {
            *refs += 1;
            return *id;
        }
        let mut b = Vec::new();
        nh_bytes(&nh, &mut b);
        // 2^31 ids: running out would need two billion next hops.
        let id = self.l3.member_ids.alloc(&nh, fnv1a(&b)).unwrap_or(0);
        if let Some(action) = self.route_direct_to(&nh) {
            self.set_common(member(P_ECMP, id, action));
        }
        self.l3.members.insert(nh, (1, id));
        id
    }

    fn release_member(&mut self, nh: &NhKey) {
        let Some((refs, id)) = self.l3.members.get_mut(nh) else {
            return;
        };
        *refs -= 1;
        if *refs == 0 {
            let id = *id;
            self.l3.members.remove(nh);
            self.l3.member_ids.release(nh);
            self.remove_common(&EntityKey::Member {
                profile: P_ECMP,
                member_id: id,
            });
        }
    }
}
