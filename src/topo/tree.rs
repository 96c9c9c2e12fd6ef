//! The flood tree: a spanning tree over the up fabric links.
//!
//! Kruskal with a churn-avoiding order: first every link of the previous
//! tree that is still up, then the other up links ranked spine-first (all
//! links of the first spine by name, then the next spine's ...), so a fresh
//! tree is a star around one spine and a repair swaps only the lost links.

use std::collections::{BTreeSet, HashMap};

use petgraph::stable_graph::NodeIndex;

use super::{LinkId, Topology};
use crate::config::Role;

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

pub(super) fn compute(topo: &Topology, previous: Option<&FloodTree>) -> FloodTree {
    let mut up: Vec<(NodeIndex, NodeIndex, &LinkId, (u8, &str, &str))> = Vec::new();
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
        let prev = |l: &LinkId| !previous.is_some_and(|p| p.contains(l));
        (prev(x.2), x.3, x.2).cmp(&(prev(y.2), y.3, y.2))
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
