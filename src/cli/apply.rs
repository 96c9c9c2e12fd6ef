//! `p4fabric apply -f fabric.yaml [--prune]`: validates the file (and the
//! configuration it would produce together with what etcd already holds),
//! then writes every changed key in ONE etcd transaction.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::document::Document;
use super::EtcdArgs;
use crate::config::keys::owner_of;
use crate::config::store::{ConfigStore, StoreError};
use crate::config::ConfigState;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The fabric YAML file.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Also delete configuration keys that are not in the file (except
    /// keys another writer owns: values with an `owner` field, e.g.
    /// Neutron's).
    #[arg(long)]
    pub prune: bool,
    /// Show what would change, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

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
            .filter(|(k, v)| !wanted.contains_key(*k) && owner_of(v).is_none())
            .map(|(k, _)| k.clone())
            .collect();
    }
    p
}

pub async fn run(args: &ApplyArgs) -> anyhow::Result<()> {
    let doc = Document::read(&args.file)?;
    super::validate::report(&doc)?;
    let store = args.etcd.connect().await?;
    let snapshot = store.load().await?;
    let current = snapshot.kvs;

    // The result must be valid as a whole, or the controller would reject
    // part of it: check the file merged with the keys it leaves alone.
    // Pruning keeps keys another writer owns, so they count too.
    let mut result: BTreeMap<String, Vec<u8>> = current
        .iter()
        .filter(|(_, v)| !args.prune || owner_of(v).is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    result.extend(doc.raw.clone());
    // Problems etcd already has (say, a bad key Neutron wrote) are not the
    // file's doing: warn about them, refuse only new ones.
    let (_, before) = ConfigState::new().reset(current.clone());
    let (_, after) = ConfigState::new().reset(result);
    let (old, new): (Vec<_>, Vec<_>) = after.iter().partition(|e| before.contains(e));
    for e in &old {
        eprintln!("warning: already rejected in etcd: {e}");
    }
    if !new.is_empty() {
        for e in &new {
            eprintln!("{e}");
        }
        anyhow::bail!(
            "not applied: together with the keys already in etcd the configuration would have {} problem(s) (use --prune to replace them)",
            new.len()
        );
    }

    let p = plan(&current, &doc.raw, args.prune);
    let puts: Vec<(String, Vec<u8>)> = p
        .added
        .iter()
        .chain(&p.changed)
        .map(|k| (k.clone(), doc.raw[k].clone()))
        .collect();
    let mut revision = None;
    if !args.dry_run && (!puts.is_empty() || !p.removed.is_empty()) {
        // Written only if nobody changed the configuration since it was
        // read and validated above.
        let write = store.commit_if_unchanged_since(puts, p.removed.clone(), snapshot.revision);
        let c = write.await.map_err(|e| {
            let hint = if e.to_string().contains("too many operations") {
                " (etcd limits one transaction to --max-txn-ops, 128 by default)"
            } else if matches!(e, StoreError::Conflict) {
                " (run apply again)"
            } else {
                ""
            };
            anyhow::anyhow!("not applied: {e}{hint}")
        })?;
        revision = Some(c.revision);
    }
    for (mark, keys) in [("+", &p.added), ("~", &p.changed), ("-", &p.removed)] {
        for k in keys {
            println!("{mark} {k}");
        }
    }
    println!(
        "{}added {}, changed {}, removed {}, unchanged {}{}",
        if args.dry_run { "dry run: " } else { "" },
        p.added.len(),
        p.changed.len(),
        p.removed.len(),
        p.unchanged.len(),
        revision
            .map(|r| format!(" (revision {r})"))
            .unwrap_or_default()
    );
    Ok(())
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
        let p = plan(&cur, &BTreeMap::new(), true);
        assert_eq!(p.removed, ["vlans/10"]);
        // A key the file names is the operator's to write, owner or not.
        let want: BTreeMap<String, Vec<u8>> =
            [("vlans/20".to_string(), br#"{"name":"op20"}"#.to_vec())].into();
        let p = plan(&cur, &want, true);
        assert_eq!(p.changed, ["vlans/20"]);
        assert_eq!(p.removed, ["vlans/10"]);
    }
}
