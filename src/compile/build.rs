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
///
/// At least one member is never watched: the first (lowest id) loses its
/// watch port when every member has one. A watch port going down makes
/// the switch deactivate that member by itself (PI's watch-port
/// enforcer), and bmv2 crashes on the next packet that selects from a
/// group whose members are all inactive (`GroupSelection::get_from_hash`
/// takes the hash modulo zero active members): a spine's single-member
/// group to a leaf, or a leaf's group over one LAG member, took the whole
/// switch down when that one port lost carrier. The unwatched member
/// keeps the group selectable until the controller reprograms it;
/// traffic on it waits for discovery / LACP to notice, the others still
/// fail over in the data plane.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn watch_ports(e: &Entity) -> Vec<(u32, Option<u32>)> {
        match e {
            Entity::Group(g) => g
                .members
                .iter()
                .map(|m| (m.member_id, m.watch_port))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_group_always_keeps_one_unwatched_member() {
        // One watched member: bmv2 would crash once its port went down.
        let g = group("p", 1, [(5, Some(5))], 16);
        assert_eq!(watch_ports(&g), [(5, None)]);
        let g = group("p", 1, [(2, Some(2)), (1, Some(1))], 16);
        assert_eq!(watch_ports(&g), [(1, None), (2, Some(2))]);
        // Already one unwatched: left as given.
        let g = group("p", 1, [(1, Some(1)), (9, None)], 16);
        assert_eq!(watch_ports(&g), [(1, Some(1)), (9, None)]);
    }
}
