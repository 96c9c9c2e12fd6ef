use super::*;

fn digest(vlan: u16, m: &str, port: u32, lag_id: u16) -> MacLearn {
    MacLearn {
        vlan,
        mac: mac(m),
        ingress_port: port,
        lag_id,
    }
}

fn idle(vlan: u16, m: &str, port: u32, lag_id: u16) -> IdleEntry {
    IdleEntry {
        vlan,
        mac: mac(m),
        ingress_port: port,
        lag_id,
    }
}

const H: &str = "02:00:00:00:00:05";

#[test]
fn learn_move_and_age_out() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    assert_eq!(
        p.on_digest("leaf1", &[digest(10, H, 3, 0)], t0),
        vec![Action::HostsChanged]
    );
    assert_eq!(
        p.learned_hosts()[0].attachment,
        Attachment::Port("leaf1/3".parse().unwrap())
    );
    // The same again (a second digest before the entry is installed).
    assert!(p.on_digest("leaf1", &[digest(10, H, 3, 0)], t0).is_empty());
    // The host moves to leaf2/3 (tagged VLAN 10).
    assert_eq!(
        p.on_digest("leaf2", &[digest(10, H, 3, 0)], t0),
        vec![Action::HostsChanged]
    );
    let h = &p.learned_hosts()[0];
    assert_eq!(
        (h.attachment.clone(), h.leaf.as_str()),
        (Attachment::Port("leaf2/3".parse().unwrap()), "leaf2")
    );
    // The old location's entry idles out: the host stays.
    assert!(p
        .on_idle_timeout("leaf1", &[idle(10, H, 3, 0)], t0)
        .is_empty());
    assert_eq!(p.learned_hosts().len(), 1);
    // The current one idles out: gone.
    assert_eq!(
        p.on_idle_timeout("leaf2", &[idle(10, H, 3, 0)], t0),
        vec![Action::HostsChanged]
    );
    assert!(p.learned_hosts().is_empty());
}

#[test]
fn lag_host_lives_while_either_leaf_sees_it() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    assert_eq!(
        p.on_digest("leaf1", &[digest(10, H, 5, 7)], t0),
        vec![Action::HostsChanged]
    );
    // Seen through the other leaf of the same LAG: not a move.
    assert!(p.on_digest("leaf2", &[digest(10, H, 5, 7)], t0).is_empty());
    let h = &p.learned_hosts()[0];
    assert_eq!(h.attachment, Attachment::Lag("bond1".into()));
    assert!(p
        .on_idle_timeout("leaf1", &[idle(10, H, 0, 7)], t0)
        .is_empty());
    assert_eq!(p.learned_hosts()[0].leaf, "leaf2");
    assert_eq!(
        p.on_idle_timeout("leaf2", &[idle(10, H, 0, 7)], t0),
        vec![Action::HostsChanged]
    );
}

#[test]
fn static_hosts_win_and_unknown_ports_are_ignored() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    assert!(p
        .on_digest("leaf1", &[digest(10, "02:00:00:00:00:99", 3, 0)], t0)
        .is_empty());
    // A port that is not a configured edge port.
    assert!(p.on_digest("leaf1", &[digest(10, H, 9, 0)], t0).is_empty());
    assert!(p.learned_hosts().is_empty());
    // A learned host that becomes static is dropped from the learned set.
    p.on_digest("leaf1", &[digest(10, H, 3, 0)], t0);
    let mut f = fabric();
    let mut h = f.hosts["static1"].clone();
    h.mac = mac(H);
    f.hosts.insert("h".into(), h);
    assert!(p.on_config(&f, t0).contains(&Action::HostsChanged));
    assert!(p.learned_hosts().is_empty());
}

#[test]
fn per_attachment_limit() {
    let t0 = Instant::now();
    let mut f = fabric();
    f.settings.max_learned_macs_per_port = 2;
    let mut p = Protocols::new(&f, t0);
    let rows = [
        digest(10, "02:00:00:00:00:01", 3, 0),
        digest(10, "02:00:00:00:00:02", 3, 0),
        digest(10, "02:00:00:00:00:03", 3, 0),
    ];
    p.on_digest("leaf1", &rows, t0);
    assert_eq!(p.learned_hosts().len(), 2);
    // Another port is not limited by this one.
    p.on_digest("leaf2", &[digest(10, "02:00:00:00:00:03", 3, 0)], t0);
    assert_eq!(p.learned_hosts().len(), 3);
    // A host moving away frees its place.
    p.on_digest("leaf2", &[digest(10, "02:00:00:00:00:01", 3, 0)], t0);
    p.on_digest("leaf1", &[digest(10, "02:00:00:00:00:04", 3, 0)], t0);
    assert_eq!(p.learned_hosts().len(), 4);
    p.on_digest("leaf1", &[digest(10, "02:00:00:00:00:05", 3, 0)], t0);
    assert_eq!(p.learned_hosts().len(), 4, "leaf1/3 is full again");
}

#[test]
fn hosts_on_removed_ports_are_dropped() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    p.on_digest("leaf1", &[digest(10, H, 3, 0)], t0);
    p.on_digest("leaf1", &[digest(10, "02:00:00:00:00:06", 5, 7)], t0);
    let mut f = fabric();
    f.ports.remove(&"leaf1/3".parse().unwrap());
    assert!(p.on_config(&f, t0).contains(&Action::HostsChanged));
    let left: Vec<_> = p
        .learned_hosts()
        .into_iter()
        .map(|h| h.attachment)
        .collect();
    assert_eq!(left, [Attachment::Lag("bond1".into())]);
}

fn nth_mac(i: u32) -> String {
    let b = i.to_be_bytes();
    format!("02:aa:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// One ARP request from `src` claiming `ip` (as a MAC flood sends them).
fn arp_from(src: &str, ip: &str) -> Vec<u8> {
    let arp = frames::Arp {
        op: frames::ARP_REQUEST,
        sender_mac: mac(src),
        sender_ip: ip.parse().unwrap(),
        target_mac: MacAddr::default(),
        target_ip: "10.0.10.1".parse().unwrap(),
    };
    frames::build_eth(MacAddr::BROADCAST, mac(src), None, ETH_ARP, &arp.encode())
}

#[test]
fn the_default_limit_is_on_and_a_port_may_override_it() {
    let t0 = Instant::now();
    assert_eq!(fabric().settings.max_learned_macs_per_port, 1000);
    let mut f = fabric();
    f.ports
        .get_mut(&"leaf1/3".parse().unwrap())
        .unwrap()
        .max_learned_macs = Some(3);
    // 0 on leaf2/3: no limit there.
    f.ports
        .get_mut(&"leaf2/3".parse().unwrap())
        .unwrap()
        .max_learned_macs = Some(0);
    let mut p = Protocols::new(&f, t0);
    // 10 seconds of 50 new sources each (under the learning rate).
    for s in 0..10u32 {
        let t = t0 + secs(f64::from(s));
        let rows: Vec<_> = (0..50)
            .map(|i| digest(10, &nth_mac(s * 50 + i), 3, 0))
            .collect();
        p.on_digest("leaf1", &rows, t);
        p.on_digest("leaf2", &rows, t);
    }
    let on = |p: &Protocols, port: &str| {
        let a = Attachment::Port(port.parse().unwrap());
        p.learned_hosts()
            .iter()
            .filter(|h| h.attachment == a)
            .count()
    };
    // (A MAC seen on both ports moved: leaf2/3 saw each one last.)
    assert_eq!(on(&p, "leaf1/3"), 0);
    assert_eq!(on(&p, "leaf2/3"), 500, "0 means unlimited");
    let mut p = Protocols::new(&f, t0);
    for s in 0..10u32 {
        let rows: Vec<_> = (0..50)
            .map(|i| digest(10, &nth_mac(s * 50 + i), 3, 0))
            .collect();
        p.on_digest("leaf1", &rows, t0 + secs(f64::from(s)));
    }
    assert_eq!(on(&p, "leaf1/3"), 3);
    assert_eq!(p.counters().learns_refused, 497);
}

#[test]
fn a_flooded_port_is_limited_once_and_clears_when_hosts_age_out() {
    let t0 = Instant::now();
    let mut f = fabric();
    f.settings.max_learned_macs_per_port = 5;
    let mut p = Protocols::new(&f, t0);
    let port = Attachment::Port("leaf1/3".parse().unwrap());
    for i in 0..4 {
        p.on_digest("leaf1", &[digest(10, &nth_mac(i), 3, 0)], t0);
    }
    assert!(p.limited_attachments().is_empty(), "under the limit");
    for i in 4..20 {
        p.on_digest("leaf1", &[digest(10, &nth_mac(i), 3, 0)], t0 + secs(1.0));
    }
    let limited = p.limited_attachments();
    assert_eq!(limited.len(), 1);
    let l = &limited[0];
    assert_eq!(
        (&l.attachment, l.learned, l.limit, l.refused),
        (&port, 5, 5, 15)
    );
    assert_eq!(l.since, t0 + secs(1.0));
    assert_eq!(p.learns_refused().get(&port), Some(&15));
    // A host already learned there keeps working at the limit.
    assert!(p
        .on_digest("leaf1", &[digest(10, &nth_mac(0), 3, 0)], t0 + secs(2.0))
        .is_empty());
    assert_eq!(p.counters().learns_refused, 15);
    // One ages out: below the limit, the state clears.
    assert_eq!(
        p.on_idle_timeout("leaf1", &[idle(10, &nth_mac(0), 3, 0)], t0 + secs(3.0)),
        vec![Action::HostsChanged]
    );
    assert!(p.limited_attachments().is_empty());
    assert_eq!(p.learns_refused().get(&port), Some(&15), "a counter");
    // Raising the limit clears it too; a flush empties the port.
    p.on_digest("leaf1", &[digest(10, &nth_mac(30), 3, 0)], t0 + secs(4.0));
    p.on_digest("leaf1", &[digest(10, &nth_mac(31), 3, 0)], t0 + secs(4.0));
    assert_eq!(p.limited_attachments().len(), 1);
    f.settings.max_learned_macs_per_port = 10;
    p.on_config(&f, t0 + secs(5.0));
    assert!(p.limited_attachments().is_empty());
    assert!(p
        .flush_learned(&port, t0 + secs(6.0))
        .contains(&Action::HostsChanged));
    assert!(p.learned_hosts().is_empty());
}

#[test]
fn a_port_learns_at_most_its_rate_of_new_sources() {
    let t0 = Instant::now();
    let mut f = fabric();
    f.settings.learns_per_port_per_sec = 10;
    let mut p = Protocols::new(&f, t0);
    let rows: Vec<_> = (0..30).map(|i| digest(10, &nth_mac(i), 3, 0)).collect();
    p.on_digest("leaf1", &rows, t0);
    // Another port has its own budget.
    let other: Vec<_> = (100..130).map(|i| digest(10, &nth_mac(i), 3, 0)).collect();
    p.on_digest("leaf2", &other, t0);
    assert_eq!(p.learned_hosts().len(), 20);
    assert_eq!(p.counters().learns_rate_limited, 40);
    // Known sources do not use the budget; the next second learns more.
    p.on_digest("leaf1", &rows[..10], t0);
    assert_eq!(p.counters().learns_rate_limited, 40);
    p.on_digest("leaf1", &rows, t0 + secs(1.0));
    assert_eq!(p.learned_hosts().len(), 30);
}

#[test]
fn at_the_limit_a_flood_takes_over_no_configured_host() {
    let t0 = Instant::now();
    let mut f = fabric();
    f.settings.max_learned_macs_per_port = 3;
    let mut p = Protocols::new(&f, t0);
    // A flood on the static host's own port, claiming its address too.
    for i in 0..50u32 {
        let ip = if i % 2 == 0 {
            "10.0.10.99".to_string()
        } else {
            format!("10.0.10.{}", 100 + i)
        };
        p.on_frame(
            "leaf1",
            3,
            0,
            &arp_from(&nth_mac(i), &ip),
            t0 + secs(f64::from(i) * 0.1),
        );
    }
    let learned: Vec<_> = p.learned_hosts();
    assert_eq!(learned.len(), 3);
    assert!(learned
        .iter()
        .all(|h| h.mac != mac("02:00:00:00:00:99")
            && !h.ips.contains(&"10.0.10.99".parse().unwrap())));
    // The configured host itself still passes and gets answers at the
    // limit, and never counts against it.
    let got = p.on_frame(
        "leaf1",
        3,
        0,
        &arp_from("02:00:00:00:00:99", "10.0.10.99"),
        t0 + secs(10.0),
    );
    assert_eq!(sent_with_type(&got, ETH_ARP).len(), 1, "answered");
    assert_eq!(p.limited_attachments()[0].learned, 3);
    // A learned source refused at the limit gets no answer.
    let got = p.on_frame(
        "leaf1",
        3,
        0,
        &arp_from(&nth_mac(999), "10.0.10.200"),
        t0 + secs(10.0),
    );
    assert!(sent(&got).is_empty());
}

proptest! {
    /// Whatever mix of digests, ARP (claiming any address, the static
    /// host's included) and ageing two ports see: no attachment holds more
    /// learned MACs than its limit, and no learned host has the static
    /// host's MAC or address.
    #[test]
    fn limits_hold_and_configured_hosts_are_never_taken(
        steps in proptest::collection::vec((0u8..3, 0u32..40, 90u8..110, any::<bool>()), 1..200),
    ) {
        let t0 = Instant::now();
        let mut f = fabric();
        f.settings.max_learned_macs_per_port = 7;
        f.ports.get_mut(&"leaf2/3".parse().unwrap()).unwrap().max_learned_macs = Some(3);
        let mut p = Protocols::new(&f, t0);
        for (i, (kind, m, ip, other)) in steps.into_iter().enumerate() {
            let now = t0 + secs(i as f64 * 0.05);
            let (sw, m) = (if other { "leaf2" } else { "leaf1" }, if m == 39 { "02:00:00:00:00:99".to_string() } else { nth_mac(m) });
            match kind {
                0 => { p.on_digest(sw, &[digest(10, &m, 3, 0)], now); }
                1 => {
                    let frame = arp_from(&m, &format!("10.0.10.{ip}"));
                    let frame = if other {
                        // leaf2/3 is a trunk: VLAN 10 comes tagged.
                        let e = parse_eth(&frame).unwrap();
                        frames::build_eth(e.dst, e.src, Some(10), ETH_ARP, &e.payload[..frames::Arp::LEN])
                    } else { frame };
                    p.on_frame(sw, 3, 0, &frame, now);
                }
                _ => { p.on_idle_timeout(sw, &[idle(10, &m, 3, 0)], now); }
            }
            let hosts = p.learned_hosts();
            for (port, limit) in [("leaf1/3", 7), ("leaf2/3", 3)] {
                let a = Attachment::Port(port.parse().unwrap());
                let n = hosts.iter().filter(|h| h.attachment == a && h.mac != mac("02:00:00:00:00:99")).count();
                prop_assert!(n <= limit, "{} learned on {}", n, port);
                let limited = p.limited_attachments().iter().any(|l| l.attachment == a);
                prop_assert_eq!(limited, n == limit, "limited state of {}", port);
            }
            for h in &hosts {
                let configured = h.mac == mac("02:00:00:00:00:99");
                // The configured host's entry is its own (configured
                // attachment); nobody else holds its address.
                prop_assert!(configured || !h.ips.contains(&"10.0.10.99".parse().unwrap()), "{:?}", h);
                if configured {
                    prop_assert_eq!(&h.attachment, &Attachment::Port("leaf1/3".parse().unwrap()));
                }
            }
        }
    }
}

#[test]
fn a_read_back_is_not_held_to_the_learning_rate_but_to_the_limit() {
    let t0 = Instant::now();
    let mut f = fabric();
    f.settings.learns_per_port_per_sec = 10;
    f.settings.max_learned_macs_per_port = 300;
    let mut p = Protocols::new(&f, t0);
    // A controller starting over a switch that holds 500 learned MACs on
    // one port: all up to the limit come back at once.
    let recovered = crate::protocols::recover::Recovered {
        macs: (0..500).map(|i| digest(10, &nth_mac(i), 3, 0)).collect(),
        ..Default::default()
    };
    p.restore("leaf1", &recovered, t0);
    assert_eq!(p.learned_hosts().len(), 300);
    assert_eq!(p.counters().learns_rate_limited, 0);
    assert_eq!(p.counters().learns_refused, 200);
    assert_eq!(p.limited_attachments().len(), 1);
}
