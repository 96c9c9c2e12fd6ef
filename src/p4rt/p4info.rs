//! The P4Info registry: resolves tables, actions, parameters, match fields,
//! action profiles, digests, meters and controller packet metadata by name,
//! and knows every bit width — so the rest of the controller never uses a
//! numeric P4 id.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use p4runtime_proto::config::v1 as p4i;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

/// Errors loading a P4Info or resolving a name in it.
#[derive(Debug, thiserror::Error)]
pub enum P4InfoError {
    #[error("cannot read P4Info {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("P4Info is not valid protobuf binary: {0}")]
    Binary(#[from] prost::DecodeError),
    #[error("P4Info text format error: {0}")]
    Text(String),
    #[error("P4Info has no {kind} named {name:?}")]
    UnknownName { kind: &'static str, name: String },
    #[error("P4Info has no {kind} with id {id:#x}")]
    UnknownId { kind: &'static str, id: u32 },
    #[error("{0}")]
    Invalid(String),
}

/// A match field of a table.
#[derive(Debug, Clone)]
pub struct MatchFieldInfo {
    pub id: u32,
    pub name: &'static str,
    pub bitwidth: u32,
    pub match_type: p4i::match_field::MatchType,
}

/// An action parameter (also used for digest and packet metadata fields).
#[derive(Debug, Clone)]
pub struct FieldInfo {
    pub id: u32,
    pub name: &'static str,
    pub bitwidth: u32,
}

#[derive(Debug, Clone)]
pub struct ActionInfo {
    pub id: u32,
    pub name: &'static str,
    pub params: Vec<FieldInfo>,
}

impl ActionInfo {
    pub fn param(&self, name: &str) -> Result<&FieldInfo, P4InfoError> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| P4InfoError::UnknownName {
                kind: "action parameter",
                name: format!("{}.{name}", self.name),
            })
    }
}

#[derive(Debug, Clone)]
pub struct TableInfo {
    pub id: u32,
    pub name: &'static str,
    pub match_fields: Vec<MatchFieldInfo>,
    /// Actions an entry may use (scope TABLE_AND_DEFAULT or TABLE_ONLY).
    pub entry_actions: HashSet<u32>,
    /// The action profile or selector, 0 if none.
    pub implementation_id: u32,
    pub supports_idle_timeout: bool,
    pub size: i64,
    /// Ternary, range or optional fields need a priority.
    pub needs_priority: bool,
}

impl TableInfo {
    pub fn field(&self, name: &str) -> Result<&MatchFieldInfo, P4InfoError> {
        self.match_fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| P4InfoError::UnknownName {
                kind: "match field",
                name: format!("{}.{name}", self.name),
            })
    }

    pub fn field_by_id(&self, id: u32) -> Result<&MatchFieldInfo, P4InfoError> {
        self.match_fields
            .iter()
            .find(|f| f.id == id)
            .ok_or(P4InfoError::UnknownId {
                kind: "match field",
                id,
            })
    }
}

#[derive(Debug, Clone)]
pub struct ActionProfileInfo {
    pub id: u32,
    pub name: &'static str,
    pub with_selector: bool,
    pub size: i64,
    pub max_group_size: i32,
    pub table_ids: Vec<u32>,
}

/// A digest and its struct fields in order.
#[derive(Debug, Clone)]
pub struct DigestInfo {
    pub id: u32,
    pub name: &'static str,
    pub fields: Vec<FieldInfo>,
}

/// `packet_in` or `packet_out` header fields.
#[derive(Debug, Clone)]
pub struct PacketMetadataInfo {
    pub id: u32,
    pub name: &'static str,
    pub fields: Vec<FieldInfo>,
}

#[derive(Debug, Clone)]
pub struct MeterInfo {
    pub id: u32,
    pub name: &'static str,
    pub size: i64,
}

/// Interns names so entities can carry `&'static str`: a P4Info is loaded a
/// handful of times per process and its names are a small fixed set.
pub fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(s) = set.get(name) {
        return s;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// Everything the controller needs to know about one compiled pipeline.
#[derive(Debug, Clone)]
pub struct P4InfoRegistry {
    p4info: p4i::P4Info,
    tables: Vec<TableInfo>,
    actions: Vec<ActionInfo>,
    profiles: Vec<ActionProfileInfo>,
    digests: Vec<DigestInfo>,
    meters: Vec<MeterInfo>,
    packet_metadata: Vec<PacketMetadataInfo>,
    by_name: HashMap<(&'static str, String), usize>,
    by_id: HashMap<u32, usize>,
}

impl P4InfoRegistry {
    /// Loads `path`: binary protobuf if it ends in `.bin` or `.pb`, text
    /// format otherwise.
    pub fn load(path: &Path) -> Result<Self, P4InfoError> {
        let bytes = std::fs::read(path).map_err(|source| P4InfoError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let is_binary = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("bin" | "pb")
        );
        let p4info = if is_binary {
            p4i::P4Info::decode(bytes.as_slice())?
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|e| P4InfoError::Text(format!("not UTF-8: {e}")))?;
            parse_text(&text)?
        };
        Self::new(p4info)
    }

    pub fn from_text(text: &str) -> Result<Self, P4InfoError> {
        Self::new(parse_text(text)?)
    }

    pub fn from_binary(bytes: &[u8]) -> Result<Self, P4InfoError> {
        Self::new(p4i::P4Info::decode(bytes)?)
    }

    pub fn new(p4info: p4i::P4Info) -> Result<Self, P4InfoError> {
        let mut reg = P4InfoRegistry {
            tables: Vec::new(),
            actions: Vec::new(),
            profiles: Vec::new(),
            digests: Vec::new(),
            meters: Vec::new(),
            packet_metadata: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            p4info: p4i::P4Info::default(),
        };
        for a in &p4info.actions {
            let pre = preamble(&a.preamble, "action")?;
            let params = a
                .params
                .iter()
                .map(|p| field(p.id, &p.name, p.bitwidth))
                .collect();
            reg.add("action", pre, reg.actions.len())?;
            reg.actions.push(ActionInfo {
                id: pre.id,
                name: intern(&pre.name),
                params,
            });
        }
        for t in &p4info.tables {
            let pre = preamble(&t.preamble, "table")?;
            let match_fields: Vec<MatchFieldInfo> = t
                .match_fields
                .iter()
                .map(|m| MatchFieldInfo {
                    id: m.id,
                    name: intern(&m.name),
                    bitwidth: m.bitwidth.max(0) as u32,
                    match_type: match m.r#match {
                        Some(p4i::match_field::Match::MatchType(mt)) => {
                            p4i::match_field::MatchType::try_from(mt)
                                .unwrap_or(p4i::match_field::MatchType::Unspecified)
                        }
                        _ => p4i::match_field::MatchType::Unspecified,
                    },
                })
                .collect();
            use p4i::match_field::MatchType as MT;
            let needs_priority = match_fields
                .iter()
                .any(|f| matches!(f.match_type, MT::Ternary | MT::Range | MT::Optional));
            let entry_actions = t
                .action_refs
                .iter()
                .filter(|r| r.scope != p4i::action_ref::Scope::DefaultOnly as i32)
                .map(|r| r.id)
                .collect();
            reg.add("table", pre, reg.tables.len())?;
            reg.tables.push(TableInfo {
                id: pre.id,
                name: intern(&pre.name),
                match_fields,
                entry_actions,
                implementation_id: t.implementation_id,
                supports_idle_timeout: t.idle_timeout_behavior
                    == p4i::table::IdleTimeoutBehavior::NotifyControl as i32,
                size: t.size,
                needs_priority,
            });
        }
        for p in &p4info.action_profiles {
            let pre = preamble(&p.preamble, "action profile")?;
            reg.add("action profile", pre, reg.profiles.len())?;
            reg.profiles.push(ActionProfileInfo {
                id: pre.id,
                name: intern(&pre.name),
                with_selector: p.with_selector,
                size: p.size,
                max_group_size: p.max_group_size,
                table_ids: p.table_ids.clone(),
            });
        }
        for d in &p4info.digests {
            let pre = preamble(&d.preamble, "digest")?;
            let fields = digest_fields(&p4info, d)?;
            reg.add("digest", pre, reg.digests.len())?;
            reg.digests.push(DigestInfo {
                id: pre.id,
                name: intern(&pre.name),
                fields,
            });
        }
        for m in &p4info.meters {
            let pre = preamble(&m.preamble, "meter")?;
            reg.add("meter", pre, reg.meters.len())?;
            reg.meters.push(MeterInfo {
                id: pre.id,
                name: intern(&pre.name),
                size: m.size,
            });
        }
        for c in &p4info.controller_packet_metadata {
            let pre = preamble(&c.preamble, "controller packet metadata")?;
            let fields = c
                .metadata
                .iter()
                .map(|m| field(m.id, &m.name, m.bitwidth))
                .collect();
            reg.add("controller packet metadata", pre, reg.packet_metadata.len())?;
            reg.packet_metadata.push(PacketMetadataInfo {
                id: pre.id,
                name: intern(&pre.name),
                fields,
            });
        }
        reg.p4info = p4info;
        Ok(reg)
    }

    /// Registers an object under its name, its alias and its id.
    fn add(
        &mut self,
        kind: &'static str,
        pre: &p4i::Preamble,
        index: usize,
    ) -> Result<(), P4InfoError> {
        if self.by_id.insert(pre.id, index).is_some() {
            return Err(P4InfoError::Invalid(format!(
                "duplicate P4 id {:#x} ({})",
                pre.id, pre.name
            )));
        }
        self.by_name.insert((kind, pre.name.clone()), index);
        if !pre.alias.is_empty() {
            // An alias may be shared by two objects; then only the full name
            // resolves, and the first alias wins only if it is unique.
            self.by_name
                .entry((kind, pre.alias.clone()))
                .or_insert(index);
        }
        Ok(())
    }

    fn index(&self, kind: &'static str, name: &str) -> Result<usize, P4InfoError> {
        self.by_name
            .get(&(kind, name.to_string()))
            .copied()
            .ok_or_else(|| P4InfoError::UnknownName {
                kind,
                name: name.to_string(),
            })
    }

    fn index_by_id(&self, kind: &'static str, id: u32) -> Result<usize, P4InfoError> {
        self.by_id
            .get(&id)
            .copied()
            .ok_or(P4InfoError::UnknownId { kind, id })
    }

    pub fn p4info(&self) -> &p4i::P4Info {
        &self.p4info
    }

    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }

    pub fn action_profiles(&self) -> &[ActionProfileInfo] {
        &self.profiles
    }

    pub fn digests(&self) -> &[DigestInfo] {
        &self.digests
    }

    pub fn table(&self, name: &str) -> Result<&TableInfo, P4InfoError> {
        Ok(&self.tables[self.index("table", name)?])
    }

    pub fn table_by_id(&self, id: u32) -> Result<&TableInfo, P4InfoError> {
        let t = self.tables.get(self.index_by_id("table", id)?);
        t.filter(|t| t.id == id)
            .ok_or(P4InfoError::UnknownId { kind: "table", id })
    }

    pub fn action(&self, name: &str) -> Result<&ActionInfo, P4InfoError> {
        Ok(&self.actions[self.index("action", name)?])
    }

    pub fn action_by_id(&self, id: u32) -> Result<&ActionInfo, P4InfoError> {
        let a = self.actions.get(self.index_by_id("action", id)?);
        a.filter(|a| a.id == id)
            .ok_or(P4InfoError::UnknownId { kind: "action", id })
    }

    pub fn action_profile(&self, name: &str) -> Result<&ActionProfileInfo, P4InfoError> {
        Ok(&self.profiles[self.index("action profile", name)?])
    }

    pub fn action_profile_by_id(&self, id: u32) -> Result<&ActionProfileInfo, P4InfoError> {
        let p = self.profiles.get(self.index_by_id("action profile", id)?);
        p.filter(|p| p.id == id).ok_or(P4InfoError::UnknownId {
            kind: "action profile",
            id,
        })
    }

    pub fn digest(&self, name: &str) -> Result<&DigestInfo, P4InfoError> {
        Ok(&self.digests[self.index("digest", name)?])
    }

    pub fn digest_by_id(&self, id: u32) -> Result<&DigestInfo, P4InfoError> {
        let d = self.digests.get(self.index_by_id("digest", id)?);
        d.filter(|d| d.id == id)
            .ok_or(P4InfoError::UnknownId { kind: "digest", id })
    }

    pub fn meter(&self, name: &str) -> Result<&MeterInfo, P4InfoError> {
        Ok(&self.meters[self.index("meter", name)?])
    }

    pub fn meter_by_id(&self, id: u32) -> Result<&MeterInfo, P4InfoError> {
        let m = self.meters.get(self.index_by_id("meter", id)?);
        m.filter(|m| m.id == id)
            .ok_or(P4InfoError::UnknownId { kind: "meter", id })
    }

    /// `packet_in` or `packet_out`.
    pub fn packet_metadata(&self, name: &str) -> Result<&PacketMetadataInfo, P4InfoError> {
        Ok(&self.packet_metadata[self.index("controller packet metadata", name)?])
    }
}

fn preamble<'a>(
    p: &'a Option<p4i::Preamble>,
    kind: &'static str,
) -> Result<&'a p4i::Preamble, P4InfoError> {
    p.as_ref()
        .ok_or_else(|| P4InfoError::Invalid(format!("{kind} without preamble")))
}

fn field(id: u32, name: &str, bitwidth: i32) -> FieldInfo {
    FieldInfo {
        id,
        name: intern(name),
        bitwidth: bitwidth.max(0) as u32,
    }
}

fn bit_width(b: &p4i::P4BitstringLikeTypeSpec) -> Option<i32> {
    match &b.type_spec {
        Some(p4i::p4_bitstring_like_type_spec::TypeSpec::Bit(bit)) => Some(bit.bitwidth),
        _ => None,
    }
}

/// The P4Runtime width of a user-defined type: its SDN bitwidth when
/// translated, else the width of the bit<N> it stands for.
fn new_type_width(p4info: &p4i::P4Info, name: &str) -> Option<i32> {
    use p4i::p4_new_type_spec::Representation;
    use p4i::p4_new_type_translation::SdnType;
    let spec = p4info.type_info.as_ref()?.new_types.get(name)?;
    match spec.representation.as_ref()? {
        Representation::TranslatedType(t) => match t.sdn_type.as_ref()? {
            SdnType::SdnBitwidth(w) => Some(*w),
            SdnType::SdnString(_) => None,
        },
        Representation::OriginalType(o) => match o.type_spec.as_ref()? {
            p4i::p4_data_type_spec::TypeSpec::Bitstring(b) => bit_width(b),
            _ => None,
        },
    }
}

/// The bit fields of a digest's struct type, in order (ids count from 1).
pub(super) fn digest_fields(
    p4info: &p4i::P4Info,
    d: &p4i::Digest,
) -> Result<Vec<FieldInfo>, P4InfoError> {
    use p4i::p4_data_type_spec::TypeSpec;
    let name = d.preamble.as_ref().map(|p| p.name.as_str()).unwrap_or("?");
    let bad = |why: &str| P4InfoError::Invalid(format!("digest {name}: {why}"));
    let struct_name = match d.type_spec.as_ref().and_then(|t| t.type_spec.as_ref()) {
        Some(TypeSpec::Struct(n)) => &n.name,
        _ => return Err(bad("type is not a struct")),
    };
    let spec = p4info
        .type_info
        .as_ref()
        .and_then(|ti| ti.structs.get(struct_name))
        .ok_or_else(|| bad("struct type missing from type_info"))?;
    spec.members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let width = match m.type_spec.as_ref().and_then(|t| t.type_spec.as_ref()) {
                Some(TypeSpec::Bitstring(b)) => {
                    bit_width(b).ok_or_else(|| bad("member is not bit<N>"))?
                }
                // A translated type (TNA's `port_t`, `tna/PortId_t`) is
                // its SDN width on the P4Runtime wire.
                Some(TypeSpec::NewType(n)) => new_type_width(p4info, &n.name)
                    .ok_or_else(|| bad(&format!("member type {} has no known width", n.name)))?,
                _ => return Err(bad("member is not a bitstring")),
            };
            Ok(field(i as u32 + 1, &m.name, width))
        })
        .collect()
}

/// The P4Info message descriptor, from our descriptors (text format is
/// read and written by reflection over it).
fn p4info_descriptor() -> Result<prost_reflect::MessageDescriptor, P4InfoError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| {
            DescriptorPool::decode(p4runtime_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| P4InfoError::Text(format!("descriptor pool: {e}")))?;
    pool.get_message_by_name("p4.config.v1.P4Info")
        .ok_or_else(|| P4InfoError::Text("P4Info descriptor missing".into()))
}

/// Parses P4Info in protobuf text format (what p4c writes with
/// `--p4runtime-files x.p4info.txt`).
pub fn parse_text(text: &str) -> Result<p4i::P4Info, P4InfoError> {
    let dynamic = DynamicMessage::parse_text_format(p4info_descriptor()?, text)
        .map_err(|e| P4InfoError::Text(e.to_string()))?;
    Ok(p4i::P4Info::decode(dynamic.encode_to_vec().as_slice())?)
}

/// P4Info in protobuf text format, as `parse_text` reads it (a build
/// written by a tool or a test).
pub fn to_text(p4info: &p4i::P4Info) -> Result<String, P4InfoError> {
    let dynamic = DynamicMessage::decode(p4info_descriptor()?, p4info.encode_to_vec().as_slice())?;
    Ok(dynamic.to_text_format())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `to_text` writes, `parse_text` reads back the same.
    #[test]
    fn text_format_round_trips() {
        let path = crate::p4rt::Pipeline::default_dir().join("fabric.p4info.txt");
        let p4info = P4InfoRegistry::load(&path)
            .expect("p4/build")
            .p4info()
            .clone();
        let text = to_text(&p4info).expect("to text");
        assert_eq!(parse_text(&text).expect("parse"), p4info);
    }
}
