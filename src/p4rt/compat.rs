//! Whether a new pipeline build may be rolled out while switches still run
//! the old one (docs/operations.md, "The rule a pipeline change must follow
//! to be rollable"). During a roll-out the compiler emits one set of
//! entities by name and each agent resolves them against its own switch's
//! P4Info, so everything the old build has must be in the new one,
//! unchanged: tables, actions, match fields, parameters, action profiles,
//! digests, the packet-in/out headers, meters, counters, registers, value
//! sets, externs. Compared by name: ids may change. Additions are fine
//! where nothing written for the old build has to set them (a new table,
//! action, profile, digest...); a new match field or action parameter on
//! an existing table or action, or a new packet-in/out field, is not.
//!
//! A pure comparison of two P4Infos. What a P4Info does not say — the
//! headers between switches, what a table or default action does with a
//! packet, the multicast groups and clone sessions — is not checked.

use std::collections::HashMap;

use p4runtime_proto::config::v1 as p4i;

use super::p4info::digest_fields;

/// One way the new build breaks what the running build's entities, or the
/// controller, depend on. `kind` and `name` say which object (`table
/// FabricIngress.routing.ipv4`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatibility {
    #[error("{kind} {name} is in the running build, not in the new one")]
    Removed { kind: &'static str, name: String },
    #[error("{kind} {name}: {what} is {old} in the running build, {new} in the new one")]
    Changed {
        kind: &'static str,
        name: String,
        what: String,
        old: String,
        new: String,
    },
    #[error("{kind} {name}: the new build adds {what} ({new}), which entities written for the running build do not set")]
    Added {
        kind: &'static str,
        name: String,
        what: String,
        new: String,
    },
}

/// What in `new` breaks the rule for switches running `old`: empty when a
/// roll-out from `old` to `new` may run them side by side. In `old`'s
/// order, objects first, then what changed in each.
pub fn rollable(old: &p4i::P4Info, new: &p4i::P4Info) -> Vec<Incompatibility> {
    let (old, new) = (Build::of(old), Build::of(new));
    let mut out = Vec::new();
    tables(&old, &new, &mut out);
    actions(&old, &new, &mut out);
    profiles(&old, &new, &mut out);
    digests(&old, &new, &mut out);
    packet_metadata(&old, &new, &mut out);
    resources(&old, &new, &mut out);
    other_objects(&old, &new, &mut out);
    out
}

/// The first `n` incompatibilities on one line, and how many more.
pub fn summary(list: &[Incompatibility], n: usize) -> String {
    let mut s = list
        .iter()
        .take(n)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if list.len() > n {
        s.push_str(&format!("; and {} more", list.len() - n));
    }
    s
}

/// A P4Info with every object's name by id.
struct Build<'a> {
    p4: &'a p4i::P4Info,
    names: HashMap<u32, &'a str>,
}

fn name_of(p: &Option<p4i::Preamble>) -> &str {
    p.as_ref().map_or("", |p| p.name.as_str())
}

fn id_of(p: &Option<p4i::Preamble>) -> u32 {
    p.as_ref().map_or(0, |p| p.id)
}

impl<'a> Build<'a> {
    fn of(p4: &'a p4i::P4Info) -> Self {
        let mut names = HashMap::new();
        let preambles = p4
            .tables
            .iter()
            .map(|x| &x.preamble)
            .chain(p4.actions.iter().map(|x| &x.preamble))
            .chain(p4.action_profiles.iter().map(|x| &x.preamble))
            .chain(p4.counters.iter().map(|x| &x.preamble))
            .chain(p4.direct_counters.iter().map(|x| &x.preamble))
            .chain(p4.meters.iter().map(|x| &x.preamble))
            .chain(p4.direct_meters.iter().map(|x| &x.preamble))
            .chain(p4.controller_packet_metadata.iter().map(|x| &x.preamble))
            .chain(p4.value_sets.iter().map(|x| &x.preamble))
            .chain(p4.registers.iter().map(|x| &x.preamble))
            .chain(p4.digests.iter().map(|x| &x.preamble));
        for p in preambles.flatten() {
            names.insert(p.id, p.name.as_str());
        }
        Build { p4, names }
    }

    /// The name of the object with `id`; ids that name nothing (0: none)
    /// are shown as such.
    fn name(&self, id: u32) -> String {
        match self.names.get(&id) {
            Some(n) => (*n).to_string(),
            None if id == 0 => "none".to_string(),
            None => format!("unknown id {id:#x}"),
        }
    }
}

/// A P4Info object with a preamble (its name and id).
trait Named {
    fn preamble(&self) -> &Option<p4i::Preamble>;
}

macro_rules! named {
    ($($t:ty),*) => {
        $(impl Named for $t {
            fn preamble(&self) -> &Option<p4i::Preamble> {
                &self.preamble
            }
        })*
    };
}

named!(
    p4i::Table,
    p4i::Action,
    p4i::ActionProfile,
    p4i::Counter,
    p4i::DirectCounter,
    p4i::Meter,
    p4i::DirectMeter,
    p4i::ControllerPacketMetadata,
    p4i::ValueSet,
    p4i::Register,
    p4i::Digest
);

/// Pushes one `Changed` of object `kind name`.
struct Report<'o> {
    kind: &'static str,
    name: String,
    out: &'o mut Vec<Incompatibility>,
}

impl Report<'_> {
    fn changed(&mut self, what: impl Into<String>, old: impl Into<String>, new: impl Into<String>) {
        self.out.push(Incompatibility::Changed {
            kind: self.kind,
            name: self.name.clone(),
            what: what.into(),
            old: old.into(),
            new: new.into(),
        });
    }

    fn added(&mut self, what: impl Into<String>, new: impl Into<String>) {
        self.out.push(Incompatibility::Added {
            kind: self.kind,
            name: self.name.clone(),
            what: what.into(),
            new: new.into(),
        });
    }

    /// `what` must be the same in both builds.
    fn same(&mut self, what: &str, old: String, new: String) {
        if old != new {
            self.changed(what, old, new);
        }
    }

    /// `what` must not shrink: entities that fit in the old build must fit.
    fn not_smaller(&mut self, what: &str, old: i64, new: i64, unit: &str) {
        if new < old {
            self.changed(what, format!("{old}{unit}"), format!("{new}{unit}"));
        }
    }
}

/// For each object of `old`: `Removed` when `new` has none of its name,
/// else `check` with a report for it.
fn each<'a, T: Named>(
    kind: &'static str,
    old: &'a [T],
    new: &'a [T],
    out: &mut Vec<Incompatibility>,
    mut check: impl FnMut(&'a T, &'a T, &mut Report),
) {
    let new: HashMap<&str, &T> = new.iter().map(|x| (name_of(x.preamble()), x)).collect();
    for o in old {
        let name = name_of(o.preamble());
        match new.get(name) {
            None => out.push(Incompatibility::Removed {
                kind,
                name: name.to_string(),
            }),
            Some(n) => check(
                o,
                n,
                &mut Report {
                    kind,
                    name: name.to_string(),
                    out,
                },
            ),
        }
    }
}

/// "32-bit LPM" (and the named type, if any: its encoding may differ).
fn match_field(f: &p4i::MatchField) -> String {
    let kind = match &f.r#match {
        Some(p4i::match_field::Match::MatchType(t)) => p4i::match_field::MatchType::try_from(*t)
            .map_or_else(
                |_| format!("match type {t}"),
                |t| t.as_str_name().to_string(),
            ),
        Some(p4i::match_field::Match::OtherMatchType(t)) => t.clone(),
        None => "no match type".to_string(),
    };
    with_type(format!("{}-bit {kind}", f.bitwidth), &f.type_name)
}

fn with_type(s: String, t: &Option<p4i::P4NamedType>) -> String {
    match t {
        Some(t) if !t.name.is_empty() => format!("{s} ({})", t.name),
        _ => s,
    }
}

/// Match fields of a table or value set, by name: each of `old`'s
/// unchanged in `new`, and none added (the running build's entries do
/// not set it).
fn match_fields(old: &[p4i::MatchField], new: &[p4i::MatchField], r: &mut Report) {
    for f in old {
        let what = format!("match field {}", f.name);
        match new.iter().find(|g| g.name == f.name) {
            None => r.changed(what, match_field(f), "missing"),
            Some(g) if match_field(f) != match_field(g) => {
                r.changed(what, match_field(f), match_field(g))
            }
            Some(_) => {}
        }
    }
    for g in new.iter().filter(|g| old.iter().all(|f| f.name != g.name)) {
        r.added(format!("match field {}", g.name), match_field(g));
    }
}

/// Where a table may use an action: (in entries, as the default).
fn uses(scope: i32) -> (bool, bool) {
    use p4i::action_ref::Scope;
    let scope = Scope::try_from(scope).unwrap_or(Scope::TableAndDefault);
    (
        scope != Scope::DefaultOnly,
        matches!(scope, Scope::TableAndDefault | Scope::DefaultOnly),
    )
}

fn describe_uses(u: (bool, bool)) -> &'static str {
    match u {
        (true, true) => "allowed in entries and as the default",
        (true, false) => "allowed in entries only",
        (false, true) => "allowed as the default only",
        (false, false) => "not allowed",
    }
}

/// The table's default action as the P4Info gives it (the compiler does
/// not write defaults: the program's default is what a miss does).
fn default_action(b: &Build, t: &p4i::Table) -> String {
    let mut s = match &t.initial_default_action {
        Some(call) => {
            let action =
                b.p4.actions
                    .iter()
                    .find(|a| id_of(&a.preamble) == call.action_id);
            let mut args: Vec<String> = call
                .arguments
                .iter()
                .map(|arg| {
                    let param = action
                        .and_then(|a| a.params.iter().find(|p| p.id == arg.param_id))
                        .map_or_else(|| format!("#{}", arg.param_id), |p| p.name.clone());
                    let hex: String = arg.value.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{param}=0x{hex}")
                })
                .collect();
            args.sort();
            format!("{}({})", b.name(call.action_id), args.join(", "))
        }
        None if t.const_default_action_id != 0 => b.name(t.const_default_action_id),
        None => "unspecified".to_string(),
    };
    if t.const_default_action_id != 0 {
        s.push_str(" (const)");
    }
    s
}

fn tables(old: &Build, new: &Build, out: &mut Vec<Incompatibility>) {
    use p4i::table::IdleTimeoutBehavior as Idle;
    each("table", &old.p4.tables, &new.p4.tables, out, |t, n, r| {
        match_fields(&t.match_fields, &n.match_fields, r);
        for a in &t.action_refs {
            let action = old.name(a.id);
            let before = uses(a.scope);
            let after = n
                .action_refs
                .iter()
                .find(|b| new.name(b.id) == action)
                .map_or((false, false), |b| uses(b.scope));
            if (before.0 && !after.0) || (before.1 && !after.1) {
                r.changed(
                    format!("action {action}"),
                    describe_uses(before),
                    describe_uses(after),
                );
            }
        }
        // The profile's side (`table_ids`) says the same: checked here.
        r.same(
            "implementation",
            old.name(t.implementation_id),
            new.name(n.implementation_id),
        );
        for id in &t.direct_resource_ids {
            let res = old.name(*id);
            if n.direct_resource_ids.iter().all(|j| new.name(*j) != res) {
                r.changed(format!("direct resource {res}"), "attached", "not attached");
            }
        }
        r.not_smaller("size", t.size, n.size, " entries");
        let notify = Idle::NotifyControl as i32;
        if t.idle_timeout_behavior == notify && n.idle_timeout_behavior != notify {
            r.changed("idle timeout", "NOTIFY_CONTROL", "NO_TIMEOUT");
        }
        if !t.is_const_table && n.is_const_table {
            r.changed("the table", "writable", "const (is_const_table)");
        }
        r.same(
            "default action",
            default_action(old, t),
            default_action(new, n),
        );
    });
}

fn param(p: &p4i::action::Param) -> String {
    with_type(format!("{}-bit", p.bitwidth), &p.type_name)
}

fn actions(old: &Build, new: &Build, out: &mut Vec<Incompatibility>) {
    each(
        "action",
        &old.p4.actions,
        &new.p4.actions,
        out,
        |a, n, r| {
            for p in &a.params {
                let what = format!("parameter {}", p.name);
                match n.params.iter().find(|q| q.name == p.name) {
                    None => r.changed(what, param(p), "missing"),
                    Some(q) if param(p) != param(q) => r.changed(what, param(p), param(q)),
                    Some(_) => {}
                }
            }
            for q in n
                .params
                .iter()
                .filter(|q| a.params.iter().all(|p| p.name != q.name))
            {
                r.added(format!("parameter {}", q.name), param(q));
            }
        },
    );
}

fn profiles(old: &Build, new: &Build, out: &mut Vec<Incompatibility>) {
    let kind = |p: &p4i::ActionProfile| {
        if p.with_selector {
            "an action selector"
        } else {
            "an action profile"
        }
    };
    // 0: no limit given.
    let max_group = |m: i32| if m <= 0 { i64::MAX } else { i64::from(m) };
    let group_size = |m: i32| {
        if m <= 0 {
            "unlimited".to_string()
        } else {
            format!("{m} members")
        }
    };
    let semantics = |p: &p4i::ActionProfile| match &p.selector_size_semantics {
        None | Some(p4i::action_profile::SelectorSizeSemantics::SumOfWeights(_)) => {
            "the sum of the weights".to_string()
        }
        Some(p4i::action_profile::SelectorSizeSemantics::SumOfMembers(m)) => {
            format!("the number of members (max weight {})", m.max_member_weight)
        }
    };
    each(
        "action profile",
        &old.p4.action_profiles,
        &new.p4.action_profiles,
        out,
        |p, n, r| {
            r.same("kind", kind(p).into(), kind(n).into());
            r.not_smaller("size", p.size, n.size, " members");
            if max_group(n.max_group_size) < max_group(p.max_group_size) {
                r.changed(
                    "max group size",
                    group_size(p.max_group_size),
                    group_size(n.max_group_size),
                );
            }
            r.same("group size counting", semantics(p), semantics(n));
            if !p.weights_disallowed && n.weights_disallowed {
                r.changed("member weights", "allowed", "disallowed");
            }
        },
    );
}

/// Fields in order, as they are laid out: "[a 9-bit, b 8-bit]".
fn layout<'a>(fields: impl Iterator<Item = (&'a str, i64)>) -> String {
    let f: Vec<String> = fields.map(|(n, w)| format!("{n} {w}-bit")).collect();
    format!("[{}]", f.join(", "))
}

fn digests(old: &Build, new: &Build, out: &mut Vec<Incompatibility>) {
    // The struct's members in order: what the switch sends, decoded by
    // position (`P4InfoRegistry::decode_digest`).
    let of = |b: &Build, d: &p4i::Digest| match digest_fields(b.p4, d) {
        Ok(f) => layout(f.iter().map(|f| (f.name, i64::from(f.bitwidth)))),
        Err(e) => format!("unreadable ({e})"),
    };
    each(
        "digest",
        &old.p4.digests,
        &new.p4.digests,
        out,
        |d, n, r| {
            r.same("layout", of(old, d), of(new, n));
        },
    );
}

/// `packet_in` / `packet_out`: the header the switch and its P4Runtime
/// server exchange on the CPU port, in order. Each agent encodes and
/// decodes it with its own switch's ids, by name, so ids may change; but
/// every field is the controller's to set or read, so the fields, their
/// widths and their order must stay (a new field too changes the header).
fn packet_metadata(old: &Build, new: &Build, out: &mut Vec<Incompatibility>) {
    let of = |c: &p4i::ControllerPacketMetadata| {
        layout(
            c.metadata
                .iter()
                .map(|m| (m.name.as_str(), i64::from(m.bitwidth))),
        )
    };
    each(
        "controller packet metadata",
        &old.p4.controller_packet_metadata,
        &new.p4.controller_packet_metadata,
        out,
        |c, n, r| {
            r.same("header", of(c), of(n));
        },
    );
}

fn meter_spec(s: &Option<p4i::MeterSpec>) -> String {
    let s = s.unwrap_or_default();
    format!("{}, {}", s.unit().as_str_name(), s.r#type().as_str_name())
}

fn counter_spec(s: &Option<p4i::CounterSpec>) -> String {
    s.unwrap_or_default().unit().as_str_name().to_string()
}

/// Meters and counters: the same spec; indexed ones no smaller, direct
/// ones on the same table.
fn resources(old: &Build, new: &Build, out: &mut Vec<Incompatibility>) {
    let (o, n) = (old.p4, new.p4);
    each("meter", &o.meters, &n.meters, out, |m, n, r| {
        r.same("spec", meter_spec(&m.spec), meter_spec(&n.spec));
        r.not_smaller("size", m.size, n.size, " cells");
    });
    each("counter", &o.counters, &n.counters, out, |c, n, r| {
        r.same("unit", counter_spec(&c.spec), counter_spec(&n.spec));
        r.not_smaller("size", c.size, n.size, " cells");
    });
    each(
        "direct meter",
        &o.direct_meters,
        &n.direct_meters,
        out,
        |m, n, r| {
            r.same("spec", meter_spec(&m.spec), meter_spec(&n.spec));
            let table = |b: &Build, m: &p4i::DirectMeter| b.name(m.direct_table_id);
            r.same("table", table(old, m), table(new, n));
        },
    );
    each(
        "direct counter",
        &o.direct_counters,
        &n.direct_counters,
        out,
        |c, n, r| {
            r.same("unit", counter_spec(&c.spec), counter_spec(&n.spec));
            let table = |b: &Build, c: &p4i::DirectCounter| b.name(c.direct_table_id);
            r.same("table", table(old, c), table(new, n));
        },
    );
}

/// A register's cell type, as far as it is simple ("bit<32>").
fn data_type(t: &Option<p4i::P4DataTypeSpec>) -> String {
    use p4i::p4_bitstring_like_type_spec::TypeSpec as Bits;
    use p4i::p4_data_type_spec::TypeSpec;
    match t.as_ref().and_then(|t| t.type_spec.as_ref()) {
        Some(TypeSpec::Bitstring(b)) => match &b.type_spec {
            Some(Bits::Bit(b)) => format!("bit<{}>", b.bitwidth),
            Some(Bits::Int(i)) => format!("int<{}>", i.bitwidth),
            Some(Bits::Varbit(v)) => format!("varbit<{}>", v.max_bitwidth),
            None => "bitstring".to_string(),
        },
        Some(TypeSpec::Bool(_)) => "bool".to_string(),
        Some(
            TypeSpec::Struct(n)
            | TypeSpec::Header(n)
            | TypeSpec::HeaderUnion(n)
            | TypeSpec::Enum(n)
            | TypeSpec::SerializableEnum(n)
            | TypeSpec::NewType(n),
        ) => n.name.clone(),
        Some(other) => format!("{other:?}"),
        None => "none".to_string(),
    }
}

/// Registers, value sets and externs: the controller writes none of them
/// today, but a build that drops or shrinks one is not an addition.
fn other_objects(old: &Build, new: &Build, out: &mut Vec<Incompatibility>) {
    each(
        "register",
        &old.p4.registers,
        &new.p4.registers,
        out,
        |x, n, r| {
            if x.type_spec != n.type_spec {
                // Described as far as simple; a change shown "(changed)".
                let (o, w) = (data_type(&x.type_spec), data_type(&n.type_spec));
                let w = if o == w { format!("{w} (changed)") } else { w };
                r.changed("type", o, w);
            }
            r.not_smaller("size", x.size.into(), n.size.into(), " cells");
        },
    );
    each(
        "value set",
        &old.p4.value_sets,
        &new.p4.value_sets,
        out,
        |x, n, r| {
            match_fields(&x.r#match, &n.r#match, r);
            r.not_smaller("size", x.size.into(), n.size.into(), " entries");
        },
    );
    // Extern instances by type and name; what they hold is opaque here.
    for e in &old.p4.externs {
        let same = new
            .p4
            .externs
            .iter()
            .find(|f| f.extern_type_name == e.extern_type_name);
        for i in &e.instances {
            let name = name_of(&i.preamble);
            if !same.is_some_and(|f| f.instances.iter().any(|j| name_of(&j.preamble) == name)) {
                out.push(Incompatibility::Removed {
                    kind: "extern instance",
                    name: format!("{} {name}", e.extern_type_name),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::{P4InfoRegistry, Pipeline};

    fn v1() -> p4i::P4Info {
        let path = Pipeline::default_dir().join("fabric.p4info.txt");
        P4InfoRegistry::load(&path)
            .expect("p4/build")
            .p4info()
            .clone()
    }

    fn v2() -> p4i::P4Info {
        let path = Pipeline::default_dir().join("../testing/build/fabric_v2.p4info.txt");
        P4InfoRegistry::load(&path)
            .expect("p4/testing/build")
            .p4info()
            .clone()
    }

    fn table<'a>(p: &'a mut p4i::P4Info, name: &str) -> &'a mut p4i::Table {
        p.tables
            .iter_mut()
            .find(|t| name_of(&t.preamble) == name)
            .expect("table")
    }

    fn action<'a>(p: &'a mut p4i::P4Info, name: &str) -> &'a mut p4i::Action {
        p.actions
            .iter_mut()
            .find(|a| name_of(&a.preamble) == name)
            .expect("action")
    }

    /// The messages for `v1` changed by `change`.
    fn changed(change: impl FnOnce(&mut p4i::P4Info)) -> Vec<String> {
        let old = v1();
        let mut new = old.clone();
        change(&mut new);
        rollable(&old, &new).iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn the_same_build_is_rollable() {
        assert_eq!(rollable(&v1(), &v1()), vec![]);
    }

    /// The second build of the tests adds a table and an action: rollable.
    /// Back from it drops them: reported (removing anything is, even what
    /// the compiler never writes).
    #[test]
    fn the_second_build_adds_and_going_back_removes() {
        assert_eq!(rollable(&v1(), &v2()), vec![]);
        let back: Vec<String> = rollable(&v2(), &v1())
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            back,
            [
                "table FabricIngress.upgrade_probe.upgrade_probe is in the running build, not in the new one",
                "action FabricIngress.upgrade_probe.seen is in the running build, not in the new one",
            ]
        );
    }

    /// Every table, action and profile id changed, names kept: rollable.
    #[test]
    fn ids_may_change() {
        let old = v1();
        let mut new = old.clone();
        let bump = |id: &mut u32| {
            if *id != 0 {
                *id += 7
            }
        };
        for t in &mut new.tables {
            if let Some(p) = t.preamble.as_mut() {
                bump(&mut p.id);
            }
            t.action_refs.iter_mut().for_each(|a| bump(&mut a.id));
            bump(&mut t.const_default_action_id);
            bump(&mut t.implementation_id);
            if let Some(d) = t.initial_default_action.as_mut() {
                bump(&mut d.action_id);
            }
            for (i, f) in t.match_fields.iter_mut().rev().enumerate() {
                f.id = i as u32 + 1;
            }
        }
        for a in &mut new.actions {
            if let Some(p) = a.preamble.as_mut() {
                bump(&mut p.id);
            }
        }
        for p in &mut new.action_profiles {
            if let Some(pre) = p.preamble.as_mut() {
                bump(&mut pre.id);
            }
            p.table_ids.iter_mut().for_each(bump);
        }
        assert_ne!(old, new);
        assert_eq!(rollable(&old, &new), vec![]);
    }

    #[test]
    fn a_renamed_table_is_reported() {
        let got = changed(|p| {
            let t = table(p, "FabricIngress.fabric.label_fwd");
            t.preamble.as_mut().expect("preamble").name = "FabricIngress.fabric.label_fwd2".into();
        });
        assert_eq!(
            got,
            ["table FabricIngress.fabric.label_fwd is in the running build, not in the new one"]
        );
    }

    #[test]
    fn a_widened_match_field_is_reported() {
        let got = changed(|p| {
            let t = table(p, "FabricIngress.routing.ipv4");
            let f = t.match_fields.iter_mut().find(|f| f.name == "ipv4_dst");
            f.expect("ipv4_dst").bitwidth = 128;
        });
        assert_eq!(
            got,
            ["table FabricIngress.routing.ipv4: match field ipv4_dst is 32-bit LPM in the running build, 128-bit LPM in the new one"]
        );
    }

    #[test]
    fn a_changed_match_type_is_reported() {
        let got = changed(|p| {
            let t = table(p, "FabricIngress.bridging.fdb");
            let f = t.match_fields.iter_mut().find(|f| f.name == "eth_dst");
            f.expect("eth_dst").r#match = Some(p4i::match_field::Match::MatchType(
                p4i::match_field::MatchType::Ternary as i32,
            ));
        });
        assert_eq!(
            got,
            ["table FabricIngress.bridging.fdb: match field eth_dst is 48-bit EXACT in the running build, 48-bit TERNARY in the new one"]
        );
    }

    #[test]
    fn a_match_field_added_to_a_table_is_reported() {
        let got = changed(|p| {
            let t = table(p, "FabricIngress.bridging.fdb");
            let mut f = t.match_fields[0].clone();
            f.name = "ether_type".into();
            f.id = 99;
            f.bitwidth = 16;
            t.match_fields.push(f);
        });
        assert_eq!(
            got,
            ["table FabricIngress.bridging.fdb: the new build adds match field ether_type (16-bit EXACT), which entities written for the running build do not set"]
        );
    }

    #[test]
    fn a_removed_or_added_parameter_is_reported() {
        let got = changed(|p| {
            let a = action(p, "FabricIngress.bridging.to_port");
            let port = a.params.remove(0);
            let mut extra = port.clone();
            extra.name = "vlan".into();
            extra.bitwidth = 12;
            a.params.push(extra);
        });
        assert_eq!(
            got,
            [
                "action FabricIngress.bridging.to_port: parameter port is 9-bit in the running build, missing in the new one",
                "action FabricIngress.bridging.to_port: the new build adds parameter vlan (12-bit), which entities written for the running build do not set",
            ]
        );
    }

    #[test]
    fn an_action_no_longer_allowed_in_a_table_is_reported() {
        let old = v1();
        let to_lag = old
            .actions
            .iter()
            .find(|a| name_of(&a.preamble) == "FabricIngress.bridging.to_lag")
            .map(|a| id_of(&a.preamble))
            .expect("to_lag");
        let got = changed(|p| {
            let t = table(p, "FabricIngress.bridging.fdb");
            t.action_refs.retain(|a| a.id != to_lag);
        });
        assert_eq!(
            got,
            ["table FabricIngress.bridging.fdb: action FabricIngress.bridging.to_lag is allowed in entries and as the default in the running build, not allowed in the new one"]
        );
        // Narrowed to the default: no longer usable in entries.
        let got = changed(|p| {
            let t = table(p, "FabricIngress.bridging.fdb");
            let r = t.action_refs.iter_mut().find(|a| a.id == to_lag);
            r.expect("ref").scope = p4i::action_ref::Scope::DefaultOnly as i32;
        });
        assert_eq!(
            got,
            ["table FabricIngress.bridging.fdb: action FabricIngress.bridging.to_lag is allowed in entries and as the default in the running build, allowed as the default only in the new one"]
        );
    }

    #[test]
    fn a_changed_packet_in_header_is_reported() {
        let cpm = |p: &mut p4i::P4Info| {
            p.controller_packet_metadata
                .iter_mut()
                .find(|c| name_of(&c.preamble) == "packet_in")
                .map(|c| std::mem::take(&mut c.metadata))
                .expect("packet_in")
        };
        // A field appended: the header on the CPU port changes.
        let got = changed(|p| {
            let mut fields = cpm(p);
            let mut vlan = fields[0].clone();
            vlan.id = 4;
            vlan.name = "vlan_id".into();
            vlan.bitwidth = 12;
            fields.push(vlan);
            p.controller_packet_metadata[0].metadata = fields;
        });
        assert_eq!(
            got,
            ["controller packet metadata packet_in: header is [_pad 7-bit, ingress_port 9-bit, punt_reason 8-bit] in the running build, [_pad 7-bit, ingress_port 9-bit, punt_reason 8-bit, vlan_id 12-bit] in the new one"]
        );
        // Two fields swapped (ids kept with their names): reported.
        let got = changed(|p| {
            let mut fields = cpm(p);
            fields.swap(0, 1);
            p.controller_packet_metadata[0].metadata = fields;
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("[ingress_port 9-bit, _pad 7-bit, punt_reason 8-bit] in the new one"),
            "{got:?}"
        );
    }

    /// The release that byte-aligned the ports in packet_in / packet_out
    /// (for Tofino) cannot be rolled onto switches running the build
    /// before it: both headers are reported, nothing else (the flood
    /// label changed too, but a P4Info does not show it).
    #[test]
    fn the_byte_aligned_controller_headers_are_not_rollable_from_the_old_layout() {
        let mut old = v1();
        let fields = |list: &[(&str, i32)]| -> Vec<p4i::controller_packet_metadata::Metadata> {
            list.iter()
                .zip(1..)
                .map(
                    |((name, bitwidth), id)| p4i::controller_packet_metadata::Metadata {
                        id,
                        name: (*name).into(),
                        bitwidth: *bitwidth,
                        ..Default::default()
                    },
                )
                .collect()
        };
        for c in &mut old.controller_packet_metadata {
            c.metadata = match name_of(&c.preamble) {
                "packet_in" => fields(&[("ingress_port", 9), ("punt_reason", 8), ("_pad", 7)]),
                "packet_out" => fields(&[
                    ("egress_port", 9),
                    ("do_forwarding", 1),
                    ("ingress_port", 9),
                    ("_pad", 5),
                ]),
                other => panic!("unexpected controller header {other}"),
            };
        }
        let got: Vec<String> = rollable(&old, &v1())
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "controller packet metadata packet_in: header is [ingress_port 9-bit, punt_reason 8-bit, _pad 7-bit] in the running build, [_pad 7-bit, ingress_port 9-bit, punt_reason 8-bit] in the new one",
                "controller packet metadata packet_out: header is [egress_port 9-bit, do_forwarding 1-bit, ingress_port 9-bit, _pad 5-bit] in the running build, [_pad0 7-bit, egress_port 9-bit, _pad1 6-bit, do_forwarding 1-bit, ingress_port 9-bit] in the new one",
            ]
        );
    }

    #[test]
    fn a_changed_digest_field_is_reported() {
        let got = changed(|p| {
            let s = p
                .type_info
                .as_mut()
                .and_then(|t| t.structs.get_mut("mac_learn_digest_t"))
                .expect("digest struct");
            s.members[2].name = "port".into();
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("digest mac_learn_digest_t: layout is [vlan_id 12-bit, eth_src 48-bit, ingress_port 9-bit")
                && got[0].contains("in the running build, [vlan_id 12-bit, eth_src 48-bit, port 9-bit"),
            "{got:?}"
        );
    }

    #[test]
    fn a_smaller_selector_or_a_changed_meter_is_reported() {
        let got = changed(|p| {
            let s = p
                .action_profiles
                .iter_mut()
                .find(|a| name_of(&a.preamble) == "FabricIngress.routing.ecmp_selector")
                .expect("ecmp");
            s.max_group_size = 8;
            p.meters[0].spec = Some(p4i::MeterSpec {
                unit: p4i::meter_spec::Unit::Bytes as i32,
                r#type: 0,
            });
        });
        assert_eq!(
            got,
            [
                "action profile FabricIngress.routing.ecmp_selector: max group size is 64 members in the running build, 8 members in the new one",
                "meter FabricIngress.acl.punt_meter: spec is PACKETS, TWO_RATE_THREE_COLOR in the running build, BYTES, TWO_RATE_THREE_COLOR in the new one",
            ]
        );
    }

    /// The rest of a table's and a profile's properties, and a meter
    /// dropped; a limit on group size lifted is not reported.
    #[test]
    fn other_table_and_profile_changes_are_reported() {
        let known_source =
            id_of(&action(&mut v1(), "FabricIngress.learning.known_source").preamble);
        let got = changed(|p| {
            table(p, "FabricIngress.routing.nexthops").implementation_id = 0;
            let t = table(p, "FabricIngress.learning.src_mac");
            t.size = 1024;
            t.idle_timeout_behavior = p4i::table::IdleTimeoutBehavior::NoTimeout as i32;
            t.is_const_table = true;
            t.const_default_action_id = known_source;
            t.initial_default_action = Some(p4i::TableActionCall {
                action_id: known_source,
                arguments: vec![],
            });
            for s in &mut p.action_profiles {
                match name_of(&s.preamble) {
                    "FabricIngress.routing.ecmp_selector" => s.with_selector = false,
                    "FabricIngress.lag.lag_selector" => s.max_group_size = 0,
                    _ => {}
                }
            }
            p.meters.clear();
        });
        assert_eq!(
            got,
            [
                "table FabricIngress.learning.src_mac: size is 16384 entries in the running build, 1024 entries in the new one",
                "table FabricIngress.learning.src_mac: idle timeout is NOTIFY_CONTROL in the running build, NO_TIMEOUT in the new one",
                "table FabricIngress.learning.src_mac: the table is writable in the running build, const (is_const_table) in the new one",
                "table FabricIngress.learning.src_mac: default action is NoAction() (const) in the running build, FabricIngress.learning.known_source() (const) in the new one",
                "table FabricIngress.routing.nexthops: implementation is FabricIngress.routing.ecmp_selector in the running build, none in the new one",
                "action profile FabricIngress.routing.ecmp_selector: kind is an action selector in the running build, an action profile in the new one",
                "meter FabricIngress.acl.punt_meter is in the running build, not in the new one",
            ]
        );
    }

    #[test]
    fn the_summary_names_the_first_and_counts_the_rest() {
        let old = v1();
        let mut new = old.clone();
        new.tables.truncate(2);
        let list = rollable(&old, &new);
        assert!(list.len() > 3, "{list:?}");
        let s = summary(&list, 3);
        assert_eq!(s.matches(" is in the running build").count(), 3, "{s}");
        assert!(
            s.ends_with(&format!("; and {} more", list.len() - 3)),
            "{s}"
        );
    }
}
