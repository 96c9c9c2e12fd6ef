//! Synthetic leaf-spine fabrics for tests, benchmarks and demos.
//!
//! Naming: `spine1..`, `leaf01..` (zero-padded so name order is index
//! order). Leaf `i` uplink to spine `s` is leaf port `s` (1-based) and
//! spine port `i`; edge ports start at 10. Labels: leaves 100 + i, spines
//! 1000 + s.

use crate::config::{Fabric, Link, PortRef, Role, Switch};

pub fn spine_name(s: usize) -> String {
    format!("spine{s}")
}

pub fn leaf_name(i: usize) -> String {
    format!("leaf{i:02}")
}

/// A full mesh of `spines` x `leaves` links, no edge ports yet.
pub fn leaf_spine(spines: usize, leaves: usize) -> Fabric {
    let mut f = Fabric::default();
    let switch = |role, label: u32, n: usize| Switch {
        address: format!("127.0.0.1:{}", 50000 + n),
        device_id: n as u64,
        role,
        label,
        target: Default::default(),
        pipeline: "fabric".into(),
        fabric_ports: Vec::new(),
        mac: None,
    };
    for s in 1..=spines {
        f.switches
            .insert(spine_name(s), switch(Role::Spine, 1000 + s as u32, s));
    }
    for l in 1..=leaves {
        f.switches
            .insert(leaf_name(l), switch(Role::Leaf, 100 + l as u32, 100 + l));
        for s in 1..=spines {
            f.links.insert(
                format!("{}-{}", spine_name(s), leaf_name(l)),
                Link {
                    a: PortRef::new(spine_name(s), l as u32),
                    b: PortRef::new(leaf_name(l), s as u32),
                },
            );
        }
    }
    f
}
