//! Applying a fabric document to etcd (`p4fabric apply`, the lab): checks
//! that the configuration it produces together with what etcd already
//! holds is valid, then writes every changed key in ONE etcd transaction,
//! only if nobody changed the configuration since it was read.

use std::collections::BTreeMap;

use super::document::Document;
use super::etcd::EtcdStore;
use super::keys::owner_of;
use super::store::{ConfigStore, StoreError};
use super::{ConfigState, KeyError};

/// What an apply changes, by key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Compares the file's keys with etcd's. Values are compared as JSON, so a
/// key another writer formatted differently is not a change. Pruning
/// removes only the operator's keys: a value marked with an owner
/// (`"owner": "neutron"`) belongs to that writer, which keeps it in step
/// with its own database.
pub fn plan(
    current: &BTreeMap<String, Vec<u8>>,
    wanted: &BTreeMap<String, Vec<u8>>,
    prune: bool,
) -> Plan {
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
    let mut p = Plan::default();
    for (k, v) in wanted {
        match current.get(k) {
            None => p.added.push(k.clone()),
            Some(c) if c == v || (json(c).is_some() && json(c) == json(v)) => {
                p.unchanged.push(k.clone())
            }
            Some(_) => p.changed.push(k.clone()),
        }
    }
    if prune {
        p.removed = current
            .iter()
            .filter(|(k, v)| !wanted.contains_key(*k) && !kept_by_prune(k, v))
            .map(|(k, _)| k.clone())
            .collect();
    }
    p
}

/// Keys `--prune` leaves alone: those another writer owns, and `upgrade`
/// (the pipeline the switches run: removing it with a fabric file that
/// does not name it would make a restarted controller push its own build
/// onto switches in service).
fn kept_by_prune(key: &str, value: &[u8]) -> bool {
    owner_of(value).is_some() || key == super::keys::UPGRADE
}

/// What an apply did.
#[derive(Debug)]
pub struct Applied {
    pub plan: Plan,
    /// The revision written (`None`: nothing written, or a dry run).
    pub revision: Option<i64>,
    /// Problems etcd already had (say, a bad key Neutron wrote): not the
    /// document's doing, so not refused.
    pub already_rejected: Vec<KeyError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the current configuration failed.
    #[error(transparent)]
    Load(StoreError),
    /// Writing it failed (or it changed meanwhile: `StoreError::Conflict`).
    #[error("not applied: {0}")]
    Store(#[source] StoreError),
    #[error("not applied: together with the keys already in etcd the configuration would have {} problem(s) (use --prune to replace them)", problems.len())]
    Invalid {
        problems: Vec<KeyError>,
        already_rejected: Vec<KeyError>,
    },
}

/// Applies `doc` (already validated on its own) to `store`: with `prune`,
/// keys not in the document are deleted; with `dry_run`, nothing is
/// written.
pub async fn apply(
    store: &EtcdStore,
    doc: &Document,
    prune: bool,
    dry_run: bool,
) -> Result<Applied, ApplyError> {
    let snapshot = store.load().await.map_err(ApplyError::Load)?;
    let current = snapshot.kvs;

    // The result must be valid as a whole, or the controller would reject
    // part of it: check the file merged with the keys it leaves alone.
    // Pruning keeps keys another writer owns, so they count too.
    let mut result: BTreeMap<String, Vec<u8>> = current
        .iter()
        .filter(|(k, v)| !prune || kept_by_prune(k, v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    result.extend(doc.raw.clone());
    // Problems etcd already has are not the file's doing: refuse only new
    // ones.
    let (_, before) = ConfigState::new().reset(current.clone());
    let (_, after) = ConfigState::new().reset(result);
    let (old, new): (Vec<_>, Vec<_>) = after.into_iter().partition(|e| before.contains(e));
    if !new.is_empty() {
        return Err(ApplyError::Invalid {
            problems: new,
            already_rejected: old,
        });
    }

    let p = plan(&current, &doc.raw, prune);
    let puts: Vec<(String, Vec<u8>)> = p
        .added
        .iter()
        .chain(&p.changed)
        .map(|k| (k.clone(), doc.raw[k].clone()))
        .collect();
    let mut revision = None;
    if !dry_run && (!puts.is_empty() || !p.removed.is_empty()) {
        // Written only if nobody changed the configuration since it was
        // read and validated above.
        let c = store
            .commit_if_unchanged_since(puts, p.removed.clone(), snapshot.revision)
            .await
            .map_err(ApplyError::Store)?;
        revision = Some(c.revision);
    }
    Ok(Applied {
        plan: p,
        revision,
        already_rejected: old,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_compares_json() {
        let cur: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), br#"{"x": 1}"#.to_vec()),
            ("b".to_string(), br#"{"x":1}"#.to_vec()),
            ("c".to_string(), b"1".to_vec()),
        ]
        .into();
        let want: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), br#"{"x":1}"#.to_vec()),
            ("b".to_string(), br#"{"x":2}"#.to_vec()),
            ("d".to_string(), b"1".to_vec()),
        ]
        .into();
        let p = plan(&cur, &want, true);
        assert_eq!(p.unchanged, ["a"]);
        assert_eq!(p.changed, ["b"]);
        assert_eq!(p.added, ["d"]);
        assert_eq!(p.removed, ["c"]);
        assert!(plan(&cur, &want, false).removed.is_empty());
    }

    #[test]
    fn prune_leaves_keys_owned_by_another_writer() {
        let cur: BTreeMap<String, Vec<u8>> = [
            ("vlans/10".to_string(), br#"{"name":"op"}"#.to_vec()),
            (
                "vlans/20".to_string(),
                br#"{"name":"net","owner":"neutron"}"#.to_vec(),
            ),
            (
                "hosts/p1".to_string(),
                br#"{"mac":"02:00:00:00:00:01","vlan":20,"attachment":{"port":"leaf1/3"},"owner":"neutron"}"#
                    .to_vec(),
            ),
        ]
        .into();
        let mut with_upgrade = cur.clone();
        with_upgrade.insert(
            "upgrade".to_string(),
            br#"{"pipeline_dir":"/b/v2"}"#.to_vec(),
        );
        let p = plan(&with_upgrade, &BTreeMap::new(), true);
        assert_eq!(p.removed, ["vlans/10"], "upgrade stays too");
        // A key the file names is the operator's to write, owner or not.
        let want: BTreeMap<String, Vec<u8>> =
            [("vlans/20".to_string(), br#"{"name":"op20"}"#.to_vec())].into();
        let p = plan(&cur, &want, true);
        assert_eq!(p.changed, ["vlans/20"]);
        assert_eq!(p.removed, ["vlans/10"]);
    }
}
