//! Equal-cost next hops towards every leaf: a BFS from each destination
//! over up links; a port is a next hop when it leads one step closer.
//! Every hop strictly shortens the distance, so label forwarding can never
//! loop, and transit through a leaf is used only when it is shortest.

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
        let dist = bfs(topo, dest);
        for (&node, &d) in &dist {
            if node == dest {
                continue;
            }
            let Some(sw) = topo.graph.node_weight(node) else {
                continue;
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

fn bfs(topo: &Topology, from: NodeIndex) -> HashMap<NodeIndex, u32> {
    let mut dist = HashMap::from([(from, 0)]);
    let mut queue = VecDeque::from([from]);
    while let Some(n) = queue.pop_front() {
        let d = dist[&n];
        for (_, other, _) in topo.up_edges(n) {
            dist.entry(other).or_insert_with(|| {
                queue.push_back(other);
                d + 1
            });
        }
    }
    dist
}
