//! The fabric as a graph: switches are nodes, fabric links are edges with
//! their state. Built from the configuration plus what the controller
//! observes (discovery, port status, LACP), it answers the questions the
//! compiler asks: which ports lead to a leaf (ECMP sets), which links flood
//! (the tree), which leaf delivers for a LAG (designated forwarder).
//!
//! May use: `config`, `net` (its tests build fabrics with
//! `compile::sample`).

mod lag;
mod paths;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::{BTreeMap, BTreeSet};

use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableUnGraph};
use petgraph::visit::EdgeRef;

use crate::config::{Attachment, Fabric, PortNum, PortRef, Role};
use crate::net::MacAddr;

pub use lag::LagGroup;
pub use tree::FloodTree;

/// A link by its two ends, the smaller `PortRef` first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub PortRef, pub PortRef);

impl LinkId {
    pub fn new(a: PortRef, b: PortRef) -> Self {
        if a <= b {
            LinkId(a, b)
        } else {
            LinkId(b, a)
        }
    }

    /// Is `p` one of the two ends?
    pub fn touches(&self, p: &PortRef) -> bool {
        self.0 == *p || self.1 == *p
    }
}

/// What the controller has seen of the fabric; empty means "nothing reported
/// yet": configured links count as up until discovery says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedState {
    /// Links discovery found (`true`) or lost (`false`).
    pub discovered: BTreeMap<LinkId, bool>,
    /// Ports whose operational status is down.
    pub ports_down: BTreeSet<PortRef>,
    /// Members of LACP LAGs that are not (or no longer) in sync.
    pub lacp_unsynced: BTreeSet<PortRef>,
    /// Switches in maintenance that the fabric routes around (decided by
    /// `controller::maintenance` from the `maintenance/<switch>` key and
    /// the switch's read-back): other switches use them neither as a
    /// transit hop nor in the flood tree while another path exists, and a
    /// drained leaf's LAG members carry nothing. A drained switch keeps
    /// its own next hops, so frames already on their way still arrive.
    pub drained: BTreeSet<String>,
    /// Drained leaves whose own LAG groups hand what reaches them to the
    /// other leaf (before their LACP actor goes out of sync).
    pub lags_handed_over: BTreeSet<String>,
    /// Edge ports and LAGs at their learned-MAC limit (port security,
    /// `protocols::learning`): there the data plane drops frames from
    /// sources it does not know, and sends no learn digest for them.
    pub locked_sources: BTreeSet<Attachment>,
}

/// The state of one fabric link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub configured: bool,
    /// `Some(true)` seen by discovery, `Some(false)` lost, `None` not reported.
    pub seen: Option<bool>,
    /// Usable for forwarding: both ports up and not lost by discovery.
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchNode {
    pub name: String,
    pub role: Role,
    pub label: u32,
    pub mac: MacAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricLink {
    pub id: LinkId,
    pub state: LinkState,
}

impl FabricLink {
    /// The end of this link on `switch` and the far end.
    fn ends_from(&self, switch: &str) -> (&PortRef, &PortRef) {
        if self.id.0.switch == switch {
            (&self.id.0, &self.id.1)
        } else {
            (&self.id.1, &self.id.0)
        }
    }
}

/// The MAC a switch uses on fabric links: configured, or derived from its
/// label so it is stable without configuration.
pub fn switch_mac(mac: Option<MacAddr>, label: u32) -> MacAddr {
    mac.unwrap_or(MacAddr([
        0x02,
        0xfa,
        0xb1,
        (label >> 16) as u8,
        (label >> 8) as u8,
        label as u8,
    ]))
}

#[derive(Debug, Clone)]
pub struct Topology {
    graph: StableUnGraph<SwitchNode, FabricLink>,
    /// Our own stable name -> node map (petgraph reuses indices on removal).
    nodes: BTreeMap<String, NodeIndex>,
    observed: ObservedState,
    tree: FloodTree,
    /// switch -> tree ports with a leaf behind them.
    flood: BTreeMap<String, Vec<PortNum>>,
    /// switch -> destination leaf label -> equal-cost next-hop ports.
    ecmp: BTreeMap<String, BTreeMap<u32, Vec<PortNum>>>,
    lags: BTreeMap<String, LagGroup>,
}

impl Topology {
    /// Builds the topology. `previous_tree` is the flood tree in force, so a
    /// change keeps every tree link that is still up (minimal churn).
    pub fn build(
        fabric: &Fabric,
        observed: &ObservedState,
        previous_tree: Option<&FloodTree>,
    ) -> Topology {
        let mut graph = StableUnGraph::default();
        let mut nodes = BTreeMap::new();
        for (name, sw) in &fabric.switches {
            let idx = graph.add_node(SwitchNode {
                name: name.clone(),
                role: sw.role,
                label: sw.label,
                mac: switch_mac(sw.mac, sw.label),
            });
            nodes.insert(name.clone(), idx);
        }
        // Configured and discovered links; a port takes part in one link
        // only (the first by order wins, the validator reports the rest).
        let mut links: BTreeMap<LinkId, LinkState> = BTreeMap::new();
        for l in fabric.links.values() {
            links
                .entry(LinkId::new(l.a.clone(), l.b.clone()))
                .or_insert(LinkState {
                    configured: true,
                    seen: None,
                    up: false,
                })
                .configured = true;
        }
        for (id, seen) in &observed.discovered {
            links
                .entry(LinkId::new(id.0.clone(), id.1.clone()))
                .or_insert(LinkState {
                    configured: false,
                    seen: None,
                    up: false,
                })
                .seen = Some(*seen);
        }
        let mut used_ports = BTreeSet::new();
        for (id, mut state) in links {
            let (Some(&a), Some(&b)) = (nodes.get(&id.0.switch), nodes.get(&id.1.switch)) else {
                continue;
            };
            if a == b || used_ports.contains(&id.0) || used_ports.contains(&id.1) {
                continue;
            }
            used_ports.insert(id.0.clone());
            used_ports.insert(id.1.clone());
            state.up = state.seen != Some(false)
                && !observed.ports_down.contains(&id.0)
                && !observed.ports_down.contains(&id.1);
            graph.add_edge(a, b, FabricLink { id, state });
        }
        let mut topo = Topology {
            graph,
            nodes,
            observed: observed.clone(),
            tree: FloodTree::default(),
            flood: BTreeMap::new(),
            ecmp: BTreeMap::new(),
            lags: BTreeMap::new(),
        };
        topo.tree = tree::compute(&topo, previous_tree);
        topo.flood = tree::flood_ports(&topo);
        topo.ecmp = paths::ecmp_sets(&topo);
        topo.lags = lag::groups(fabric, observed);
        topo
    }

    pub fn switch(&self, name: &str) -> Option<&SwitchNode> {
        self.nodes
            .get(name)
            .and_then(|&i| self.graph.node_weight(i))
    }

    pub fn switches(&self) -> impl Iterator<Item = &SwitchNode> {
        self.nodes
            .values()
            .filter_map(|&i| self.graph.node_weight(i))
    }

    pub fn leaves(&self) -> impl Iterator<Item = &SwitchNode> {
        self.switches().filter(|s| s.role == Role::Leaf)
    }

    /// Every link, in `LinkId` order.
    pub fn links(&self) -> Vec<&FabricLink> {
        let mut v: Vec<&FabricLink> = self.graph.edge_weights().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The links at `switch`: (local port, far end, link).
    pub fn links_of(&self, switch: &str) -> Vec<(PortNum, &PortRef, &FabricLink)> {
        let Some(&idx) = self.nodes.get(switch) else {
            return Vec::new();
        };
        let mut v: Vec<_> = self
            .graph
            .edges(idx)
            .map(|e| {
                let (here, there) = e.weight().ends_from(switch);
                (here.port, there, e.weight())
            })
            .collect();
        v.sort_by_key(|(p, _, _)| *p);
        v
    }

    /// The far end of the fabric link on `port`, if any (up or not).
    pub fn peer(&self, port: &PortRef) -> Option<(&PortRef, &FabricLink)> {
        self.links_of(&port.switch)
            .into_iter()
            .find(|(p, _, _)| *p == port.port)
            .map(|(_, there, l)| (there, l))
    }

    /// Is this port usable: not reported down and, on a fabric link, the
    /// link is up.
    pub fn port_up(&self, port: &PortRef) -> bool {
        if self.observed.ports_down.contains(port) {
            return false;
        }
        self.peer(port).is_none_or(|(_, l)| l.state.up)
    }

    pub fn observed(&self) -> &ObservedState {
        &self.observed
    }

    pub fn flood_tree(&self) -> &FloodTree {
        &self.tree
    }

    /// The fabric ports of `switch` on flood-tree links.
    pub fn tree_ports(&self, switch: &str) -> Vec<PortNum> {
        self.links_of(switch)
            .into_iter()
            .filter(|(_, _, l)| self.tree.contains(&l.id))
            .map(|(p, _, _)| p)
            .collect()
    }

    /// The tree ports of `switch` a flood copy is worth sending on: those
    /// whose far side of the tree has a leaf (a spine hanging off one leaf
    /// only keeps the tree spanning; copies to it would die there).
    pub fn flood_ports(&self, switch: &str) -> Vec<PortNum> {
        self.flood.get(switch).cloned().unwrap_or_default()
    }

    /// Equal-cost next-hop ports from `switch` towards the leaf with `label`
    /// (empty when unreachable or `switch` is that leaf).
    pub fn next_hops(&self, switch: &str, label: u32) -> &[PortNum] {
        self.ecmp
            .get(switch)
            .and_then(|m| m.get(&label))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// All destinations with a next-hop set from `switch`.
    pub fn destinations(&self, switch: &str) -> impl Iterator<Item = (u32, &[PortNum])> {
        self.ecmp
            .get(switch)
            .into_iter()
            .flat_map(|m| m.iter().map(|(l, p)| (*l, p.as_slice())))
    }

    pub fn lag(&self, name: &str) -> Option<&LagGroup> {
        self.lags.get(name)
    }

    pub fn lags(&self) -> &BTreeMap<String, LagGroup> {
        &self.lags
    }

    /// Are all switches connected over up links?
    pub fn is_connected(&self) -> bool {
        let Some(&start) = self.nodes.values().next() else {
            return true;
        };
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for e in self.graph.edges(n) {
                let other = if e.source() == n {
                    e.target()
                } else {
                    e.source()
                };
                if e.weight().state.up && seen.insert(other) {
                    stack.push(other);
                }
            }
        }
        seen.len() == self.nodes.len()
    }

    /// Is `switch` in maintenance (routed around)?
    pub fn drained(&self, switch: &str) -> bool {
        self.observed.drained.contains(switch)
    }

    fn up_edges(&self, n: NodeIndex) -> impl Iterator<Item = (EdgeIndex, NodeIndex, &FabricLink)> {
        self.graph
            .edges(n)
            .filter(|e| e.weight().state.up)
            .map(move |e| {
                let other = if e.source() == n {
                    e.target()
                } else {
                    e.source()
                };
                (e.id(), other, e.weight())
            })
    }
}
