//! P4 entities by name, in the project's own typed form.
//!
//! The compiler produces these; the P4Info registry encodes them into
//! P4Runtime messages (ids, canonical bytestrings) and decodes what a switch
//! reads back into the same form, so desired and installed state compare
//! with `==`. Names are the fully qualified P4Info names
//! (`FabricIngress.bridging.fdb`); every value fits in 128 bits (the widest
//! field of the pipeline is an IPv6 address).
//!
//! Names are `Arc<str>`-free `&'static str` on purpose: a large fabric holds
//! millions of entries and the names come from a fixed set of constants.

use std::collections::BTreeMap;
use std::fmt;

/// What a write does to an entity: the one update kind of the project
/// (the compiler's diff plans in it, the switch client writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpdateKind {
    Insert,
    Modify,
    Delete,
}

/// A field or parameter value, as an unsigned integer of the field's width.
pub type Value = u128;

/// How one match field of a table entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Match {
    Exact(Value),
    Lpm { value: Value, prefix_len: u32 },
    Ternary { value: Value, mask: Value },
    Optional(Value),
    Range { low: Value, high: Value },
}

/// An action with its parameters by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionCall {
    pub name: &'static str,
    pub params: Vec<(&'static str, Value)>,
}

impl ActionCall {
    pub fn new(name: &'static str) -> Self {
        ActionCall {
            name,
            params: Vec::new(),
        }
    }

    pub fn param(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.params.push((name, value.into()));
        self
    }
}

/// What a table entry does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableAction {
    Direct(ActionCall),
    /// A member of the table's action profile.
    Member(u32),
    /// A group of the table's action selector.
    Group(u32),
}

/// The identity of a table entry: table, match fields, priority. Two entries
/// with the same key are the same entry on the switch (a change of action is
/// a MODIFY).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableKey {
    pub table: &'static str,
    /// Match fields sorted by name; don't-care ternary/LPM/optional fields
    /// are left out (P4Runtime omits them on the wire too).
    pub matches: Vec<(&'static str, Match)>,
    /// 0 for tables without ternary/range/optional fields.
    pub priority: i32,
}

impl TableKey {
    pub fn new(table: &'static str) -> Self {
        TableKey {
            table,
            matches: Vec::new(),
            priority: 0,
        }
    }

    /// Adds a match field, keeping fields sorted by name.
    pub fn with(mut self, field: &'static str, m: Match) -> Self {
        let pos = self.matches.partition_point(|(f, _)| *f < field);
        self.matches.insert(pos, (field, m));
        self
    }

    pub fn exact(self, field: &'static str, value: impl Into<Value>) -> Self {
        self.with(field, Match::Exact(value.into()))
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableEntry {
    pub key: TableKey,
    pub action: TableAction,
    /// 0 = no idle timeout.
    pub idle_timeout_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionProfileMember {
    pub profile: &'static str,
    pub member_id: u32,
    pub action: ActionCall,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupMember {
    pub member_id: u32,
    pub weight: i32,
    /// The member is skipped by the data plane while this port is down.
    pub watch_port: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionProfileGroup {
    pub profile: &'static str,
    pub group_id: u32,
    /// Sorted by member id.
    pub members: Vec<GroupMember>,
    pub max_size: i32,
}

/// One copy made by the packet replication engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replica {
    pub port: u32,
    pub instance: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MulticastGroup {
    pub group_id: u32,
    /// Sorted.
    pub replicas: Vec<Replica>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloneSession {
    pub session_id: u32,
    /// Sorted.
    pub replicas: Vec<Replica>,
    pub class_of_service: u32,
    /// 0 = whole packet.
    pub packet_length_bytes: i32,
}

/// Digest delivery settings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DigestConfig {
    pub digest: &'static str,
    pub max_timeout_ns: i64,
    pub max_list_size: i32,
    pub ack_timeout_ns: i64,
}

/// An indexed meter cell's configuration (rates per second, bursts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeterConfig {
    pub meter: &'static str,
    pub index: i64,
    pub cir: i64,
    pub cburst: i64,
    pub pir: i64,
    pub pburst: i64,
}

/// Any entity the controller writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    Table(TableEntry),
    Member(ActionProfileMember),
    Group(ActionProfileGroup),
    Multicast(MulticastGroup),
    Clone(CloneSession),
    Digest(DigestConfig),
    Meter(MeterConfig),
}

/// What identifies an entity on the switch, independent of its contents.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityKey {
    Table(TableKey),
    Member {
        profile: &'static str,
        member_id: u32,
    },
    Group {
        profile: &'static str,
        group_id: u32,
    },
    Multicast(u32),
    Clone(u32),
    Digest(&'static str),
    Meter {
        meter: &'static str,
        index: i64,
    },
}

impl Entity {
    pub fn key(&self) -> EntityKey {
        match self {
            Entity::Table(t) => EntityKey::Table(t.key.clone()),
            Entity::Member(m) => EntityKey::Member {
                profile: m.profile,
                member_id: m.member_id,
            },
            Entity::Group(g) => EntityKey::Group {
                profile: g.profile,
                group_id: g.group_id,
            },
            Entity::Multicast(m) => EntityKey::Multicast(m.group_id),
            Entity::Clone(c) => EntityKey::Clone(c.session_id),
            Entity::Digest(d) => EntityKey::Digest(d.digest),
            Entity::Meter(m) => EntityKey::Meter {
                meter: m.meter,
                index: m.index,
            },
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityKey::Table(k) => {
                write!(f, "{}[", k.table)?;
                for (i, (name, m)) in k.matches.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    match m {
                        Match::Exact(v) | Match::Optional(v) => write!(f, "{name}={v:#x}")?,
                        Match::Lpm { value, prefix_len } => {
                            write!(f, "{name}={value:#x}/{prefix_len}")?
                        }
                        Match::Ternary { value, mask } => write!(f, "{name}={value:#x}&{mask:#x}")?,
                        Match::Range { low, high } => write!(f, "{name}={low:#x}..{high:#x}")?,
                    }
                }
                if k.priority != 0 {
                    write!(f, "; prio {}", k.priority)?;
                }
                write!(f, "]")
            }
            EntityKey::Member { profile, member_id } => write!(f, "{profile} member {member_id}"),
            EntityKey::Group { profile, group_id } => write!(f, "{profile} group {group_id}"),
            EntityKey::Multicast(id) => write!(f, "multicast group {id}"),
            EntityKey::Clone(id) => write!(f, "clone session {id}"),
            EntityKey::Digest(d) => write!(f, "digest {d}"),
            EntityKey::Meter { meter, index } => write!(f, "{meter}[{index}]"),
        }
    }
}

/// Everything one switch should hold (or holds), by key.
pub type SwitchEntities = BTreeMap<EntityKey, Entity>;

impl Entity {
    /// Equal, except that action-selector group members may differ in their
    /// watch ports. bmv2's P4Runtime layer (PI) reads every member of a
    /// group back with the last member's watch port (one variable reused
    /// across the member loop in PI's device_mgr.cpp), so comparing watch
    /// ports would make a reconciler rewrite such groups forever. Watch
    /// ports change only together with members' actions, which still count.
    pub fn same_on_switch(&self, other: &Entity) -> bool {
        match (self, other) {
            (Entity::Group(a), Entity::Group(b)) => {
                a.profile == b.profile
                    && a.group_id == b.group_id
                    && a.max_size == b.max_size
                    && a.members.len() == b.members.len()
                    && a.members
                        .iter()
                        .zip(&b.members)
                        .all(|(x, y)| x.member_id == y.member_id && x.weight == y.weight)
            }
            _ => self == other,
        }
    }
}
