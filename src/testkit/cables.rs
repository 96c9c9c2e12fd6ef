//! Frames between in-process switches: the P4Runtime messages a switch
//! would send for a punted frame or a learn digest, and "cables" that
//! carry discovery probes from one simulated switch's packet-out to the
//! far end's packet-in, so discovery finds links without bmv2.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p4runtime_proto::v1 as p4;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::sim::SimSwitch;
use crate::compile::names::reason;
use crate::config::PortRef;
use crate::p4rt::codec::encode_value;
use crate::p4rt::P4InfoRegistry;

/// The id of the packet-out header's `egress_port` field.
pub fn egress_port_id(reg: &P4InfoRegistry) -> Option<u32> {
    reg.packet_metadata("packet_out")
        .ok()?
        .fields
        .iter()
        .find(|f| f.name == "egress_port")
        .map(|f| f.id)
}

/// The port a packet-out leaves by.
pub fn egress_port(out: &p4::PacketOut, egress_id: u32) -> Option<u32> {
    out.metadata
        .iter()
        .find(|m| m.metadata_id == egress_id)
        .map(|m| m.value.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
}

/// A PacketIn as the switch would send it for `payload` punted from
/// `port` for `punt_reason`.
pub fn packet_in(
    reg: &P4InfoRegistry,
    payload: Vec<u8>,
    port: u32,
    punt_reason: u8,
) -> p4::PacketIn {
    let metadata = reg
        .packet_metadata("packet_in")
        .ok()
        .map(|info| {
            info.fields
                .iter()
                .filter_map(|f| {
                    let v = match f.name {
                        "ingress_port" => u128::from(port),
                        "punt_reason" => u128::from(punt_reason),
                        _ => 0,
                    };
                    Some(p4::PacketMetadata {
                        metadata_id: f.id,
                        value: encode_value(f.name, v, f.bitwidth).ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    p4::PacketIn { payload, metadata }
}

/// A learn digest list of one row: source `mac` seen on `port` in `vlan`
/// (LAG id 0: a plain edge port).
pub fn learn_digest(
    reg: &P4InfoRegistry,
    vlan: u16,
    mac: u64,
    port: u32,
    list_id: u64,
) -> Option<p4::DigestList> {
    let info = reg.digest(crate::protocols::LEARN_DIGEST).ok()?;
    let members = info
        .fields
        .iter()
        .map(|f| {
            let v = match f.name {
                "vlan_id" => u128::from(vlan),
                "eth_src" => u128::from(mac),
                "ingress_port" => u128::from(port),
                _ => 0,
            };
            let bits = encode_value(f.name, v, f.bitwidth).ok()?;
            Some(p4::P4Data {
                data: Some(p4::p4_data::Data::Bitstring(bits)),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(p4::DigestList {
        digest_id: info.id,
        list_id,
        data: vec![p4::P4Data {
            data: Some(p4::p4_data::Data::Struct(p4::P4StructLike { members })),
        }],
        timestamp: 0,
    })
}

/// Carries every discovery probe (LLDP) a switch sends out of one end of
/// a cable to the other end as a DISCOVERY packet-in, every 10 ms. Other
/// packet-outs go to `others` (with the switch and when they were seen)
/// if given, else are dropped.
pub fn wire(
    targets: Arc<Vec<(String, SimSwitch)>>,
    reg: Arc<P4InfoRegistry>,
    cables: Vec<(PortRef, PortRef)>,
    others: Option<mpsc::UnboundedSender<(String, p4::PacketOut, Instant)>>,
) -> JoinHandle<()> {
    let far = move |sw: &str, port: u32| -> Option<PortRef> {
        cables.iter().find_map(|(a, b)| {
            if a.switch == sw && a.port == port {
                Some(b.clone())
            } else if b.switch == sw && b.port == port {
                Some(a.clone())
            } else {
                None
            }
        })
    };
    let egress_id = egress_port_id(&reg);
    tokio::spawn(async move {
        loop {
            for (name, t) in targets.iter() {
                for out in t.take_packet_outs() {
                    let is_probe = out.payload.get(12..14) == Some(&[0x88, 0xcc][..]);
                    let dest = egress_id
                        .and_then(|id| egress_port(&out, id))
                        .and_then(|port| far(name, port));
                    match (is_probe, dest) {
                        (true, Some(to)) => {
                            if let Some((_, t)) = targets.iter().find(|(n, _)| *n == to.switch) {
                                t.send_to_primary(p4::stream_message_response::Update::Packet(
                                    packet_in(
                                        &reg,
                                        out.payload.clone(),
                                        to.port,
                                        reason::DISCOVERY,
                                    ),
                                ));
                            }
                        }
                        (true, None) => {}
                        (false, _) => {
                            if let Some(tx) = &others {
                                let _ = tx.send((name.clone(), out, Instant::now()));
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}
