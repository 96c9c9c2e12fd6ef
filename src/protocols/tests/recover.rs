//! Recovery round trip: learned hosts compiled onto the switches, read
//! from those entities by a fresh controller, compile to the same entities.

use super::*;
use crate::compile::{self, HostEntry, Hosts};
use crate::config::Attachment;
use crate::topo::{ObservedState, Topology};

fn learned(vlan: u16, m: &str, ips: &[&str], attachment: Attachment) -> HostEntry {
    HostEntry {
        vlan,
        mac: mac(m),
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        attachment,
        learned: true,
    }
}

#[test]
fn learned_hosts_are_recovered_from_the_switches_exactly() {
    let f = fabric();
    let hosts: Hosts = [
        learned(
            10,
            "02:00:00:00:0a:01",
            &["10.0.10.21", "2001:db8:10::21"],
            Attachment::Port("leaf1/3".parse().unwrap()),
        ),
        learned(
            20,
            "02:00:00:00:0a:02",
            &["10.0.20.22"],
            Attachment::Port("leaf2/3".parse().unwrap()),
        ),
        learned(
            10,
            "02:00:00:00:0a:03",
            &[],
            Attachment::Lag("bond1".into()),
        ),
        learned(
            20,
            "02:00:00:00:0a:04",
            &["10.0.20.24"],
            Attachment::Lag("bond2".into()),
        ),
    ]
    .into_iter()
    .map(|h| (h.key(), h))
    .collect();
    let topo = Topology::build(&f, &ObservedState::default(), None);
    let before = compile::compile(&f, &topo, &hosts);

    // A fresh controller: the protocols know only the configuration.
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    let mut changed = false;
    for (switch, installed) in &before {
        let r = crate::protocols::recover::from_switch(installed.values());
        changed |= p
            .restore(switch, &r, t0)
            .iter()
            .any(|a| matches!(a, Action::HostsChanged));
    }
    assert!(changed);
    let recovered: Hosts = p
        .learned_hosts()
        .into_iter()
        .map(|h| {
            let e = HostEntry {
                vlan: h.vlan,
                mac: h.mac,
                ips: h.ips,
                attachment: h.attachment,
                learned: true,
            };
            (e.key(), e)
        })
        .collect();
    assert_eq!(recovered.len(), 4, "{recovered:?}");
    let after = compile::compile(&f, &topo, &recovered);
    assert_eq!(
        after, before,
        "the recovered hosts compile to what was found"
    );
    // Static hosts are not recovered as learned ones.
    assert!(recovered
        .keys()
        .all(|(_, m)| *m != mac("02:00:00:00:00:99")));
}
