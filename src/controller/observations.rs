//! Reads back what a controller published about the fabric it sees:
//! `status/observed` (links discovery found or lost, ports down, LACP
//! members out of sync, the flood tree in force) and the learned hosts
//! under `status/hosts/<vlan>/<mac>`.
//!
//! Anything that must see the fabric as the controller sees it — `trace`,
//! the lab's convergence check — compiles with these inputs, not with the
//! configuration alone: on a fabric without `links:` every fabric path
//! exists only because discovery found it.

use std::collections::BTreeMap;

use crate::compile::{HostEntry, Hosts};
use crate::config::status::{paths, HostStatus, ObservedStatus};
use crate::net::MacAddr;
use crate::topo::{FloodTree, LinkId, ObservedState};

/// The compiler's observed-state inputs (with the flood tree, when a
/// controller published one) and the learned hosts, from status values by
/// path relative to `status/` (`observed`, `hosts/10/02:..`). Values that
/// do not parse are skipped: a half-written status must not stop a reader.
pub fn from_status(
    status: &BTreeMap<String, serde_json::Value>,
) -> (ObservedState, Option<FloodTree>, Hosts) {
    let mut observed = ObservedState::default();
    let mut tree = None;
    if let Some(o) = status
        .get(paths::OBSERVED)
        .and_then(|v| serde_json::from_value::<ObservedStatus>(v.clone()).ok())
    {
        observed.discovered = o
            .links
            .into_iter()
            .map(|(a, b, seen)| (LinkId::new(a, b), seen))
            .collect();
        observed.ports_down = o.ports_down.into_iter().collect();
        observed.lacp_unsynced = o.lacp_unsynced.into_iter().collect();
        observed.drained = o.drained.into_iter().collect();
        observed.lags_handed_over = o.lags_handed_over.into_iter().collect();
        tree = Some(FloodTree {
            links: o
                .flood_tree
                .into_iter()
                .map(|(a, b)| LinkId::new(a, b))
                .collect(),
        });
    }
    let hosts = learned_hosts(status)
        .into_iter()
        .map(|h| (h.key(), h))
        .collect();
    (observed, tree, hosts)
}

/// The learned hosts in `status/hosts/<vlan>/<mac>` (configured hosts
/// are published there too, with `learned: false`; they are left out).
pub fn learned_hosts(status: &BTreeMap<String, serde_json::Value>) -> Vec<HostEntry> {
    let mut out = Vec::new();
    for (path, v) in status {
        let Some(rest) = path.strip_prefix("hosts/") else {
            continue;
        };
        let Some((vlan, mac)) = rest.split_once('/') else {
            continue;
        };
        let (Ok(vlan), Ok(mac), Ok(h)) = (
            vlan.parse(),
            mac.parse::<MacAddr>(),
            serde_json::from_value::<HostStatus>(v.clone()),
        ) else {
            continue;
        };
        if h.learned {
            out.push(HostEntry {
                vlan,
                mac,
                ips: h.ips,
                attachment: h.attachment,
                learned: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn observations_come_from_status_keys() {
        let status: BTreeMap<String, serde_json::Value> = [
            (
                "observed".to_string(),
                serde_json::json!({"links": [["leaf1/1", "spine1/1", false]],
                                   "ports_down": ["leaf1/1"], "lacp_unsynced": ["leaf2/4"],
                                   "flood_tree": [["leaf2/1", "spine1/2"]]}),
            ),
            (
                "hosts/10/02:00:00:00:00:09".to_string(),
                serde_json::json!({"attachment": {"port": "leaf1/3"}, "ips": ["10.0.10.9"],
                                   "learned": true, "last_seen": 1}),
            ),
            (
                "hosts/10/02:00:00:00:00:0a".to_string(),
                serde_json::json!({"attachment": {"port": "leaf1/4"}, "ips": [],
                                   "learned": false, "last_seen": 1}),
            ),
            ("hosts/10/not-a-mac".to_string(), serde_json::json!({})),
        ]
        .into_iter()
        .collect();
        let (o, tree, hosts) = from_status(&status);
        assert_eq!(o.discovered.len(), 1);
        assert!(o.discovered.values().all(|seen| !seen));
        assert_eq!(o.ports_down.len(), 1);
        assert_eq!(o.lacp_unsynced.len(), 1);
        assert_eq!(tree.map(|t| t.links.len()), Some(1));
        // The configured host and the garbage key are not learned hosts.
        assert_eq!(hosts.len(), 1);
        let h = hosts.values().next().unwrap();
        assert_eq!(h.ips, vec!["10.0.10.9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn no_status_means_nothing_observed() {
        let (o, tree, hosts) = from_status(&BTreeMap::new());
        assert_eq!(o, ObservedState::default());
        assert!(tree.is_none());
        assert!(hosts.is_empty());
    }
}
