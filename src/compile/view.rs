//! The compiled fabric's entities as cheap, shareable snapshots.
//!
//! `FabricView` holds the three layers of `CompiledFabric` (infra per
//! switch, `common` shared by every leaf, `local` per leaf) in persistent
//! structures: infra parts behind `Arc`s, the host layers as `imbl`
//! B-trees. Cloning a view copies a few pointers; an update after a clone
//! copies only the touched tree paths. The controller hands every agent an
//! `Arc<FabricView>` per generation instead of a materialized map per
//! switch, and an agent that installed one snapshot finds what changed in
//! the next one by skipping the subtrees both share
//! (`changed_keys`: O(changes x log n), not O(entities)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::p4rt::entity::{Entity, EntityKey, SwitchEntities, TableEntry};

use super::diff::{merge_join, Plan};

/// A persistent map of entities (structural sharing between versions).
pub type Layer = imbl::OrdMap<EntityKey, Entity>;

/// Every switch's desired entities, in layers (see `CompiledFabric`).
#[derive(Debug, Clone, Default)]
pub struct FabricView {
    /// Per switch, one map per `infra::Part`.
    pub(super) infra: BTreeMap<String, Vec<Arc<SwitchEntities>>>,
    /// Identical on every leaf.
    pub(super) common: Layer,
    /// Per leaf, overriding `common` for the same key. Spines have none.
    pub(super) local: BTreeMap<String, Layer>,
}

impl FabricView {
    /// One switch's entities in key order, borrowed (no copy of the shared
    /// layer).
    pub fn iter_switch<'a>(
        &'a self,
        switch: &str,
    ) -> impl Iterator<Item = (&'a EntityKey, &'a Entity)> + 'a {
        // The per-switch layers are small: merge them into one sorted map.
        let mut own: BTreeMap<&EntityKey, &Entity> = BTreeMap::new();
        for p in self.infra.get(switch).into_iter().flatten() {
            own.extend(p.iter());
        }
        let local = self.local.get(switch);
        own.extend(local.into_iter().flatten());
        let common = local.map(|_| self.common.iter()).into_iter().flatten();
        let mut a = own.into_iter().peekable();
        let mut b = common.peekable();
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (None, None) => None,
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (Some((ka, _)), Some((kb, _))) => match (*ka).cmp(*kb) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    b.next(); // the local entry overrides the shared one
                    a.next()
                }
            },
        })
    }

    /// One switch's entities as a plain map (a copy).
    pub fn switch_entities(&self, switch: &str) -> SwitchEntities {
        self.iter_switch(switch)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// An entity of `switch` by key (the same precedence as `iter_switch`:
    /// local over later infra parts over earlier ones over common).
    pub fn get(&self, switch: &str, key: &EntityKey) -> Option<&Entity> {
        let local = self.local.get(switch);
        if let Some(e) = local.and_then(|l| l.get(key)) {
            return Some(e);
        }
        for p in self.infra.get(switch).into_iter().flatten().rev() {
            if let Some(e) = p.get(key) {
                return Some(e);
            }
        }
        local.and_then(|_| self.common.get(key))
    }

    /// Number of entities a switch holds (without materializing).
    pub fn switch_len(&self, switch: &str) -> usize {
        let infra: usize = self
            .infra
            .get(switch)
            .into_iter()
            .flatten()
            .map(|m| m.len())
            .sum();
        match self.local.get(switch) {
            Some(local) => {
                let overridden = local
                    .keys()
                    .filter(|k| self.common.contains_key(*k))
                    .count();
                infra + self.common.len() + local.len() - overridden
            }
            None => infra,
        }
    }

    /// The writes that turn `installed` into this switch's entities.
    pub fn diff_switch(&self, switch: &str, installed: &SwitchEntities) -> Plan {
        Plan::from_changes(merge_join(installed.iter(), self.iter_switch(switch)))
    }

    /// The keys of `switch` whose entity may differ between `old` and
    /// `self` (a superset of the real differences; exact where the layers
    /// differ). Subtrees the two versions share are skipped, so a view
    /// derived from `old` by a few updates costs O(changes x log n).
    pub fn changed_keys(&self, old: &FabricView, switch: &str) -> BTreeSet<EntityKey> {
        let mut keys = BTreeSet::new();
        let empty = Vec::new();
        let new_parts = self.infra.get(switch).unwrap_or(&empty);
        let old_parts = old.infra.get(switch).unwrap_or(&empty);
        for i in 0..new_parts.len().max(old_parts.len()) {
            match (old_parts.get(i), new_parts.get(i)) {
                (Some(o), Some(n)) if Arc::ptr_eq(o, n) => {}
                (o, n) => {
                    let o = o.map(|m| m.iter()).into_iter().flatten();
                    let n = n.map(|m| m.iter()).into_iter().flatten();
                    keys.extend(merge_join_keys(o, n));
                }
            }
        }
        let (new_local, old_local) = (self.local.get(switch), old.local.get(switch));
        layer_diff(old_local, new_local, &mut keys);
        let new_common = new_local.map(|_| &self.common);
        let old_common = old_local.map(|_| &old.common);
        layer_diff(old_common, new_common, &mut keys);
        keys
    }

    /// Re-expresses this view's layers as edits of `old`'s, where they are
    /// equal in content, so the two share structure (what an agent that
    /// installed `old` then diffs in O(changes)). Used after a full
    /// recompile (configuration change). Content is unchanged.
    pub fn share_with(&mut self, old: &FabricView) {
        for (sw, parts) in self.infra.iter_mut() {
            let Some(old_parts) = old.infra.get(sw) else {
                continue;
            };
            for (p, o) in parts.iter_mut().zip(old_parts) {
                if **p == **o {
                    *p = o.clone();
                }
            }
        }
        rebase(&mut self.common, &old.common);
        for (leaf, layer) in self.local.iter_mut() {
            if let Some(o) = old.local.get(leaf) {
                rebase(layer, o);
            }
        }
    }

    /// The entries of one table of `switch`.
    pub fn table_entries(&self, switch: &str, table: &'static str) -> Vec<&TableEntry> {
        let mut out: BTreeMap<&EntityKey, &TableEntry> = BTreeMap::new();
        for p in self.infra.get(switch).into_iter().flatten() {
            out.extend(table_range(p.range(table_start(table)..), table));
        }
        if let Some(local) = self.local.get(switch) {
            out.extend(table_range(self.common.range(table_start(table)..), table));
            out.extend(table_range(local.range(table_start(table)..), table));
        }
        out.into_values().collect()
    }
}

/// Keys whose values differ between two key-sorted sequences.
fn merge_join_keys<'a>(
    old: impl Iterator<Item = (&'a EntityKey, &'a Entity)>,
    new: impl Iterator<Item = (&'a EntityKey, &'a Entity)>,
) -> Vec<EntityKey> {
    let mut out = Vec::new();
    let mut o = old.peekable();
    let mut n = new.peekable();
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some((k, _)), None) => {
                out.push((*k).clone());
                o.next();
            }
            (None, Some((k, _))) => {
                out.push((*k).clone());
                n.next();
            }
            (Some((ko, vo)), Some((kn, vn))) => match ko.cmp(kn) {
                std::cmp::Ordering::Less => {
                    out.push((*ko).clone());
                    o.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((*kn).clone());
                    n.next();
                }
                std::cmp::Ordering::Equal => {
                    if vo != vn {
                        out.push((*ko).clone());
                    }
                    o.next();
                    n.next();
                }
            },
        }
    }
    out
}

/// Adds the keys that differ between two optional layers.
fn layer_diff(old: Option<&Layer>, new: Option<&Layer>, keys: &mut BTreeSet<EntityKey>) {
    match (old, new) {
        (None, None) => {}
        (Some(l), None) | (None, Some(l)) => keys.extend(l.keys().cloned()),
        (Some(o), Some(n)) => {
            for d in o.diff(n) {
                let k = match d {
                    imbl::ordmap::DiffItem::Add(k, _) => k,
                    imbl::ordmap::DiffItem::Remove(k, _) => k,
                    imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k,
                };
                keys.insert(k.clone());
            }
        }
    }
}

/// Makes `layer` (same content) an edited copy of `old`.
fn rebase(layer: &mut Layer, old: &Layer) {
    if old.is_empty() {
        return; // nothing to share (and no copy of `layer` needed)
    }
    let mut shared = old.clone();
    for d in old.diff(layer) {
        match d {
            imbl::ordmap::DiffItem::Add(k, v) => {
                shared.insert(k.clone(), v.clone());
            }
            imbl::ordmap::DiffItem::Update { new: (k, v), .. } => {
                shared.insert(k.clone(), v.clone());
            }
            imbl::ordmap::DiffItem::Remove(k, _) => {
                shared.remove(k);
            }
        }
    }
    *layer = shared;
}

fn table_start(table: &'static str) -> EntityKey {
    EntityKey::Table(crate::p4rt::entity::TableKey::new(table).priority(i32::MIN))
}

/// The table entries of `table` from a range starting at its first key
/// (entries sort by table first).
fn table_range<'a>(
    range: impl Iterator<Item = (&'a EntityKey, &'a Entity)>,
    table: &'static str,
) -> impl Iterator<Item = (&'a EntityKey, &'a TableEntry)> {
    range.map_while(move |(k, e)| match (k, e) {
        (EntityKey::Table(tk), Entity::Table(te)) if tk.table == table => Some((k, te)),
        _ => None,
    })
}
