//! What the compiler emits while a switch is drained (maintenance):
//! routed around by every other switch, its own entries unchanged.

use crate::config::PortRef;
use crate::p4rt::entity::Entity;
use crate::topo::{ObservedState, Topology};

use super::names::{P_FABRIC, P_LAG};
use super::sample::{leaf_name, leaf_spine, with_two_leaf_lag};
use super::*;

fn compiled(f: &Fabric, drained: &[&str]) -> BTreeMap<String, SwitchEntities> {
    let o = ObservedState {
        drained: drained.iter().map(|s| s.to_string()).collect(),
        ..ObservedState::default()
    };
    let before = Topology::build(f, &ObservedState::default(), None);
    let t = Topology::build(f, &o, Some(before.flood_tree()));
    compile(f, &t, &Hosts::new())
}

/// The ports in the `profile` groups of a switch (fabric: member id = port).
fn group_members(e: &SwitchEntities, profile: &str) -> Vec<(u32, Vec<u32>)> {
    e.values()
        .filter_map(|e| match e {
            Entity::Group(g) if g.profile == profile => {
                Some((g.group_id, g.members.iter().map(|m| m.member_id).collect()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_drained_spine_is_in_no_leaf_group_and_keeps_its_entries() {
    let f = leaf_spine(3, 4);
    let normal = compiled(&f, &[]);
    let drained = compiled(&f, &["spine2"]);
    for leaf in 1..=4 {
        let name = leaf_name(leaf);
        let groups = group_members(&drained[&name], P_FABRIC);
        assert_eq!(groups.len(), 3, "{name}: a group per other leaf");
        for (label, ports) in groups {
            // Leaf port n faces spine n.
            assert_eq!(ports, vec![1, 3], "{name} -> {label}");
        }
        assert!(group_members(&normal[&name], P_FABRIC)
            .iter()
            .all(|(_, p)| p == &vec![1, 2, 3]));
    }
    // The drained spine and the others are untouched: frames in flight
    // through spine2 still arrive.
    for spine in ["spine1", "spine2", "spine3"] {
        assert_eq!(drained[spine], normal[spine], "{spine}");
    }
}

#[test]
fn a_drained_leaf_hands_its_lag_to_the_other_leaf() {
    let f = with_two_leaf_lag(leaf_spine(2, 3));
    let normal = compiled(&f, &[]);
    assert_eq!(group_members(&normal["leaf01"], P_LAG), vec![(7, vec![10])]);
    // Routed around: leaf01 still delivers what reaches it on its member
    // (make-before-break: the server still collects there), the others
    // send the bond's hosts to leaf02 (the DF for both VLANs).
    let drained = compiled(&f, &["leaf01"]);
    assert_eq!(
        group_members(&drained["leaf01"], P_LAG),
        vec![(7, vec![10])]
    );
    assert_eq!(
        group_members(&drained["leaf02"], P_LAG),
        vec![(7, vec![10])]
    );
    // Then it hands over (before its LACP actor goes out of sync, and so
    // after it too): leaf01 sends what still reaches it to leaf02
    // (`1<<24 | label`).
    let leaf02 = f.switches["leaf02"].label;
    for unsynced in [vec![], vec![PortRef::new("leaf01", 10)]] {
        let o = ObservedState {
            drained: ["leaf01".to_string()].into(),
            lags_handed_over: ["leaf01".to_string()].into(),
            lacp_unsynced: unsynced.into_iter().collect(),
            ..ObservedState::default()
        };
        let out = compile(&f, &Topology::build(&f, &o, None), &Hosts::new());
        assert_eq!(
            group_members(&out["leaf01"], P_LAG),
            vec![(7, vec![(1 << 24) | leaf02])]
        );
        assert_eq!(group_members(&out["leaf02"], P_LAG), vec![(7, vec![10])]);
    }
}
