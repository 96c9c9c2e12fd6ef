//! `Section`: a map of the configuration that successive versions share.
//!
//! At data-centre scale the configuration holds 10k hosts and 100k routes,
//! and every change (one Neutron port binding) makes a new version of it:
//! the config watch publishes it, the controller compares it with the one
//! before. Copying and comparing every map on every change cost more than
//! the change itself. A `Section` is a map behind an `Arc`: cloning a
//! `Fabric` shares it, the first write to one copy copies that map alone
//! (`Arc::make_mut`), and two versions that share it compare equal at once
//! (`Section::same`) — a host change neither copies nor compares routes.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A shared, copy-on-write `BTreeMap`. Reads go through `Deref`; any
/// `&mut` access (insert, remove, `get_mut`, ...) copies the map first if
/// another version still holds it.
pub struct Section<K, V>(Arc<BTreeMap<K, V>>);

impl<K, V> Section<K, V> {
    /// True if both are the same shared map (so certainly equal) — O(1).
    pub fn same(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<K, V> Default for Section<K, V> {
    fn default() -> Self {
        Section(Arc::new(BTreeMap::new()))
    }
}

impl<K, V> Clone for Section<K, V> {
    fn clone(&self) -> Self {
        Section(Arc::clone(&self.0))
    }
}

impl<K, V> Deref for Section<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &BTreeMap<K, V> {
        &self.0
    }
}

impl<K: Clone, V: Clone> DerefMut for Section<K, V> {
    fn deref_mut(&mut self) -> &mut BTreeMap<K, V> {
        Arc::make_mut(&mut self.0)
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for Section<K, V> {
    fn eq(&self, other: &Self) -> bool {
        Section::same(self, other) || *self.0 == *other.0
    }
}

impl<K: Eq, V: Eq> Eq for Section<K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Section<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<K, V> From<BTreeMap<K, V>> for Section<K, V> {
    fn from(map: BTreeMap<K, V>) -> Self {
        Section(Arc::new(map))
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for Section<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Section(Arc::new(iter.into_iter().collect()))
    }
}

impl<'a, K, V> IntoIterator for &'a Section<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::collections::btree_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<K: Clone, V: Clone> IntoIterator for Section<K, V> {
    type Item = (K, V);
    type IntoIter = std::collections::btree_map::IntoIter<K, V>;
    /// Takes the map out (copying it only if another version holds it).
    fn into_iter(self) -> Self::IntoIter {
        Arc::unwrap_or_clone(self.0).into_iter()
    }
}

impl<K: Serialize, V: Serialize> Serialize for Section<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Section<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(Section::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_copies_only_the_written_version() {
        let mut a: Section<u32, &str> = [(1, "one"), (2, "two")].into_iter().collect();
        let b = a.clone();
        assert!(Section::same(&a, &b));
        a.insert(3, "three");
        assert!(!Section::same(&a, &b));
        assert_eq!(b.len(), 2, "the other version is untouched");
        assert_eq!(a.len(), 3);
        assert_ne!(a, b);
        // Equal contents compare equal even when not shared.
        let c: Section<u32, &str> = [(1, "one"), (2, "two")].into_iter().collect();
        assert_eq!(b, c);
        assert!(!Section::same(&b, &c));
    }

    #[test]
    fn serializes_as_the_plain_map() {
        let a: Section<String, u8> = [("x".to_string(), 1)].into_iter().collect();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"x":1}"#);
        let back: Section<String, u8> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }
}
