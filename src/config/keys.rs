//! The etcd key layout: which relative path holds which model value, and the
//! conversion between one raw key/value and a typed item. One JSON value per
//! key so Neutron can add or remove one binding without touching the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::*;

/// The default key prefix of the configuration API (version 1).
pub const DEFAULT_PREFIX: &str = "/p4fabric/v1/";
/// Keys under this relative path are written by controllers, never config.
pub const STATUS_DIR: &str = "status/";
/// The controllers' leader election (`src/ha`): `election/<lease>` keys.
pub const ELECTION: &str = "election";

/// Is the key (relative to the prefix) written by controllers — status or
/// the leader election — rather than configuration? `apply --prune` and the
/// configuration watch leave these alone.
pub fn controller_owned(rel: &str) -> bool {
    rel.starts_with(STATUS_DIR)
        || rel
            .strip_prefix(ELECTION)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
}
/// The marker field a writer other than the operator puts in the values it
/// owns (`"owner": "neutron"`): `apply --prune` leaves such keys alone.
/// It describes the key, not the fabric, so `decode` takes it off before
/// the typed value is read (allowed on ports, lags, vlans, routes, hosts).
pub const OWNER_FIELD: &str = "owner";

/// The owner named in a raw value, if it is a JSON object with a string
/// `owner` field.
pub fn owner_of(raw: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(raw).ok()? {
        serde_json::Value::Object(mut m) => match m.remove(OWNER_FIELD)? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The single key naming the fabric's pipeline (`ConfigKey::Upgrade`).
pub const UPGRADE: &str = "upgrade";

/// The directories of configuration keys (plus the single keys `settings`
/// and `upgrade`).
pub const CONFIG_DIRS: [&str; 8] = [
    "switches",
    "links",
    "ports",
    "lags",
    "vlans",
    "routes",
    "hosts",
    "maintenance",
];

/// One configuration key, relative to the prefix (`switches/leaf1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKey {
    Settings,
    Switch(String),
    Link(String),
    Port(PortRef),
    Lag(String),
    Vlan(VlanId),
    Route(String),
    Host(String),
    /// `maintenance/<switch>`: drain / undrain.
    Maintenance(String),
    /// `upgrade`: the fabric's pipeline, rolled out switch by switch.
    Upgrade,
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigKey::Settings => f.write_str("settings"),
            ConfigKey::Switch(n) => write!(f, "switches/{n}"),
            ConfigKey::Link(n) => write!(f, "links/{n}"),
            ConfigKey::Port(p) => write!(f, "ports/{p}"),
            ConfigKey::Lag(n) => write!(f, "lags/{n}"),
            ConfigKey::Vlan(v) => write!(f, "vlans/{v}"),
            ConfigKey::Route(n) => write!(f, "routes/{n}"),
            ConfigKey::Host(n) => write!(f, "hosts/{n}"),
            ConfigKey::Maintenance(n) => write!(f, "maintenance/{n}"),
            ConfigKey::Upgrade => f.write_str(UPGRADE),
        }
    }
}

/// Is `name` usable as one path segment of a key? (Names also appear in
/// status keys and logs, so keep them to a plain character set.)
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
}

/// Why a configuration key or its value is rejected.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("unknown key {0:?}: not a configuration key")]
    UnknownKey(String),
    #[error("key {path:?} is not canonical: write {canonical:?}")]
    NotCanonical { path: String, canonical: String },
    #[error("invalid name {name:?} in key {path:?}: use letters, digits and - _ . : @")]
    InvalidName { name: String, path: String },
    #[error("key {path:?}: {source}")]
    BadPort {
        path: String,
        #[source]
        source: PortRefParseError,
    },
    #[error("invalid switch name in key {0:?}")]
    InvalidSwitchName(String),
    #[error("key {path:?}: {value:?} is not a VLAN id (1..4094)")]
    BadVlan { path: String, value: String },
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The value does not fit the key's type.
    #[error(transparent)]
    Value(serde_json::Error),
    #[error("unknown field(s) {} (for this VLAN mode)", .0.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))]
    UnknownFields(Vec<String>),
    #[error("`owner` must be a non-empty string (the writer owning the key), not {0}")]
    BadOwner(String),
}

impl ConfigKey {
    /// Parses a path relative to the prefix. Only the canonical spelling
    /// is accepted (`vlans/10`, not `vlans/010`), so two keys never name
    /// the same item.
    pub fn parse(path: &str) -> Result<ConfigKey, KeyProblem> {
        let key = Self::parse_loose(path)?;
        let canonical = key.to_string();
        if canonical != path {
            return Err(KeyProblem::NotCanonical {
                path: path.to_string(),
                canonical,
            });
        }
        Ok(key)
    }

    fn parse_loose(path: &str) -> Result<ConfigKey, KeyProblem> {
        if path == "settings" {
            return Ok(ConfigKey::Settings);
        }
        if path == UPGRADE {
            return Ok(ConfigKey::Upgrade);
        }
        let (dir, rest) = path
            .split_once('/')
            .ok_or_else(|| KeyProblem::UnknownKey(path.to_string()))?;
        let name = || -> Result<String, KeyProblem> {
            if valid_name(rest) {
                Ok(rest.to_string())
            } else {
                Err(KeyProblem::InvalidName {
                    name: rest.to_string(),
                    path: path.to_string(),
                })
            }
        };
        Ok(match dir {
            "switches" => ConfigKey::Switch(name()?),
            "links" => ConfigKey::Link(name()?),
            "lags" => ConfigKey::Lag(name()?),
            "routes" => ConfigKey::Route(name()?),
            "hosts" => ConfigKey::Host(name()?),
            "maintenance" => ConfigKey::Maintenance(name()?),
            "ports" => {
                let p: PortRef = rest.parse().map_err(|source| KeyProblem::BadPort {
                    path: path.to_string(),
                    source,
                })?;
                if !valid_name(&p.switch) {
                    return Err(KeyProblem::InvalidSwitchName(path.to_string()));
                }
                ConfigKey::Port(p)
            }
            "vlans" => {
                let id: VlanId = rest.parse().map_err(|_| KeyProblem::BadVlan {
                    path: path.to_string(),
                    value: rest.to_string(),
                })?;
                ConfigKey::Vlan(id)
            }
            _ => return Err(KeyProblem::UnknownKey(path.to_string())),
        })
    }

    /// Decodes the raw value stored under this key.
    pub fn decode(&self, raw: &[u8]) -> Result<Item, KeyProblem> {
        let mut value: serde_json::Value = serde_json::from_slice(raw).map_err(KeyProblem::Json)?;
        if self.may_have_owner() {
            take_owner(&mut value)?;
        }
        Ok(match self {
            ConfigKey::Settings => Item::Settings(typed(value)?),
            ConfigKey::Switch(_) => Item::Switch(typed(value)?),
            ConfigKey::Link(_) => Item::Link(typed(value)?),
            // Ports and LAGs flatten their VLAN mode, which rules out
            // `deny_unknown_fields`: compare keys instead.
            ConfigKey::Port(_) => Item::Port(typed_strict(value)?),
            ConfigKey::Lag(_) => Item::Lag(typed_strict(value)?),
            ConfigKey::Vlan(_) => Item::Vlan(typed(value)?),
            ConfigKey::Route(_) => Item::Route(typed(value)?),
            ConfigKey::Host(_) => Item::Host(typed(value)?),
            ConfigKey::Maintenance(_) => Item::Maintenance(typed(value)?),
            ConfigKey::Upgrade => Item::Upgrade(typed(value)?),
        })
    }
}

impl ConfigKey {
    /// Kinds another writer (Neutron) may own and mark with `owner`.
    pub fn may_have_owner(&self) -> bool {
        matches!(
            self,
            ConfigKey::Port(_)
                | ConfigKey::Lag(_)
                | ConfigKey::Vlan(_)
                | ConfigKey::Route(_)
                | ConfigKey::Host(_)
        )
    }
}

/// Removes the `owner` marker from an object value; it must be a non-empty
/// string.
fn take_owner(value: &mut serde_json::Value) -> Result<(), KeyProblem> {
    let serde_json::Value::Object(m) = value else {
        return Ok(());
    };
    match m.remove(OWNER_FIELD) {
        None => Ok(()),
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(()),
        Some(other) => Err(KeyProblem::BadOwner(other.to_string())),
    }
}

fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, KeyProblem> {
    serde_json::from_value(value).map_err(KeyProblem::Value)
}

/// Like `typed`, but also rejects top-level fields the type does not know:
/// every known field is written back when the value is serialized, so an
/// input field missing from the re-serialized value is unknown.
fn typed_strict<T: DeserializeOwned + Serialize>(
    value: serde_json::Value,
) -> Result<T, KeyProblem> {
    let given: BTreeSet<String> = match &value {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        _ => BTreeSet::new(),
    };
    let parsed: T = typed(value)?;
    let back = serde_json::to_value(&parsed).map_err(KeyProblem::Value)?;
    let known: BTreeSet<String> = match back {
        serde_json::Value::Object(m) => m.into_iter().map(|(k, _)| k).collect(),
        _ => BTreeSet::new(),
    };
    let unknown: Vec<String> = given.difference(&known).cloned().collect();
    if unknown.is_empty() {
        Ok(parsed)
    } else {
        Err(KeyProblem::UnknownFields(unknown))
    }
}

/// One typed configuration value.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Settings(Settings),
    Switch(Switch),
    Link(Link),
    Port(EdgePort),
    Lag(Lag),
    Vlan(Vlan),
    Route(Route),
    Host(Host),
    Maintenance(Maintenance),
    Upgrade(Upgrade),
}

/// Builds the fabric from keyed items. An item stored under the wrong kind
/// of key cannot be built by `decode`, so mismatches are simply skipped.
pub fn assemble<'a>(items: impl IntoIterator<Item = (&'a ConfigKey, &'a Item)>) -> Fabric {
    let mut f = Fabric::default();
    for (key, item) in items {
        set_item(&mut f, key, Some(item.clone()));
    }
    f
}

/// Puts (`Some`) or removes (`None`) one keyed item of a fabric; removed
/// `settings` are the defaults. An item under the wrong kind of key is
/// skipped, as in `assemble`.
pub fn set_item(f: &mut Fabric, key: &ConfigKey, item: Option<Item>) {
    match (key, item) {
        (ConfigKey::Settings, Some(Item::Settings(s))) => f.settings = s,
        (ConfigKey::Settings, None) => f.settings = Settings::default(),
        (ConfigKey::Switch(n), Some(Item::Switch(s))) => {
            f.switches.insert(n.clone(), s);
        }
        (ConfigKey::Switch(n), None) => {
            f.switches.remove(n);
        }
        (ConfigKey::Link(n), Some(Item::Link(l))) => {
            f.links.insert(n.clone(), l);
        }
        (ConfigKey::Link(n), None) => {
            f.links.remove(n);
        }
        (ConfigKey::Port(p), Some(Item::Port(e))) => {
            f.ports.insert(p.clone(), e);
        }
        (ConfigKey::Port(p), None) => {
            f.ports.remove(p);
        }
        (ConfigKey::Lag(n), Some(Item::Lag(l))) => {
            f.lags.insert(n.clone(), l);
        }
        (ConfigKey::Lag(n), None) => {
            f.lags.remove(n);
        }
        (ConfigKey::Vlan(v), Some(Item::Vlan(x))) => {
            f.vlans.insert(*v, x);
        }
        (ConfigKey::Vlan(v), None) => {
            f.vlans.remove(v);
        }
        (ConfigKey::Route(n), Some(Item::Route(r))) => {
            f.routes.insert(n.clone(), r);
        }
        (ConfigKey::Route(n), None) => {
            f.routes.remove(n);
        }
        (ConfigKey::Host(n), Some(Item::Host(h))) => {
            f.hosts.insert(n.clone(), h);
        }
        (ConfigKey::Host(n), None) => {
            f.hosts.remove(n);
        }
        (ConfigKey::Maintenance(n), Some(Item::Maintenance(m))) => {
            f.maintenance.insert(n.clone(), m);
        }
        (ConfigKey::Maintenance(n), None) => {
            f.maintenance.remove(n);
        }
        (ConfigKey::Upgrade, Some(Item::Upgrade(u))) => f.upgrade = Some(u),
        (ConfigKey::Upgrade, None) => f.upgrade = None,
        _ => {}
    }
}

/// One keyed item of a fabric, if it has it (`settings` it always has).
pub fn item_of(f: &Fabric, key: &ConfigKey) -> Option<Item> {
    match key {
        ConfigKey::Settings => Some(Item::Settings(f.settings.clone())),
        ConfigKey::Switch(n) => f.switches.get(n).cloned().map(Item::Switch),
        ConfigKey::Link(n) => f.links.get(n).cloned().map(Item::Link),
        ConfigKey::Port(p) => f.ports.get(p).cloned().map(Item::Port),
        ConfigKey::Lag(n) => f.lags.get(n).cloned().map(Item::Lag),
        ConfigKey::Vlan(v) => f.vlans.get(v).cloned().map(Item::Vlan),
        ConfigKey::Route(n) => f.routes.get(n).cloned().map(Item::Route),
        ConfigKey::Host(n) => f.hosts.get(n).cloned().map(Item::Host),
        ConfigKey::Maintenance(n) => f.maintenance.get(n).cloned().map(Item::Maintenance),
        ConfigKey::Upgrade => f.upgrade.clone().map(Item::Upgrade),
    }
}

/// Splits a fabric into its keys and items (the inverse of `assemble`).
/// `settings` is always present.
pub fn split(f: &Fabric) -> BTreeMap<ConfigKey, Item> {
    let mut out = BTreeMap::new();
    out.insert(ConfigKey::Settings, Item::Settings(f.settings.clone()));
    for (n, v) in &f.switches {
        out.insert(ConfigKey::Switch(n.clone()), Item::Switch(v.clone()));
    }
    for (n, v) in &f.links {
        out.insert(ConfigKey::Link(n.clone()), Item::Link(v.clone()));
    }
    for (p, v) in &f.ports {
        out.insert(ConfigKey::Port(p.clone()), Item::Port(v.clone()));
    }
    for (n, v) in &f.lags {
        out.insert(ConfigKey::Lag(n.clone()), Item::Lag(v.clone()));
    }
    for (id, v) in &f.vlans {
        out.insert(ConfigKey::Vlan(*id), Item::Vlan(v.clone()));
    }
    for (n, v) in &f.routes {
        out.insert(ConfigKey::Route(n.clone()), Item::Route(v.clone()));
    }
    for (n, v) in &f.hosts {
        out.insert(ConfigKey::Host(n.clone()), Item::Host(v.clone()));
    }
    for (n, v) in &f.maintenance {
        out.insert(
            ConfigKey::Maintenance(n.clone()),
            Item::Maintenance(v.clone()),
        );
    }
    if let Some(u) = &f.upgrade {
        out.insert(ConfigKey::Upgrade, Item::Upgrade(u.clone()));
    }
    out
}

impl Item {
    /// The JSON stored in etcd for this item.
    pub fn to_json(&self) -> Vec<u8> {
        let r = match self {
            Item::Settings(v) => serde_json::to_vec(v),
            Item::Switch(v) => serde_json::to_vec(v),
            Item::Link(v) => serde_json::to_vec(v),
            Item::Port(v) => serde_json::to_vec(v),
            Item::Lag(v) => serde_json::to_vec(v),
            Item::Vlan(v) => serde_json::to_vec(v),
            Item::Route(v) => serde_json::to_vec(v),
            Item::Host(v) => serde_json::to_vec(v),
            Item::Maintenance(v) => serde_json::to_vec(v),
            Item::Upgrade(v) => serde_json::to_vec(v),
        };
        // Serializing plain data with string keys cannot fail.
        r.unwrap_or_default()
    }
}

/// The raw keys (relative path -> JSON) of a whole fabric.
pub fn encode(f: &Fabric) -> BTreeMap<String, Vec<u8>> {
    split(f)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_json()))
        .collect()
}

/// A YAML document in the `Fabric` shape that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("{0}")]
    Shape(String),
}

/// Splits a YAML (or JSON) document in the `Fabric` shape into raw keys,
/// unknown fields included, so a file goes through exactly the per-key
/// decoding and validation an etcd store does.
pub fn document_to_raw(text: &str) -> Result<BTreeMap<String, Vec<u8>>, DocumentError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
    let mut out = BTreeMap::new();
    let map = match doc {
        serde_yaml::Value::Null => return Ok(out),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(DocumentError::Shape(
                "the document must be a mapping".into(),
            ))
        }
    };
    for (section, body) in map {
        let section = scalar_key(&section)?;
        if section == "settings" || section == UPGRADE {
            out.insert(section, to_json(&body)?);
            continue;
        }
        if !CONFIG_DIRS.contains(&section.as_str()) {
            return Err(DocumentError::Shape(format!(
                "unknown section `{section}` (expected settings, switches, links, ports, lags, vlans, routes, hosts, maintenance, upgrade)"
            )));
        }
        let entries = match body {
            serde_yaml::Value::Null => continue,
            serde_yaml::Value::Mapping(m) => m,
            _ => {
                return Err(DocumentError::Shape(format!(
                    "section `{section}` must be a mapping of name: value"
                )))
            }
        };
        for (name, value) in entries {
            let name = scalar_key(&name)?;
            out.insert(format!("{section}/{name}"), to_json(&value)?);
        }
    }
    Ok(out)
}

fn scalar_key(v: &serde_yaml::Value) -> Result<String, DocumentError> {
    match v {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        other => Err(DocumentError::Shape(format!(
            "a key must be a string or number, not {other:?}"
        ))),
    }
}

fn to_json(v: &serde_yaml::Value) -> Result<Vec<u8>, DocumentError> {
    serde_json::to_vec(v).map_err(|e| DocumentError::Shape(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for k in [
            ConfigKey::Settings,
            ConfigKey::Switch("leaf1".into()),
            ConfigKey::Port(PortRef::new("leaf1", 3)),
            ConfigKey::Vlan(10),
            ConfigKey::Maintenance("spine1".into()),
            ConfigKey::Upgrade,
            ConfigKey::Host("6f1c2a9e-0b7d-4b8e-9c1a-2f3e4d5c6b7a".into()),
        ] {
            assert_eq!(ConfigKey::parse(&k.to_string()).unwrap(), k);
        }
        for bad in [
            "nope",
            "switches/",
            "switches/a b",
            "ports/leaf1",
            "vlans/x",
            "vlans/010",
            "vlans/+10",
            "ports/leaf1/03",
            "foo/bar",
        ] {
            assert!(ConfigKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_port_fields_are_reported() {
        let k = ConfigKey::Port(PortRef::new("leaf1", 3));
        assert!(k.decode(br#"{"mode":"access","vlan":10}"#).is_ok());
        let e = k
            .decode(br#"{"mode":"access","vlan":10,"vlna":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("vlna"), "{e}");
        // `vlans` belongs to trunk mode only.
        let e = k
            .decode(br#"{"mode":"access","vlan":10,"vlans":[3]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("vlans"), "{e}");
        let l = ConfigKey::Lag("bond1".into());
        let e = l
            .decode(br#"{"id":1,"members":["leaf1/5"],"mode":"access","vlan":10,"speed":9}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("speed"), "{e}");
    }

    #[test]
    fn owner_marker_is_accepted_on_neutron_kinds_only() {
        let cases: [(&str, &[u8]); 5] = [
            ("vlans/10", br#"{"name":"net1","owner":"neutron"}"#),
            (
                "hosts/6f1c2a9e-0b7d",
                br#"{"mac":"02:00:00:00:01:01","vlan":10,"attachment":{"port":"leaf1/3"},"owner":"neutron"}"#,
            ),
            ("ports/leaf1/3", br#"{"mode":"trunk","vlans":[10],"owner":"neutron"}"#),
            (
                "lags/bond1",
                br#"{"id":1,"members":["leaf1/4"],"mode":"access","vlan":10,"owner":"neutron"}"#,
            ),
            ("routes/r1", br#"{"prefix":"0.0.0.0/0","next_hops":["10.0.10.254"],"owner":"neutron"}"#),
        ];
        for (key, raw) in cases {
            let k = ConfigKey::parse(key).unwrap();
            assert!(k.decode(raw).is_ok(), "{key}: {:?}", k.decode(raw));
            assert_eq!(owner_of(raw).as_deref(), Some("neutron"));
        }
        // The marker does not change the value.
        let v = ConfigKey::Vlan(10);
        assert_eq!(
            v.decode(br#"{"name":"n","owner":"neutron"}"#).unwrap(),
            v.decode(br#"{"name":"n"}"#).unwrap()
        );
        let e = v.decode(br#"{"name":"n","owner":7}"#).unwrap_err();
        assert!(e.to_string().contains("owner"), "{e}");
        let e = v.decode(br#"{"name":"n","owner":""}"#).unwrap_err();
        assert!(e.to_string().contains("owner"), "{e}");
        // Switches are the operator's: an owner there is an unknown field.
        let s = ConfigKey::Switch("leaf1".into());
        let e = s
            .decode(br#"{"address":"127.0.0.1:1","device_id":1,"role":"leaf","label":101,"owner":"neutron"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("owner"), "{e}");
        assert_eq!(owner_of(br#"{"name":"n"}"#), None);
        assert_eq!(owner_of(b"not json"), None);
    }

    #[test]
    fn document_splits_into_keys() {
        let raw = document_to_raw(
            "vlans:\n  10: {name: web}\nports:\n  leaf1/3: {mode: access, vlan: 10, bogus: 1}\n",
        )
        .unwrap();
        assert!(raw.contains_key("vlans/10"));
        let e = ConfigKey::parse("ports/leaf1/3")
            .unwrap()
            .decode(&raw["ports/leaf1/3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"));
        assert!(document_to_raw("bogus: {}").is_err());
    }
}
