//! Desired vs installed -> the writes that make the switch match, in an
//! order the switch accepts: whatever an entity references exists before it
//! and outlives it.
//!
//! Stages (each one batch): 0 meters, digests, clone sessions, multicast
//! groups; 1 action-profile members; 2 groups; 3 table entries (inserts and
//! modifies in all of those); then deletes in reverse: 4 table entries,
//! 5 groups, 6 members, 7 the rest.

use crate::p4rt::entity::{Entity, SwitchEntities};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Insert,
    Modify,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub entity: Entity,
}

/// Ordered write batches for one switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Non-empty stages, to be written in order; ops within a stage are
    /// independent of each other.
    pub stages: Vec<Vec<Op>>,
}

const STAGES: usize = 8;

fn stage(kind: OpKind, e: &Entity) -> usize {
    let level = match e {
        Entity::Meter(_) | Entity::Digest(_) | Entity::Clone(_) | Entity::Multicast(_) => 0,
        Entity::Member(_) => 1,
        Entity::Group(_) => 2,
        Entity::Table(_) => 3,
    };
    match kind {
        OpKind::Insert | OpKind::Modify => level,
        OpKind::Delete => STAGES - 1 - level,
    }
}

impl Plan {
    /// Builds a plan from (installed, desired) pairs of the same key.
    pub fn from_changes<'a>(
        changes: impl IntoIterator<Item = (Option<&'a Entity>, Option<&'a Entity>)>,
    ) -> Plan {
        let stages = staged(changes)
            .into_iter()
            .map(|stage| {
                stage
                    .into_iter()
                    .map(|(kind, e)| Op {
                        kind,
                        entity: e.clone(),
                    })
                    .collect()
            })
            .collect();
        Plan { stages }
    }

    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.stages.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.stages.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Appends another plan's ops stage by stage (keeps the order valid).
    pub fn merge(&mut self, other: Plan) {
        let mut all: Vec<Op> = std::mem::take(&mut self.stages)
            .into_iter()
            .flatten()
            .collect();
        all.extend(other.stages.into_iter().flatten());
        let mut buckets: Vec<Vec<Op>> = vec![Vec::new(); STAGES];
        for op in all {
            buckets[stage(op.kind, &op.entity)].push(op);
        }
        buckets.retain(|b| !b.is_empty());
        self.stages = buckets;
    }
}

/// The ops of a plan, borrowing the entities (no copies: an agent writing
/// a whole switch holds references into the desired state only). Non-empty
/// stages in write order.
pub fn staged<'a>(
    changes: impl IntoIterator<Item = (Option<&'a Entity>, Option<&'a Entity>)>,
) -> Vec<Vec<(OpKind, &'a Entity)>> {
    let mut buckets: Vec<Vec<(OpKind, &'a Entity)>> = vec![Vec::new(); STAGES];
    for (old, new) in changes {
        let op = match (old, new) {
            // Meter cells always exist on the switch: they are configured
            // with MODIFY (bmv2 refuses INSERT), and an unwanted
            // configuration is left alone rather than deleted.
            (None, Some(n @ Entity::Meter(_))) => (OpKind::Modify, n),
            (Some(Entity::Meter(_)), None) => continue,
            (None, Some(n)) => (OpKind::Insert, n),
            (Some(o), None) => (OpKind::Delete, o),
            (Some(o), Some(n)) if !o.same_on_switch(n) => (OpKind::Modify, n),
            _ => continue,
        };
        buckets[stage(op.0, op.1)].push(op);
    }
    buckets.retain(|b| !b.is_empty());
    buckets
}

/// The plan that turns `installed` into `desired`.
pub fn diff(desired: &SwitchEntities, installed: &SwitchEntities) -> Plan {
    Plan::from_changes(merge_join(installed.iter(), desired.iter()))
}

/// Pairs two key-sorted sequences by key: (left value, right value).
pub fn merge_join<'a, K: Ord + 'a, V: 'a>(
    left: impl Iterator<Item = (&'a K, &'a V)>,
    right: impl Iterator<Item = (&'a K, &'a V)>,
) -> impl Iterator<Item = (Option<&'a V>, Option<&'a V>)> {
    let mut l = left.peekable();
    let mut r = right.peekable();
    std::iter::from_fn(move || match (l.peek(), r.peek()) {
        (None, None) => None,
        (Some(_), None) => l.next().map(|(_, v)| (Some(v), None)),
        (None, Some(_)) => r.next().map(|(_, v)| (None, Some(v))),
        (Some((lk, _)), Some((rk, _))) => match lk.cmp(rk) {
            std::cmp::Ordering::Less => l.next().map(|(_, v)| (Some(v), None)),
            std::cmp::Ordering::Greater => r.next().map(|(_, v)| (None, Some(v))),
            std::cmp::Ordering::Equal => {
                let lv = l.next().map(|(_, v)| v);
                let rv = r.next().map(|(_, v)| v);
                Some((lv, rv))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::entity::{
        ActionCall, ActionProfileGroup, ActionProfileMember, GroupMember, TableAction, TableEntry,
        TableKey,
    };

    fn member(id: u32, port: u32) -> Entity {
        let action = ActionCall::new("to_member").param("port", port);
        Entity::Member(ActionProfileMember {
            profile: "sel",
            member_id: id,
            action,
        })
    }

    fn group(id: u32, members: &[u32]) -> Entity {
        let members = members
            .iter()
            .map(|m| GroupMember {
                member_id: *m,
                weight: 1,
                watch_port: None,
            })
            .collect();
        Entity::Group(ActionProfileGroup {
            profile: "sel",
            group_id: id,
            members,
            max_size: 16,
        })
    }

    fn entry(lag: u32, group: u32) -> Entity {
        let key = TableKey::new("t").exact("lag_id", lag);
        Entity::Table(TableEntry {
            key,
            action: TableAction::Group(group),
            idle_timeout_ns: 0,
        })
    }

    fn map(es: Vec<Entity>) -> SwitchEntities {
        es.into_iter().map(|e| (e.key(), e)).collect()
    }

    #[test]
    fn plan_orders_references_and_modifies_in_place() {
        let installed = map(vec![
            member(1, 1),
            member(2, 2),
            group(1, &[1, 2]),
            entry(1, 1),
        ]);
        let desired = map(vec![
            member(2, 2),
            member(3, 3),
            group(2, &[2, 3]),
            entry(1, 2),
        ]);
        let plan = diff(&desired, &installed);
        let staged: Vec<Vec<(OpKind, String)>> = plan
            .stages
            .iter()
            .map(|s| {
                s.iter()
                    .map(|o| (o.kind, o.entity.key().to_string()))
                    .collect()
            })
            .collect();
        assert_eq!(
            staged,
            vec![
                vec![(OpKind::Insert, "sel member 3".to_string())],
                vec![(OpKind::Insert, "sel group 2".to_string())],
                vec![(OpKind::Modify, "t[lag_id=0x1]".to_string())],
                vec![(OpKind::Delete, "sel group 1".to_string())],
                vec![(OpKind::Delete, "sel member 1".to_string())],
            ]
        );
        assert!(diff(&desired, &desired).is_empty());
    }
}
