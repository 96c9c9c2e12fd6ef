//! Equal-cost next hops towards every leaf: a BFS from each destination
//! over up links; a port is a next hop when it leads one step closer.
//! Every hop strictly shortens the distance, so label forwarding can never
//! loop, and transit through a leaf is used only when it is shortest.
//!
//! Drained switches (maintenance) are routed around: the BFS first runs
//! over the graph without them (the destination itself always counts), and
//! a switch that reaches the destination there takes those next hops; only
//! a switch cut off without the drained ones (or a drained switch itself,
//! whose entries stay as they were so frames in flight still arrive) uses
//! the full graph. Both distances strictly decrease along their hops, and a
//! switch on the avoiding graph only ever hands a frame to another switch
//! on it, so forwarding still cannot loop.

use std::collections::{BTreeMap, HashMap, VecDeque};

use petgraph::stable_graph::NodeIndex;

use super::Topology;
use crate::config::{PortNum, Role};

pub(super) fn ecmp_sets(topo: &Topology) -> BTreeMap<String, BTreeMap<u32, Vec<PortNum>>> {
    let mut out: BTreeMap<String, BTreeMap<u32, Vec<PortNum>>> = BTreeMap::new();
    for (&dest, dest_node) in topo
        .nodes
        .values()
        .filter_map(|i| Some((i, topo.graph.node_weight(*i)?)))
        .filter(|(_, n)| n.role == Role::Leaf)
    {
        let dist = bfs(topo, dest, |_| true);
        let avoiding = if topo.observed.drained.is_empty() {
            None
        } else {
            Some(bfs(topo, dest, |n| {
                n == dest
                    || topo
                        .graph
                        .node_weight(n)
                        .is_none_or(|s| !topo.observed.drained.contains(&s.name))
            }))
        };
        for (&node, &d) in &dist {
            if node == dest {
                continue;
            }
            let Some(sw) = topo.graph.node_weight(node) else {
                continue;
            };
            let (dist, d) = match avoiding.as_ref().and_then(|a| Some((a, *a.get(&node)?))) {
                Some((a, d)) if !topo.observed.drained.contains(&sw.name) => (a, d),
                _ => (&dist, d),
            };
            let mut ports: Vec<PortNum> = topo
                .up_edges(node)
                .filter(|(_, other, _)| dist.get(other) == Some(&(d - 1)))
                .map(|(_, _, link)| link.ends_from(&sw.name).0.port)
                .collect();
            ports.sort_unstable();
            out.entry(sw.name.clone())
                .or_default()
                .insert(dest_node.label, ports);
        }
    }
    out
}

/// Hop distances to `from` over up links, through nodes `include` admits.
fn bfs(
    topo: &Topology,
    from: NodeIndex,
    include: impl Fn(NodeIndex) -> bool,
) -> HashMap<NodeIndex, u32> {
    let mut dist = HashMap::from([(from, 0)]);
    let mut queue = VecDeque::from([from]);
    while let Some(n) = queue.pop_front() {
        let d = dist[&n];
        for (_, other, _) in topo.up_edges(n) {
            if !include(other) {
                continue;
            }
            dist.entry(other).or_insert_with(|| {
                queue.push_back(other);
                d + 1
            });
        }
    }
    dist
}
