//! A forwarding checker: interprets compiled entities as the data plane of
//! `docs/pipeline.md` does, over the topology's links, and answers "where
//! does this frame go?". Used by the property tests and by `p4fabric
//! trace`.
//!
//! Selectors (ECMP, LAG, fabric) are explored member by member: a trace
//! through one is a set of alternatives, each of which must be right.
//! Multicast replicas are all followed: a flood is a set of copies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{Fabric, Host, PortNum, PortRef, VlanId};
use crate::net::MacAddr;
use crate::p4rt::entity::{
    ActionCall, Entity, EntityKey, Match, SwitchEntities, TableAction, TableEntry, TableKey, Value,
};
use crate::topo::Topology;

use super::build::mac;
use super::names::*;
use super::CompiledFabric;

/// Read access to the entities of every switch.
pub trait DataPlane {
    fn get(&self, switch: &str, key: &EntityKey) -> Option<&Entity>;
    fn table(&self, switch: &str, table: &'static str) -> Vec<&TableEntry>;
}

impl DataPlane for BTreeMap<String, SwitchEntities> {
    fn get(&self, switch: &str, key: &EntityKey) -> Option<&Entity> {
        self.get(switch)?.get(key)
    }

    fn table(&self, switch: &str, table: &'static str) -> Vec<&TableEntry> {
        self.get(switch)
            .map_or_else(Vec::new, |m| table_entries(m, table))
    }
}

/// The entries of one table in one switch's entities.
pub fn table_entries<'a>(m: &'a SwitchEntities, table: &'static str) -> Vec<&'a TableEntry> {
    let start = EntityKey::Table(TableKey::new(table).priority(i32::MIN));
    m.range(start..)
        .map_while(|(_, e)| match e {
            Entity::Table(t) if t.key.table == table => Some(t),
            _ => None,
        })
        .collect()
}

impl DataPlane for super::view::FabricView {
    fn get(&self, switch: &str, key: &EntityKey) -> Option<&Entity> {
        super::view::FabricView::get(self, switch, key)
    }

    fn table(&self, switch: &str, table: &'static str) -> Vec<&TableEntry> {
        self.table_entries(switch, table)
    }
}

/// A fabric's desired entities with one switch's replaced by what it holds
/// (read back): "what the switches hold" when the others hold what they
/// should (their agents converged).
pub struct WithHeld<'a, D: DataPlane> {
    pub rest: &'a D,
    pub switch: &'a str,
    pub held: &'a SwitchEntities,
}

impl<D: DataPlane> DataPlane for WithHeld<'_, D> {
    fn get(&self, switch: &str, key: &EntityKey) -> Option<&Entity> {
        if switch == self.switch {
            self.held.get(key)
        } else {
            self.rest.get(switch, key)
        }
    }

    fn table(&self, switch: &str, table: &'static str) -> Vec<&TableEntry> {
        if switch == self.switch {
            table_entries(self.held, table)
        } else {
            self.rest.table(switch, table)
        }
    }
}

impl DataPlane for CompiledFabric {
    fn get(&self, switch: &str, key: &EntityKey) -> Option<&Entity> {
        CompiledFabric::get(self, switch, key)
    }

    fn table(&self, switch: &str, table: &'static str) -> Vec<&TableEntry> {
        self.table_entries(switch, table)
    }
}

/// An Ethernet frame as a host sends or receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub dst: MacAddr,
    pub src: MacAddr,
    /// The 802.1Q tag, if tagged.
    pub vlan: Option<VlanId>,
    pub eth_type: u16,
    pub ip_dst: Option<IpAddr>,
    pub ttl: u8,
}

/// Where a copy (or alternative) of the frame ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent out of an edge port.
    Delivered {
        port: PortRef,
        frame: Frame,
    },
    /// Punted to the controller (the frame goes no further).
    Punted {
        switch: String,
        reason: u8,
    },
    Dropped {
        switch: String,
        reason: String,
    },
    /// Still in the fabric after too many hops.
    Loop {
        switch: String,
    },
}

/// A fabric hop: out of `from` into `to`, carrying `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub from: PortRef,
    pub to: PortRef,
    pub label: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub outcomes: Vec<Outcome>,
    pub hops: Vec<Hop>,
    /// Copies sent to the CPU (copy_to_cpu) on the way: (switch, reason).
    pub copies: Vec<(String, u8)>,
    /// Source MAC misses reported for learning: (switch, port).
    pub learn: Vec<(String, PortNum)>,
    /// The trace went through a selector: outcomes are alternatives.
    pub branched: bool,
}

/// The frame inside a switch: internal VLAN, VRF, source LAG.
#[derive(Debug, Clone)]
struct Pkt {
    frame: Frame,
    vlan: VlanId,
    vrf: u16,
    src_lag: u16,
    /// Fabric hops this copy may still take before it counts as a loop.
    budget: usize,
}

const MAX_FABRIC_HOPS: usize = 16;

/// The destination MAC a host puts on a frame to `to`: `to`'s own within
/// one VLAN; otherwise its gateway's (the VLAN's anycast MAC, else the
/// fabric's), where the frame is routed.
pub fn first_hop_mac(fabric: &Fabric, from: &Host, to: &Host) -> MacAddr {
    if from.vlan == to.vlan {
        return to.mac;
    }
    fabric
        .vlans
        .get(&from.vlan)
        .and_then(|v| v.gateway_mac)
        .unwrap_or(fabric.settings.gateway_mac)
}

pub struct Checker<'a, D: DataPlane> {
    pub dp: &'a D,
    pub topo: &'a Topology,
}

fn action(e: Option<&Entity>) -> Option<&TableAction> {
    match e? {
        Entity::Table(t) => Some(&t.action),
        _ => None,
    }
}

fn param(a: &ActionCall, name: &str) -> Value {
    a.params
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, v)| *v)
}

impl<'a, D: DataPlane> Checker<'a, D> {
    pub fn new(dp: &'a D, topo: &'a Topology) -> Self {
        Checker { dp, topo }
    }

    /// Follows `frame` entering the fabric at edge port `ingress`.
    pub fn trace(&self, ingress: &PortRef, frame: Frame) -> Trace {
        let mut t = Trace::default();
        self.edge_ingress(&mut t, ingress, frame);
        t
    }

    fn lookup(&self, sw: &str, key: TableKey) -> Option<&TableAction> {
        action(self.dp.get(sw, &EntityKey::Table(key)))
    }

    fn drop(&self, t: &mut Trace, sw: &str, reason: impl Into<String>) {
        t.outcomes.push(Outcome::Dropped {
            switch: sw.to_string(),
            reason: reason.into(),
        });
    }

    /// Resolves a direct action, a member or every member of a group of
    /// `profile` into action calls (alternatives).
    fn resolve(
        &self,
        t: &mut Trace,
        sw: &str,
        profile: &'static str,
        a: &TableAction,
    ) -> Vec<ActionCall> {
        let member = |id: u32| match self.dp.get(
            sw,
            &EntityKey::Member {
                profile,
                member_id: id,
            },
        ) {
            Some(Entity::Member(m)) => Some(m.action.clone()),
            _ => None,
        };
        match a {
            TableAction::Direct(c) => vec![c.clone()],
            TableAction::Member(id) => member(*id).into_iter().collect(),
            TableAction::Group(gid) => {
                let Some(Entity::Group(g)) = self.dp.get(
                    sw,
                    &EntityKey::Group {
                        profile,
                        group_id: *gid,
                    },
                ) else {
                    return Vec::new();
                };
                // The data plane skips members whose watch port is down.
                let live: Vec<ActionCall> = g
                    .members
                    .iter()
                    .filter(|m| {
                        m.watch_port
                            .is_none_or(|p| self.topo.port_up(&PortRef::new(sw, p)))
                    })
                    .filter_map(|m| member(m.member_id))
                    .collect();
                if live.len() > 1 {
                    t.branched = true;
                }
                live
            }
        }
    }

    fn edge_ingress(&self, t: &mut Trace, ingress: &PortRef, frame: Frame) {
        let sw = ingress.switch.as_str();
        let port = ingress.port;
        let lag = match self.lookup(sw, TableKey::new(T_PORTS).exact(F_INGRESS_PORT, port)) {
            Some(TableAction::Direct(a)) if a.name == A_SET_EDGE_PORT => param(a, P_LAG_ID) as u16,
            _ => return self.drop(t, sw, format!("port {port} is not an edge port")),
        };
        let vkey = TableKey::new(T_VLANS)
            .exact(F_INGRESS_PORT, port)
            .exact(F_VLAN_VALID, u8::from(frame.vlan.is_some()))
            .exact(F_VLAN_ID, frame.vlan.unwrap_or(0));
        let (vlan, vrf) = match self.lookup(sw, vkey) {
            Some(TableAction::Direct(a)) => {
                (param(a, P_VLAN_ID) as VlanId, param(a, P_VRF_ID) as u16)
            }
            _ => {
                return self.drop(
                    t,
                    sw,
                    format!("VLAN {:?} not allowed on port {port}", frame.vlan),
                )
            }
        };
        match self.acl(sw, port, &frame) {
            Some((A_PUNT, r)) => {
                return t.outcomes.push(Outcome::Punted {
                    switch: sw.to_string(),
                    reason: r,
                });
            }
            Some((A_COPY_TO_CPU, r)) => t.copies.push((sw.to_string(), r)),
            Some((A_DROP_ACL, _)) => return self.drop(t, sw, "ACL drop"),
            _ => {}
        }
        // learning.p4: (port, 0) on a plain edge port, (0, LAG) on a member.
        let learn_port = if lag == 0 { port } else { 0 };
        let learn = TableKey::new(T_SRC_MAC)
            .exact(F_VLAN_ID, vlan)
            .exact(F_ETH_SRC, mac(frame.src))
            .exact(F_INGRESS_PORT, learn_port)
            .exact(F_LAG_ID, lag);
        if self.lookup(sw, learn).is_none() {
            t.learn.push((sw.to_string(), port));
        }
        let pkt = Pkt {
            frame,
            vlan,
            vrf,
            src_lag: lag,
            budget: MAX_FABRIC_HOPS,
        };
        let rm = TableKey::new(T_ROUTER_MAC)
            .exact(F_VLAN_ID, vlan)
            .exact(F_ETH_DST, mac(pkt.frame.dst));
        if self.lookup(sw, rm).is_some() {
            return self.route(t, sw, port, pkt);
        }
        self.bridge(t, sw, port, pkt, false);
    }

    /// The highest-priority ACL entry matching the frame: (action, reason).
    fn acl(&self, sw: &str, port: PortNum, f: &Frame) -> Option<(&'static str, u8)> {
        let field = |name: &str| -> Value {
            match name {
                F_INGRESS_PORT => port.into(),
                F_ETH_TYPE => f.eth_type.into(),
                F_ETH_DST => mac(f.dst),
                F_ETH_SRC => mac(f.src),
                F_VLAN_ID => f.vlan.unwrap_or(0).into(),
                _ => 0,
            }
        };
        self.dp
            .table(sw, T_ACL)
            .into_iter()
            .filter(|e| {
                e.key.matches.iter().all(|(n, m)| match m {
                    Match::Ternary { value, mask } => field(n) & mask == value & mask,
                    Match::Exact(v) | Match::Optional(v) => field(n) == *v,
                    _ => true,
                })
            })
            .max_by_key(|e| e.key.priority)
            .and_then(|e| match &e.action {
                TableAction::Direct(a) => Some((a.name, param(a, P_REASON) as u8)),
                _ => None,
            })
    }

    fn route(&self, t: &mut Trace, sw: &str, in_port: PortNum, pkt: Pkt) {
        let Some(dst) = pkt.frame.ip_dst else {
            return self.drop(t, sw, "routed frame without IP");
        };
        let hit = (0..=match dst {
            IpAddr::V4(_) => 32u32,
            IpAddr::V6(_) => 128,
        })
            .rev()
            .find_map(|len| {
                let (table, field, value) = match dst {
                    IpAddr::V4(a) => (T_IPV4, F_IPV4_DST, u128::from(u32::from(a)) & mask(32, len)),
                    IpAddr::V6(a) => (T_IPV6, F_IPV6_DST, u128::from(a) & mask(128, len)),
                };
                self.lookup(
                    sw,
                    super::build::route_key(table, field, pkt.vrf, value, len),
                )
            });
        let Some(TableAction::Direct(a)) = hit else {
            return self.drop(t, sw, format!("no route to {dst}"));
        };
        let rewrites = match a.name {
            A_ROUTE_DIRECT => vec![a.clone()],
            A_SET_NEXTHOP => {
                let key = TableKey::new(T_NEXTHOPS).exact(F_NEXTHOP_ID, param(a, P_NEXTHOP_ID));
                let Some(nh) = self.lookup(sw, key).cloned() else {
                    return self.drop(t, sw, "next hop id without entry");
                };
                self.resolve(t, sw, P_ECMP, &nh)
            }
            A_PUNT_GLEAN => {
                return t.outcomes.push(Outcome::Punted {
                    switch: sw.into(),
                    reason: reason::GLEAN,
                })
            }
            A_PUNT_FOR_ROUTER => {
                return t.outcomes.push(Outcome::Punted {
                    switch: sw.into(),
                    reason: reason::FOR_ROUTER,
                })
            }
            _ => return self.drop(t, sw, "route drops"),
        };
        if rewrites.is_empty() {
            return self.drop(t, sw, "next hop group empty");
        }
        if pkt.frame.ttl <= 1 {
            return t.outcomes.push(Outcome::Punted {
                switch: sw.into(),
                reason: reason::TTL_EXPIRED,
            });
        }
        for rw in rewrites {
            let mut p = pkt.clone();
            p.frame.dst = MacAddr::from_value(param(&rw, P_DMAC));
            p.frame.src = MacAddr::from_value(param(&rw, P_SMAC));
            p.vlan = param(&rw, P_VLAN_ID) as VlanId;
            p.frame.ttl -= 1;
            self.bridge(t, sw, in_port, p, false);
        }
    }

    /// The fdb lookup and what follows. `from_fabric`: the frame was popped
    /// here, so it may not go back to the fabric.
    fn bridge(&self, t: &mut Trace, sw: &str, in_port: PortNum, pkt: Pkt, from_fabric: bool) {
        let key = TableKey::new(T_FDB)
            .exact(F_VLAN_ID, pkt.vlan)
            .exact(F_ETH_DST, mac(pkt.frame.dst));
        let hit = if pkt.frame.dst.is_multicast() {
            None
        } else {
            self.lookup(sw, key)
        };
        let Some(TableAction::Direct(a)) = hit else {
            if from_fabric {
                return self.drop(t, sw, "fdb miss for a frame from the fabric");
            }
            return self.flood_vlan(t, sw, in_port, pkt);
        };
        match a.name {
            A_TO_PORT => self.egress(t, sw, param(a, P_PORT) as PortNum, pkt, None),
            A_TO_LAG => {
                let lag = param(a, P_LAG_ID);
                let what = format!("LAG {lag}");
                let Some(members) = self.select(t, sw, T_LAG_MEMBERS, F_LAG_ID, lag, P_LAG, &what)
                else {
                    return;
                };
                for m in members {
                    match m.name {
                        A_TO_MEMBER => {
                            self.egress(t, sw, param(&m, P_PORT) as PortNum, pkt.clone(), None)
                        }
                        A_LAG_TO_LEAF if !from_fabric => {
                            self.to_label(t, sw, param(&m, P_LABEL) as u32, pkt.clone())
                        }
                        _ => self.drop(t, sw, "LAG fallback for a frame from the fabric"),
                    }
                }
            }
            A_TO_LEAF if !from_fabric => self.to_label(t, sw, param(a, P_LABEL) as u32, pkt),
            _ => self.drop(t, sw, format!("fdb action {} for this frame", a.name)),
        }
    }

    /// Looks up a selector table (`field` = `value`) and resolves the
    /// members; records a drop and returns `None` when there is nothing.
    #[allow(clippy::too_many_arguments)]
    fn select(
        &self,
        t: &mut Trace,
        sw: &str,
        table: &'static str,
        field: &'static str,
        value: Value,
        profile: &'static str,
        what: &str,
    ) -> Option<Vec<ActionCall>> {
        let Some(sel) = self
            .lookup(sw, TableKey::new(table).exact(field, value))
            .cloned()
        else {
            self.drop(t, sw, format!("{what}: no entry in {table}"));
            return None;
        };
        let members = self.resolve(t, sw, profile, &sel);
        if members.is_empty() {
            self.drop(t, sw, format!("{what}: no live member"));
            return None;
        }
        Some(members)
    }

    /// Label forwarding towards `label` (ingress leaf or transit).
    fn to_label(&self, t: &mut Trace, sw: &str, label: u32, pkt: Pkt) {
        let what = format!("label {label}");
        let Some(ports) = self.select(t, sw, T_LABEL_FWD, F_LABEL, label.into(), P_FABRIC, &what)
        else {
            return;
        };
        for m in ports {
            self.egress(
                t,
                sw,
                param(&m, P_PORT) as PortNum,
                pkt.clone(),
                Some(label),
            );
        }
    }

    /// Replicates into the VLAN's flood group of a leaf.
    fn flood_vlan(&self, t: &mut Trace, sw: &str, in_port: PortNum, pkt: Pkt) {
        let key = TableKey::new(T_VLAN_FLOOD).exact(F_VLAN_ID, pkt.vlan);
        let Some(TableAction::Direct(a)) = self.lookup(sw, key) else {
            return self.drop(t, sw, format!("no flood group for VLAN {}", pkt.vlan));
        };
        self.replicate(t, sw, in_port, param(a, P_GROUP) as u32, pkt);
    }

    fn replicate(&self, t: &mut Trace, sw: &str, in_port: PortNum, group: u32, pkt: Pkt) {
        let Some(Entity::Multicast(g)) = self.dp.get(sw, &EntityKey::Multicast(group)) else {
            return self.drop(t, sw, format!("multicast group {group} missing"));
        };
        let label = flood_label(pkt.src_lag);
        for r in &g.replicas {
            if r.port == in_port {
                continue;
            }
            let lag = match self.lookup(sw, TableKey::new(T_PORT_LAG).exact(F_EGRESS_PORT, r.port))
            {
                Some(TableAction::Direct(a)) => param(a, P_LAG_ID) as u16,
                _ => 0,
            };
            if lag != 0 && lag == pkt.src_lag {
                continue; // source pruning: never back into the sender's LAG
            }
            self.egress(t, sw, r.port, pkt.clone(), Some(label));
        }
    }

    /// Egress: fabric ports encapsulate with `label`, edge ports tag.
    fn egress(&self, t: &mut Trace, sw: &str, port: PortNum, pkt: Pkt, label: Option<u32>) {
        let here = PortRef::new(sw, port);
        if let Some(TableAction::Direct(encap)) =
            self.lookup(sw, TableKey::new(T_FABRIC_PORTS).exact(F_EGRESS_PORT, port))
        {
            let Some(label) = label else {
                return self.drop(t, sw, "fabric port without label");
            };
            let Some((peer, link)) = self.topo.peer(&here) else {
                return self.drop(t, sw, format!("fabric port {port} has no link"));
            };
            if !link.state.up {
                return self.drop(t, sw, format!("link {port} down"));
            }
            let peer_mac = self.topo.switch(&peer.switch).map(|s| s.mac);
            if peer_mac.map(mac) != Some(param(encap, P_DMAC)) {
                return self.drop(
                    t,
                    sw,
                    format!("encap dmac on port {port} is not the neighbour's"),
                );
            }
            t.hops.push(Hop {
                from: here,
                to: peer.clone(),
                label,
            });
            let mut p = pkt;
            p.frame.vlan = Some(p.vlan);
            return self.fabric_ingress(t, peer, label, p);
        }
        if !self.topo.port_up(&here) {
            return self.drop(t, sw, format!("port {port} down"));
        }
        let key = TableKey::new(T_VLAN_OUT)
            .exact(F_EGRESS_PORT, port)
            .exact(F_VLAN_ID, pkt.vlan);
        let mut frame = pkt.frame;
        match self.lookup(sw, key) {
            Some(TableAction::Direct(a)) if a.name == A_PUSH_TAG => frame.vlan = Some(pkt.vlan),
            Some(TableAction::Direct(a)) if a.name == A_POP_TAG => frame.vlan = None,
            _ => {
                return self.drop(
                    t,
                    sw,
                    format!("VLAN {} not allowed out of port {port}", pkt.vlan),
                )
            }
        }
        t.outcomes.push(Outcome::Delivered { port: here, frame });
    }

    fn fabric_ingress(&self, t: &mut Trace, at: &PortRef, label: u32, mut pkt: Pkt) {
        let sw = at.switch.as_str();
        match self.lookup(sw, TableKey::new(T_PORTS).exact(F_INGRESS_PORT, at.port)) {
            Some(TableAction::Direct(a)) if a.name == A_SET_FABRIC_PORT => {}
            _ => return self.drop(t, sw, format!("port {} is not a fabric port", at.port)),
        }
        if pkt.budget == 0 {
            return t.outcomes.push(Outcome::Loop { switch: sw.into() });
        }
        pkt.budget -= 1;
        let hit = self
            .dp
            .table(sw, T_MPLS_IN)
            .into_iter()
            .filter(|e| {
                e.key.matches.iter().all(|(_, m)| match m {
                    Match::Ternary { value, mask } => u128::from(label) & mask == value & mask,
                    _ => false,
                })
            })
            .max_by_key(|e| e.key.priority)
            .map(|e| e.action.clone());
        let Some(TableAction::Direct(a)) = hit else {
            return self.drop(t, sw, format!("label {label} unknown"));
        };
        match a.name {
            A_POP_TO_BRIDGE => self.bridge(t, sw, at.port, pkt, true),
            A_FLOOD_POP => {
                pkt.src_lag = flood_label_lag(label);
                self.flood_vlan(t, sw, at.port, pkt);
            }
            A_FLOOD_TRANSIT => {
                pkt.src_lag = flood_label_lag(label);
                self.replicate(t, sw, at.port, param(&a, P_GROUP) as u32, pkt);
            }
            A_TRANSIT => self.to_label(t, sw, label, pkt),
            _ => self.drop(t, sw, format!("label {label}: {}", a.name)),
        }
    }
}

/// The network mask of a `len`-bit prefix of a `width`-bit address.
fn mask(width: u32, len: u32) -> u128 {
    let full = u128::MAX >> (128 - width);
    full & !full.checked_shr(len).unwrap_or(0)
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Delivered { port, frame } => {
                let tag = frame
                    .vlan
                    .map_or("untagged".to_string(), |v| format!("vlan {v}"));
                write!(
                    f,
                    "delivered out of {port} ({tag}, {} -> {})",
                    frame.src, frame.dst
                )
            }
            Outcome::Punted { switch, reason } => write!(f, "punted at {switch} (reason {reason})"),
            Outcome::Dropped { switch, reason } => write!(f, "dropped at {switch}: {reason}"),
            Outcome::Loop { switch } => write!(f, "loop: still in the fabric at {switch}"),
        }
    }
}

/// A human-readable trace, as `p4fabric trace` prints it.
impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for h in &self.hops {
            writeln!(f, "hop {} -> {} label {:#x}", h.from, h.to, h.label)?;
        }
        for (sw, r) in &self.copies {
            writeln!(f, "copy to the controller at {sw} (reason {r})")?;
        }
        for (sw, p) in &self.learn {
            writeln!(f, "unknown source: learning digest from {sw}/{p}")?;
        }
        if self.branched {
            writeln!(
                f,
                "through a selector: each outcome below is one alternative"
            )?;
        }
        for o in &self.outcomes {
            writeln!(f, "{o}")?;
        }
        Ok(())
    }
}
