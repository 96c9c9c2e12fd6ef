use super::*;
use crate::compile::sample::{leaf_name, leaf_spine, spine_name, with_two_leaf_lag};

fn down(links: &[(&str, u32, &str, u32)]) -> ObservedState {
    let mut o = ObservedState::default();
    for (a, pa, b, pb) in links {
        o.discovered.insert(
            LinkId::new(PortRef::new(*a, *pa), PortRef::new(*b, *pb)),
            false,
        );
    }
    o
}

#[test]
fn ecmp_spreads_over_all_spines_and_avoids_down_links() {
    let f = leaf_spine(3, 4);
    let t = Topology::build(&f, &ObservedState::default(), None);
    assert_eq!(t.next_hops(&leaf_name(1), 102), &[1, 2, 3]);
    assert_eq!(t.next_hops(&spine_name(2), 102), &[2]);
    assert!(t.next_hops(&leaf_name(2), 102).is_empty());
    // spine2 loses leaf02: leaf01 avoids spine2 towards leaf02, spine2
    // reaches leaf02 through another leaf.
    let t = Topology::build(&f, &down(&[("spine2", 2, "leaf02", 2)]), None);
    assert_eq!(t.next_hops(&leaf_name(1), 102), &[1, 3]);
    assert_eq!(t.next_hops(&leaf_name(1), 103), &[1, 2, 3]);
    assert_eq!(t.next_hops(&spine_name(2), 102), &[1, 3, 4]);
}

#[test]
fn flood_tree_is_a_star_and_repairs_with_minimal_churn() {
    let f = leaf_spine(2, 3);
    let t = Topology::build(&f, &ObservedState::default(), None);
    assert_eq!(t.tree_ports("spine1"), vec![1, 2, 3]);
    // spine2 hangs off the first leaf: the tree spans every switch.
    assert_eq!(t.tree_ports("spine2"), vec![1]);
    // ... but gets no flood copies: nothing behind it.
    assert_eq!(t.tree_ports("leaf01"), vec![1, 2]);
    assert_eq!(t.flood_ports("leaf01"), vec![1]);
    let t2 = Topology::build(
        &f,
        &down(&[("spine1", 2, "leaf02", 1)]),
        Some(t.flood_tree()),
    );
    assert_eq!(t2.tree_ports("spine1"), vec![1, 3]);
    assert_eq!(t2.tree_ports("spine2"), vec![1, 2]);
    assert_eq!(t2.flood_tree().links.len(), 4);
    // The link comes back: the repaired tree stays (no churn).
    let t3 = Topology::build(&f, &ObservedState::default(), Some(t2.flood_tree()));
    assert_eq!(t3.flood_tree(), t2.flood_tree());
}

#[test]
fn designated_forwarder_alternates_by_vlan_and_fails_over() {
    let f = with_two_leaf_lag(leaf_spine(1, 2));
    let t = Topology::build(&f, &ObservedState::default(), None);
    let g = t.lag("bond").unwrap();
    assert_eq!(g.designated_forwarder(10), Some("leaf01"));
    assert_eq!(g.designated_forwarder(11), Some("leaf02"));
    let mut o = ObservedState::default();
    o.lacp_unsynced.insert(PortRef::new("leaf01", 10));
    let t = Topology::build(&f, &o, None);
    let g = t.lag("bond").unwrap();
    assert_eq!(g.designated_forwarder(10), Some("leaf02"));
    assert_eq!(g.usable_peer("leaf01"), Some("leaf02"));
    assert_eq!(g.usable_peer("leaf02"), None);
}

fn drained(switches: &[&str]) -> ObservedState {
    ObservedState {
        drained: switches.iter().map(|s| s.to_string()).collect(),
        ..ObservedState::default()
    }
}

#[test]
fn a_drained_spine_leaves_every_leafs_groups_and_keeps_its_own() {
    let f = leaf_spine(3, 4);
    let before = Topology::build(&f, &ObservedState::default(), None);
    let t = Topology::build(&f, &drained(&["spine2"]), Some(before.flood_tree()));
    for leaf in 1..=4 {
        for dest in 101..=104u32 {
            if dest == 100 + leaf as u32 {
                continue;
            }
            assert_eq!(
                t.next_hops(&leaf_name(leaf), dest),
                &[1, 3],
                "{leaf} -> {dest}"
            );
        }
    }
    // The drained spine forwards what is still sent to it, as before.
    for dest in 101..=104u32 {
        assert_eq!(
            t.next_hops("spine2", dest),
            before.next_hops("spine2", dest),
            "{dest}"
        );
    }
    // Nothing but the drained spine changed.
    assert_eq!(t.next_hops("spine1", 102), before.next_hops("spine1", 102));
}

#[test]
fn a_drained_spine_leaves_the_flood_tree_even_as_its_centre() {
    let f = leaf_spine(2, 3);
    let before = Topology::build(&f, &ObservedState::default(), None);
    assert_eq!(before.flood_ports("spine1"), vec![1, 2, 3]);
    let t = Topology::build(&f, &drained(&["spine1"]), Some(before.flood_tree()));
    // spine2 is the centre now; spine1 hangs off leaf01 (whose copies go
    // to spine2 only, below), so no flood copy reaches it.
    assert_eq!(t.flood_ports("spine2"), vec![1, 2, 3]);
    assert_eq!(t.tree_ports("spine1"), vec![1]);
    for leaf in 1..=3 {
        assert_eq!(t.flood_ports(&leaf_name(leaf)), vec![2], "{leaf}");
    }
    // Undrained, the tree stays as it is (no churn).
    let back = Topology::build(&f, &ObservedState::default(), Some(t.flood_tree()));
    assert_eq!(back.flood_tree(), t.flood_tree());
}

#[test]
fn the_last_spine_drained_is_still_used_rather_than_nothing() {
    let f = leaf_spine(2, 2);
    let t = Topology::build(&f, &drained(&["spine1", "spine2"]), None);
    assert_eq!(t.next_hops(&leaf_name(1), 102), &[1, 2]);
}

#[test]
fn a_drained_leaf_carries_no_transit_but_is_still_reached() {
    // spine2 lost leaf02: the shortest way from spine2 to leaf02 crosses a
    // leaf; with leaf01 drained it must cross leaf03 only.
    let f = leaf_spine(2, 3);
    let mut o = down(&[("spine2", 2, "leaf02", 2)]);
    assert_eq!(
        Topology::build(&f, &o, None).next_hops("spine2", 102),
        &[1, 3]
    );
    o.drained.insert(leaf_name(1));
    let t = Topology::build(&f, &o, None);
    assert_eq!(t.next_hops("spine2", 102), &[3]);
    // The drained leaf itself is still reachable (its single-homed hosts).
    assert_eq!(t.next_hops(&leaf_name(3), 101), &[1, 2]);
}

#[test]
fn a_drained_leafs_lag_members_leave_service_and_the_df_moves() {
    let f = with_two_leaf_lag(leaf_spine(1, 2));
    let t = Topology::build(&f, &drained(&["leaf01"]), None);
    let g = t.lag("bond").unwrap();
    assert!(g.usable_on("leaf01").is_empty());
    assert_eq!(g.designated_forwarder(10), Some("leaf02"));
    assert_eq!(g.designated_forwarder(11), Some("leaf02"));
    assert_eq!(g.usable_peer("leaf01"), Some("leaf02"));
}
