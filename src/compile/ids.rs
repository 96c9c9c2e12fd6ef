//! Stable id allocation.
//!
//! Ids that cannot be read off the configuration (ECMP members, groups and
//! next-hop ids) are a hash of what they name (FNV-1a of a canonical byte
//! form, stable across runs and Rust versions), so adding a host or a route
//! never renumbers another. On a collision the id probes upwards to the next
//! free one; only then does the id depend on what else exists (documented
//! in docs/compile.md). Ids are released when their last user goes.

use std::collections::HashMap;
use std::hash::Hash;

/// FNV-1a, 64 bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A space of ids `1..2^bits` handed out by hash with linear probing.
#[derive(Debug, Clone)]
pub struct IdSpace<K> {
    bits: u32,
    by_id: HashMap<u32, K>,
    by_key: HashMap<K, u32>,
}

impl<K: Clone + Eq + Hash> IdSpace<K> {
    pub fn new(bits: u32) -> Self {
        IdSpace {
            bits,
            by_id: HashMap::new(),
            by_key: HashMap::new(),
        }
    }

    /// The id of `key`, allocating it from `hash` when new. `None` when the
    /// space is full.
    pub fn alloc(&mut self, key: &K, hash: u64) -> Option<u32> {
        if let Some(id) = self.by_key.get(key) {
            return Some(*id);
        }
        let size = (1u64 << self.bits) - 1; // ids 1..=size
        if self.by_id.len() as u64 >= size {
            return None;
        }
        let mut id = (hash % size) as u32 + 1;
        while self.by_id.contains_key(&id) {
            id = if u64::from(id) == size { 1 } else { id + 1 };
        }
        self.by_id.insert(id, key.clone());
        self.by_key.insert(key.clone(), id);
        Some(id)
    }

    pub fn release(&mut self, key: &K) {
        if let Some(id) = self.by_key.remove(key) {
            self.by_id.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_probe_on_collision() {
        let mut s: IdSpace<&str> = IdSpace::new(4);
        let a = s.alloc(&"a", 7).unwrap();
        let b = s.alloc(&"b", 7).unwrap();
        assert_eq!((a, b), (8, 9));
        assert_eq!(s.alloc(&"a", 99), Some(8));
        s.release(&"a");
        assert_eq!(s.alloc(&"c", 7), Some(8));
        assert_eq!(s.alloc(&"b", 0), Some(9));
        for i in 0..13 {
            let k: &'static str = Box::leak(format!("k{i}").into_boxed_str());
            assert!(s.alloc(&k, i).is_some());
        }
        assert_eq!(s.alloc(&"full", 0), None);
    }
}
