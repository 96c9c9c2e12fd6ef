//! Engine tests: a small two-leaf, two-spine fabric driven through
//! `Protocols` with explicit time; frames the engine sends are delivered
//! along a simulated wiring, or to partners implemented here.

mod arp_nd;
mod decode;
mod discovery;
mod lacp;
mod learning;
mod recover;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::config::Fabric;

pub(super) const FABRIC: &str = r#"
switches:
  leaf1: {address: "127.0.0.1:1", device_id: 1, role: leaf, label: 101, fabric_ports: [1, 2]}
  leaf2: {address: "127.0.0.1:2", device_id: 2, role: leaf, label: 102, fabric_ports: [1, 2]}
  spine1: {address: "127.0.0.1:3", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}
  spine2: {address: "127.0.0.1:4", device_id: 4, role: spine, label: 202, fabric_ports: [1, 2]}
links:
  l1: {a: leaf1/1, b: spine1/1}
  l2: {a: leaf1/2, b: spine2/1}
  l3: {a: leaf2/1, b: spine1/2}
  l4: {a: leaf2/2, b: spine2/2}
ports:
  leaf1/3: {mode: access, vlan: 10}
  leaf2/3: {mode: trunk, vlans: [10, 20]}
lags:
  bond1: {id: 7, members: [leaf1/5, leaf2/5], protocol: lacp, lacp: {rate: fast}, mode: access, vlan: 10}
  bond2: {id: 8, members: [leaf1/6, leaf1/7], protocol: static, mode: access, vlan: 20}
vlans:
  10: {ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {ipv4_gateway: 10.0.20.1/24}
routes:
  r1: {prefix: 192.168.0.0/16, next_hops: [10.0.10.254]}
  r6: {prefix: "2001:db8:ff::/48", next_hops: ["2001:db8:10::fe"]}
hosts:
  static1: {mac: "02:00:00:00:00:99", vlan: 10, ips: [10.0.10.99], attachment: {port: leaf1/3}}
"#;

pub(super) fn fabric() -> Fabric {
    serde_yaml::from_str(FABRIC).unwrap()
}

pub(super) fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

pub(super) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The frames sent, by (switch, port).
pub(super) fn sent(actions: &[Action]) -> Vec<&PacketOut> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendPacket(p) => Some(p),
            _ => None,
        })
        .collect()
}

pub(super) fn sent_with_type(actions: &[Action], ethertype: u16) -> Vec<&PacketOut> {
    sent(actions)
        .into_iter()
        .filter(|p| parse_eth(&p.frame).is_some_and(|e| e.ethertype == ethertype))
        .collect()
}

/// The fabric links as cabled: each port's far end.
pub(super) fn wiring(f: &Fabric) -> BTreeMap<PortRef, PortRef> {
    let mut w = BTreeMap::new();
    for l in f.links.values() {
        w.insert(l.a.clone(), l.b.clone());
        w.insert(l.b.clone(), l.a.clone());
    }
    w
}

/// Delivers every probe in `actions` to the far end of its port (unless
/// the link is `cut`) as a packet-in; returns what that caused.
pub(super) fn deliver(
    p: &mut Protocols,
    wires: &BTreeMap<PortRef, PortRef>,
    cut: &BTreeSet<PortRef>,
    actions: &[Action],
    now: Instant,
) -> Vec<Action> {
    let mut out = Vec::new();
    for pkt in sent_with_type(actions, ETH_LLDP) {
        let from = PortRef::new(pkt.switch.clone(), pkt.egress_port);
        if cut.contains(&from) {
            continue;
        }
        if let Some(to) = wires.get(&from) {
            out.extend(p.on_frame(&to.switch, to.port, punt::DISCOVERY, &pkt.frame, now));
        }
    }
    out
}

#[test]
fn packet_out_metadata_names_the_pipeline_fields() {
    let p = PacketOut::direct(&PortRef::new("leaf1", 3), vec![]);
    assert_eq!(
        p.metadata(),
        [
            ("egress_port", 3),
            ("do_forwarding", 0),
            ("ingress_port", 0)
        ]
    );
}

#[test]
fn digest_rows_and_idle_keys_decode() {
    let row: Vec<(&'static str, Value)> = vec![
        ("vlan_id", 10),
        ("eth_src", 0x0200_0000_0005),
        ("ingress_port", 3),
        ("lag_id", 0),
    ];
    assert_eq!(
        MacLearn::from_row(&row),
        Some(MacLearn {
            vlan: 10,
            mac: mac("02:00:00:00:00:05"),
            ingress_port: 3,
            lag_id: 0
        })
    );
    assert_eq!(MacLearn::from_row(&row[1..]), None);
    let key = TableKey::new(SRC_MAC_TABLE)
        .exact("vlan_id", 10u16)
        .exact("eth_src", 0x0200_0000_0005u64)
        .exact("ingress_port", 3u32)
        .exact("lag_id", 0u16);
    assert_eq!(
        IdleEntry::from_key(&key),
        Some(IdleEntry {
            vlan: 10,
            mac: mac("02:00:00:00:00:05"),
            ingress_port: 3,
            lag_id: 0,
        })
    );
    assert_eq!(IdleEntry::from_key(&TableKey::new("other")), None);
}

#[test]
fn next_deadline_is_reported() {
    let now = Instant::now();
    let mut p = Protocols::new(&fabric(), now);
    assert_eq!(p.next_deadline(), Some(now));
    p.on_tick(now);
    let d = p.next_deadline().unwrap();
    assert!(d > now && d <= now + secs(1.0));
}

/// What a random test step does to the engine.
#[derive(Debug, Clone)]
enum Step {
    Tick,
    PortDown(&'static str, u32),
    PortUp(&'static str, u32),
    Config,
}

fn step() -> impl Strategy<Value = Step> {
    let port = prop_oneof![
        Just(("leaf1", 1)),
        Just(("leaf1", 5)),
        Just(("leaf1", 6)),
        Just(("spine1", 2))
    ];
    prop_oneof![
        Just(Step::Tick),
        port.clone().prop_map(|(s, p)| Step::PortDown(s, p)),
        port.prop_map(|(s, p)| Step::PortUp(s, p)),
        Just(Step::Config),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After a tick nothing is due before a later instant: the daemon
    /// sleeping until `next_deadline` never spins, whatever state ports,
    /// LACP members and configuration are in.
    #[test]
    fn deadlines_always_move_forward(steps in proptest::collection::vec((step(), 0u64..3000), 1..30)) {
        let t0 = Instant::now();
        let f = fabric();
        let mut p = Protocols::new(&f, t0);
        let mut now = t0;
        for (s, ms) in steps {
            now += Duration::from_millis(ms);
            match s {
                Step::Tick => {}
                Step::PortDown(sw, port) => { p.on_port_status(sw, port, false, now); }
                Step::PortUp(sw, port) => { p.on_port_status(sw, port, true, now); }
                Step::Config => { p.on_config(&f, now); }
            }
            p.on_tick(now);
            if let Some(d) = p.next_deadline() {
                prop_assert!(d > now, "deadline {:?} not after now", now - d);
            }
        }
    }

    /// Whatever a switch punts, the engine neither panics nor answers
    /// garbage with anything but well-formed frames.
    #[test]
    fn arbitrary_punts_never_panic(
        frame in proptest::collection::vec(any::<u8>(), 0..160),
        ethertype in prop_oneof![Just(ETH_ARP), Just(ETH_IPV6), Just(ETH_SLOW), Just(ETH_LLDP), Just(ETH_IPV4), any::<u16>()],
        tagged in any::<bool>(),
        port in 0u32..8,
        reason in 0u8..10,
    ) {
        let now = Instant::now();
        let mut p = Protocols::new(&fabric(), now);
        let mut f = vec![0xff; 12];
        if tagged {
            f.extend([0x81, 0x00, 0x00, 10]);
        }
        f.extend(ethertype.to_be_bytes());
        f.extend(&frame);
        for sw in ["leaf1", "leaf2", "spine1"] {
            for a in p.on_frame(sw, port, reason, &f, now) {
                if let Action::SendPacket(out) = a {
                    prop_assert!(parse_eth(&out.frame).is_some());
                }
            }
            let _ = p.on_frame(sw, port, reason, &frame, now);
        }
    }
}
