use std::collections::BTreeSet;

use super::*;
use crate::protocols::frames::{build_eth, Arp, ARP_REQUEST};
use crate::protocols::lacpdu::{LacpInfo, LacpState, Lacpdu, SLOW_PROTOCOLS_MAC};

/// A server's bond, as a minimal LACP partner: one port per fabric member
/// it is cabled to. A port is in sync once it has heard an aggregatable
/// partner; it collects/distributes once that partner reports sync too.
struct Server {
    system: MacAddr,
    key: u16,
    /// Fabric port it is cabled to -> (its port number, what it heard).
    ports: BTreeMap<PortRef, (u16, Option<LacpInfo>)>,
}

impl Server {
    fn new(system: &str, cabled: &[&str]) -> Self {
        Server {
            system: mac(system),
            key: 9,
            ports: cabled
                .iter()
                .enumerate()
                .map(|(i, p)| (p.parse().unwrap(), (i as u16 + 1, None)))
                .collect(),
        }
    }

    fn pdu(&self, at: &PortRef) -> Lacpdu {
        let (num, partner) = self.ports[at];
        let sync = partner.is_some_and(|p| p.state.has(LacpState::AGGREGATION));
        let cd = sync && partner.is_some_and(|p| p.state.has(LacpState::SYNCHRONIZATION));
        let state = LacpState(LacpState::ACTIVITY | LacpState::TIMEOUT | LacpState::AGGREGATION)
            .with(LacpState::SYNCHRONIZATION, sync)
            .with(LacpState::COLLECTING, cd)
            .with(LacpState::DISTRIBUTING, cd);
        Lacpdu {
            actor: LacpInfo {
                system_priority: 65535,
                system: self.system,
                key: self.key,
                port_priority: 255,
                port: num,
                state,
            },
            partner: partner.unwrap_or_default(),
            collector_max_delay: 0,
        }
    }

    fn frame(&self, at: &PortRef) -> Vec<u8> {
        build_eth(
            SLOW_PROTOCOLS_MAC,
            self.system,
            None,
            ETH_SLOW,
            &self.pdu(at).encode(),
        )
    }

    /// Takes the LACPDUs sent to its ports; returns the ports that heard one.
    fn receive(&mut self, actions: &[Action]) -> Vec<PortRef> {
        let mut heard = Vec::new();
        for pkt in sent_with_type(actions, ETH_SLOW) {
            let at = PortRef::new(pkt.switch.clone(), pkt.egress_port);
            let Some(port) = self.ports.get_mut(&at) else {
                continue;
            };
            let e = parse_eth(&pkt.frame).unwrap();
            port.1 = Some(Lacpdu::parse(e.payload).unwrap().actor);
            heard.push(at);
        }
        heard
    }

    /// The partners it has heard on its ports.
    fn partners(&self) -> BTreeSet<(MacAddr, u16)> {
        self.ports
            .values()
            .filter_map(|(_, p)| p.map(|p| (p.system, p.key)))
            .collect()
    }
}

/// Runs the exchange for 3 s in 100 ms rounds (so rate limits release):
/// the servers answer every LACPDU they get.
fn converge(
    p: &mut Protocols,
    s: &mut Server,
    first: Vec<Action>,
    now: Instant,
) -> (Vec<Action>, Instant) {
    converge_all(p, std::slice::from_mut(s), first, now)
}

fn converge_all(
    p: &mut Protocols,
    servers: &mut [Server],
    first: Vec<Action>,
    mut now: Instant,
) -> (Vec<Action>, Instant) {
    let mut all = first.clone();
    let mut pending = first;
    // Servers are active too: they speak on every link to begin with.
    for s in servers.iter() {
        for at in s.ports.keys() {
            pending.extend(p.on_frame(&at.switch, at.port, punt::LACP, &s.frame(at), now));
        }
    }
    for _ in 0..30 {
        let mut replies = Vec::new();
        for s in servers.iter_mut() {
            for at in s.receive(&pending) {
                let frame = s.frame(&at);
                replies.push((at, frame));
            }
        }
        pending = Vec::new();
        for (at, frame) in replies {
            pending.extend(p.on_frame(&at.switch, at.port, punt::LACP, &frame, now));
        }
        now += secs(0.1);
        pending.extend(p.on_tick(now));
        all.extend(pending.clone());
    }
    (all, now)
}

fn members(p: &Protocols, lag: &str) -> Vec<String> {
    p.lag_members(lag).iter().map(|p| p.to_string()).collect()
}

#[test]
fn actor_lacpdu_frame_is_well_formed() {
    let t0 = Instant::now();
    let f = fabric();
    let mut p = Protocols::new(&f, t0);
    let tick = p.on_tick(t0);
    let lacp = sent_with_type(&tick, ETH_SLOW);
    assert_eq!(lacp.len(), 2, "one LACPDU per LACP member");
    let frame = &lacp[0].frame;
    assert_eq!(frame.len(), 14 + 110);
    let e = parse_eth(frame).unwrap();
    assert_eq!(e.dst, SLOW_PROTOCOLS_MAC);
    assert_eq!(e.src, f.settings.lacp_system_id);
    let pdu = Lacpdu::parse(e.payload).unwrap();
    assert_eq!(pdu.actor.system, f.settings.lacp_system_id);
    assert_eq!(pdu.actor.system_priority, 32768);
    assert_eq!(pdu.actor.key, 7, "the LAG id when no key is configured");
    // leaf1 has label 101: (101 & 0x7f) << 9 | 5.
    assert_eq!(pdu.actor.port, (101 << 9) | 5);
    assert_eq!(
        pdu.actor.state,
        LacpState(
            LacpState::ACTIVITY
                | LacpState::TIMEOUT
                | LacpState::AGGREGATION
                | LacpState::DEFAULTED
        )
    );
    assert_eq!(pdu.partner, LacpInfo::default());
}

#[test]
fn bond_across_two_leaves_forms_one_aggregation() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let mut server = Server::new("52:54:00:00:00:01", &["leaf1/5", "leaf2/5"]);
    assert!(members(&p, "bond1").is_empty());
    let first = p.on_tick(t0);
    let (all, _) = converge(&mut p, &mut server, first, t0);
    assert!(all.contains(&Action::LagMembersChanged {
        lag: "bond1".into()
    }));
    assert_eq!(members(&p, "bond1"), ["leaf1/5", "leaf2/5"]);
    assert!(p.lacp_unsynced().is_empty());
    // The server saw one partner system and key on both links.
    assert_eq!(server.partners().len(), 1);
    // ... with distinct port numbers.
    let nums: BTreeSet<u16> = server
        .ports
        .values()
        .filter_map(|(_, p)| p.map(|p| p.port))
        .collect();
    assert_eq!(nums.len(), 2);
    // Both sides collect and distribute.
    for st in p.lag_status().iter().filter(|s| s.lag == "bond1") {
        let actor = st.actor.unwrap().state;
        assert!(actor.has(LacpState::COLLECTING) && actor.has(LacpState::DISTRIBUTING));
        assert!(st.selected && st.usable);
    }
    for port in server.ports.keys() {
        let st = server.pdu(port).actor.state;
        assert!(st.has(LacpState::DISTRIBUTING), "{port}");
    }
}

#[test]
fn member_waits_for_partner_sync() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    p.on_tick(t0);
    // A partner that has not heard us yet (no sync, partner info empty).
    let server = Server::new("52:54:00:00:00:01", &["leaf1/5"]);
    let at: PortRef = "leaf1/5".parse().unwrap();
    let got = p.on_frame("leaf1", 5, punt::LACP, &server.frame(&at), t0);
    assert!(members(&p, "bond1").is_empty());
    // We answer at once (need to transmit) and say we are in sync.
    let reply = sent_with_type(&got, ETH_SLOW);
    assert_eq!(reply.len(), 1);
    let pdu = Lacpdu::parse(parse_eth(&reply[0].frame).unwrap().payload).unwrap();
    assert!(pdu.actor.state.has(LacpState::SYNCHRONIZATION));
    assert!(!pdu.actor.state.has(LacpState::COLLECTING));
    assert_eq!(pdu.partner.system, server.system);
}

#[test]
fn partner_timeout_removes_member_after_three_seconds() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let mut server = Server::new("52:54:00:00:00:01", &["leaf1/5", "leaf2/5"]);
    let first = p.on_tick(t0);
    let (_, now) = converge(&mut p, &mut server, first, t0);
    assert_eq!(members(&p, "bond1").len(), 2);
    // The server's last PDU on leaf2/5 arrives at `now`; then it goes
    // silent there but keeps talking on leaf1/5.
    let last = now;
    let at1: PortRef = "leaf1/5".parse().unwrap();
    let at2: PortRef = "leaf2/5".parse().unwrap();
    p.on_frame("leaf2", 5, punt::LACP, &server.frame(&at2), last);
    let mut removed_at = None;
    let mut t = last;
    while t < last + secs(5.0) {
        t += secs(0.1);
        p.on_frame("leaf1", 5, punt::LACP, &server.frame(&at1), t);
        let got = p.on_tick(t);
        if got.contains(&Action::LagMembersChanged {
            lag: "bond1".into(),
        }) {
            removed_at.get_or_insert(t);
        }
    }
    let removed_at = removed_at.expect("member removed");
    let after = removed_at - last;
    assert!(
        after > secs(2.5) && after <= secs(3.1),
        "removed after {after:?}"
    );
    assert_eq!(members(&p, "bond1"), ["leaf1/5"]);
    assert_eq!(
        p.lacp_unsynced(),
        BTreeSet::from(["leaf2/5".parse().unwrap()])
    );
    let st = p
        .lag_status()
        .into_iter()
        .find(|s| s.port.port == 5 && s.port.switch == "leaf2")
        .unwrap();
    let actor = st.actor.unwrap().state;
    assert!(actor.has(LacpState::EXPIRED) && actor.has(LacpState::DEFAULTED));
    assert_eq!(st.partner, None);
}

#[test]
fn partner_change_resyncs() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let mut a = Server::new("52:54:00:00:00:01", &["leaf1/5", "leaf2/5"]);
    let first = p.on_tick(t0);
    let (_, now) = converge(&mut p, &mut a, first, t0);
    assert_eq!(members(&p, "bond1").len(), 2);
    // Server B replaces A on both links (recabling / reinstall).
    let mut b = Server::new("52:54:00:00:00:02", &["leaf1/5", "leaf2/5"]);
    let at: PortRef = "leaf1/5".parse().unwrap();
    let got = p.on_frame("leaf1", 5, punt::LACP, &b.frame(&at), now);
    assert!(got.contains(&Action::LagMembersChanged {
        lag: "bond1".into()
    }));
    assert!(
        !p.lag_members("bond1").contains(&at),
        "changed partner leaves at once"
    );
    let (all, _) = converge(&mut p, &mut b, got, now);
    assert!(all.contains(&Action::LagMembersChanged {
        lag: "bond1".into()
    }));
    assert_eq!(members(&p, "bond1"), ["leaf1/5", "leaf2/5"]);
    let partners: BTreeSet<_> = p
        .lag_status()
        .iter()
        .filter_map(|s| s.partner.map(|p| p.system))
        .collect();
    assert_eq!(partners, BTreeSet::from([b.system]));
}

#[test]
fn miscabled_member_is_not_selected() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let a = Server::new("52:54:00:00:00:01", &["leaf1/5"]);
    let b = Server::new("52:54:00:00:00:02", &["leaf2/5"]);
    let first = p.on_tick(t0);
    converge_all(&mut p, &mut [a, b], first, t0);
    // bond1 aggregates with one partner (the lowest system on a tie); the
    // other server's link stays out.
    assert_eq!(members(&p, "bond1"), ["leaf1/5"]);
    assert_eq!(
        p.lacp_unsynced(),
        BTreeSet::from(["leaf2/5".parse().unwrap()])
    );
}

#[test]
fn port_down_removes_member_and_static_lags_follow_ports() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let mut server = Server::new("52:54:00:00:00:01", &["leaf1/5", "leaf2/5"]);
    let first = p.on_tick(t0);
    let (_, now) = converge(&mut p, &mut server, first, t0);
    let got = p.on_port_status("leaf2", 5, false, now);
    // The LAG's members, and `ports_down` (a compiler input of its own).
    assert_eq!(
        got,
        vec![
            Action::LagMembersChanged {
                lag: "bond1".into()
            },
            Action::TopologyChanged
        ]
    );
    assert_eq!(members(&p, "bond1"), ["leaf1/5"]);
    // Static LAG: members are usable while their port is up.
    assert_eq!(members(&p, "bond2"), ["leaf1/6", "leaf1/7"]);
    let got = p.on_port_status("leaf1", 7, false, now);
    // The LAG's members, and `ports_down` (a compiler input of its own).
    assert_eq!(
        got,
        vec![
            Action::LagMembersChanged {
                lag: "bond2".into()
            },
            Action::TopologyChanged
        ]
    );
    assert_eq!(members(&p, "bond2"), ["leaf1/6"]);
    assert!(
        sent_with_type(&p.on_tick(now + secs(2.0)), ETH_SLOW)
            .iter()
            .all(|s| s.switch != "leaf2"),
        "no LACPDUs out of a down port"
    );
    p.on_port_status("leaf1", 7, true, now);
    assert_eq!(members(&p, "bond2"), ["leaf1/6", "leaf1/7"]);
}

#[test]
fn transmissions_are_periodic_and_rate_limited() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    // No partner: fast periodic (1 s) so a new server syncs quickly.
    let count = |acts: &[Action]| sent_with_type(acts, ETH_SLOW).len();
    assert_eq!(count(&p.on_tick(t0)), 2);
    assert_eq!(count(&p.on_tick(t0 + secs(0.5))), 0);
    assert_eq!(count(&p.on_tick(t0 + secs(1.0))), 2);
    // A partner that flaps its state every 10 ms gets at most 3 PDUs a
    // second back.
    let server = Server::new("52:54:00:00:00:01", &["leaf1/5"]);
    let at: PortRef = "leaf1/5".parse().unwrap();
    let mut n = 0;
    for i in 0..100 {
        let now = t0 + secs(1.0 + f64::from(i) * 0.01);
        let mut pdu = server.pdu(&at);
        pdu.actor.port = i as u16 + 1;
        let f = build_eth(
            SLOW_PROTOCOLS_MAC,
            server.system,
            None,
            ETH_SLOW,
            &pdu.encode(),
        );
        n += sent_with_type(&p.on_frame("leaf1", 5, punt::LACP, &f, now), ETH_SLOW).len();
        n += sent_with_type(&p.on_tick(now), ETH_SLOW)
            .iter()
            .filter(|s| s.switch == "leaf1")
            .count();
    }
    assert!(n <= 3, "{n} PDUs in one second");
}

#[test]
fn arp_storm_does_not_stop_lacp_or_discovery() {
    let f = fabric();
    let wires = wiring(&f);
    let t0 = Instant::now();
    let mut p = Protocols::new(&f, t0);
    let mut server = Server::new("52:54:00:00:00:01", &["leaf1/5", "leaf2/5"]);
    let storm = {
        let arp = Arp {
            op: ARP_REQUEST,
            sender_mac: mac("02:00:00:00:00:66"),
            sender_ip: "10.0.10.66".parse().unwrap(),
            target_mac: MacAddr::default(),
            target_ip: "10.0.10.1".parse().unwrap(),
        };
        build_eth(
            MacAddr::BROADCAST,
            arp.sender_mac,
            None,
            ETH_ARP,
            &arp.encode(),
        )
    };
    let mut replies = 0;
    let mut pending = Vec::new();
    // 4 s of 2000 ARP requests a second from leaf1/3, while LACP and
    // discovery run.
    for step in 0..400 {
        let now = t0 + secs(f64::from(step) * 0.01);
        for _ in 0..20 {
            replies +=
                sent_with_type(&p.on_frame("leaf1", 3, punt::ARP, &storm, now), ETH_ARP).len();
        }
        pending.extend(p.on_tick(now));
        deliver(&mut p, &wires, &BTreeSet::new(), &pending, now);
        let heard = server.receive(&pending);
        pending.clear();
        for at in heard {
            let frame = server.frame(&at);
            pending.extend(p.on_frame(&at.switch, at.port, punt::LACP, &frame, now));
        }
    }
    assert!(replies <= 4 * 50, "{replies} ARP replies");
    let c = p.counters();
    assert_eq!(c.host_frames + c.rate_limited, 8000);
    assert!(c.rate_limited >= 8000 - 4 * 50 && c.lacpdus > 0 && c.probes > 0);
    assert_eq!(members(&p, "bond1"), ["leaf1/5", "leaf2/5"]);
    assert_eq!(p.observed_links().values().filter(|u| **u).count(), 4);
}

#[test]
fn unrelated_config_change_does_not_flap_members() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let mut server = Server::new("52:54:00:00:00:01", &["leaf1/5", "leaf2/5"]);
    let first = p.on_tick(t0);
    let (_, now) = converge(&mut p, &mut server, first, t0);
    let mut f = fabric();
    f.vlans.insert(30, f.vlans[&20].clone());
    let got = p.on_config(&f, now);
    assert!(!got
        .iter()
        .any(|a| matches!(a, Action::LagMembersChanged { .. })));
    assert_eq!(members(&p, "bond1"), ["leaf1/5", "leaf2/5"]);
    // A new key is a different aggregation: members leave until the
    // partner has heard it.
    f.lags.get_mut("bond1").unwrap().lacp.key = Some(99);
    let got = p.on_config(&f, now);
    assert!(got.contains(&Action::LagMembersChanged {
        lag: "bond1".into()
    }));
    assert!(members(&p, "bond1").is_empty());
    let first = p.on_tick(now);
    converge(&mut p, &mut server, first, now);
    assert_eq!(members(&p, "bond1"), ["leaf1/5", "leaf2/5"]);
    assert_eq!(
        server
            .partners()
            .into_iter()
            .map(|(_, k)| k)
            .collect::<Vec<_>>(),
        [99]
    );
}

/// What a new controller recovers from a leaf whose LAG group carries
/// `port` (only the LAG ports matter here).
fn in_service(port: u32) -> crate::protocols::recover::Recovered {
    crate::protocols::recover::Recovered {
        lag_ports: vec![port],
        ..Default::default()
    }
}

/// A first controller that brought bond1 up with a server on both
/// leaves; the time it got there.
fn bond_in_service(f: &crate::config::Fabric, t0: Instant) -> (Protocols, Server, Instant) {
    let mut old = Protocols::new(f, t0);
    let mut server = Server::new("52:54:00:00:00:01", &["leaf1/5", "leaf2/5"]);
    let first = old.on_tick(t0);
    let (_, t1) = converge(&mut old, &mut server, first, t0);
    assert_eq!(members(&old, "bond1"), ["leaf1/5", "leaf2/5"]);
    (old, server, t1)
}

#[test]
fn a_new_controller_adopts_a_bond_in_service_without_a_flap() {
    let t0 = Instant::now();
    let f = fabric();
    let (_old, mut server, t1) = bond_in_service(&f, t0);
    let in_sync = |s: &Server| {
        s.ports
            .keys()
            .all(|at| s.pdu(at).actor.state.has(LacpState::DISTRIBUTING))
    };
    assert!(in_sync(&server));

    // It dies; a new one starts holding LACP until the read-backs are in:
    // a LACPDU before them would say "defaulted, not in sync" and the
    // server would drop both links (a ping lost in the fault suite).
    let mut new = Protocols::new(&f, t1);
    assert!(
        !sent_with_type(&Protocols::new(&f, t1).on_tick(t1), ETH_SLOW).is_empty(),
        "without the hold a new controller speaks at once"
    );
    new.hold_lacp(t1);
    assert!(
        sent_with_type(&new.on_tick(t1), ETH_SLOW).is_empty(),
        "held"
    );
    assert!(
        new.next_deadline().is_none_or(|d| d > t1),
        "a held member is no timer due (the controller would spin)"
    );
    // It reads both leaves back: the members stay usable and it says
    // nothing until the server speaks.
    let mut acts = new.restore("leaf1", &in_service(5), t1);
    acts.extend(new.restore("leaf2", &in_service(5), t1));
    assert!(
        sent_with_type(&new.release_lacp(&Default::default(), t1), ETH_SLOW).is_empty(),
        "adopted members stay silent after the hold"
    );
    assert!(acts.contains(&Action::LagMembersChanged {
        lag: "bond1".into()
    }));
    assert_eq!(members(&new, "bond1"), ["leaf1/5", "leaf2/5"]);
    assert!(new.lacp_unsynced().is_empty());
    let tick = new.on_tick(t1 + secs(0.5));
    assert!(
        sent_with_type(&tick, ETH_SLOW).is_empty(),
        "silent while adopted"
    );

    // The server's periodic LACPDUs arrive: the normal machines take over,
    // the server stays in sync and the usable set never changes.
    let mut now = t1 + secs(0.9);
    let mut changed = false;
    // One leg at a time: the server's PDUs on its two links are not
    // simultaneous.
    for _ in 0..20 {
        for at in server.ports.keys().cloned().collect::<Vec<_>>() {
            let mut pending =
                new.on_frame(&at.switch, at.port, punt::LACP, &server.frame(&at), now);
            pending.extend(new.on_tick(now));
            changed |= pending
                .iter()
                .any(|a| matches!(a, Action::LagMembersChanged { .. }));
            server.receive(&pending);
            assert!(in_sync(&server), "the server stays in sync");
            assert_eq!(members(&new, "bond1"), ["leaf1/5", "leaf2/5"]);
            now += secs(0.15);
        }
    }
    assert!(!changed, "no member left the LAG");
}

#[test]
fn an_adopted_member_whose_partner_is_silent_leaves_after_current_while() {
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let acts = p.restore("leaf1", &in_service(5), t0);
    assert!(acts.contains(&Action::LagMembersChanged {
        lag: "bond1".into()
    }));
    assert_eq!(members(&p, "bond1"), ["leaf1/5"]);
    // Fast rate: current_while is 3 s.
    assert!(!p
        .on_tick(t0 + secs(2.9))
        .iter()
        .any(|a| matches!(a, Action::LagMembersChanged { .. })));
    let late = p.on_tick(t0 + secs(3.0));
    assert!(late.contains(&Action::LagMembersChanged {
        lag: "bond1".into()
    }));
    assert!(members(&p, "bond1").is_empty());
    assert!(!sent_with_type(&late, ETH_SLOW).is_empty(), "speaks again");
}

#[test]
fn a_successor_that_knows_the_partners_speaks_in_sync_at_once() {
    let t0 = Instant::now();
    let f = fabric();
    let (old, mut server, t1) = bond_in_service(&f, t0);
    let known = old.lacp_partners();
    assert_eq!(known.len(), 2, "both partners heard: {known:?}");

    // The successor reads both leaves back and the partners the old one
    // published: its first LACPDUs go out at release, before the server
    // could time the old actor out, and keep the server in sync.
    let mut new = Protocols::new(&f, t1);
    new.hold_lacp(t1);
    new.restore("leaf1", &in_service(5), t1);
    new.restore("leaf2", &in_service(5), t1);
    let released = new.release_lacp(&known, t1);
    assert_eq!(
        sent_with_type(&released, ETH_SLOW).len(),
        2,
        "one LACPDU per member at once"
    );
    assert!(
        !released
            .iter()
            .any(|a| matches!(a, Action::LagMembersChanged { .. })),
        "no member left or joined"
    );
    server.receive(&released);
    assert!(server
        .ports
        .keys()
        .all(|at| server.pdu(at).actor.state.has(LacpState::DISTRIBUTING)));
    assert_eq!(members(&new, "bond1"), ["leaf1/5", "leaf2/5"]);
}
