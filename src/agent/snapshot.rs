//! Snapshot types: owns how an agent holds desired state (`Desired`,
//! shared with every agent of a generation) and what it believes its
//! switch holds (`Installed`: read back, or a desired state installed in
//! full plus the writes since), and how the two are paired up for the diff
//! (`changes`). No I/O. Uses `compile` (the fabric view, the merge join)
//! and `p4rt` entities.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::compile::diff::merge_join;
use crate::compile::FabricView;
use crate::p4rt::intern::{intern, SharedEntities};
use crate::p4rt::{Entity, EntityKey, SwitchEntities, UpdateKind};

/// (installed, desired) pairs of the same key, for every key that may
/// differ.
pub(super) type Changes<'a> = Vec<(Option<&'a Entity>, Option<&'a Entity>)>;

/// A version of the desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Increases with every new desired state (e.g. the config revision).
    pub generation: u64,
    pub entities: DesiredEntities,
}

/// A switch's desired entities: a plain map, or the switch's part of a
/// compiled-fabric snapshot that every agent of the generation shares (the
/// controller's way: no per-switch copy, and consecutive snapshots share
/// structure, so finding what changed costs O(changes)).
#[derive(Debug, Clone)]
pub enum DesiredEntities {
    Map(Arc<SwitchEntities>),
    Fabric(Arc<FabricView>),
}

impl Default for DesiredEntities {
    fn default() -> Self {
        DesiredEntities::Map(Arc::default())
    }
}

impl From<Arc<SwitchEntities>> for DesiredEntities {
    fn from(m: Arc<SwitchEntities>) -> Self {
        DesiredEntities::Map(m)
    }
}

impl From<Arc<FabricView>> for DesiredEntities {
    fn from(v: Arc<FabricView>) -> Self {
        DesiredEntities::Fabric(v)
    }
}

impl DesiredEntities {
    /// The entity of `switch` with this key.
    pub fn get<'a>(&'a self, switch: &str, key: &EntityKey) -> Option<&'a Entity> {
        match self {
            DesiredEntities::Map(m) => m.get(key),
            DesiredEntities::Fabric(v) => v.get(switch, key),
        }
    }

    /// The entities of `switch` in key order.
    pub fn iter<'a>(
        &'a self,
        switch: &str,
    ) -> Box<dyn Iterator<Item = (&'a EntityKey, &'a Entity)> + 'a> {
        match self {
            DesiredEntities::Map(m) => Box::new(m.iter()),
            DesiredEntities::Fabric(v) => Box::new(v.iter_switch(switch)),
        }
    }

    pub fn len(&self, switch: &str) -> usize {
        match self {
            DesiredEntities::Map(m) => m.len(),
            DesiredEntities::Fabric(v) => v.switch_len(switch),
        }
    }

    pub fn is_empty(&self, switch: &str) -> bool {
        self.len(switch) == 0
    }

    /// The keys of `switch` that may differ from `old`; `None` when the
    /// two cannot be compared cheaply (then diff everything).
    pub(super) fn changed_keys(
        &self,
        old: &DesiredEntities,
        switch: &str,
    ) -> Option<BTreeSet<EntityKey>> {
        match (old, self) {
            (DesiredEntities::Map(o), DesiredEntities::Map(n)) if Arc::ptr_eq(o, n) => {
                Some(BTreeSet::new())
            }
            (DesiredEntities::Fabric(o), DesiredEntities::Fabric(n)) => {
                if Arc::ptr_eq(o, n) {
                    Some(BTreeSet::new())
                } else {
                    Some(n.changed_keys(o, switch))
                }
            }
            _ => None,
        }
    }
}

/// What the agent believes its switch holds.
#[derive(Debug, Clone)]
pub(super) enum Installed {
    /// Read back from the switch (plus the writes since); shared with the
    /// controller's recovery until the first write.
    Read(Arc<SharedEntities>),
    /// Exactly a desired state this agent installed in full, plus the
    /// writes since (`None`: deleted). Shares the desired snapshot rather
    /// than holding a copy of the switch's entities.
    Based {
        base: DesiredEntities,
        overlay: BTreeMap<EntityKey, Option<Entity>>,
    },
}

impl Installed {
    fn get<'a>(&'a self, switch: &str, key: &EntityKey) -> Option<&'a Entity> {
        match self {
            Installed::Read(m) => m.get(key).map(|e| &**e),
            Installed::Based { base, overlay } => match overlay.get(key) {
                Some(e) => e.as_ref(),
                None => base.get(switch, key),
            },
        }
    }

    /// Entities in key order.
    fn iter<'a>(
        &'a self,
        switch: &str,
    ) -> Box<dyn Iterator<Item = (&'a EntityKey, &'a Entity)> + 'a> {
        match self {
            Installed::Read(m) => Box::new(m.iter().map(|(k, e)| (&**k, &**e))),
            Installed::Based { base, overlay } => {
                let mut a = base.iter(switch).peekable();
                let mut b = overlay.iter().peekable();
                Box::new(std::iter::from_fn(move || loop {
                    let next = match (a.peek(), b.peek()) {
                        (None, None) => return None,
                        (Some(_), None) => return a.next(),
                        (None, Some(_)) => b.next(),
                        (Some((ka, _)), Some((kb, _))) => match (*ka).cmp(*kb) {
                            std::cmp::Ordering::Less => return a.next(),
                            std::cmp::Ordering::Greater => b.next(),
                            std::cmp::Ordering::Equal => {
                                a.next();
                                b.next()
                            }
                        },
                    };
                    if let Some((k, Some(e))) = next {
                        return Some((k, e));
                    }
                }))
            }
        }
    }

    pub(super) fn len(&self, switch: &str) -> usize {
        match self {
            Installed::Read(m) => m.len(),
            Installed::Based { base, overlay } => {
                let mut n = base.len(switch) as isize;
                for (k, e) in overlay {
                    match (base.get(switch, k).is_some(), e.is_some()) {
                        (false, true) => n += 1,
                        (true, false) => n -= 1,
                        _ => {}
                    }
                }
                n.max(0) as usize
            }
        }
    }

    /// Records a successful write.
    pub(super) fn apply(&mut self, kind: UpdateKind, entity: &Entity) {
        let key = entity.key();
        match self {
            Installed::Read(m) => {
                let m = Arc::make_mut(m);
                if kind == UpdateKind::Delete {
                    m.remove(&key);
                } else {
                    let (key, entity) = intern(key, entity.clone());
                    m.insert(key, entity);
                }
            }
            Installed::Based { overlay, .. } => {
                let v = (kind != UpdateKind::Delete).then(|| entity.clone());
                overlay.insert(key, v);
            }
        }
    }

    /// The (installed, desired) pairs of every key that may differ.
    pub(super) fn changes<'a>(&'a self, desired: &'a DesiredEntities, switch: &str) -> Changes<'a> {
        if let Installed::Based { base, overlay } = self {
            if let Some(mut keys) = desired.changed_keys(base, switch) {
                keys.extend(overlay.keys().cloned());
                return keys
                    .iter()
                    .map(|k| (self.get(switch, k), desired.get(switch, k)))
                    .collect();
            }
        }
        merge_join(self.iter(switch), desired.iter(switch)).collect()
    }
}
