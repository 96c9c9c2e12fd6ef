//! Configuration changes applied incrementally: which keys of the
//! configuration changed (`classify`), and, for the kinds with an
//! incremental path, applying them to a `CompiledFabric`
//! (`CompiledFabric::update_config`) with the same result as compiling the
//! new configuration anew.
//!
//! Incremental: static hosts (`hosts/<id>`: added, changed, removed; the
//! per-host path learned hosts take), edge ports (the port's switch's port
//! and flood entries) and VLANs (every leaf's port and flood entries, the
//! VLAN's router MAC, gateway and subnet routes, and its hosts re-placed).
//! A full compile: settings, switches, links, LAGs and routes — they change
//! the topology, ids or entities of every host and route.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Fabric, Host, PortRef, Section, VlanId};
use crate::net::MacAddr;

use super::diff::{merge_join, Plan};
use super::infra::{part, Part};
use super::state::CompiledFabric;
use super::{HostEntry, HostKey, Hosts};

/// What differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Only keys with an incremental path changed (any of these may be
    /// empty; all empty: nothing changed).
    Incremental {
        hosts: Vec<String>,
        ports: Vec<PortRef>,
        vlans: Vec<VlanId>,
    },
    /// A change that needs a full compile; names the first such section.
    Full(&'static str),
}

impl ConfigChange {
    pub fn is_empty(&self) -> bool {
        matches!(self, ConfigChange::Incremental { hosts, ports, vlans }
            if hosts.is_empty() && ports.is_empty() && vlans.is_empty())
    }
}

/// Classifies the change from `old` to `new`.
pub fn classify(old: &Fabric, new: &Fabric) -> ConfigChange {
    // Cheapest comparisons first; routes (100k at scale) last, and free
    // when both versions share them (`Section`).
    if old.settings != new.settings {
        return ConfigChange::Full("settings");
    }
    if old.switches != new.switches {
        return ConfigChange::Full("switches");
    }
    if old.links != new.links {
        return ConfigChange::Full("links");
    }
    if old.lags != new.lags {
        return ConfigChange::Full("lags");
    }
    if old.routes != new.routes {
        return ConfigChange::Full("routes");
    }
    ConfigChange::Incremental {
        // A shared section is unchanged: no need to walk 10k hosts.
        hosts: if Section::same(&old.hosts, &new.hosts) {
            Vec::new()
        } else {
            changed_keys(&old.hosts, &new.hosts)
        },
        ports: changed_keys(&old.ports, &new.ports),
        vlans: changed_keys(&old.vlans, &new.vlans),
    }
}

/// The keys whose values differ between two maps (added, removed, changed).
fn changed_keys<K: Ord + Clone, V: PartialEq>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> Vec<K> {
    let mut out = Vec::new();
    let mut o = old.iter().peekable();
    let mut n = new.iter().peekable();
    loop {
        let order = match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ko, _)), Some((kn, _))) => ko.cmp(kn),
        };
        match order {
            std::cmp::Ordering::Less => out.extend(o.next().map(|(k, _)| k.clone())),
            std::cmp::Ordering::Greater => out.extend(n.next().map(|(k, _)| k.clone())),
            std::cmp::Ordering::Equal => {
                if let (Some((k, vo)), Some((_, vn))) = (o.next(), n.next()) {
                    if vo != vn {
                        out.push(k.clone());
                    }
                }
            }
        }
    }
    out
}

/// A configured host as the compiler holds it.
pub(super) fn static_entry(h: &Host) -> HostEntry {
    HostEntry {
        vlan: h.vlan,
        mac: h.mac,
        ips: h.ips.clone(),
        attachment: h.attachment.clone(),
        learned: false,
    }
}

/// Every host key of a VLAN (host keys sort by VLAN first).
fn vlan_range(vlan: VlanId) -> std::ops::RangeInclusive<HostKey> {
    (vlan, MacAddr([0; 6]))..=(vlan, MacAddr([0xff; 6]))
}

impl CompiledFabric {
    /// Applies the configuration change from `old` (what this fabric was
    /// compiled from) to `new`, where `classify` finds an incremental path
    /// for all of it; `learned` are the learned hosts this fabric reflects.
    /// Returns the writes per switch, or `None` (nothing applied) when the
    /// change needs a new `CompiledFabric`. The result equals
    /// `CompiledFabric::new(new, topo, learned)` (same topology).
    pub fn update_config(
        &mut self,
        old: &Fabric,
        new: &Fabric,
        learned: &Hosts,
    ) -> Option<BTreeMap<String, Plan>> {
        let ConfigChange::Incremental {
            hosts,
            ports,
            vlans,
        } = classify(old, new)
        else {
            return None;
        };
        // Static hosts by key: the old keys of the changed names go, the
        // new ones come. Two names with one key (the validator rejects
        // that), before or after, is left to a full compile.
        if self.static_duplicates {
            return None;
        }
        let gone: BTreeSet<HostKey> = hosts
            .iter()
            .filter_map(|n| old.hosts.get(n))
            .map(|h| (h.vlan, h.mac))
            .collect();
        let mut came: BTreeMap<HostKey, HostEntry> = BTreeMap::new();
        for h in hosts.iter().filter_map(|n| new.hosts.get(n)) {
            let e = static_entry(h);
            let taken = self.static_hosts.contains_key(&e.key()) && !gone.contains(&e.key());
            if taken || came.insert(e.key(), e).is_some() {
                return None;
            }
        }

        let mut plans = self.rebuild_infra(new, &ports, !vlans.is_empty());
        self.begin_journal();
        // Hosts of a changed VLAN leave under the old VLAN settings and
        // come back under the new ones (their routes, router MAC, VRF).
        let vlan_set: BTreeSet<VlanId> = vlans.iter().copied().collect();
        let replaced: Vec<HostKey> = vlans
            .iter()
            .flat_map(|v| self.hosts.range(vlan_range(*v)).map(|(k, _)| *k))
            .collect();
        for k in &replaced {
            self.remove_host(k);
        }
        if !vlans.is_empty() {
            self.router_macs_of(&vlans, false);
            self.ctx.vlans = new.vlans.clone();
            self.router_macs_of(&vlans, true);
            self.l3_gateways_changed();
        }
        for k in &gone {
            self.static_hosts.remove(k);
        }
        let mut keys: BTreeSet<HostKey> = replaced.into_iter().collect();
        keys.extend(gone);
        keys.extend(came.keys().copied());
        self.static_hosts.extend(came);
        for k in keys {
            let want = match self.static_hosts.get(&k) {
                Some(s) => Some(super::state::with_learned_ips(s, learned.get(&k))),
                None => learned.get(&k).map(|h| HostEntry {
                    vlan: k.0,
                    mac: k.1,
                    ..h.clone()
                }),
            };
            if vlan_set.contains(&k.0) {
                // Removed above: placed anew.
                if let Some(h) = want {
                    self.add_host(h);
                }
            } else {
                self.set_host(k, want);
            }
        }
        for (sw, plan) in self.end_journal() {
            plans.entry(sw).or_default().merge(plan);
        }
        Some(plans)
    }

    /// Recomputes the port and flood parts of the switches whose edge
    /// ports changed (every switch when a VLAN changed); a part whose
    /// content is unchanged keeps its `Arc` (snapshots keep sharing it).
    fn rebuild_infra(
        &mut self,
        fabric: &Fabric,
        ports: &[PortRef],
        every: bool,
    ) -> BTreeMap<String, Plan> {
        let switches: BTreeSet<String> = if every {
            self.topo.switches().map(|s| s.name.clone()).collect()
        } else {
            ports.iter().map(|p| p.switch.clone()).collect()
        };
        let mut plans = BTreeMap::new();
        for name in switches {
            let (Some(sw), Some(slots)) = (self.topo.switch(&name), self.view.infra.get_mut(&name))
            else {
                continue;
            };
            let mut plan = Plan::default();
            for p in [Part::Static, Part::Flood] {
                let new = part(fabric, &self.topo, sw, p);
                let old = &slots[p as usize];
                if **old != new {
                    plan.merge(Plan::from_changes(merge_join(old.iter(), new.iter())));
                    slots[p as usize] = std::sync::Arc::new(new);
                }
            }
            if !plan.is_empty() {
                plans.insert(name, plan);
            }
        }
        plans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_finds_added_removed_and_changed() {
        let a: BTreeMap<u32, &str> = [(1, "a"), (2, "b"), (4, "d"), (6, "f")].into();
        let b: BTreeMap<u32, &str> = [(2, "b"), (3, "c"), (4, "D"), (6, "f"), (7, "g")].into();
        assert_eq!(changed_keys(&a, &b), vec![1, 3, 4, 7]);
        assert_eq!(changed_keys(&b, &a), vec![1, 3, 4, 7]);
        assert!(changed_keys(&a, &a).is_empty());
        assert_eq!(changed_keys(&a, &BTreeMap::new()), vec![1, 2, 4, 6]);
    }
}
