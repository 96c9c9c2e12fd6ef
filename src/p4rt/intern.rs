//! One copy per process of equal keys and entities held in many places.
//!
//! A fabric's leaves hold mostly the same entries (every leaf has every host
//! route), so whatever holds the contents of many switches at once stores
//! them here once: the simulated switches of a scale run (stored per target,
//! 256 leaves x 31k entries took ~5.5 GB, and faulting that memory in was
//! half of that process's CPU) and the controller's read-backs of every
//! switch at a restart (each agent holds its switch's until the first pass).

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex};

use super::entity::{Entity, EntityKey};

/// A switch's entities, each key and entity shared with every other holder
/// in the process: an entry costs a B-tree slot.
pub type SharedEntities = BTreeMap<Arc<EntityKey>, Arc<Entity>>;

/// A plain copy of shared entities (for what works on `SwitchEntities`).
pub fn unshared(s: &SharedEntities) -> super::SwitchEntities {
    s.iter()
        .map(|(k, e)| ((**k).clone(), (**e).clone()))
        .collect()
}

static INTERNED: LazyLock<Mutex<(Interner<EntityKey>, Interner<Entity>)>> =
    LazyLock::new(|| Mutex::new((Interner::new(), Interner::new())));

/// The process's copy of `key` and `e`.
pub fn intern(key: EntityKey, e: Entity) -> (Arc<EntityKey>, Arc<Entity>) {
    let mut i = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
    (i.0.intern(key), i.1.intern(e))
}

/// A set of shared values; values nobody else holds any more are dropped
/// whenever the set has doubled since the last purge (amortised O(1)), so
/// it keeps at most about as many unheld values as held ones.
pub struct Interner<T> {
    set: HashSet<Arc<T>>,
    purge_at: usize,
}

impl<T: Hash + Eq> Default for Interner<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Hash + Eq> Interner<T> {
    pub fn new() -> Self {
        Interner {
            set: HashSet::new(),
            purge_at: 1024,
        }
    }

    pub fn intern(&mut self, v: T) -> Arc<T> {
        if let Some(a) = self.set.get(&v) {
            return a.clone();
        }
        if self.set.len() >= self.purge_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.purge_at = (self.set.len() * 2).max(1024);
        }
        let a = Arc::new(v);
        self.set.insert(a.clone());
        a
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_are_stored_once_and_unheld_ones_are_purged() {
        let mut i: Interner<Vec<u32>> = Interner::new();
        let a = i.intern(vec![1, 2]);
        let b = i.intern(vec![1, 2]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &i.intern(vec![3])));
        // Fill past the purge point with values nobody keeps.
        for n in 0..2000 {
            drop(i.intern(vec![n, n]));
        }
        assert!(i.len() < 2000, "{} values kept", i.len());
        // The held one survived every purge and is still shared.
        assert!(Arc::ptr_eq(&a, &i.intern(vec![1, 2])));
    }
}
