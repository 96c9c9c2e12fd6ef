//! Key-by-key configuration state: the raw keys as the store holds them and
//! the last good (accepted) value of each. A change that does not parse, or
//! that makes the whole configuration invalid, is rejected with a reason and
//! the last good version of its key stays in force; the rest applies.

use std::collections::{BTreeMap, BTreeSet};

use super::keys::{item_of, set_item, ConfigKey, Item};
use super::model::Fabric;
use super::validate::{validate_changed, Problem};

/// One change of a raw key (relative path), as a store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    /// `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

impl Change {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Change {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    pub fn delete(key: impl Into<String>) -> Self {
        Change {
            key: key.into(),
            value: None,
        }
    }
}

/// Why a key's current raw value is not in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyError {
    /// Relative key path (`hosts/vm1`).
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

#[derive(Debug, Default, Clone)]
pub struct ConfigState {
    /// The store's current value of every key.
    raw: BTreeMap<String, Vec<u8>>,
    /// What is in force; always a valid configuration. Its big sections
    /// (hosts, routes) are shared with the versions handed out (`Section`).
    accepted: Fabric,
    /// Keys whose raw value (or deletion) is not in force, and why.
    rejected: BTreeMap<String, String>,
}

impl ConfigState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration in force.
    pub fn fabric(&self) -> Fabric {
        self.accepted.clone()
    }

    /// Every key whose current value is rejected, in key order.
    pub fn errors(&self) -> Vec<KeyError> {
        self.rejected
            .iter()
            .map(|(k, r)| KeyError {
                key: k.clone(),
                reason: r.clone(),
            })
            .collect()
    }

    /// The store's raw keys as last seen.
    pub fn raw(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.raw
    }

    /// Replaces the whole raw key set (a full re-read of the store) by
    /// applying the difference.
    pub fn reset(&mut self, all: BTreeMap<String, Vec<u8>>) -> (Fabric, Vec<KeyError>) {
        let mut changes: Vec<Change> = self
            .raw
            .keys()
            .filter(|k| !all.contains_key(*k))
            .map(|k| Change::delete(k.clone()))
            .collect();
        for (k, v) in all {
            if self.raw.get(&k) != Some(&v) {
                changes.push(Change::put(k, v));
            }
        }
        self.apply(changes)
    }

    /// Applies a batch of changes as a whole (order inside the batch does not
    /// matter: a host may arrive before its VLAN). Returns the configuration
    /// in force and every currently rejected key.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Change>) -> (Fabric, Vec<KeyError>) {
        self.apply_checked(changes, validate_changed)
    }

    /// `apply`, with `check` finding the problems of a candidate
    /// configuration given the keys that changed (tests compare the scoped
    /// check with the whole one).
    fn apply_checked(
        &mut self,
        changes: impl IntoIterator<Item = Change>,
        check: fn(&Fabric, &BTreeSet<ConfigKey>) -> Vec<Problem>,
    ) -> (Fabric, Vec<KeyError>) {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for c in changes {
            match c.value {
                Some(v) => self.raw.insert(c.key.clone(), v),
                None => self.raw.remove(&c.key),
            };
            touched.insert(c.key);
        }
        // Rejected keys are retried every time: what they were waiting for
        // (a VLAN, say) may have arrived since.
        touched.extend(self.rejected.keys().cloned());

        let mut rejected: BTreeMap<String, String> = BTreeMap::new();
        // Proposed new value per key (None: delete).
        let mut proposed: BTreeMap<ConfigKey, Option<Item>> = BTreeMap::new();
        for path in touched {
            let key = match ConfigKey::parse(&path) {
                Ok(k) => k,
                Err(e) => {
                    if self.raw.contains_key(&path) {
                        rejected.insert(path, e.to_string());
                    }
                    continue;
                }
            };
            match self.raw.get(&path) {
                None => {
                    proposed.insert(key, None);
                }
                Some(bytes) => match key.decode(bytes) {
                    Ok(item) => {
                        proposed.insert(key, Some(item));
                    }
                    Err(e) => {
                        rejected.insert(path, e.to_string());
                    }
                },
            }
        }

        // Cheap: the sections no proposal touches stay shared.
        let mut candidate = self.accepted.clone();
        for (k, v) in &proposed {
            set_item(&mut candidate, k, v.clone());
        }
        let scope: BTreeSet<ConfigKey> = proposed.keys().cloned().collect();
        // Each round reverts at least one proposal or drops one key, so this
        // ends; normally in one or two rounds. Problems only reach the
        // fallback once no proposal is left to blame, since reverting one
        // change often fixes several problems at once.
        loop {
            let problems = check(&candidate, &scope);
            if problems.is_empty() {
                break;
            }
            let mut reverted = false;
            for p in &problems {
                reverted |= self.revert_culprit(p, &mut proposed, &mut candidate, &mut rejected);
            }
            if !reverted {
                for p in &problems {
                    // An invalid accepted state cannot arise, but dropping
                    // the blamed key guarantees progress if it ever did.
                    set_item(&mut candidate, &p.key, None);
                    rejected
                        .entry(p.key.to_string())
                        .or_insert(p.message.clone());
                }
            }
        }
        self.accepted = candidate;
        self.rejected = rejected;
        (self.fabric(), self.errors())
    }

    /// Reverts the change responsible for `p`: the blamed key if it changed
    /// in this batch, else a related key that did. False if neither did.
    fn revert_culprit(
        &self,
        p: &Problem,
        proposed: &mut BTreeMap<ConfigKey, Option<Item>>,
        candidate: &mut Fabric,
        rejected: &mut BTreeMap<String, String>,
    ) -> bool {
        let Some(k) = std::iter::once(&p.key)
            .chain(&p.related)
            .find(|k| proposed.contains_key(*k))
            .cloned()
        else {
            return false;
        };
        let reason = if k == p.key {
            p.message.clone()
        } else {
            p.to_string()
        };
        proposed.remove(&k);
        set_item(candidate, &k, item_of(&self.accepted, &k));
        rejected.entry(k.to_string()).or_insert(reason);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::validate;
    use proptest::prelude::*;

    const SW: &str = r#"{"address":"127.0.0.1:50001","device_id":1,"role":"leaf","label":101,"fabric_ports":[1,2]}"#;
    const VLAN10: &str = r#"{"ipv4_gateway":"10.0.10.1/24"}"#;
    const PORT: &str = r#"{"mode":"access","vlan":10}"#;
    const HOST: &str = r#"{"mac":"02:00:00:00:00:01","vlan":10,"ips":["10.0.10.5"],"attachment":{"port":"leaf1/3"}}"#;

    fn err_keys(e: &[KeyError]) -> Vec<&str> {
        e.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn batch_order_does_not_matter() {
        let mut s = ConfigState::new();
        // The host comes first, its VLAN last: all in one batch.
        let (f, e) = s.apply([
            Change::put("hosts/vm1", HOST),
            Change::put("ports/leaf1/3", PORT),
            Change::put("switches/leaf1", SW),
            Change::put("vlans/10", VLAN10),
        ]);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(f.hosts.len(), 1);
    }

    #[test]
    fn bad_key_keeps_last_good_version() {
        let mut s = ConfigState::new();
        s.apply([
            Change::put("switches/leaf1", SW),
            Change::put("vlans/10", VLAN10),
        ]);
        // Broken JSON, then a semantically invalid gateway: both rejected.
        let (f, e) = s.apply([
            Change::put("vlans/10", "{not json"),
            Change::put("vlans/20", r#"{"ipv4_gateway":"10.0.20.0/24"}"#),
            Change::put("vlans/30", r#"{"name":"ok"}"#),
        ]);
        assert_eq!(err_keys(&e), ["vlans/10", "vlans/20"]);
        assert!(e[0].reason.contains("invalid JSON"));
        assert_eq!(
            f.vlans[&10].ipv4_gateway,
            Some("10.0.10.1/24".parse().unwrap())
        );
        assert!(!f.vlans.contains_key(&20));
        assert!(f.vlans.contains_key(&30));
        // Fixing the key clears the error.
        let (f, e) = s.apply([Change::put("vlans/10", r#"{"name":"fixed"}"#)]);
        assert_eq!(err_keys(&e), ["vlans/20"]);
        assert_eq!(f.vlans[&10].name, "fixed");
    }

    /// A switch relabelled to a flood label (one ending in hex F) keeps its
    /// last good label. A fresh start on such a key has no good value: the
    /// switch, and the keys that refer to it, stay out until it is fixed.
    #[test]
    fn a_switch_label_ending_in_hex_f_is_rejected() {
        let flood = SW.replace(r#""label":101"#, r#""label":111"#);
        let mut s = ConfigState::new();
        s.apply([
            Change::put("switches/leaf1", SW),
            Change::put("vlans/10", VLAN10),
        ]);
        let (f, e) = s.apply([Change::put("switches/leaf1", flood.clone())]);
        assert_eq!(err_keys(&e), ["switches/leaf1"]);
        assert!(
            e[0].reason.contains("label 111 (0x6f) ends in hex F"),
            "{e:?}"
        );
        assert_eq!(f.switches["leaf1"].label, 101);

        let mut fresh = ConfigState::new();
        let (f, e) = fresh.apply([
            Change::put("switches/leaf1", flood),
            Change::put("vlans/10", VLAN10),
            Change::put("ports/leaf1/3", PORT),
        ]);
        assert_eq!(err_keys(&e), ["ports/leaf1/3", "switches/leaf1"]);
        assert!(f.switches.is_empty() && f.ports.is_empty());
        let (f, e) = fresh.apply([Change::put("switches/leaf1", SW)]);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(f.ports.len(), 1);
    }

    #[test]
    fn rejected_key_is_retried_when_its_dependency_arrives() {
        let mut s = ConfigState::new();
        s.apply([Change::put("switches/leaf1", SW)]);
        let (_, e) = s.apply([Change::put("ports/leaf1/3", PORT)]);
        assert_eq!(err_keys(&e), ["ports/leaf1/3"]);
        let (f, e) = s.apply([Change::put("vlans/10", VLAN10)]);
        assert!(e.is_empty(), "{e:?}");
        assert!(f
            .ports
            .contains_key(&crate::config::PortRef::new("leaf1", 3)));
    }

    #[test]
    fn deleting_a_vlan_in_use_is_rejected() {
        let mut s = ConfigState::new();
        s.apply([
            Change::put("switches/leaf1", SW),
            Change::put("vlans/10", VLAN10),
            Change::put("ports/leaf1/3", PORT),
        ]);
        let (f, e) = s.apply([Change::delete("vlans/10")]);
        assert_eq!(err_keys(&e), ["vlans/10"]);
        assert!(e[0].reason.contains("ports/leaf1/3"), "{e:?}");
        assert!(f.vlans.contains_key(&10));
        // Remove the user first, and the delete goes through on retry.
        let (f, e) = s.apply([Change::delete("ports/leaf1/3")]);
        assert!(e.is_empty(), "{e:?}");
        assert!(f.vlans.is_empty());
    }

    #[test]
    fn duplicates_reject_only_the_newcomer() {
        let mut s = ConfigState::new();
        s.apply([Change::put("switches/b", SW)]);
        let (f, e) = s.apply([Change::put("switches/a", SW)]);
        // `a` sorts first but `b` was there first: `a` is the change to undo.
        assert_eq!(err_keys(&e), ["switches/a"]);
        assert!(f.switches.contains_key("b"));
    }

    #[test]
    fn unknown_keys_are_reported() {
        let mut s = ConfigState::new();
        let (_, e) = s.apply([Change::put("widgets/x", "{}")]);
        assert_eq!(err_keys(&e), ["widgets/x"]);
        let (_, e) = s.apply([Change::delete("widgets/x")]);
        assert!(e.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            key in prop::sample::select(vec!["settings", "switches/s", "links/l", "ports/leaf1/3",
                "lags/b", "vlans/10", "routes/r", "hosts/h", "vlans/0", "bad"]),
            bytes in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut s = ConfigState::new();
            s.apply([Change::put("switches/leaf1", SW), Change::put("vlans/10", VLAN10)]);
            let _ = s.apply([Change::put(key, bytes)]);
            prop_assert!(validate(&s.fabric()).is_empty());
        }

        #[test]
        fn arbitrary_json_never_panics(
            key in prop::sample::select(vec!["settings", "switches/s", "links/l", "ports/leaf1/3",
                "lags/b", "vlans/10", "routes/r", "hosts/h"]),
            json in arb_json(),
        ) {
            let mut s = ConfigState::new();
            s.apply([Change::put("switches/leaf1", SW), Change::put("vlans/10", VLAN10)]);
            let _ = s.apply([Change::put(key, json.to_string())]);
            prop_assert!(validate(&s.fabric()).is_empty());
        }
    }

    const SW2: &str = r#"{"address":"127.0.0.1:50002","device_id":2,"role":"leaf","label":102,"fabric_ports":[1,2]}"#;
    const VLAN20: &str = r#"{"ipv4_gateway":"10.0.20.1/24","ipv6_gateway":"2001:db8:20::1/64"}"#;
    const LAG: &str = r#"{"id":1,"members":["leaf1/5","leaf2/5"],"mode":"trunk","vlans":[10,20]}"#;

    /// One change of a small fabric whose hosts and routes collide often:
    /// duplicate MACs and addresses, a missing VLAN or port, addresses
    /// outside their subnet, next hops of the wrong family; now and then a
    /// VLAN or port change (the whole check) or a value that does not parse.
    fn arb_change() -> impl Strategy<Value = Change> {
        let host = (
            0..4u8,
            1..3u8,
            // Mostly valid, so that valid hosts meet and collide.
            prop::sample::select(vec![10u16, 10, 10, 20, 30]),
            prop::collection::vec(
                prop::sample::select(vec![
                    "10.0.10.5",
                    "10.0.10.5",
                    "10.0.10.6",
                    "10.0.20.5",
                    "10.0.10.1",
                    "10.0.99.1",
                    "2001:db8:20::5",
                ]),
                0..2,
            ),
            prop::sample::select(vec![
                r#"{"port":"leaf1/3"}"#,
                r#"{"lag":"bond1"}"#,
                r#"{"lag":"bond1"}"#,
                r#"{"port":"leaf1/9"}"#,
            ]),
        )
            .prop_map(|(n, mac, vlan, ips, att)| {
                let ips: Vec<String> = ips.iter().map(|ip| format!("{ip:?}")).collect();
                Change::put(
                    format!("hosts/h{n}"),
                    format!(
                        r#"{{"mac":"02:00:00:00:00:0{mac}","vlan":{vlan},"ips":[{}],"attachment":{att}}}"#,
                        ips.join(",")
                    ),
                )
            });
        let route = (
            0..3u8,
            prop::sample::select(vec!["0.0.0.0/0", "10.1.0.0/16", "10.1.0.1/16"]),
            prop::sample::select(vec!["10.0.10.254", "10.0.99.254", "2001:db8::1"]),
        )
            .prop_map(|(n, prefix, nh)| {
                Change::put(
                    format!("routes/r{n}"),
                    format!(r#"{{"prefix":"{prefix}","next_hops":["{nh}"]}}"#),
                )
            });
        prop_oneof![
            6 => host,
            2 => (0..4u8).prop_map(|n| Change::delete(format!("hosts/h{n}"))),
            3 => route,
            1 => (0..3u8).prop_map(|n| Change::delete(format!("routes/r{n}"))),
            1 => Just(Change::put("vlans/20", VLAN20)),
            1 => Just(Change::delete("vlans/20")),
            1 => Just(Change::delete("ports/leaf1/3")),
            1 => Just(Change::put("ports/leaf1/3", PORT)),
            1 => Just(Change::put("hosts/h1", "{broken")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// The scoped check (`validate_changed`) accepts and rejects exactly
        /// what checking the whole configuration does, batch after batch.
        #[test]
        fn the_scoped_check_decides_as_the_whole_check(
            batches in prop::collection::vec(prop::collection::vec(arb_change(), 1..4), 1..12),
        ) {
            let base = [
                Change::put("switches/leaf1", SW),
                Change::put("switches/leaf2", SW2),
                Change::put("vlans/10", VLAN10),
                Change::put("vlans/20", VLAN20),
                Change::put("ports/leaf1/3", PORT),
                Change::put("lags/bond1", LAG),
            ];
            let mut scoped = ConfigState::new();
            let mut whole = ConfigState::new();
            scoped.apply(base.clone());
            whole.apply_checked(base, |f, _| validate(f));
            for batch in batches {
                let (fs, es) = scoped.apply(batch.clone());
                let (fw, ew) = whole.apply_checked(batch, |f, _| validate(f));
                prop_assert_eq!(&fs, &fw);
                prop_assert_eq!(err_keys(&es), err_keys(&ew));
                prop_assert!(validate(&fs).is_empty());
            }
        }
    }

    /// JSON values built from the model's own field names, so the decoder
    /// gets past the first field often.
    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let names = prop::sample::select(vec![
            "mode",
            "vlan",
            "vlans",
            "native",
            "id",
            "members",
            "mac",
            "ips",
            "attachment",
            "port",
            "lag",
            "address",
            "device_id",
            "role",
            "label",
            "prefix",
            "next_hops",
            "ipv4_gateway",
            "a",
            "b",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u32..5000).prop_map(Value::from),
            prop::sample::select(vec![
                "access",
                "trunk",
                "leaf",
                "leaf1/3",
                "10.0.10.7",
                "10.0.10.1/24",
                "02:00:00:00:00:09",
                "lacp",
                ""
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(names.clone(), inner, 0..6).prop_map(
                    |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }
}
