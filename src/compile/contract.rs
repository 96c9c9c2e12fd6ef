//! The pipeline contract as a P4Info, transcribed from `p4/fabric.p4`.
//!
//! Two uses: simulated switches (the in-process target) need a P4Info to
//! check writes against even where p4c is not installed, and a test holds
//! this transcription against the P4Info p4c writes (`p4/build/`), so the
//! compiler, this contract and the P4 program cannot drift apart silently.
//! Ids are assigned here in order (with the P4Info kind prefixes); nothing
//! may depend on them — everything resolves names.

use p4i::match_field::MatchType;
use p4runtime_proto::config::v1 as p4i;

use super::names::*;

const MAC: i32 = 48;
const PORT: i32 = 9;
const VLAN: i32 = 12;
const LAG: i32 = 16;
const VRF: i32 = 16;
const LABEL: i32 = 20;
const GROUP: i32 = 16;
const NEXTHOP: i32 = 16;
const REASON: i32 = 8;

type Key = (&'static str, MatchType, i32);
type ActionSpec = (&'static str, &'static [(&'static str, i32)]);

struct TableSpec {
    name: &'static str,
    keys: &'static [Key],
    actions: &'static [&'static str],
    /// Action profile / selector name.
    implementation: Option<&'static str>,
    idle_timeout: bool,
    size: i64,
}

use MatchType::{Exact as EX, Lpm as LPM, Ternary as TE};

const ACTIONS: &[ActionSpec] = &[
    (A_SET_EDGE_PORT, &[(P_LAG_ID, LAG)]),
    (A_SET_FABRIC_PORT, &[]),
    (A_SET_CPU_PORT, &[]),
    ("FabricIngress.port_classify.drop", &[]),
    (A_SET_VLAN, &[(P_VLAN_ID, VLAN), (P_VRF_ID, VRF)]),
    (A_PUNT, &[(P_REASON, REASON)]),
    (A_COPY_TO_CPU, &[(P_REASON, REASON)]),
    (A_DROP_ACL, &[]),
    ("FabricIngress.acl.permit", &[]),
    (A_KNOWN_SOURCE, &[]),
    (A_DROP_UNKNOWN_SOURCE, &[]),
    (A_SET_ROUTED, &[]),
    (
        A_ROUTE_DIRECT,
        &[(P_DMAC, MAC), (P_SMAC, MAC), (P_VLAN_ID, VLAN)],
    ),
    (A_SET_NEXTHOP, &[(P_NEXTHOP_ID, NEXTHOP)]),
    (A_PUNT_GLEAN, &[]),
    (A_PUNT_FOR_ROUTER, &[]),
    ("FabricIngress.routing.drop", &[]),
    (A_TO_PORT, &[(P_PORT, PORT)]),
    (A_TO_LAG, &[(P_LAG_ID, LAG)]),
    (A_TO_LEAF, &[(P_LABEL, LABEL)]),
    ("FabricIngress.bridging.drop", &[]),
    (A_TO_MEMBER, &[(P_PORT, PORT)]),
    (A_LAG_TO_LEAF, &[(P_LABEL, LABEL)]),
    (A_FLOOD, &[(P_GROUP, GROUP)]),
    (A_POP_TO_BRIDGE, &[]),
    (A_FLOOD_POP, &[]),
    (A_FLOOD_TRANSIT, &[(P_GROUP, GROUP)]),
    (A_TRANSIT, &[]),
    ("FabricIngress.fabric.drop", &[]),
    (
        A_TO_FABRIC_PORT,
        &[(P_PORT, PORT), (P_SMAC, MAC), (P_DMAC, MAC)],
    ),
    (A_SET_PORT_LAG, &[(P_LAG_ID, LAG)]),
    (A_PUSH_TAG, &[]),
    (A_POP_TAG, &[]),
    ("FabricEgress.vlan_out.drop", &[]),
    (A_ENCAP, &[(P_SMAC, MAC), (P_DMAC, MAC)]),
];

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: T_PORTS,
        keys: &[(F_INGRESS_PORT, EX, PORT)],
        actions: &[
            A_SET_EDGE_PORT,
            A_SET_FABRIC_PORT,
            A_SET_CPU_PORT,
            "FabricIngress.port_classify.drop",
        ],
        implementation: None,
        idle_timeout: false,
        size: 512,
    },
    TableSpec {
        name: T_VLANS,
        keys: &[
            (F_INGRESS_PORT, EX, PORT),
            (F_VLAN_VALID, EX, 1),
            (F_VLAN_ID, EX, VLAN),
        ],
        actions: &[A_SET_VLAN, "FabricIngress.port_classify.drop"],
        implementation: None,
        idle_timeout: false,
        size: 8192,
    },
    TableSpec {
        name: T_ACL,
        keys: &[
            (F_INGRESS_PORT, TE, PORT),
            (F_ETH_SRC, TE, MAC),
            (F_ETH_DST, TE, MAC),
            (F_ETH_TYPE, TE, 16),
            (F_VLAN_ID, TE, VLAN),
            (F_IP_PROTO, TE, 8),
            ("ipv4_src", TE, 32),
            (F_IPV4_DST, TE, 32),
            ("ipv6_src", TE, 128),
            (F_IPV6_DST, TE, 128),
            ("l4_src_port", TE, 16),
            ("l4_dst_port", TE, 16),
            (F_ICMP_TYPE, TE, 8),
        ],
        actions: &[
            A_PUNT,
            A_COPY_TO_CPU,
            A_DROP_ACL,
            "FabricIngress.acl.permit",
        ],
        implementation: None,
        idle_timeout: false,
        size: 1024,
    },
    TableSpec {
        name: T_SRC_MAC,
        keys: &[
            (F_VLAN_ID, EX, VLAN),
            (F_ETH_SRC, EX, MAC),
            (F_INGRESS_PORT, EX, PORT),
            (F_LAG_ID, EX, LAG),
        ],
        actions: &[A_KNOWN_SOURCE],
        implementation: None,
        idle_timeout: true,
        size: 16384,
    },
    TableSpec {
        name: T_LOCKED_SOURCES,
        keys: &[(F_INGRESS_PORT, EX, PORT), (F_LAG_ID, EX, LAG)],
        actions: &[A_DROP_UNKNOWN_SOURCE],
        implementation: None,
        idle_timeout: false,
        size: 1024,
    },
    TableSpec {
        name: T_ROUTER_MAC,
        keys: &[(F_VLAN_ID, EX, VLAN), (F_ETH_DST, EX, MAC)],
        actions: &[A_SET_ROUTED],
        implementation: None,
        idle_timeout: false,
        size: 4096,
    },
    TableSpec {
        name: T_IPV4,
        keys: &[(F_VRF_ID, EX, VRF), (F_IPV4_DST, LPM, 32)],
        actions: &[
            A_ROUTE_DIRECT,
            A_SET_NEXTHOP,
            A_PUNT_GLEAN,
            A_PUNT_FOR_ROUTER,
            "FabricIngress.routing.drop",
        ],
        implementation: None,
        idle_timeout: false,
        size: 16384,
    },
    TableSpec {
        name: T_IPV6,
        keys: &[(F_VRF_ID, EX, VRF), (F_IPV6_DST, LPM, 128)],
        actions: &[
            A_ROUTE_DIRECT,
            A_SET_NEXTHOP,
            A_PUNT_GLEAN,
            A_PUNT_FOR_ROUTER,
            "FabricIngress.routing.drop",
        ],
        implementation: None,
        idle_timeout: false,
        size: 8192,
    },
    TableSpec {
        name: T_NEXTHOPS,
        keys: &[(F_NEXTHOP_ID, EX, NEXTHOP)],
        actions: &[A_ROUTE_DIRECT],
        implementation: Some(P_ECMP),
        idle_timeout: false,
        size: 4096,
    },
    TableSpec {
        name: T_FDB,
        keys: &[(F_VLAN_ID, EX, VLAN), (F_ETH_DST, EX, MAC)],
        actions: &[
            A_TO_PORT,
            A_TO_LAG,
            A_TO_LEAF,
            "FabricIngress.bridging.drop",
        ],
        implementation: None,
        idle_timeout: false,
        size: 16384,
    },
    TableSpec {
        name: T_LAG_MEMBERS,
        keys: &[(F_LAG_ID, EX, LAG)],
        actions: &[A_TO_MEMBER, A_LAG_TO_LEAF],
        implementation: Some(P_LAG),
        idle_timeout: false,
        size: 1024,
    },
    TableSpec {
        name: T_VLAN_FLOOD,
        keys: &[(F_VLAN_ID, EX, VLAN)],
        actions: &[A_FLOOD],
        implementation: None,
        idle_timeout: false,
        size: 4096,
    },
    TableSpec {
        name: T_MPLS_IN,
        keys: &[(F_LABEL, TE, LABEL)],
        actions: &[
            A_POP_TO_BRIDGE,
            A_FLOOD_POP,
            A_FLOOD_TRANSIT,
            A_TRANSIT,
            "FabricIngress.fabric.drop",
        ],
        implementation: None,
        idle_timeout: false,
        size: 64,
    },
    TableSpec {
        name: T_LABEL_FWD,
        keys: &[(F_LABEL, EX, LABEL)],
        actions: &[A_TO_FABRIC_PORT],
        implementation: Some(P_FABRIC),
        idle_timeout: false,
        size: 4096,
    },
    TableSpec {
        name: T_PORT_LAG,
        keys: &[(F_EGRESS_PORT, EX, PORT)],
        actions: &[A_SET_PORT_LAG],
        implementation: None,
        idle_timeout: false,
        size: 512,
    },
    TableSpec {
        name: T_VLAN_OUT,
        keys: &[(F_EGRESS_PORT, EX, PORT), (F_VLAN_ID, EX, VLAN)],
        actions: &[A_PUSH_TAG, A_POP_TAG, "FabricEgress.vlan_out.drop"],
        implementation: None,
        idle_timeout: false,
        size: 8192,
    },
    TableSpec {
        name: T_FABRIC_PORTS,
        keys: &[(F_EGRESS_PORT, EX, PORT)],
        actions: &[A_ENCAP],
        implementation: None,
        idle_timeout: false,
        size: 512,
    },
];

/// (name, size, max group size)
const SELECTORS: &[(&str, i64, i32)] =
    &[(P_ECMP, 8192, 64), (P_LAG, 4096, 16), (P_FABRIC, 8192, 64)];

fn preamble(id: u32, name: &str) -> Option<p4i::Preamble> {
    let alias = name.rsplit('.').next().unwrap_or(name).to_string();
    Some(p4i::Preamble {
        id,
        name: name.to_string(),
        alias,
        ..Default::default()
    })
}

fn bits(w: i32) -> Option<p4i::P4DataTypeSpec> {
    use p4i::p4_bitstring_like_type_spec::TypeSpec as B;
    Some(p4i::P4DataTypeSpec {
        type_spec: Some(p4i::p4_data_type_spec::TypeSpec::Bitstring(
            p4i::P4BitstringLikeTypeSpec {
                type_spec: Some(B::Bit(p4i::P4BitTypeSpec { bitwidth: w })),
                ..Default::default()
            },
        )),
    })
}

/// The fabric pipeline's P4Info, per the contract.
pub fn fabric_p4info() -> p4i::P4Info {
    let mut info = p4i::P4Info {
        pkg_info: Some(p4i::PkgInfo {
            arch: "v1model".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let action_id = |name: &str| {
        ACTIONS
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| 0x0100_0001 + i as u32)
            .unwrap_or(0)
    };
    let profile_id = |name: &str| {
        SELECTORS
            .iter()
            .position(|(n, _, _)| *n == name)
            .map(|i| 0x1100_0001 + i as u32)
            .unwrap_or(0)
    };
    for (i, (name, params)) in ACTIONS.iter().enumerate() {
        info.actions.push(p4i::Action {
            preamble: preamble(0x0100_0001 + i as u32, name),
            params: params
                .iter()
                .enumerate()
                .map(|(j, (p, w))| p4i::action::Param {
                    id: j as u32 + 1,
                    name: p.to_string(),
                    bitwidth: *w,
                    ..Default::default()
                })
                .collect(),
        });
    }
    for (i, t) in TABLES.iter().enumerate() {
        let id = 0x0200_0001 + i as u32;
        info.tables.push(p4i::Table {
            preamble: preamble(id, t.name),
            match_fields: t
                .keys
                .iter()
                .enumerate()
                .map(|(j, (n, kind, w))| p4i::MatchField {
                    id: j as u32 + 1,
                    name: n.to_string(),
                    bitwidth: *w,
                    r#match: Some(p4i::match_field::Match::MatchType(*kind as i32)),
                    ..Default::default()
                })
                .collect(),
            action_refs: t
                .actions
                .iter()
                .map(|a| p4i::ActionRef {
                    id: action_id(a),
                    ..Default::default()
                })
                .collect(),
            implementation_id: t.implementation.map(profile_id).unwrap_or(0),
            size: t.size,
            idle_timeout_behavior: if t.idle_timeout {
                p4i::table::IdleTimeoutBehavior::NotifyControl as i32
            } else {
                0
            },
            ..Default::default()
        });
    }
    for (i, (name, size, max)) in SELECTORS.iter().enumerate() {
        let table_ids = TABLES
            .iter()
            .enumerate()
            .filter(|(_, t)| t.implementation == Some(*name))
            .map(|(j, _)| 0x0200_0001 + j as u32)
            .collect();
        info.action_profiles.push(p4i::ActionProfile {
            preamble: preamble(0x1100_0001 + i as u32, name),
            table_ids,
            with_selector: true,
            size: *size,
            max_group_size: *max,
            ..Default::default()
        });
    }
    info.meters.push(p4i::Meter {
        preamble: preamble(0x1400_0001, M_PUNT),
        spec: Some(p4i::MeterSpec {
            unit: p4i::meter_spec::Unit::Packets as i32,
            ..Default::default()
        }),
        size: 256,
        ..Default::default()
    });
    let header = |id: u32, name: &str, fields: &[(&str, i32)]| p4i::ControllerPacketMetadata {
        preamble: preamble(id, name),
        metadata: fields
            .iter()
            .enumerate()
            .map(|(j, (n, w))| p4i::controller_packet_metadata::Metadata {
                id: j as u32 + 1,
                name: n.to_string(),
                bitwidth: *w,
                ..Default::default()
            })
            .collect(),
    };
    // Every port ends on a byte boundary (Tofino moves header fields in
    // whole bytes): packet_in is 3 bytes, packet_out 4.
    info.controller_packet_metadata.push(header(
        0x0400_0001,
        "packet_in",
        &[("_pad", 7), ("ingress_port", PORT), ("punt_reason", REASON)],
    ));
    info.controller_packet_metadata.push(header(
        0x0400_0002,
        "packet_out",
        &[
            ("_pad0", 7),
            ("egress_port", PORT),
            ("_pad1", 6),
            ("do_forwarding", 1),
            ("ingress_port", PORT),
        ],
    ));
    info.digests.push(p4i::Digest {
        preamble: preamble(0x1700_0001, D_MAC_LEARN),
        type_spec: Some(p4i::P4DataTypeSpec {
            type_spec: Some(p4i::p4_data_type_spec::TypeSpec::Struct(p4i::P4NamedType {
                name: D_MAC_LEARN.into(),
            })),
        }),
    });
    let members = [
        (F_VLAN_ID, VLAN),
        (F_ETH_SRC, MAC),
        (F_INGRESS_PORT, PORT),
        (F_LAG_ID, LAG),
    ]
    .iter()
    .map(|(n, w)| p4i::p4_struct_type_spec::Member {
        name: n.to_string(),
        type_spec: bits(*w),
    })
    .collect();
    let mut type_info = p4i::P4TypeInfo::default();
    type_info.structs.insert(
        D_MAC_LEARN.into(),
        p4i::P4StructTypeSpec {
            members,
            ..Default::default()
        },
    );
    info.type_info = Some(type_info);
    info
}

/// The P4Runtime width of a translated port (TNA's
/// `@p4runtime_translation("tna/PortId_t", 32) type bit<9> port_t`).
pub const SDN_PORT_WIDTH: i32 = 32;

/// The contract's P4Info as the TNA / T2NA build presents it
/// (docs/pipeline.md, "P4Info differences"): `pkg_info.arch` = `arch`, and
/// every port-valued field (the contract's 9-bit ones: match fields,
/// action parameters, controller headers, digest members) the translated
/// `port_t`, 32 bits. What simulated Tofino switches run where bf-p4c's
/// P4Info for their chip is missing, or fails to load (logged as an error;
/// `simulation_pipeline_for`).
pub fn tna_p4info(arch: &str) -> p4i::P4Info {
    const PORT_TYPE: &str = "port_t";
    let port_type = || {
        Some(p4i::P4NamedType {
            name: PORT_TYPE.into(),
        })
    };
    let mut info = fabric_p4info();
    info.pkg_info = Some(p4i::PkgInfo {
        arch: arch.into(),
        ..Default::default()
    });
    let translate = |bitwidth: &mut i32, type_name: &mut Option<p4i::P4NamedType>| {
        if *bitwidth == PORT {
            *bitwidth = SDN_PORT_WIDTH;
            *type_name = port_type();
        }
    };
    for t in &mut info.tables {
        t.match_fields
            .iter_mut()
            .for_each(|f| translate(&mut f.bitwidth, &mut f.type_name));
    }
    for a in &mut info.actions {
        a.params
            .iter_mut()
            .for_each(|p| translate(&mut p.bitwidth, &mut p.type_name));
    }
    for h in &mut info.controller_packet_metadata {
        h.metadata
            .iter_mut()
            .for_each(|m| translate(&mut m.bitwidth, &mut m.type_name));
    }
    let type_info = info.type_info.get_or_insert_with(Default::default);
    for m in type_info
        .structs
        .values_mut()
        .flat_map(|s| s.members.iter_mut())
        .filter(|m| m.type_spec == bits(PORT))
    {
        m.type_spec = Some(p4i::P4DataTypeSpec {
            type_spec: Some(p4i::p4_data_type_spec::TypeSpec::NewType(
                port_type().expect("named"),
            )),
        });
    }
    type_info.new_types.insert(
        PORT_TYPE.into(),
        p4i::P4NewTypeSpec {
            representation: Some(p4i::p4_new_type_spec::Representation::TranslatedType(
                p4i::P4NewTypeTranslation {
                    uri: "tna/PortId_t".into(),
                    sdn_type: Some(p4i::p4_new_type_translation::SdnType::SdnBitwidth(
                        SDN_PORT_WIDTH,
                    )),
                },
            )),
            ..Default::default()
        },
    );
    info
}

/// The fabric pipeline for simulated switches of architecture `arch`
/// without their target's device config: for `tna` / `t2na` bf-p4c's
/// P4Info where `dir` holds it (`p4/compile.sh tna|t2na`), else the TNA
/// form of the contract's P4Info (no device config either way); for
/// v1model `simulation_pipeline`. The flag says the contract stands in.
pub fn simulation_pipeline_for(dir: &std::path::Path, arch: &str) -> (crate::p4rt::Pipeline, bool) {
    if arch == "v1model" {
        return simulation_pipeline(dir);
    }
    if let Some(path) = crate::target::tofino::compiled_p4info(dir, arch) {
        match crate::p4rt::P4InfoRegistry::load(&path) {
            Ok(reg) => return (crate::p4rt::Pipeline::new("fabric", reg, Vec::new()), false),
            // Loud: a checked-in P4Info the registry rejects is a bug.
            Err(e) => tracing::error!(
                path = %path.display(),
                error = %e,
                "bf-p4c's P4Info does not load; simulated switches use the contract's TNA form"
            ),
        }
    }
    let reg = crate::p4rt::P4InfoRegistry::new(tna_p4info(arch))
        .expect("the TNA form of the contract P4Info is well formed (tested)");
    (crate::p4rt::Pipeline::new("fabric", reg, Vec::new()), true)
}

/// The fabric pipeline for simulated switches: the compiled one from `dir`
/// where it exists, else the contract's P4Info with no device config
/// (enough for the in-process target, never for bmv2). The flag says
/// which.
pub fn simulation_pipeline(dir: &std::path::Path) -> (crate::p4rt::Pipeline, bool) {
    match crate::p4rt::Pipeline::load(dir, "fabric") {
        Ok(p) => (p, false),
        Err(_) => {
            let reg = crate::p4rt::P4InfoRegistry::new(fabric_p4info())
                .expect("the contract P4Info is well formed (tested)");
            (crate::p4rt::Pipeline::new("fabric", reg, Vec::new()), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::P4InfoRegistry;

    #[test]
    fn contract_p4info_is_well_formed() {
        let reg = P4InfoRegistry::new(fabric_p4info()).expect("registry");
        assert_eq!(reg.tables().len(), TABLES.len());
        for t in TABLES {
            let info = reg.table(t.name).expect("table");
            for a in t.actions {
                assert!(
                    info.entry_actions
                        .contains(&reg.action(a).expect("action").id),
                    "{a}"
                );
            }
        }
        assert_eq!(
            reg.packet_metadata("packet_in")
                .expect("packet_in")
                .fields
                .len(),
            3
        );
        assert_eq!(reg.digest(D_MAC_LEARN).expect("digest").fields.len(), 4);
    }

    /// The TNA form loads (the digest's translated port member included)
    /// with 32-bit ports, and takes the compiler's entities with Stratum's
    /// 32-bit CPU port id.
    #[test]
    fn tna_form_takes_translated_ports() {
        for arch in ["tna", "t2na"] {
            let reg = P4InfoRegistry::new(tna_p4info(arch)).expect("registry");
            let d = reg.digest(D_MAC_LEARN).expect("digest");
            let port = d
                .fields
                .iter()
                .find(|f| f.name == F_INGRESS_PORT)
                .expect("port");
            assert_eq!(port.bitwidth, 32);
            let ports = reg.table(T_PORTS).expect("ports");
            assert_eq!(ports.field(F_INGRESS_PORT).expect("field").bitwidth, 32);
            let (mut fabric, hosts) = crate::compile::sample::large(1, 2, 20, 4);
            for sw in fabric.switches.values_mut() {
                sw.target = crate::config::Target::Tofino2;
                sw.device_config = Some(crate::config::DeviceConfigFormat::StratumBfrt);
            }
            let topo = crate::topo::Topology::build(&fabric, &Default::default(), None);
            let compiled = crate::compile::compile(&fabric, &topo, &hosts);
            for e in compiled.values().flat_map(|es| es.values()) {
                if let Err(err) = reg.encode_entity(e, false) {
                    panic!("{e:?}: {err}");
                }
            }
        }
    }

    /// bf-p4c's checked-in P4Infos load into the registry (translated
    /// port types included), so simulated Tofino switches run them rather
    /// than the contract's stand-in, and take every compiled entity.
    #[test]
    fn compiled_tofino_p4info_loads_and_takes_the_entities() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("p4/build");
        for arch in ["tna", "t2na"] {
            let Some(path) = crate::target::tofino::compiled_p4info(&dir, arch) else {
                println!(
                    "SKIPPED: no {arch} build in {} (p4/compile.sh {arch})",
                    dir.display()
                );
                continue;
            };
            let reg = P4InfoRegistry::load(&path).unwrap_or_else(|e| panic!("{arch}: {e}"));
            assert_eq!(
                reg.table(T_PORTS)
                    .expect("ports")
                    .field(F_INGRESS_PORT)
                    .expect("f")
                    .bitwidth,
                32
            );
            let (_, stand_in) = simulation_pipeline_for(&dir, arch);
            assert!(!stand_in, "{arch}: fell back to the contract");
            let (fabric, hosts) = crate::compile::sample::large(1, 2, 20, 4);
            let topo = crate::topo::Topology::build(&fabric, &Default::default(), None);
            for e in crate::compile::compile(&fabric, &topo, &hosts)
                .values()
                .flat_map(|es| es.values())
            {
                if let Err(err) = reg.encode_entity(e, false) {
                    panic!("{arch}: {e:?}: {err}");
                }
            }
        }
    }

    /// Every entity the compiler produces for the sample fabrics can be
    /// written to a switch running the pipeline.
    #[test]
    fn compiled_entities_fit_the_contract() {
        let reg = P4InfoRegistry::new(fabric_p4info()).expect("registry");
        let (fabric, hosts) = crate::compile::sample::large(2, 4, 200, 50);
        let topo = crate::topo::Topology::build(&fabric, &Default::default(), None);
        let compiled = crate::compile::compile(&fabric, &topo, &hosts);
        let mut errors = std::collections::BTreeSet::new();
        for entities in compiled.values() {
            for e in entities.values() {
                if let Err(err) = reg.encode_entity(e, false) {
                    errors.insert(err.to_string());
                }
            }
        }
        assert!(
            errors.is_empty(),
            "entities that do not fit the pipeline:\n{}",
            errors.into_iter().collect::<Vec<_>>().join("\n")
        );
    }
}
