//! Small constructors for entities, so the compile modules read like the
//! pipeline contract.

use crate::net::MacAddr;
use crate::p4rt::entity::{
    ActionCall, ActionProfileGroup, ActionProfileMember, Entity, GroupMember, Match,
    SwitchEntities, TableAction, TableEntry, TableKey,
};

pub fn mac(m: MacAddr) -> u128 {
    u128::from(m.as_u64())
}

pub fn entry(key: TableKey, action: TableAction) -> Entity {
    Entity::Table(TableEntry {
        key,
        action,
        idle_timeout_ns: 0,
    })
}

pub fn direct(key: TableKey, action: ActionCall) -> Entity {
    entry(key, TableAction::Direct(action))
}

pub fn ternary(value: impl Into<u128>, mask: impl Into<u128>) -> Match {
    Match::Ternary {
        value: value.into(),
        mask: mask.into(),
    }
}

/// A route key: (VRF, prefix). A /0 leaves the LPM field out, as P4Runtime
/// requires for a don't-care match (and as a switch reads it back).
pub fn route_key(
    table: &'static str,
    field: &'static str,
    vrf: u16,
    value: u128,
    len: u32,
) -> TableKey {
    let key = TableKey::new(table).exact(super::names::F_VRF_ID, vrf);
    if len == 0 {
        key
    } else {
        key.with(
            field,
            Match::Lpm {
                value,
                prefix_len: len,
            },
        )
    }
}

pub fn member(profile: &'static str, member_id: u32, action: ActionCall) -> Entity {
    Entity::Member(ActionProfileMember {
        profile,
        member_id,
        action,
    })
}

/// A group over `members` (id, watch port); sorted by member id.
pub fn group(
    profile: &'static str,
    group_id: u32,
    members: impl IntoIterator<Item = (u32, Option<u32>)>,
    max_size: i32,
) -> Entity {
    let mut members: Vec<GroupMember> = members
        .into_iter()
        .map(|(member_id, watch_port)| GroupMember {
            member_id,
            weight: 1,
            watch_port,
        })
        .collect();
    members.sort();
    // bmv2 (PI) selects from a group with `hash % active members` and dies
    // of a divide error when watch ports have deactivated them all — which
    // happens before the controller can react to the port going down (a
    // single-member group toward a spine whose link was cut killed the
    // spine in the fault suite). One member always stays unwatched: a
    // group can never be emptied by the data plane alone.
    if members.iter().all(|m| m.watch_port.is_some()) {
        if let Some(first) = members.first_mut() {
            first.watch_port = None;
        }
    }
    let max_size = max_size.max(i32::try_from(members.len()).unwrap_or(i32::MAX));
    Entity::Group(ActionProfileGroup {
        profile,
        group_id,
        members,
        max_size,
    })
}

pub fn put(map: &mut SwitchEntities, e: Entity) {
    map.insert(e.key(), e);
}
