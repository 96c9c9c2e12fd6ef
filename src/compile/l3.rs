//! Routing: router MACs, gateway and subnet punts, host routes, static
//! routes over ECMP next-hop sets. Every leaf holds the same L3 entries
//! (anycast gateway), so they all live in the `common` layer.
//!
//! A routing table key (VRF, prefix) can be wanted by several sources; the
//! winner is, in order: the gateway address (for_router), a host route, a
//! static route with at least one resolved next hop, the subnet (glean).
//! `refresh_prefix` re-decides one key, which keeps incremental updates
//! and the full compile identical.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{Fabric, Route, VrfId};
use crate::p4rt::entity::{ActionCall, EntityKey, Match, TableAction, TableKey};

use super::build::{direct, entry, group, mac, member};
use super::ids::{fnv1a, IdSpace};
use super::names::*;
use super::state::CompiledFabric;
use super::HostKey;

/// A next hop: an address in a VRF.
pub(super) type NhKey = (VrfId, IpAddr);
type NhSet = Arc<[NhKey]>;

const ECMP_GROUP_SIZE: i32 = 64;

#[derive(Debug)]
struct SetInfo {
    refs: u32,
    nexthop_id: u32,
}

#[derive(Debug)]
pub(super) struct L3 {
    /// Hosts claiming each routable address; the first one owns it.
    pub ip_hosts: BTreeMap<NhKey, BTreeSet<HostKey>>,
    gateways: BTreeSet<NhKey>,
    subnets: BTreeSet<(VrfId, IpNet)>,
    /// Static routes in name order; indexes below refer to this.
    routes: Vec<Route>,
    by_prefix: HashMap<(VrfId, IpNet), Vec<u32>>,
    by_next_hop: HashMap<NhKey, Vec<u32>>,
    /// The resolved next-hop set of each route (`None`: not installed).
    route_sets: Vec<Option<NhSet>>,
    sets: HashMap<NhSet, SetInfo>,
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
            routes: fabric.routes.values().cloned().collect(),
            by_prefix: HashMap::new(),
            by_next_hop: HashMap::new(),
            route_sets: vec![None; fabric.routes.len()],
            sets: HashMap::new(),
            members: HashMap::new(),
            member_ids: IdSpace::new(31),
            group_ids: IdSpace::new(31),
            nexthop_ids: IdSpace::new(16),
            routes_live: false,
        };
        for v in fabric.vlans.values() {
            if let Some(g) = v.ipv4_gateway {
                l3.gateways.insert((v.vrf, IpAddr::V4(g.addr())));
                l3.subnets.insert((v.vrf, IpNet::V4(g.trunc())));
            }
            if let Some(g) = v.ipv6_gateway {
                l3.gateways.insert((v.vrf, IpAddr::V6(g.addr())));
                l3.subnets.insert((v.vrf, IpNet::V6(g.trunc())));
            }
        }
        for (i, r) in l3.routes.iter().enumerate() {
            let i = i as u32;
            l3.by_prefix
                .entry((r.vrf, r.prefix.trunc()))
                .or_default()
                .push(i);
            for nh in &r.next_hops {
                let list = l3.by_next_hop.entry((r.vrf, *nh)).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        l3
    }
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
    TableKey::new(table).exact(F_VRF_ID, vrf).with(
        field,
        Match::Lpm {
            value,
            prefix_len: u32::from(net.prefix_len()),
        },
    )
}

impl CompiledFabric {
    /// Router MAC entries: every VLAN with a gateway, on every leaf.
    pub(super) fn router_macs(&mut self) {
        let entries: Vec<_> = self
            .ctx
            .vlans
            .iter()
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
            self.set_common(e);
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
        for i in 0..self.l3.routes.len() {
            self.refresh_route(i as u32);
        }
    }

    /// The owner of an address changed (host came, went or moved).
    pub(super) fn l3_refresh_ip(&mut self, nh: NhKey) {
        self.refresh_prefix(nh.0, IpNet::from(nh.1));
        if !self.l3.routes_live {
            return;
        }
        let routes = self.l3.by_next_hop.get(&nh).cloned().unwrap_or_default();
        for r in routes {
            self.refresh_route(r);
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
        let resolved = self
            .l3
            .by_prefix
            .get(&(vrf, net))
            .into_iter()
            .flatten()
            .find_map(|r| {
                let set = self.l3.route_sets.get(*r as usize)?.as_ref()?;
                self.l3.sets.get(set)
            });
        if let Some(info) = resolved {
            return Some(ActionCall::new(A_SET_NEXTHOP).param(P_NEXTHOP_ID, info.nexthop_id));
        }
        self.l3
            .subnets
            .contains(&(vrf, net))
            .then(|| ActionCall::new(A_PUNT_GLEAN))
    }

    /// Re-resolves one static route's next hops.
    fn refresh_route(&mut self, r: u32) {
        let Some(route) = self.l3.routes.get(r as usize) else {
            return;
        };
        let (vrf, prefix) = (route.vrf, route.prefix);
        let mut want: Vec<NhKey> = route
            .next_hops
            .iter()
            .map(|ip| (vrf, *ip))
            .filter(|nh| self.l3.ip_hosts.contains_key(nh))
            .collect();
        want.sort_unstable();
        want.dedup();
        let old = self.l3.route_sets[r as usize].clone();
        if old.as_deref().unwrap_or(&[]) == want.as_slice() {
            return;
        }
        let new = if want.is_empty() {
            None
        } else {
            self.acquire_set(&want)
        };
        self.l3.route_sets[r as usize] = new;
        if let Some(old) = old {
            self.release_set(&old);
        }
        self.refresh_prefix(vrf, prefix);
    }

    fn acquire_set(&mut self, want: &[NhKey]) -> Option<NhSet> {
        if let Some((set, _)) = self.l3.sets.get_key_value(want) {
            let set = set.clone();
            if let Some(info) = self.l3.sets.get_mut(&set) {
                info.refs += 1;
            }
            return Some(set);
        }
        let set: NhSet = Arc::from(want);
        let hash = set_hash(want);
        let nexthop_id = self.l3.nexthop_ids.alloc(&set, hash)?;
        let target = if want.len() == 1 {
            TableAction::Member(self.acquire_member(want[0]))
        } else {
            let Some(gid) = self.l3.group_ids.alloc(&set, hash) else {
                self.l3.nexthop_ids.release(&set);
                return None;
            };
            let members: Vec<(u32, Option<u32>)> = want
                .iter()
                .map(|nh| (self.acquire_member(*nh), None))
                .collect();
            self.set_common(group(P_ECMP, gid, members, ECMP_GROUP_SIZE));
            TableAction::Group(gid)
        };
        self.set_common(entry(
            TableKey::new(T_NEXTHOPS).exact(F_NEXTHOP_ID, nexthop_id),
            target,
        ));
        self.l3.sets.insert(
            set.clone(),
            SetInfo {
                refs: 1,
                nexthop_id,
            },
        );
        Some(set)
    }

    fn release_set(&mut self, set: &NhSet) {
        let Some(info) = self.l3.sets.get_mut(set) else {
            return;
        };
        info.refs -= 1;
        if info.refs > 0 {
            return;
        }
        let nexthop_id = info.nexthop_id;
        self.l3.sets.remove(set);
        self.remove_common(&EntityKey::Table(
            TableKey::new(T_NEXTHOPS).exact(F_NEXTHOP_ID, nexthop_id),
        ));
        self.l3.nexthop_ids.release(set);
        if set.len() > 1 {
            if let Some(gid) = self.l3.group_ids.get(set) {
                self.remove_common(&EntityKey::Group {
                    profile: P_ECMP,
                    group_id: gid,
                });
                self.l3.group_ids.release(set);
            }
        }
        for nh in set.iter() {
            self.release_member(nh);
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
