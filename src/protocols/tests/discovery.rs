use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::protocols::discovery::{LinkId, Probe};

fn link(a: &str, b: &str) -> LinkId {
    LinkId::new(a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn probe_round_trip_and_frame() {
    let probe = Probe {
        switch: "leaf1".into(),
        port: 2,
        ttl_secs: 3,
    };
    let f = probe.frame(mac("02:fa:b1:00:00:65"));
    let e = parse_eth(&f).unwrap();
    assert_eq!(e.dst, crate::protocols::discovery::LLDP_MAC);
    assert_eq!(e.ethertype, ETH_LLDP);
    // chassis: type 1 len 6 subtype 7 "leaf1"; port: type 2 len 2 "2";
    // ttl: type 3 len 2; end.
    let want = [
        0x02, 0x06, 7, b'l', b'e', b'a', b'f', b'1', 0x04, 0x02, 7, b'2', 0x06, 0x02, 0, 3, 0, 0,
    ];
    assert_eq!(&e.payload[..want.len()], &want);
    assert_eq!(Probe::parse(e.payload), Some(probe));
}

#[test]
fn links_form_between_simulated_switches() {
    let f = fabric();
    let wires = wiring(&f);
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    let tick = p.on_tick(t0);
    assert_eq!(
        sent_with_type(&tick, ETH_LLDP).len(),
        8,
        "two fabric ports on four switches"
    );
    let got = deliver(&mut p, &wires, &BTreeSet::new(), &tick, t0);
    assert!(got.contains(&Action::TopologyChanged));
    let up: Vec<_> = p
        .links()
        .into_iter()
        .filter(|l| l.up)
        .map(|l| l.id)
        .collect();
    assert_eq!(
        up,
        vec![
            link("leaf1/1", "spine1/1"),
            link("leaf1/2", "spine2/1"),
            link("leaf2/1", "spine1/2"),
            link("leaf2/2", "spine2/2"),
        ]
    );
    assert!(p.configured_links_not_seen().is_empty());
    assert!(p.seen_links_not_configured().is_empty());
    assert!(p.observed_links().values().all(|up| *up));
    // Nothing is re-sent before the interval.
    assert!(sent(&p.on_tick(t0 + secs(0.5))).is_empty());
}

#[test]
fn one_way_link_is_not_up() {
    let f = fabric();
    let wires = wiring(&f);
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    let tick = p.on_tick(t0);
    // spine1/1 -> leaf1/1 is lost: leaf1/1 hears nothing.
    let cut = BTreeSet::from(["spine1/1".parse().unwrap()]);
    deliver(&mut p, &wires, &cut, &tick, t0);
    // Heard one way only just now: neither up nor lost yet (the other
    // direction may be a probe interval away — at every start it is).
    assert_eq!(p.observed_links().get(&link("leaf1/1", "spine1/1")), None);
    assert_eq!(
        p.configured_links_not_seen(),
        vec![link("leaf1/1", "spine1/1")]
    );
    // Still one-way after the timeout (3 intervals): lost.
    let mut changed = false;
    for s in 1..=3 {
        let now = t0 + secs(f64::from(s));
        let tick = p.on_tick(now);
        changed |= tick.contains(&Action::TopologyChanged);
        deliver(&mut p, &wires, &cut, &tick, now);
    }
    assert!(changed, "the one-way link is reported");
    assert_eq!(
        p.observed_links().get(&link("leaf1/1", "spine1/1")),
        Some(&false)
    );
}

#[test]
fn silent_link_goes_down_after_miss_limit_intervals() {
    let f = fabric();
    let wires = wiring(&f);
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    let tick = p.on_tick(t0);
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, t0);
    // From now on leaf1/1 <-> spine1/1 carries nothing.
    let cut: BTreeSet<PortRef> = ["leaf1/1", "spine1/1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let l1 = link("leaf1/1", "spine1/1");
    for s in 1..=3 {
        let now = t0 + secs(f64::from(s));
        let tick = p.on_tick(now);
        let changed = tick.contains(&Action::TopologyChanged);
        deliver(&mut p, &wires, &cut, &tick, now);
        // 1 s interval x 3 misses: down exactly 3 s after the last probe.
        assert_eq!(changed, s == 3, "at {s} s");
        assert_eq!(p.observed_links()[&l1], s < 3);
    }
    // The other links stay up.
    assert_eq!(p.observed_links().values().filter(|u| **u).count(), 3);
    // Healed: up again with the next probes.
    let now = t0 + secs(4.0);
    let tick = p.on_tick(now);
    let got = deliver(&mut p, &wires, &BTreeSet::new(), &tick, now);
    assert!(got.contains(&Action::TopologyChanged));
    assert!(p.observed_links()[&l1]);
}

#[test]
fn port_down_takes_the_link_down_at_once() {
    let f = fabric();
    let wires = wiring(&f);
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    let tick = p.on_tick(t0);
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, t0);
    let got = p.on_port_status("leaf2", 2, false, t0 + secs(0.1));
    assert_eq!(got, vec![Action::TopologyChanged]);
    assert!(!p.observed_links()[&link("leaf2/2", "spine2/2")]);
    assert!(p.ports_down().contains(&"leaf2/2".parse().unwrap()));
    // No probes out of a down port.
    let tick = p.on_tick(t0 + secs(1.0));
    assert!(!sent(&tick)
        .iter()
        .any(|s| s.switch == "leaf2" && s.egress_port == 2));
    // Up again: probes resume at once and the link comes back.
    let now = t0 + secs(1.5);
    p.on_port_status("leaf2", 2, true, now);
    let tick = p.on_tick(now);
    assert_eq!(sent(&tick).len(), 1, "leaf2/2 probes as soon as it is up");
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, now);
    // ... and the link is up once spine2 has probed back too.
    let now = t0 + secs(2.0);
    let tick = p.on_tick(now);
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, now);
    assert!(p.observed_links()[&link("leaf2/2", "spine2/2")]);
}

#[test]
fn unconfigured_and_recabled_links_are_reported() {
    let mut f = fabric();
    let wires = wiring(&f);
    f.links.remove("l4");
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    let tick = p.on_tick(t0);
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, t0);
    assert_eq!(
        p.seen_links_not_configured(),
        vec![link("leaf2/2", "spine2/2")]
    );
    let by_port: BTreeMap<String, _> = p
        .port_links()
        .into_iter()
        .map(|l| (l.port.to_string(), l))
        .collect();
    assert_eq!(by_port.len(), 8);
    let l = &by_port["leaf1/1"];
    assert!(l.up && l.matches_config == Some(true) && l.last_seen == Some(t0));
    assert_eq!(l.remote, Some("spine1/1".parse().unwrap()));
    assert_eq!(by_port["leaf2/2"].matches_config, None);
    // leaf1/1 now hears spine2/2: its link to spine1/1 is gone.
    let probe = Probe {
        switch: "spine2".into(),
        port: 2,
        ttl_secs: 3,
    };
    let got = p.on_frame(
        "leaf1",
        1,
        punt::DISCOVERY,
        &probe.frame(MacAddr::default()),
        t0,
    );
    assert!(got.contains(&Action::TopologyChanged));
    assert!(!p.observed_links()[&link("leaf1/1", "spine1/1")]);
    assert!(!p.observed_links()[&link("leaf2/2", "spine2/2")]);
    let leaf1_1 = p
        .port_links()
        .into_iter()
        .find(|l| l.port.to_string() == "leaf1/1")
        .unwrap();
    assert_eq!(leaf1_1.remote, Some("spine2/2".parse().unwrap()));
    assert_eq!(leaf1_1.matches_config, Some(false));
}

#[test]
fn foreign_lldp_is_ignored() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    // A server's LLDP: MAC chassis id (subtype 4), interface-name port id.
    let lldp = [
        0x02, 0x07, 4, 2, 0, 0, 0, 0, 1, 0x04, 0x05, 5, b'e', b't', b'h', b'0', 0x06, 0x02, 0, 120,
        0, 0,
    ];
    let f = frames::build_eth(
        crate::protocols::discovery::LLDP_MAC,
        mac("02:00:00:00:00:01"),
        None,
        ETH_LLDP,
        &lldp,
    );
    assert!(p.on_frame("leaf1", 1, punt::DISCOVERY, &f, t0).is_empty());
    // A probe naming an unknown switch, or arriving on an edge port.
    let probe = Probe {
        switch: "nope".into(),
        port: 1,
        ttl_secs: 3,
    };
    assert!(p
        .on_frame(
            "leaf1",
            1,
            punt::DISCOVERY,
            &probe.frame(MacAddr::default()),
            t0
        )
        .is_empty());
    let probe = Probe {
        switch: "spine1".into(),
        port: 1,
        ttl_secs: 3,
    };
    assert!(p
        .on_frame(
            "leaf1",
            3,
            punt::DISCOVERY,
            &probe.frame(MacAddr::default()),
            t0
        )
        .is_empty());
    assert!(p.observed_links().is_empty());
}

proptest! {
    #[test]
    fn probe_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Probe::parse(&b);
    }

    #[test]
    fn probe_round_trips(name in "[a-z0-9-]{1,40}", port in any::<u32>(), ttl in any::<u16>()) {
        let probe = Probe { switch: name, port, ttl_secs: ttl };
        prop_assert_eq!(Probe::parse(&probe.encode()), Some(probe));
    }

    /// A probe cut anywhere, or with a TLV length pointing past the end,
    /// is refused (the end TLV is never reached).
    #[test]
    fn truncated_or_overlong_probes_are_refused(
        name in "[a-z0-9-]{1,40}", port in any::<u32>(), cut_from_end in 1usize..20, grow in 1u16..400,
    ) {
        let b = Probe { switch: name.clone(), port, ttl_secs: 120 }.encode();
        let cut = b.len().saturating_sub(cut_from_end);
        prop_assert!(Probe::parse(&b[..cut]).is_none());
        // The chassis TLV (first) claims more bytes than it has.
        let mut bad = b.clone();
        let header = u16::from_be_bytes([bad[0], bad[1]]);
        let len = (header & 0x1ff) + grow;
        prop_assume!(usize::from(len) > b.len() - 2 && len <= 0x1ff);
        bad[0..2].copy_from_slice(&((header & !0x1ff) | len).to_be_bytes());
        prop_assert!(Probe::parse(&bad).is_none());
    }
}

#[test]
fn a_start_up_round_ends_when_every_cabled_port_heard_its_link() {
    // The fabric's links are not configured: discovery is their only
    // source, and a starting controller must hear them before it compiles.
    let cabled = fabric();
    let wires = wiring(&cabled);
    let mut f = cabled.clone();
    f.links.clear();
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    assert_eq!(
        p.discovery_round_done(t0),
        None,
        "no round before one starts"
    );
    // The first probes went out before the switches could send them (a
    // starting controller's sessions are not up yet): lost.
    let _lost = p.on_tick(t0);
    let t1 = t0 + Duration::from_millis(300);
    p.start_discovery_round(t1);
    assert_eq!(p.discovery_round_done(t1), Some(false));
    // The round is a deadline of its own, and probes are due at once.
    let deadline = p.next_deadline().unwrap();
    assert!(deadline <= t1, "probes due at once");
    let tick = p.on_tick(t1);
    assert_eq!(
        sent_with_type(&tick, ETH_LLDP).len(),
        8,
        "every fabric port"
    );
    assert_eq!(p.discovery_round_done(t1), Some(false), "nothing heard yet");
    let t2 = t1 + Duration::from_millis(20);
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, t2);
    assert_eq!(p.discovery_round_done(t2), Some(true), "all four links up");
    assert_eq!(p.observed_links().len(), 4);
    p.end_discovery_round();
    assert_eq!(p.discovery_round_done(t2), None);
}

#[test]
fn a_start_up_round_with_an_uncabled_port_ends_after_its_time() {
    let cabled = fabric();
    let mut wires = wiring(&cabled);
    // leaf2's uplink to spine2 has nothing at the other end.
    let lone: PortRef = "leaf2/2".parse().unwrap();
    let far = wires.remove(&lone).unwrap();
    wires.remove(&far);
    let mut f = cabled.clone();
    f.links.clear();
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    p.start_discovery_round(t0);
    let tick = p.on_tick(t0);
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, t0);
    assert_eq!(
        p.discovery_round_done(t0),
        Some(false),
        "leaf2/2 heard nothing"
    );
    // One interval (1 s) and a half, and the round is over regardless.
    let end = t0 + Duration::from_millis(1500);
    assert_eq!(
        p.discovery_round_done(end - Duration::from_millis(1)),
        Some(false)
    );
    assert_eq!(p.discovery_round_done(end), Some(true));
    assert!(p.next_deadline().unwrap() <= end);
    // Ports reported down (both ends of a cut cable) are not waited for.
    let mut p = Protocols::new(&f, t0);
    p.on_port_status("leaf2", 2, false, t0);
    p.on_port_status(&far.switch, far.port, false, t0);
    p.start_discovery_round(t0);
    let tick = p.on_tick(t0);
    deliver(&mut p, &wires, &BTreeSet::new(), &tick, t0);
    assert_eq!(p.discovery_round_done(t0), Some(true));
}
