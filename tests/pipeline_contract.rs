//! The P4Info p4c wrote for p4/fabric.p4 against the contract the compiler
//! is written for (`compile::contract`): every table, match field (kind and
//! width), action, parameter, selector, digest field and controller header
//! field the compiler uses must exist with the same shape.

use p4fabric::compile::contract::fabric_p4info;
use p4fabric::p4rt::{P4InfoRegistry, Pipeline};

#[test]
fn compiled_pipeline_matches_the_contract() {
    let compiled = match Pipeline::load(&Pipeline::default_dir(), "fabric") {
        Ok(p) => p.registry,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: compiled_pipeline_matches_the_contract: p4/build/fabric.p4info not compiled ({e}); run p4/compile.sh where p4c exists"
            );
            return;
        }
    };
    let contract = P4InfoRegistry::new(fabric_p4info()).unwrap();
    let mut problems = Vec::new();
    for t in contract.tables() {
        let Ok(c) = compiled.table(t.name) else {
            problems.push(format!("table {} missing", t.name));
            continue;
        };
        for f in &t.match_fields {
            match c.field(f.name) {
                Ok(cf) if cf.bitwidth == f.bitwidth && cf.match_type == f.match_type => {}
                Ok(cf) => problems.push(format!(
                    "{}.{}: {:?}/{} bits, contract {:?}/{}",
                    t.name, f.name, cf.match_type, cf.bitwidth, f.match_type, f.bitwidth
                )),
                Err(_) => problems.push(format!("{}.{} missing", t.name, f.name)),
            }
        }
        if c.match_fields.len() != t.match_fields.len() {
            problems.push(format!(
                "{}: {} match fields, contract {}",
                t.name,
                c.match_fields.len(),
                t.match_fields.len()
            ));
        }
        for a in &t.entry_actions {
            let name = contract.action_by_id(*a).unwrap().name;
            match compiled.action(name) {
                Ok(ca) if c.entry_actions.contains(&ca.id) => {}
                _ => problems.push(format!("{}: action {name} not allowed", t.name)),
            }
        }
        if c.supports_idle_timeout != t.supports_idle_timeout {
            problems.push(format!("{}: idle timeout support differs", t.name));
        }
    }
    for a in fabric_p4info().actions {
        let name = a.preamble.as_ref().unwrap().name.clone();
        let Ok(ca) = compiled.action(&name) else {
            problems.push(format!("action {name} missing"));
            continue;
        };
        let want: Vec<(String, i32)> = a
            .params
            .iter()
            .map(|p| (p.name.clone(), p.bitwidth))
            .collect();
        let have: Vec<(String, i32)> = ca
            .params
            .iter()
            .map(|p| (p.name.to_string(), p.bitwidth as i32))
            .collect();
        if want != have {
            problems.push(format!("action {name}: params {have:?}, contract {want:?}"));
        }
    }
    for p in contract.action_profiles() {
        match compiled.action_profile(p.name) {
            Ok(cp) if cp.with_selector == p.with_selector => {}
            _ => problems.push(format!("selector {} missing or different", p.name)),
        }
    }
    for name in ["packet_in", "packet_out"] {
        let want: Vec<_> = contract
            .packet_metadata(name)
            .unwrap()
            .fields
            .iter()
            .map(|f| (f.name, f.bitwidth))
            .collect();
        match compiled.packet_metadata(name) {
            Ok(h) => {
                let have: Vec<_> = h.fields.iter().map(|f| (f.name, f.bitwidth)).collect();
                if have != want {
                    problems.push(format!("{name}: {have:?}, contract {want:?}"));
                }
            }
            Err(_) => problems.push(format!("{name} header missing")),
        }
    }
    for d in contract.digests() {
        let want: Vec<_> = d.fields.iter().map(|f| (f.name, f.bitwidth)).collect();
        match compiled.digest(d.name) {
            Ok(cd) => {
                let have: Vec<_> = cd.fields.iter().map(|f| (f.name, f.bitwidth)).collect();
                if have != want {
                    problems.push(format!("digest {}: {have:?}, contract {want:?}", d.name));
                }
            }
            Err(_) => problems.push(format!("digest {} missing", d.name)),
        }
    }
    assert!(
        problems.is_empty(),
        "compiled pipeline differs from the contract:\n{}",
        problems.join("\n")
    );
}
