//! The P4Info of each compiled build of the fabric pipeline against the
//! contract the compiler is written for (`compile::contract`): every table,
//! match field (kind and width), action, parameter, selector, digest field
//! and controller header field the compiler uses must exist with the same
//! shape. The builds differ only where docs/pipeline.md ("P4Info
//! differences from the v1model build") says: on Tofino and Tofino 2 every
//! port-valued field is the P4Runtime-translated `port_t` (32 bits).
//! Sizes and ids are not compared (they are per target).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use p4fabric::compile::contract::fabric_p4info;
use p4fabric::p4rt::p4info::parse_text;
use p4runtime_proto::config::v1 as p4i;

/// Width of a port in the contract (v1model's `port_t`).
const PORT_WIDTH: i32 = 9;
/// Width of a translated port in P4Runtime (`@p4runtime_translation(
/// "tna/PortId_t", 32)` on `port_t`).
const SDN_PORT_WIDTH: i32 = 32;
const PORT_TYPE: &str = "port_t";
const PORT_URI: &str = "tna/PortId_t";

/// One compiled build and what its P4Info may do differently.
struct Build {
    name: &'static str,
    /// P4Info text file, relative to the repository root.
    p4info: &'static str,
    /// `pkg_info.arch` (compared ignoring case).
    arch: &'static str,
    translated_ports: bool,
}

const V1MODEL: Build = Build {
    name: "v1model",
    p4info: "p4/build/fabric.p4info.txt",
    arch: "v1model",
    translated_ports: false,
};
const TOFINO: Build = Build {
    name: "tofino",
    p4info: "p4/build/tofino/p4info.txt",
    arch: "tna",
    translated_ports: true,
};
const TOFINO2: Build = Build {
    name: "tofino2",
    p4info: "p4/build/tofino2/p4info.txt",
    arch: "t2na",
    translated_ports: true,
};

impl Build {
    /// The width a field of the contract's width `w` has in this build.
    fn width(&self, w: i32) -> i32 {
        if self.translated_ports && w == PORT_WIDTH {
            SDN_PORT_WIDTH
        } else {
            w
        }
    }

    /// A port field of this build must name the translated type.
    fn check_type(
        &self,
        what: &str,
        contract_width: i32,
        type_name: Option<&p4i::P4NamedType>,
        problems: &mut Vec<String>,
    ) {
        if self.translated_ports && contract_width == PORT_WIDTH {
            let name = type_name.map(|t| t.name.as_str());
            if name != Some(PORT_TYPE) {
                problems.push(format!("{what}: type {name:?}, want {PORT_TYPE:?}"));
            }
        }
    }
}

fn name(p: &Option<p4i::Preamble>) -> &str {
    p.as_ref().map(|p| p.name.as_str()).unwrap_or("")
}

fn bit_width(spec: &Option<p4i::P4DataTypeSpec>, info: &p4i::P4Info) -> Option<i32> {
    use p4i::p4_data_type_spec::TypeSpec;
    match spec.as_ref()?.type_spec.as_ref()? {
        TypeSpec::Bitstring(b) => match b.type_spec.as_ref()? {
            p4i::p4_bitstring_like_type_spec::TypeSpec::Bit(bit) => Some(bit.bitwidth),
            _ => None,
        },
        TypeSpec::NewType(n) => {
            let t = info.type_info.as_ref()?.new_types.get(&n.name)?;
            match t.representation.as_ref()? {
                p4i::p4_new_type_spec::Representation::TranslatedType(tr) => match tr.sdn_type? {
                    p4i::p4_new_type_translation::SdnType::SdnBitwidth(w) => Some(w),
                    p4i::p4_new_type_translation::SdnType::SdnString(_) => None,
                },
                p4i::p4_new_type_spec::Representation::OriginalType(o) => {
                    bit_width(&Some(o.clone()), info)
                }
            }
        }
        _ => None,
    }
}

/// (member name, width) of a digest's struct.
fn digest_members(d: &p4i::Digest, info: &p4i::P4Info) -> Option<Vec<(String, Option<i32>)>> {
    use p4i::p4_data_type_spec::TypeSpec;
    let TypeSpec::Struct(s) = d.type_spec.as_ref()?.type_spec.as_ref()? else {
        return None;
    };
    let spec = info.type_info.as_ref()?.structs.get(&s.name)?;
    Some(
        spec.members
            .iter()
            .map(|m| (m.name.clone(), bit_width(&m.type_spec, info)))
            .collect(),
    )
}

/// Everything in which `compiled` differs from the contract beyond what
/// `build` allows; empty when it matches.
fn problems(compiled: &p4i::P4Info, build: &Build) -> Vec<String> {
    let contract = fabric_p4info();
    let mut problems = Vec::new();

    let arch = compiled
        .pkg_info
        .as_ref()
        .map(|p| p.arch.as_str())
        .unwrap_or("");
    if !arch.eq_ignore_ascii_case(build.arch) {
        problems.push(format!("pkg_info.arch {arch:?}, want {:?}", build.arch));
    }
    if build.translated_ports {
        let translation = compiled
            .type_info
            .as_ref()
            .and_then(|t| t.new_types.get(PORT_TYPE))
            .and_then(|t| t.representation.as_ref());
        match translation {
            Some(p4i::p4_new_type_spec::Representation::TranslatedType(tr))
                if tr.uri == PORT_URI
                    && tr.sdn_type
                        == Some(p4i::p4_new_type_translation::SdnType::SdnBitwidth(
                            SDN_PORT_WIDTH,
                        )) => {}
            other => problems.push(format!(
                "type {PORT_TYPE}: {other:?}, want translated {PORT_URI:?} to {SDN_PORT_WIDTH} bits"
            )),
        }
    }

    let compiled_actions: HashMap<u32, &p4i::Action> = compiled
        .actions
        .iter()
        .map(|a| (a.preamble.as_ref().map(|p| p.id).unwrap_or(0), a))
        .collect();
    let contract_action_name: HashMap<u32, &str> = contract
        .actions
        .iter()
        .map(|a| {
            (
                a.preamble.as_ref().map(|p| p.id).unwrap_or(0),
                name(&a.preamble),
            )
        })
        .collect();

    for t in &contract.tables {
        let tname = name(&t.preamble);
        let Some(c) = compiled.tables.iter().find(|c| name(&c.preamble) == tname) else {
            problems.push(format!("table {tname} missing"));
            continue;
        };
        for f in &t.match_fields {
            let what = format!("{tname}.{}", f.name);
            match c.match_fields.iter().find(|cf| cf.name == f.name) {
                Some(cf) => {
                    if cf.bitwidth != build.width(f.bitwidth) || cf.r#match != f.r#match {
                        problems.push(format!(
                            "{what}: {:?}/{} bits, want {:?}/{}",
                            cf.r#match,
                            cf.bitwidth,
                            f.r#match,
                            build.width(f.bitwidth)
                        ));
                    }
                    build.check_type(&what, f.bitwidth, cf.type_name.as_ref(), &mut problems);
                }
                None => problems.push(format!("{what} missing")),
            }
        }
        if c.match_fields.len() != t.match_fields.len() {
            problems.push(format!(
                "{tname}: {} match fields, contract {}",
                c.match_fields.len(),
                t.match_fields.len()
            ));
        }
        for r in &t.action_refs {
            let aname = contract_action_name.get(&r.id).copied().unwrap_or("?");
            let allowed = c.action_refs.iter().any(|cr| {
                cr.scope != p4i::action_ref::Scope::DefaultOnly as i32
                    && compiled_actions
                        .get(&cr.id)
                        .is_some_and(|a| name(&a.preamble) == aname)
            });
            if !allowed {
                problems.push(format!("{tname}: action {aname} not allowed"));
            }
        }
        if (c.idle_timeout_behavior != 0) != (t.idle_timeout_behavior != 0) {
            problems.push(format!("{tname}: idle timeout support differs"));
        }
    }

    for a in &contract.actions {
        let aname = name(&a.preamble);
        let Some(ca) = compiled.actions.iter().find(|c| name(&c.preamble) == aname) else {
            problems.push(format!("action {aname} missing"));
            continue;
        };
        let want: Vec<(&str, i32)> = a
            .params
            .iter()
            .map(|p| (p.name.as_str(), build.width(p.bitwidth)))
            .collect();
        let have: Vec<(&str, i32)> = ca
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.bitwidth))
            .collect();
        if want != have {
            problems.push(format!("action {aname}: params {have:?}, want {want:?}"));
        }
        for (p, cp) in a.params.iter().zip(&ca.params) {
            let what = format!("{aname}({})", p.name);
            build.check_type(&what, p.bitwidth, cp.type_name.as_ref(), &mut problems);
        }
    }

    for p in &contract.action_profiles {
        let pname = name(&p.preamble);
        match compiled
            .action_profiles
            .iter()
            .find(|c| name(&c.preamble) == pname)
        {
            Some(cp) if cp.with_selector == p.with_selector => {}
            _ => problems.push(format!("selector {pname} missing or different")),
        }
    }

    for h in &contract.controller_packet_metadata {
        let hname = name(&h.preamble);
        let want: Vec<(&str, i32)> = h
            .metadata
            .iter()
            .map(|m| (m.name.as_str(), build.width(m.bitwidth)))
            .collect();
        match compiled
            .controller_packet_metadata
            .iter()
            .find(|c| name(&c.preamble) == hname)
        {
            Some(ch) => {
                let have: Vec<(&str, i32)> = ch
                    .metadata
                    .iter()
                    .map(|m| (m.name.as_str(), m.bitwidth))
                    .collect();
                if have != want {
                    problems.push(format!("{hname}: {have:?}, want {want:?}"));
                }
                for (m, cm) in h.metadata.iter().zip(&ch.metadata) {
                    let what = format!("{hname}.{}", m.name);
                    build.check_type(&what, m.bitwidth, cm.type_name.as_ref(), &mut problems);
                }
            }
            None => problems.push(format!("{hname} header missing")),
        }
    }

    for m in &contract.meters {
        let mname = name(&m.preamble);
        let unit = |m: &p4i::Meter| m.spec.as_ref().map(|s| s.unit);
        match compiled.meters.iter().find(|c| name(&c.preamble) == mname) {
            Some(cm) if unit(cm) == unit(m) => {}
            _ => problems.push(format!("meter {mname} missing or of another unit")),
        }
    }

    // Nothing beyond the contract: no Tofino-specific `externs` (bf-p4c
    // without --p4runtime-force-std-externs), no other tables, selectors,
    // meters, digests, controller headers or entity kinds. NoAction is the
    // one extra action p4c always lists.
    let names = |v: Vec<&Option<p4i::Preamble>>| -> Vec<String> {
        v.into_iter().map(|p| name(p).to_string()).collect()
    };
    let kinds = [
        (
            "table",
            names(compiled.tables.iter().map(|e| &e.preamble).collect()),
            names(contract.tables.iter().map(|e| &e.preamble).collect()),
        ),
        (
            "action",
            names(compiled.actions.iter().map(|e| &e.preamble).collect()),
            names(contract.actions.iter().map(|e| &e.preamble).collect()),
        ),
        (
            "action profile",
            names(
                compiled
                    .action_profiles
                    .iter()
                    .map(|e| &e.preamble)
                    .collect(),
            ),
            names(
                contract
                    .action_profiles
                    .iter()
                    .map(|e| &e.preamble)
                    .collect(),
            ),
        ),
        (
            "meter",
            names(compiled.meters.iter().map(|e| &e.preamble).collect()),
            names(contract.meters.iter().map(|e| &e.preamble).collect()),
        ),
        (
            "digest",
            names(compiled.digests.iter().map(|e| &e.preamble).collect()),
            names(contract.digests.iter().map(|e| &e.preamble).collect()),
        ),
        (
            "controller header",
            names(
                compiled
                    .controller_packet_metadata
                    .iter()
                    .map(|e| &e.preamble)
                    .collect(),
            ),
            names(
                contract
                    .controller_packet_metadata
                    .iter()
                    .map(|e| &e.preamble)
                    .collect(),
            ),
        ),
    ];
    for (kind, have, want) in kinds {
        for h in have {
            let always_listed = kind == "action" && h == "NoAction";
            if !always_listed && !want.contains(&h) {
                problems.push(format!("{kind} {h} is not in the contract"));
            }
        }
    }
    // bf-p4c always describes the ingress parser's port-metadata block
    // (`PortMetadata`, the instance `FabricIngressParser.$PORT_METADATA`),
    // even though the pipeline skips the block and nothing writes it: the
    // one extern a Tofino build may have (docs/pipeline.md, item 9).
    let port_metadata = |e: &p4i::Extern| {
        build.translated_ports
            && e.extern_type_name == "PortMetadata"
            && e.instances.len() == 1
            && name(&e.instances[0].preamble) == "FabricIngressParser.$PORT_METADATA"
    };
    let externs = compiled
        .externs
        .iter()
        .filter(|e| !port_metadata(e))
        .count();
    for (kind, n) in [
        ("extern", externs),
        ("counter", compiled.counters.len()),
        ("direct counter", compiled.direct_counters.len()),
        ("direct meter", compiled.direct_meters.len()),
        ("register", compiled.registers.len()),
        ("value set", compiled.value_sets.len()),
    ] {
        if n != 0 {
            problems.push(format!("{n} {kind}(s), the contract has none"));
        }
    }

    for d in &contract.digests {
        let dname = name(&d.preamble);
        let want: Option<Vec<(String, Option<i32>)>> = digest_members(d, &contract).map(|m| {
            m.into_iter()
                .map(|(n, w)| (n, w.map(|w| build.width(w))))
                .collect()
        });
        match compiled.digests.iter().find(|c| name(&c.preamble) == dname) {
            Some(cd) => {
                let have = digest_members(cd, compiled);
                if have != want {
                    problems.push(format!("digest {dname}: {have:?}, want {want:?}"));
                }
            }
            None => problems.push(format!("digest {dname} missing")),
        }
    }
    problems
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Checks the checked-in P4Info of `build`; SKIPPED where it is not compiled.
fn check_compiled(build: &Build) {
    let path = root().join(build.p4info);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {} P4Info not compiled ({}: {e}); run p4/compile.sh where its compiler exists",
                build.name,
                build.p4info
            );
            return;
        }
    };
    let compiled = parse_text(&text).unwrap_or_else(|e| panic!("{}: {e}", build.p4info));
    let problems = problems(&compiled, build);
    assert!(
        problems.is_empty(),
        "{} ({}) differs from the contract:\n{}",
        build.name,
        build.p4info,
        problems.join("\n")
    );
}

#[test]
fn compiled_pipeline_matches_the_contract() {
    check_compiled(&V1MODEL);
}

#[test]
fn tofino_pipeline_matches_the_contract() {
    check_compiled(&TOFINO);
}

#[test]
fn tofino2_pipeline_matches_the_contract() {
    check_compiled(&TOFINO2);
}

/// The contract P4Info as a TNA build should present it: ports translated.
fn tna_form(arch: &str) -> p4i::P4Info {
    let mut info = fabric_p4info();
    let port_type = || {
        Some(p4i::P4NamedType {
            name: PORT_TYPE.into(),
        })
    };
    info.pkg_info = Some(p4i::PkgInfo {
        arch: arch.into(),
        ..Default::default()
    });
    for t in &mut info.tables {
        for f in t
            .match_fields
            .iter_mut()
            .filter(|f| f.bitwidth == PORT_WIDTH)
        {
            f.bitwidth = SDN_PORT_WIDTH;
            f.type_name = port_type();
        }
    }
    for a in &mut info.actions {
        for p in a.params.iter_mut().filter(|p| p.bitwidth == PORT_WIDTH) {
            p.bitwidth = SDN_PORT_WIDTH;
            p.type_name = port_type();
        }
    }
    for h in &mut info.controller_packet_metadata {
        for m in h.metadata.iter_mut().filter(|m| m.bitwidth == PORT_WIDTH) {
            m.bitwidth = SDN_PORT_WIDTH;
            m.type_name = port_type();
        }
    }
    let type_info = info.type_info.get_or_insert_with(Default::default);
    for s in type_info.structs.values_mut() {
        for m in &mut s.members {
            if bit_width(&m.type_spec, &p4i::P4Info::default()) == Some(PORT_WIDTH) {
                m.type_spec = Some(p4i::P4DataTypeSpec {
                    type_spec: Some(p4i::p4_data_type_spec::TypeSpec::NewType(
                        p4i::P4NamedType {
                            name: PORT_TYPE.into(),
                        },
                    )),
                });
            }
        }
    }
    type_info.new_types.insert(
        PORT_TYPE.into(),
        p4i::P4NewTypeSpec {
            representation: Some(p4i::p4_new_type_spec::Representation::TranslatedType(
                p4i::P4NewTypeTranslation {
                    uri: PORT_URI.into(),
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

/// The allowances are exactly the documented ones: the contract passes as
/// v1model, its TNA form as Tofino / Tofino 2, and neither as the other.
#[test]
fn the_check_allows_only_the_documented_differences() {
    assert_eq!(problems(&fabric_p4info(), &V1MODEL), Vec::<String>::new());
    assert_eq!(problems(&tna_form("tna"), &TOFINO), Vec::<String>::new());
    assert_eq!(problems(&tna_form("t2na"), &TOFINO2), Vec::<String>::new());

    // 9-bit ports where the translated type is expected, and the reverse.
    let untranslated = problems(&fabric_p4info(), &TOFINO);
    assert!(
        untranslated
            .iter()
            .any(|p| p.contains("FabricIngress.port_classify.ports.ingress_port")),
        "{untranslated:?}"
    );
    assert!(
        untranslated.iter().any(|p| p.contains("packet_in")),
        "{untranslated:?}"
    );
    assert!(
        untranslated
            .iter()
            .any(|p| p.contains("mac_learn_digest_t")),
        "{untranslated:?}"
    );
    let translated = problems(&tna_form("v1model"), &V1MODEL);
    assert!(
        translated
            .iter()
            .any(|p| p.contains("to_port") && p.contains("32")),
        "{translated:?}"
    );

    // A renamed table, a lost parameter, the wrong architecture, a
    // Tofino-specific extern left in.
    let mut broken = tna_form("tna");
    broken.tables[0].preamble.as_mut().unwrap().name = "FabricIngress.other".into();
    broken.actions[0].params.clear();
    broken.externs.push(p4i::Extern::default());
    let found = problems(&broken, &TOFINO2);
    for want in [
        "pkg_info.arch",
        "table FabricIngress.port_classify.ports missing",
        "table FabricIngress.other is not in the contract",
        "params",
        "1 extern(s)",
    ] {
        assert!(found.iter().any(|p| p.contains(want)), "{want}: {found:?}");
    }
}
