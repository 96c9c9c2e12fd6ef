//! Desired vs installed -> the writes that make the switch match, in an
//! order the switch accepts: whatever an entity references exists before it
//! and outlives it.
//!
//! Stages (each one batch): 0 meters, digests, clone sessions, multicast
//! groups; 1 action-profile members; 2 groups; 3 groups losing members
//! (second step, below); 4 table entries (inserts and modifies in all of
//! those); then deletes in reverse: 5 table entries, 6 groups, 7 members,
//! 8 the rest.
//!
//! A group that loses members is modified in two steps: first to the union
//! of its old and new members with the leaving members' watch ports
//! cleared, then (a stage later) to its new members. Make-before-break: the
//! group is never empty in between (a group going from {1} to {2} would
//! otherwise be empty for a moment, and bmv2 crashes on a packet that
//! selects from an empty group). And PI (p4lang/PI, the P4Runtime server of
//! bmv2) throws out of a MODIFY that removes a member that still has a watch
//! port (`group_update_members` looks the removed member up again with
//! `.at()`), leaving its group state half-updated; clearing the watch port
//! first avoids that path on any target.

use crate::p4rt::entity::{ActionProfileGroup, Entity, EntityKey, GroupMember, SwitchEntities};

/// The compiler's name for the one update kind (`p4rt::entity::UpdateKind`).
pub use crate::p4rt::entity::UpdateKind as OpKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub entity: Entity,
    /// The second step of a group losing members (written after every
    /// group's first step).
    pub shrink: bool,
}

/// Ordered write batches for one switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Non-empty stages, to be written in order; ops within a stage are
    /// independent of each other.
    pub stages: Vec<Vec<Op>>,
}

const STAGES: usize = 9;

fn stage(kind: OpKind, entity: &Entity, shrink: bool) -> usize {
    let writes = matches!(kind, OpKind::Insert | OpKind::Modify);
    match (entity, writes) {
        (Entity::Meter(_) | Entity::Digest(_) | Entity::Clone(_) | Entity::Multicast(_), true) => 0,
        (Entity::Member(_), true) => 1,
        (Entity::Group(_), true) if shrink => 3,
        (Entity::Group(_), true) => 2,
        (Entity::Table(_), true) => 4,
        (Entity::Table(_), false) => 5,
        (Entity::Group(_), false) => 6,
        (Entity::Member(_), false) => 7,
        (_, false) => STAGES - 1,
    }
}

/// The first step of modifying `old` into `new` when members leave: the
/// union with the leaving members' watch ports cleared (or, where the
/// union exceeds the group's size, the old members with those watch ports
/// cleared). `None` when no member leaves.
fn shrink_first_step(old: &ActionProfileGroup, new: &ActionProfileGroup) -> Option<Entity> {
    let stays = |id: u32| new.members.iter().any(|m| m.member_id == id);
    let leaving: Vec<GroupMember> = old
        .members
        .iter()
        .filter(|m| !stays(m.member_id))
        .map(|m| GroupMember {
            watch_port: None,
            ..m.clone()
        })
        .collect();
    if leaving.is_empty() {
        return None;
    }
    let mut union: Vec<GroupMember> = new.members.iter().cloned().chain(leaving).collect();
    union.sort();
    let weight: i64 = union.iter().map(|m| i64::from(m.weight)).sum();
    let members = if weight <= i64::from(old.max_size) {
        union
    } else {
        old.members
            .iter()
            .map(|m| GroupMember {
                watch_port: m.watch_port.filter(|_| stays(m.member_id)),
                ..m.clone()
            })
            .collect()
    };
    Some(Entity::Group(ActionProfileGroup {
        members,
        ..old.clone()
    }))
}

impl Plan {
    /// Builds a plan from (installed, desired) pairs of the same key.
    pub fn from_changes<'a>(
        changes: impl IntoIterator<Item = (Option<&'a Entity>, Option<&'a Entity>)>,
    ) -> Plan {
        let stages = bucketed(changes)
            .into_iter()
            .map(|stage| {
                stage
                    .into_iter()
                    .map(|(kind, e, shrink)| Op {
                        kind,
                        entity: e.into_owned(),
                        shrink,
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
            buckets[stage(op.kind, &op.entity, op.shrink)].push(op);
        }
        buckets.retain(|b| !b.is_empty());
        self.stages = buckets;
    }
}

/// An op's entity: borrowed from the desired or installed state, or (a
/// group's intermediate step) owned. 16 bytes: a `Cow<Entity>` is as large
/// as an `Entity` even when it borrows, and an agent's first pass holds one
/// per entity of its switch (heaptrack: half the controller's peak at a
/// cold start of 64 switches).
#[derive(Debug, Clone)]
pub enum OpEntity<'a> {
    Borrowed(&'a Entity),
    Owned(Box<Entity>),
}

impl OpEntity<'_> {
    pub fn into_owned(self) -> Entity {
        match self {
            OpEntity::Borrowed(e) => e.clone(),
            OpEntity::Owned(e) => *e,
        }
    }
}

impl AsRef<Entity> for OpEntity<'_> {
    fn as_ref(&self) -> &Entity {
        match self {
            OpEntity::Borrowed(e) => e,
            OpEntity::Owned(e) => e,
        }
    }
}

impl std::ops::Deref for OpEntity<'_> {
    type Target = Entity;
    fn deref(&self) -> &Entity {
        self.as_ref()
    }
}

/// One write: what, the entity, second step of a shrink.
type StagedOp<'a> = (OpKind, OpEntity<'a>, bool);

/// The ops of a plan in non-empty stages, in write order.
fn bucketed<'a>(
    changes: impl IntoIterator<Item = (Option<&'a Entity>, Option<&'a Entity>)>,
) -> Vec<Vec<StagedOp<'a>>> {
    let mut buckets: Vec<Vec<StagedOp<'a>>> = vec![Vec::new(); STAGES];
    let mut push = |kind: OpKind, e: OpEntity<'a>, shrink: bool| {
        buckets[stage(kind, &e, shrink)].push((kind, e, shrink));
    };
    for (old, new) in changes {
        match (old, new) {
            // Meter cells always exist on the switch: they are configured
            // with MODIFY (bmv2 refuses INSERT), and an unwanted
            // configuration is left alone rather than deleted.
            (None, Some(n @ Entity::Meter(_))) => {
                push(OpKind::Modify, OpEntity::Borrowed(n), false)
            }
            (Some(Entity::Meter(_)), None) => {}
            (None, Some(n)) => push(OpKind::Insert, OpEntity::Borrowed(n), false),
            (Some(o), None) => push(OpKind::Delete, OpEntity::Borrowed(o), false),
            (Some(o), Some(n)) if !o.same_on_switch(n) => {
                let first = match (o, n) {
                    (Entity::Group(og), Entity::Group(ng)) => shrink_first_step(og, ng),
                    _ => None,
                };
                let shrink = first.is_some();
                if let Some(first) = first {
                    push(OpKind::Modify, OpEntity::Owned(Box::new(first)), false);
                }
                push(OpKind::Modify, OpEntity::Borrowed(n), shrink);
            }
            _ => {}
        }
    }
    buckets.retain(|b| !b.is_empty());
    buckets
}

/// The ops of a plan, borrowing the entities (no copies: an agent writing
/// a whole switch holds references into the desired state only, plus the
/// intermediate step of groups losing members). Non-empty stages in write
/// order.
pub fn staged<'a>(
    changes: impl IntoIterator<Item = (Option<&'a Entity>, Option<&'a Entity>)>,
) -> Vec<Vec<(OpKind, OpEntity<'a>)>> {
    bucketed(changes)
        .into_iter()
        .map(|stage| stage.into_iter().map(|(k, e, _)| (k, e)).collect())
        .collect()
}

/// The plan that turns `installed` into `desired`.
pub fn diff(desired: &SwitchEntities, installed: &SwitchEntities) -> Plan {
    Plan::from_changes(merge_join(installed.iter(), desired.iter()))
}

/// How one entity a switch holds (read back) differs from what it should
/// hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Wanted, not held.
    Missing,
    /// Held, not wanted.
    Extra,
    /// Held, but not as wanted (`Entity::same_on_switch`).
    Differs,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mismatch::Missing => "missing",
            Mismatch::Extra => "extra",
            Mismatch::Differs => "differs",
        })
    }
}

/// Every entity where `held` (read back from a switch) is not `want`, in
/// key order: the wanted entity where there is one, else the held one.
/// Both sequences key-sorted.
pub fn mismatches<'a>(
    want: impl Iterator<Item = (&'a EntityKey, &'a Entity)>,
    held: impl Iterator<Item = (&'a EntityKey, &'a Entity)>,
) -> Vec<(Mismatch, &'a Entity)> {
    merge_join(want, held)
        .filter_map(|pair| match pair {
            (Some(w), None) => Some((Mismatch::Missing, w)),
            (None, Some(h)) => Some((Mismatch::Extra, h)),
            (Some(w), Some(h)) if !h.same_on_switch(w) => Some((Mismatch::Differs, w)),
            _ => None,
        })
        .collect()
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

    fn watched(id: u32, members: &[u32]) -> Entity {
        let mut g = group(id, members);
        if let Entity::Group(g) = &mut g {
            for m in g.members.iter_mut() {
                m.watch_port = Some(m.member_id);
            }
        }
        g
    }

    /// (member id, watch port) of each group written, stage by stage.
    type Members = Vec<(u32, Option<u32>)>;

    fn staged_groups(plan: &Plan) -> Vec<Vec<Members>> {
        plan.stages
            .iter()
            .map(|s| {
                s.iter()
                    .filter_map(|o| match &o.entity {
                        Entity::Group(g) => Some(
                            g.members
                                .iter()
                                .map(|m| (m.member_id, m.watch_port))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_group_losing_members_is_never_empty_and_drops_watch_ports_first() {
        // {1} -> {2}: {1 unwatched, 2} first, then {2}.
        let installed = map(vec![member(1, 1), member(2, 2), watched(7, &[1])]);
        let desired = map(vec![member(1, 1), member(2, 2), watched(7, &[2])]);
        let plan = diff(&desired, &installed);
        assert_eq!(
            staged_groups(&plan),
            vec![
                vec![vec![(1, None), (2, Some(2))]],
                vec![vec![(2, Some(2))]]
            ]
        );
        // {1, 2} -> {1}: {1, 2 unwatched} first.
        let installed = map(vec![member(1, 1), member(2, 2), watched(7, &[1, 2])]);
        let desired = map(vec![member(1, 1), member(2, 2), watched(7, &[1])]);
        assert_eq!(
            staged_groups(&diff(&desired, &installed)),
            vec![
                vec![vec![(1, Some(1)), (2, None)]],
                vec![vec![(1, Some(1))]]
            ]
        );
        // Growing needs one step; the second step comes before the table
        // entries and the member deletes.
        let plan = diff(&installed, &desired);
        assert_eq!(
            staged_groups(&plan),
            vec![vec![vec![(1, Some(1)), (2, Some(2))]]]
        );
        let installed = map(vec![member(1, 1), watched(7, &[1]), entry(1, 7)]);
        let desired = map(vec![member(2, 2), watched(7, &[2]), entry(1, 7)]);
        let kinds: Vec<Vec<String>> = diff(&desired, &installed)
            .stages
            .iter()
            .map(|s| {
                s.iter()
                    .map(|o| format!("{:?} {}", o.kind, o.entity.key()))
                    .collect()
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                vec!["Insert sel member 2".to_string()],
                vec!["Modify sel group 7".to_string()],
                vec!["Modify sel group 7".to_string()],
                vec!["Delete sel member 1".to_string()],
            ]
        );
    }

    #[test]
    fn a_full_group_losing_members_clears_their_watch_ports_in_place() {
        let mut old = watched(7, &(1..=16).collect::<Vec<_>>());
        let mut new = watched(7, &(2..=17).collect::<Vec<_>>());
        for g in [&mut old, &mut new] {
            if let Entity::Group(g) = g {
                g.max_size = 16;
            }
        }
        let (Entity::Group(o), Entity::Group(n)) = (&old, &new) else {
            unreachable!()
        };
        let Some(Entity::Group(first)) = shrink_first_step(o, n) else {
            panic!("no first step")
        };
        assert_eq!(first.members.len(), 16);
        assert_eq!(first.members[0].watch_port, None);
        assert!(first.members[1..].iter().all(|m| m.watch_port.is_some()));
    }
}
