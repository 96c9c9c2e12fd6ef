//! `Event::decode` against a P4Info with the pipeline's packet I/O,
//! learning digest and `src_mac` table (names as in docs/pipeline.md).

use p4runtime_proto::v1 as p4;

use super::*;
use crate::p4rt::codec::encode_value;
use crate::p4rt::{ActionCall, StreamEvent, TableAction, TableEntry};

const P4INFO: &str = r#"
tables {
  preamble { id: 33554433 name: "FabricIngress.learning.src_mac" alias: "src_mac" }
  match_fields { id: 1 name: "vlan_id" bitwidth: 12 match_type: EXACT }
  match_fields { id: 2 name: "eth_src" bitwidth: 48 match_type: EXACT }
  match_fields { id: 3 name: "ingress_port" bitwidth: 9 match_type: EXACT }
  match_fields { id: 4 name: "lag_id" bitwidth: 16 match_type: EXACT }
  action_refs { id: 16777217 }
  size: 1024
  idle_timeout_behavior: NOTIFY_CONTROL
}
actions { preamble { id: 16777217 name: "FabricIngress.learning.known_source" alias: "known_source" } }
controller_packet_metadata {
  preamble { id: 67146229 name: "packet_in" alias: "packet_in" }
  metadata { id: 1 name: "_pad" bitwidth: 7 }
  metadata { id: 2 name: "ingress_port" bitwidth: 9 }
  metadata { id: 3 name: "punt_reason" bitwidth: 8 }
}
controller_packet_metadata {
  preamble { id: 67121543 name: "packet_out" alias: "packet_out" }
  metadata { id: 1 name: "_pad0" bitwidth: 7 }
  metadata { id: 2 name: "egress_port" bitwidth: 9 }
  metadata { id: 3 name: "_pad1" bitwidth: 6 }
  metadata { id: 4 name: "do_forwarding" bitwidth: 1 }
  metadata { id: 5 name: "ingress_port" bitwidth: 9 }
}
digests {
  preamble { id: 385875969 name: "mac_learn_digest_t" alias: "mac_learn_digest_t" }
  type_spec { struct { name: "mac_learn_digest_t" } }
}
type_info {
  structs {
    key: "mac_learn_digest_t"
    value {
      members { name: "vlan_id" type_spec { bitstring { bit { bitwidth: 12 } } } }
      members { name: "eth_src" type_spec { bitstring { bit { bitwidth: 48 } } } }
      members { name: "ingress_port" type_spec { bitstring { bit { bitwidth: 9 } } } }
      members { name: "lag_id" type_spec { bitstring { bit { bitwidth: 16 } } } }
    }
  }
}
"#;

fn reg() -> P4InfoRegistry {
    P4InfoRegistry::from_text(P4INFO).unwrap()
}

fn bits(v: u128, w: u32) -> p4::P4Data {
    p4::P4Data {
        data: Some(p4::p4_data::Data::Bitstring(
            encode_value("t", v, w).unwrap(),
        )),
    }
}

#[test]
fn packet_in_decodes_and_packet_out_encodes() {
    let r = reg();
    let ev = StreamEvent::PacketIn(p4::PacketIn {
        payload: vec![1, 2, 3],
        metadata: vec![
            p4::PacketMetadata {
                metadata_id: 1,
                value: encode_value("p", 0, 7).unwrap(),
            },
            p4::PacketMetadata {
                metadata_id: 2,
                value: encode_value("p", 5, 9).unwrap(),
            },
            p4::PacketMetadata {
                metadata_id: 3,
                value: encode_value("p", 3, 8).unwrap(),
            },
        ],
    });
    assert_eq!(
        Event::decode(&r, &ev).unwrap(),
        Some(Event::PacketIn {
            ingress_port: 5,
            punt_reason: punt::ARP,
            payload: vec![1, 2, 3],
        })
    );
    // What the engine sends maps onto the packet_out header by name.
    let out = PacketOut::direct(&PortRef::new("leaf1", 7), vec![9]);
    let po = r.packet_out(out.frame.clone(), &out.metadata()).unwrap();
    assert_eq!(po.payload, vec![9]);
    let by_id: Vec<(u32, Vec<u8>)> = po
        .metadata
        .iter()
        .map(|m| (m.metadata_id, m.value.clone()))
        .collect();
    let v = |value, width| encode_value("p", value, width).unwrap();
    assert_eq!(
        by_id,
        [
            (1, v(0, 7)), // _pad0
            (2, v(7, 9)), // egress_port
            (3, v(0, 6)), // _pad1
            (4, v(0, 1)), // do_forwarding
            (5, v(0, 9)), // ingress_port
        ]
    );
}

#[test]
fn learning_digest_and_idle_timeout_decode() {
    let r = reg();
    let member = |vlan, mac, port, lag| p4::P4Data {
        data: Some(p4::p4_data::Data::Struct(p4::P4StructLike {
            members: vec![bits(vlan, 12), bits(mac, 48), bits(port, 9), bits(lag, 16)],
        })),
    };
    let ev = StreamEvent::Digest(p4::DigestList {
        digest_id: 385875969,
        list_id: 1,
        data: vec![
            member(10, 0x0200_0000_0005, 3, 0),
            member(10, 0x0200_0000_0006, 5, 7),
        ],
        timestamp: 0,
    });
    let Some(Event::Learn(rows)) = Event::decode(&r, &ev).unwrap() else {
        panic!("not a learn event");
    };
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[1].ingress_port, rows[1].lag_id), (5, 7));

    let entry = TableEntry {
        key: TableKey::new(SRC_MAC_TABLE)
            .exact("vlan_id", 10u16)
            .exact("eth_src", 0x0200_0000_0006u64)
            .exact("ingress_port", 0u32)
            .exact("lag_id", 7u16),
        action: TableAction::Direct(ActionCall::new("FabricIngress.learning.known_source")),
        idle_timeout_ns: 0,
    };
    let ev = StreamEvent::IdleTimeout(p4::IdleTimeoutNotification {
        table_entry: vec![r.encode_table_entry(&entry, true).unwrap()],
        timestamp: 0,
    });
    assert_eq!(
        Event::decode(&r, &ev).unwrap(),
        Some(Event::IdleTimeout(vec![IdleEntry {
            vlan: 10,
            mac: mac("02:00:00:00:00:06"),
            ingress_port: 0,
            lag_id: 7,
        }]))
    );
    // End to end through the engine: learned on the LAG, aged out.
    let t0 = Instant::now();
    let mut p = Protocols::new(&fabric(), t0);
    let learn = Event::Learn(rows);
    assert_eq!(p.on_event("leaf1", &learn, t0), vec![Action::HostsChanged]);
    assert_eq!(p.learned_hosts().len(), 2);
    let idle = Event::decode(&r, &ev).unwrap().unwrap();
    assert_eq!(p.on_event("leaf1", &idle, t0), vec![Action::HostsChanged]);
    assert_eq!(p.learned_hosts().len(), 1);
}

/// A switch with a port map: what it reports comes to the protocols on
/// configured ports (device 132 is configured 1, 140 is 2), what they
/// send goes out on device ports; a device port outside the map drops the
/// packet-in, or the one learn row or idle entry, and is returned.
#[test]
fn switch_events_and_packet_outs_through_a_port_map() {
    let to_config = |p: PortNum| {
        [(132, 1), (140, 2)]
            .into_iter()
            .find(|(d, _)| *d == p)
            .map(|(_, c)| c)
    };
    let pin = |ingress_port| Event::PacketIn {
        ingress_port,
        punt_reason: punt::DISCOVERY,
        payload: vec![1],
    };
    assert_eq!(pin(140).map_ports(to_config), (Some(pin(2)), vec![]));
    assert_eq!(pin(7).map_ports(to_config), (None, vec![7]));
    let learn = |ingress_port, lag_id| MacLearn {
        vlan: 10,
        mac: mac("02:00:00:00:00:06"),
        ingress_port,
        lag_id,
    };
    // Port 0 beside a LAG id is the LAG's.
    let rows = Event::Learn(vec![learn(132, 0), learn(9, 0), learn(0, 7)]);
    assert_eq!(
        rows.map_ports(to_config),
        (Some(Event::Learn(vec![learn(1, 0), learn(0, 7)])), vec![9])
    );
    assert_eq!(
        Event::Learn(vec![learn(0, 0)]).map_ports(to_config),
        (None, vec![0])
    );
    let idle = |ingress_port| IdleEntry {
        vlan: 10,
        mac: mac("02:00:00:00:00:06"),
        ingress_port,
        lag_id: 0,
    };
    assert_eq!(
        Event::IdleTimeout(vec![idle(140), idle(3)]).map_ports(to_config),
        (Some(Event::IdleTimeout(vec![idle(2)])), vec![3])
    );
    let to_device = |p: PortNum| match p {
        1 => Ok(132),
        2 => Ok(140),
        p => Err(p),
    };
    let out = PacketOut::direct(&PortRef::new("leaf1", 2), vec![9]);
    let dev = out.clone().map_ports(to_device).expect("mapped");
    assert_eq!((dev.egress_port, dev.ingress_port), (140, 0));
    let fwd = PacketOut {
        do_forwarding: true,
        ingress_port: 1,
        ..out.clone()
    };
    let dev = fwd.map_ports(to_device).expect("mapped");
    assert_eq!((dev.egress_port, dev.ingress_port), (140, 132));
    let lost = PacketOut::direct(&PortRef::new("leaf1", 5), vec![9]);
    assert_eq!(lost.map_ports(to_device), Err(5));
}
