use super::*;
use crate::compile::sample::{leaf_name, leaf_spine, spine_name};
use crate::config::{Lag, VlanMode};

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
    let mut f = leaf_spine(1, 2);
    let members = vec![PortRef::new("leaf01", 10), PortRef::new("leaf02", 10)];
    let lag = Lag {
        id: 7,
        members,
        protocol: Default::default(),
        lacp: Default::default(),
        vlans: VlanMode::Trunk {
            vlans: vec![10, 11],
            native: None,
        },
        admin_up: true,
        description: String::new(),
        max_learned_macs: None,
    };
    f.lags.insert("bond".into(), lag);
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
