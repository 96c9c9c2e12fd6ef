//! The flood tree: a spanning tree over the up fabric links.
//!
//! Kruskal with a churn-avoiding order: first every link of the previous
//! tree that is still up, then the other up links ranked spine-first (all
//! links of the first spine by name, then the next spine's ...), so a fresh
//! tree is a star around one spine and a repair swaps only the lost links.
//! Links touching a drained switch (maintenance) come after all others, so
//! the tree leaves it whenever the rest of the fabric spans without it: a
//! drained spine then hangs off one leaf (and gets no flood copies, having
//! no leaf behind it), a drained leaf is reached but carries no transit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::stable_graph::NodeIndex;

use super::{LinkId, Topology};
use crate::config::{PortNum, Role};

/// The links of the flood tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodTree {
    pub links: BTreeSet<LinkId>,
}

impl FloodTree {
    pub fn contains(&self, link: &LinkId) -> bool {
        self.links.contains(link)
    }
}

/// An up link: its ends, id and rank (spine-leaf first, spine, leaf).
type Candidate<'a> = (NodeIndex, NodeIndex, &'a LinkId, (u8, &'a str, &'a str));

pub(super) fn compute(topo: &Topology, previous: Option<&FloodTree>) -> FloodTree {
    let mut up: Vec<Candidate> = Vec::new();
    for e in topo.graph.edge_indices() {
        let (Some((a, b)), Some(link)) = (topo.graph.edge_endpoints(e), topo.graph.edge_weight(e))
        else {
            continue;
        };
        if !link.state.up {
            continue;
        }
        let (na, nb) = (&topo.graph[a], &topo.graph[b]);
        // Rank: spine-leaf links first, by spine name then leaf name.
        let rank = match (na.role, nb.role) {
            (Role::Spine, Role::Leaf) => (0, na.name.as_str(), nb.name.as_str()),
            (Role::Leaf, Role::Spine) => (0, nb.name.as_str(), na.name.as_str()),
            _ if na.name <= nb.name => (1, na.name.as_str(), nb.name.as_str()),
            _ => (1, nb.name.as_str(), na.name.as_str()),
        };
        up.push((a, b, &link.id, rank));
    }
    up.sort_by(|x, y| {
        let drained = |l: &LinkId| {
            topo.observed.drained.contains(&l.0.switch)
                || topo.observed.drained.contains(&l.1.switch)
        };
        let prev = |l: &LinkId| !previous.is_some_and(|p| p.contains(l));
        (drained(x.2), prev(x.2), x.3, x.2).cmp(&(drained(y.2), prev(y.2), y.3, y.2))
    });
    let mut sets = UnionFind::default();
    let mut links = BTreeSet::new();
    for (a, b, id, _) in up {
        if sets.union(a, b) {
            links.insert(id.clone());
        }
    }
    FloodTree { links }
}

/// Per switch, its tree ports with at least one leaf on the far side:
/// root each tree component, count leaves per subtree; the side of an edge
/// away from the parent is the child's subtree, the other side the rest.
pub(super) fn flood_ports(topo: &Topology) -> BTreeMap<String, Vec<PortNum>> {
    // Tree adjacency: node -> (port here, neighbour).
    let mut adj: BTreeMap<&str, Vec<(PortNum, &str)>> = BTreeMap::new();
    for l in topo
        .graph
        .edge_weights()
        .filter(|l| topo.tree.contains(&l.id))
    {
        adj.entry(&l.id.0.switch)
            .or_default()
            .push((l.id.0.port, &l.id.1.switch));
        adj.entry(&l.id.1.switch)
            .or_default()
            .push((l.id.1.port, &l.id.0.switch));
    }
    let is_leaf = |n: &str| topo.switch(n).is_some_and(|s| s.role == Role::Leaf);
    let mut out: BTreeMap<String, Vec<PortNum>> = BTreeMap::new();
    let mut visited: BTreeSet<&str> = BTreeSet::new();
    for &root in adj.keys() {
        if !visited.insert(root) {
            continue;
        }
        // DFS order with parents, then leaf counts bottom-up.
        let mut order = vec![(root, None::<(&str, PortNum, PortNum)>)];
        let mut i = 0;
        while i < order.len() {
            let (n, _) = order[i];
            for &(port, far) in adj.get(n).into_iter().flatten() {
                if visited.insert(far) {
                    let back = adj[far]
                        .iter()
                        .find(|(_, x)| *x == n)
                        .map_or(0, |(p, _)| *p);
                    order.push((far, Some((n, port, back))));
                }
            }
            i += 1;
        }
        let mut below: HashMap<&str, usize> = HashMap::new();
        for &(n, parent) in order.iter().rev() {
            let count = below.get(n).copied().unwrap_or(0) + usize::from(is_leaf(n));
            below.insert(n, count);
            if let Some((p, _, _)) = parent {
                *below.entry(p).or_default() += count;
            }
        }
        let total = below.get(root).copied().unwrap_or(0);
        for &(n, parent) in &order {
            let Some((p, port_at_parent, port_here)) = parent else {
                continue;
            };
            let sub = below.get(n).copied().unwrap_or(0);
            if sub > 0 {
                out.entry(p.to_string()).or_default().push(port_at_parent);
            }
            if total - sub > 0 {
                out.entry(n.to_string()).or_default().push(port_here);
            }
        }
    }
    for ports in out.values_mut() {
        ports.sort_unstable();
    }
    out
}

#[derive(Default)]
struct UnionFind {
    parent: HashMap<NodeIndex, NodeIndex>,
}

impl UnionFind {
    fn find(&mut self, n: NodeIndex) -> NodeIndex {
        let p = *self.parent.entry(n).or_insert(n);
        if p == n {
            return n;
        }
        let root = self.find(p);
        self.parent.insert(n, root);
        root
    }

    /// Joins the sets of `a` and `b`; false if they were already one.
    fn union(&mut self, a: NodeIndex, b: NodeIndex) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        self.parent.insert(ra, rb);
        true
    }
}
