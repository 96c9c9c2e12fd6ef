//! The compiled fabric, stored compactly and updated incrementally.
//!
//! Three layers per switch: `infra` (per switch, small: see `infra`),
//! `common` (identical on every leaf: routes, host routes, router MACs,
//! remote fdb entries) and `local` (per leaf, overriding `common` for the
//! same key: fdb entries of local hosts, learning entries). A 60-leaf
//! fabric with 100k routes thus stores each route once, not 60 times.
//!
//! Incremental updates write through `set_*`/`remove_*`, which journal the
//! old value of every key they touch; the journal becomes the plans.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::{Fabric, Role, Settings, Vlan, VlanId};
use crate::p4rt::entity::{Entity, EntityKey, SwitchEntities, TableEntry};
use crate::topo::{LagGroup, Topology};

use super::diff::{merge_join, Plan};
use super::infra::{changed_parts, part, update_labels, Part, PARTS};
use super::l3::L3;
use super::reconfig::static_entry;
use super::view::{FabricView, Layer};
use super::{HostEntry, HostKey, Hosts};

/// What host and route compilation needs to know of config and topology.
#[derive(Debug, Clone)]
pub(super) struct Ctx {
    pub settings: Settings,
    pub vlans: BTreeMap<VlanId, Vlan>,
    pub leaf_labels: BTreeMap<String, u32>,
    pub lags: BTreeMap<String, LagGroup>,
}

#[derive(Debug, Default)]
struct Journal {
    common: BTreeMap<EntityKey, Option<Entity>>,
    local: BTreeMap<String, BTreeMap<EntityKey, Option<Entity>>>,
}

#[derive(Debug)]
pub struct CompiledFabric {
    pub(super) ctx: Ctx,
    pub(super) hosts: BTreeMap<HostKey, HostEntry>,
    /// Configured hosts as configured (`hosts` holds them with the
    /// addresses learned for them added).
    pub(super) static_hosts: BTreeMap<HostKey, HostEntry>,
    /// Two configured hosts share a key (the validator rejects that):
    /// only a full compile reproduces what the compile of such a
    /// configuration gives.
    pub(super) static_duplicates: bool,
    roles: BTreeMap<String, Role>,
    /// The topology compiled against (to see what a change touches).
    pub(super) topo: Topology,
    /// The entities, in layers (infra per switch and `Part`, common,
    /// local); cheap to snapshot (`view`).
    pub(super) view: FabricView,
    pub(super) l3: L3,
    journal: Option<Journal>,
    /// During the initial build, common-layer writes are collected here and
    /// bulk-loaded at the end (much cheaper than 100k random B-tree inserts).
    pending: Option<Vec<Entity>>,
}

impl CompiledFabric {
    pub fn new(fabric: &Fabric, topo: &Topology, learned: &Hosts) -> CompiledFabric {
        let ctx = Ctx {
            settings: fabric.settings.clone(),
            vlans: fabric.vlans.clone(),
            leaf_labels: topo.leaves().map(|s| (s.name.clone(), s.label)).collect(),
            lags: topo.lags().clone(),
        };
        let view = FabricView {
            local: ctx
                .leaf_labels
                .keys()
                .map(|l| (l.clone(), Layer::new()))
                .collect(),
            infra: topo
                .switches()
                .map(|s| {
                    (
                        s.name.clone(),
                        PARTS
                            .iter()
                            .map(|p| Arc::new(part(fabric, topo, s, *p)))
                            .collect(),
                    )
                })
                .collect(),
            common: Layer::new(),
        };
        let mut c = CompiledFabric {
            roles: topo.switches().map(|s| (s.name.clone(), s.role)).collect(),
            view,
            topo: topo.clone(),
            l3: L3::new(fabric),
            ctx,
            hosts: BTreeMap::new(),
            static_hosts: BTreeMap::new(),
            static_duplicates: false,
            journal: None,
            pending: Some(Vec::new()),
        };
        c.router_macs();
        c.l3_static_entries();
        for h in fabric.hosts.values().map(static_entry) {
            c.add_host(with_learned_ips(&h, learned.get(&h.key())));
            c.static_duplicates |= c.static_hosts.insert(h.key(), h).is_some();
        }
        for h in learned.values() {
            if !c.static_hosts.contains_key(&h.key()) {
                c.add_host(h.clone());
            }
        }
        c.l3_resolve_all_routes();
        c.flush_pending();
        c
    }

    /// Loads the collected common-layer writes; a later write of a key wins.
    fn flush_pending(&mut self) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        let mut keyed: Vec<(EntityKey, Entity)> = pending.drain(..).map(|e| (e.key(), e)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0)); // stable: equal keys keep write order
        let mut last: Vec<(EntityKey, Entity)> = Vec::with_capacity(keyed.len());
        for (k, e) in keyed {
            match last.last_mut() {
                Some(prev) if prev.0 == k => prev.1 = e,
                _ => last.push((k, e)),
            }
        }
        if self.view.common.is_empty() {
            self.view.common = last.into_iter().collect();
        } else {
            self.view.common.extend(last);
        }
    }

    /// Applies a learned host appearing, moving or going (`None`); static
    /// hosts are not overridden, only the addresses learned for them
    /// change. Returns the writes per switch.
    pub fn update_host(&mut self, key: HostKey, new: Option<HostEntry>) -> BTreeMap<String, Plan> {
        let new = match self.static_hosts.get(&key) {
            Some(s) => Some(with_learned_ips(s, new.as_ref())),
            None => new,
        };
        let new = new.map(|h| HostEntry {
            vlan: key.0,
            mac: key.1,
            ..h
        });
        self.begin_journal();
        self.set_host(key, new);
        self.end_journal()
    }

    /// Replaces the host of `key` (`None`: removes it) as compiled.
    pub(super) fn set_host(&mut self, key: HostKey, new: Option<HostEntry>) {
        match (self.hosts.get(&key), new) {
            // Same addresses: only bridging moves; routes stay untouched.
            (Some(old), Some(new)) if old.ips == new.ips => self.move_host(new),
            (_, new) => {
                self.remove_host(&key);
                if let Some(h) = new {
                    self.add_host(h);
                }
            }
        }
    }

    /// Applies a topology change (links, port or LACP state): recomputes the
    /// per-switch part and the hosts whose LAG changed. Config changes go
    /// through `update_config` (hosts, ports, VLANs) or a new
    /// `CompiledFabric` (the rest).
    pub fn update_topology(&mut self, fabric: &Fabric, topo: &Topology) -> BTreeMap<String, Plan> {
        let mut plans = BTreeMap::new();
        // Leaves of LAGs whose member state changed (DF and selectors).
        let lag_leaves: BTreeSet<&str> = topo
            .lags()
            .iter()
            .filter(|(n, g)| self.topo.lag(n) != Some(*g))
            .flat_map(|(_, g)| g.leaves.iter().map(String::as_str))
            .collect();
        for sw in topo.switches() {
            let parts = match self.view.infra.get(&sw.name) {
                Some(_) => changed_parts(&self.topo, topo, &sw.name, &lag_leaves),
                None => PARTS.to_vec(),
            };
            let slots = self
                .view
                .infra
                .entry(sw.name.clone())
                .or_insert_with(|| PARTS.iter().map(|_| Arc::default()).collect());
            let mut plan = Plan::default();
            for p in parts {
                if p == Part::Labels {
                    // Copied only if a snapshot still shares it.
                    let slot = Arc::make_mut(&mut slots[p as usize]);
                    let changes = update_labels(&self.topo, topo, sw, slot);
                    plan.merge(Plan::from_changes(
                        changes.iter().map(|(o, n)| (o.as_ref(), n.as_ref())),
                    ));
                    continue;
                }
                let new = part(fabric, topo, sw, p);
                let old = &slots[p as usize];
                plan.merge(Plan::from_changes(merge_join(old.iter(), new.iter())));
                slots[p as usize] = Arc::new(new);
            }
            if !plan.is_empty() {
                plans.insert(sw.name.clone(), plan);
            }
        }
        self.topo = topo.clone();
        // Hosts on a LAG whose members changed may change home leaf.
        let changed: BTreeSet<&String> = topo
            .lags()
            .iter()
            .filter(|(n, g)| self.ctx.lags.get(*n) != Some(g))
            .map(|(n, _)| n)
            .collect();
        let moved: Vec<HostKey> = self
            .hosts
            .values()
            .filter(|h| matches!(&h.attachment, crate::config::Attachment::Lag(l) if changed.contains(l)))
            .map(HostEntry::key)
            .collect();
        self.begin_journal();
        self.relocate_hosts(&moved, topo.lags().clone());
        for (sw, plan) in self.end_journal() {
            plans.entry(sw).or_insert_with(Plan::default).merge(plan);
        }
        plans
    }

    /// Every switch's entities as plain maps (clones; for tests, small
    /// fabrics and initial syncs).
    pub fn materialize(&self) -> BTreeMap<String, SwitchEntities> {
        self.roles
            .keys()
            .map(|s| (s.clone(), self.switch_entities(s)))
            .collect()
    }

    /// One switch's entities.
    pub fn switch_entities(&self, switch: &str) -> SwitchEntities {
        self.view.switch_entities(switch)
    }

    /// One switch's entities in key order, borrowed (no copy of the shared
    /// layer): what an agent diffs against what it read from the switch.
    pub fn iter_switch<'a>(
        &'a self,
        switch: &str,
    ) -> impl Iterator<Item = (&'a EntityKey, &'a Entity)> + 'a {
        self.view.iter_switch(switch)
    }

    /// The writes that turn `installed` into this switch's entities.
    pub fn diff_switch(&self, switch: &str, installed: &SwitchEntities) -> Plan {
        self.view.diff_switch(switch, installed)
    }

    /// Number of entities a switch holds (without materializing).
    pub fn switch_len(&self, switch: &str) -> usize {
        self.view.switch_len(switch)
    }

    pub fn switch_names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// An entity of `switch` by key.
    pub fn get(&self, switch: &str, key: &EntityKey) -> Option<&Entity> {
        self.view.get(switch, key)
    }

    /// The entries of one table of `switch`.
    pub fn table_entries(&self, switch: &str, table: &'static str) -> Vec<&TableEntry> {
        self.view.table_entries(switch, table)
    }

    /// The current entities as a snapshot: a few pointer copies; later
    /// updates copy only the tree paths they touch.
    pub fn view(&self) -> &FabricView {
        &self.view
    }

    /// Makes this (freshly compiled) fabric's layers share structure with
    /// `old` where their content is equal (see `FabricView::share_with`).
    pub fn share_with(&mut self, old: &FabricView) {
        self.view.share_with(old);
    }

    // ---- journalled writes ----------------------------------------------

    pub(super) fn set_common(&mut self, e: Entity) {
        if let Some(p) = &mut self.pending {
            p.push(e);
            return;
        }
        let key = e.key();
        let old = self.view.common.insert(key.clone(), e);
        if let Some(j) = &mut self.journal {
            j.common.entry(key).or_insert(old);
        }
    }

    pub(super) fn remove_common(&mut self, key: &EntityKey) {
        if self.pending.is_some() {
            self.flush_pending();
            self.pending = Some(Vec::new());
        }
        let old = self.view.common.remove(key);
        if let Some(j) = &mut self.journal {
            j.common.entry(key.clone()).or_insert(old);
        }
    }

    pub(super) fn set_local(&mut self, leaf: &str, e: Entity) {
        let Some(map) = self.view.local.get_mut(leaf) else {
            return;
        };
        let key = e.key();
        let old = map.insert(key.clone(), e);
        if let Some(j) = &mut self.journal {
            j.local
                .entry(leaf.to_string())
                .or_default()
                .entry(key)
                .or_insert(old);
        }
    }

    pub(super) fn remove_local(&mut self, leaf: &str, key: &EntityKey) {
        let Some(map) = self.view.local.get_mut(leaf) else {
            return;
        };
        let old = map.remove(key);
        if let Some(j) = &mut self.journal {
            j.local
                .entry(leaf.to_string())
                .or_default()
                .entry(key.clone())
                .or_insert(old);
        }
    }

    /// From here on, writes are journalled (see `end_journal`).
    pub(super) fn begin_journal(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// Turns the journal into per-leaf plans: a `common` change reaches
    /// every leaf that does not override the key locally.
    pub(super) fn end_journal(&mut self) -> BTreeMap<String, Plan> {
        let Some(j) = self.journal.take() else {
            return BTreeMap::new();
        };
        let mut plans = BTreeMap::new();
        let no_local = BTreeMap::new();
        // Net changes of the common layer, once for all leaves.
        let common: Vec<(&EntityKey, Option<&Entity>, Option<&Entity>)> = j
            .common
            .iter()
            .map(|(k, old)| (k, old.as_ref(), self.view.common.get(k)))
            .filter(|(_, old, new)| old != new)
            .collect();
        for (leaf, local) in &self.view.local {
            let touched = j.local.get(leaf).unwrap_or(&no_local);
            if common.is_empty() && touched.is_empty() {
                continue;
            }
            let mut changes: Vec<(Option<&Entity>, Option<&Entity>)> = Vec::new();
            for (key, old, new) in &common {
                if !touched.contains_key(*key) && !local.contains_key(*key) {
                    changes.push((*old, *new));
                }
            }
            for (key, old_local) in touched {
                let old_common = match j.common.get(key) {
                    Some(old) => old.as_ref(),
                    None => self.view.common.get(key),
                };
                let old = old_local.as_ref().or(old_common);
                changes.push((old, local.get(key).or_else(|| self.view.common.get(key))));
            }
            let plan = Plan::from_changes(changes);
            if !plan.is_empty() {
                plans.insert(leaf.clone(), plan);
            }
        }
        plans
    }
}

/// A configured host with the addresses learned for it (ARP / ND from its
/// MAC: a SLAAC address, a secondary IPv4) added after its configured
/// ones; the configured attachment stays.
pub(super) fn with_learned_ips(configured: &HostEntry, learned: Option<&HostEntry>) -> HostEntry {
    let mut h = configured.clone();
    for ip in learned.map_or(&[][..], |l| l.ips.as_slice()) {
        if !h.ips.contains(ip) {
            h.ips.push(*ip);
        }
    }
    h
}
