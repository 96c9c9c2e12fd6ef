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
    let opts = Options {
        max_macs_per_attachment: Some(2),
        ..Default::default()
    };
    let mut p = Protocols::with_options(&fabric(), opts, t0);
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
