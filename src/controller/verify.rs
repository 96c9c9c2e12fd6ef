//! The rolling upgrade's verify step: after a drained switch runs the new
//! pipeline and its agent says it holds its entities, and before it goes
//! back into service, two checks on what the switch really holds:
//!
//! 1. *read-back*: everything p4fabric writes, read from the switch now, is
//!    what the controller wants it to hold, entity by entity (missing,
//!    extra and different entities are named);
//! 2. *forwarding*: the forwarding checker (`compile::check`), walking
//!    every probe of `compile::reach` over what the switches hold (this
//!    switch's read-back, the others' desired state, which their converged
//!    agents hold), delivers every probe it delivered just before the
//!    switch was loaded (the *baseline*: the same drained fabric on the old
//!    pipeline). Probes that did not pass then (hosts behind a drained
//!    leaf, a cut link) are not asked of the new pipeline either.
//!
//! The forwarding check is made once the switch's links are up again as
//! in the baseline (a reload may cost the controller a discovery round):
//! on other links the probes would take other paths, or none.
//!
//! `Verification` is the controller's side: the baseline, the read it
//! asked the agent for, the last verdict. The checks are pure functions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::compile::check::{Checker, DataPlane, WithHeld};
use crate::compile::reach::{check_probe, probes, Probe};
use crate::compile::view::FabricView;
use crate::config::Fabric;
use crate::p4rt::intern::SharedEntities;
use crate::p4rt::SwitchEntities;
use crate::topo::{LinkId, Topology};

/// How often a failed check is tried again (a read racing a new desired
/// state, links still being heard) before the upgrade's own timeout.
pub const RETRY: Duration = Duration::from_secs(1);

/// At most this many differences or failed probes are named.
const NAMED: usize = 5;

/// What the fabric delivered, and over which links, just before the switch
/// was loaded.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub switch: String,
    pub delivered: BTreeSet<Probe>,
    /// The switch's links that were up.
    pub links: BTreeSet<LinkId>,
}

/// The probes `dp` delivers.
pub fn delivered<D: DataPlane>(dp: &D, topo: &Topology, fabric: &Fabric) -> BTreeSet<Probe> {
    let c = Checker::new(dp, topo);
    probes(fabric)
        .into_iter()
        .filter(|p| check_probe(&c, fabric, p).is_ok())
        .collect()
}

/// Up links at `switch`.
fn up_links(topo: &Topology, switch: &str) -> BTreeSet<LinkId> {
    topo.links_of(switch)
        .into_iter()
        .filter(|(_, _, l)| l.state.up)
        .map(|(_, _, l)| l.id.clone())
        .collect()
}

impl Baseline {
    /// Takes the baseline over `dp` (the switches hold it: every agent
    /// converged on the drained fabric).
    pub fn take<D: DataPlane>(switch: &str, dp: &D, topo: &Topology, fabric: &Fabric) -> Self {
        Baseline {
            switch: switch.to_string(),
            delivered: delivered(dp, topo, fabric),
            links: up_links(topo, switch),
        }
    }

    /// The baseline's links at the switch that are not up in `topo`.
    pub fn links_missing(&self, topo: &Topology) -> Vec<&LinkId> {
        let now = up_links(topo, &self.switch);
        self.links.iter().filter(|l| !now.contains(l)).collect()
    }
}

/// How `held` (a switch's read-back) differs from what `desired` wants the
/// switch to hold: "missing <key>", "extra <key>", "differs <key>".
pub fn read_back_differences(
    desired: &FabricView,
    switch: &str,
    held: &SwitchEntities,
) -> Vec<String> {
    crate::compile::diff::mismatches(desired.iter_switch(switch), held.iter())
        .into_iter()
        .map(|(m, e)| format!("{m} {}", e.key()))
        .collect()
}

/// The baseline's probes the fabric no longer delivers with `held` on the
/// baseline's switch: "from -> to (ip): why".
pub fn forwarding_regressions(
    baseline: &Baseline,
    desired: &FabricView,
    held: &SwitchEntities,
    topo: &Topology,
    fabric: &Fabric,
) -> Vec<String> {
    let dp = WithHeld {
        rest: desired,
        switch: &baseline.switch,
        held,
    };
    let c = Checker::new(&dp, topo);
    baseline
        .delivered
        .iter()
        .filter_map(|p| {
            check_probe(&c, fabric, p)
                .err()
                .map(|why| format!("{} -> {} ({}): {why}", p.from, p.to, p.ip))
        })
        .collect()
}

fn named(what: &str, items: &[String]) -> String {
    let mut s = format!(
        "{} {what}: {}",
        items.len(),
        items[..items.len().min(NAMED)].join("; ")
    );
    if items.len() > NAMED {
        s.push_str("; ...");
    }
    s
}

/// Both checks: `Ok` says what was verified, `Err` what failed.
pub fn check(
    baseline: &Baseline,
    desired: &FabricView,
    held: &SharedEntities,
    topo: &Topology,
    fabric: &Fabric,
) -> Result<String, String> {
    let held = crate::p4rt::intern::unshared(held);
    let diff = read_back_differences(desired, &baseline.switch, &held);
    if !diff.is_empty() {
        return Err(format!(
            "read back differs from the desired state: {}",
            named("entities", &diff)
        ));
    }
    let lost = forwarding_regressions(baseline, desired, &held, topo, fabric);
    if !lost.is_empty() {
        return Err(format!(
            "the forwarding checker no longer delivers {}",
            named("probes that passed before the load", &lost)
        ));
    }
    Ok(format!(
        "read back {} entities as desired; the forwarding checker delivers all {} probes it delivered before the load",
        held.len(),
        baseline.delivered.len()
    ))
}

/// The controller's verification of one switch.
pub struct Verification {
    pub baseline: Baseline,
    /// The read asked of the agent, not answered yet.
    pending: Option<oneshot::Receiver<Result<Arc<SharedEntities>, String>>>,
    /// When the next read may be asked for.
    next_try: Instant,
    /// The last verdict (`None`: none yet).
    pub verdict: Option<Result<String, String>>,
}

/// What the controller does next for a verification.
pub enum Next {
    /// Ask the agent for a read.
    Read,
    /// Check this read.
    Check(Arc<SharedEntities>),
    Wait,
}

impl Verification {
    pub fn new(baseline: Baseline) -> Self {
        Verification {
            baseline,
            pending: None,
            next_try: Instant::now(),
            verdict: None,
        }
    }

    /// Where the verification stands at `now`; a verdict that passed
    /// stays.
    pub fn next(&mut self, now: Instant, topo: &Topology) -> Next {
        if matches!(self.verdict, Some(Ok(_))) {
            return Next::Wait;
        }
        if let Some(rx) = self.pending.as_mut() {
            match rx.try_recv() {
                Ok(Ok(read)) => {
                    self.pending = None;
                    return Next::Check(read);
                }
                Ok(Err(why)) => {
                    self.pending = None;
                    self.failed(now, format!("reading the switch back failed: {why}"));
                }
                Err(oneshot::error::TryRecvError::Empty) => return Next::Wait,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.pending = None;
                    self.failed(now, "its agent stopped before answering the read".into());
                }
            }
        }
        if now < self.next_try {
            return Next::Wait;
        }
        let missing = self.baseline.links_missing(topo);
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|l| format!("{}-{}", l.0, l.1)).collect();
            self.failed(
                now,
                format!(
                    "links not up again as before the load: {}",
                    names.join(", ")
                ),
            );
            return Next::Wait;
        }
        Next::Read
    }

    /// The read the agent will answer.
    pub fn asked(&mut self, rx: oneshot::Receiver<Result<Arc<SharedEntities>, String>>) {
        self.pending = Some(rx);
    }

    /// Records a check's verdict.
    pub fn checked(&mut self, now: Instant, verdict: Result<String, String>) {
        match verdict {
            Ok(s) => self.verdict = Some(Ok(s)),
            Err(why) => self.failed(now, why),
        }
    }

    fn failed(&mut self, now: Instant, why: String) {
        self.verdict = Some(Err(why));
        self.next_try = now + RETRY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{CompiledFabric, Hosts};
    use crate::config::PortRef;
    use crate::p4rt::intern::intern;
    use crate::topo::ObservedState;

    fn example() -> Fabric {
        serde_yaml::from_str(include_str!("../../examples/fabric.yaml")).expect("example parses")
    }

    /// The fabric compiled with `drained` drained and `lost` links lost.
    fn compiled(f: &Fabric, drained: &[&str], lost: &[LinkId]) -> (FabricView, Topology) {
        let o = ObservedState {
            drained: drained.iter().map(|s| s.to_string()).collect(),
            discovered: lost.iter().map(|l| (l.clone(), false)).collect(),
            ..ObservedState::default()
        };
        let before = Topology::build(f, &ObservedState::default(), None);
        let topo = Topology::build(f, &o, Some(before.flood_tree()));
        let view = CompiledFabric::new(f, &topo, &Hosts::new()).view().clone();
        (view, topo)
    }

    fn read_back(view: &FabricView, switch: &str) -> SharedEntities {
        view.iter_switch(switch)
            .map(|(k, e)| intern(k.clone(), e.clone()))
            .collect()
    }

    #[test]
    fn a_switch_holding_its_desired_state_passes_both_checks() {
        let f = example();
        for (switch, drained) in [("spine1", &["spine1"][..]), ("leaf1", &["leaf1"][..])] {
            let (view, topo) = compiled(&f, drained, &[]);
            let b = Baseline::take(switch, &view, &topo, &f);
            let verdict = check(&b, &view, &read_back(&view, switch), &topo, &f);
            let what = verdict.expect("verified");
            assert!(
                what.contains(&format!("all {} probes", b.delivered.len())),
                "{what}"
            );
            assert_eq!(b.links.len(), 4.min(topo.links_of(switch).len()));
        }
    }

    #[test]
    fn the_baseline_holds_what_the_drained_fabric_delivers_and_no_more() {
        let f = example();
        let (in_service, topo) = compiled(&f, &[], &[]);
        let all = delivered(&in_service, &topo, &f);
        assert_eq!(
            all.len(),
            probes(&f).len(),
            "the example delivers every probe"
        );
        // A drained leaf is no transit but still reaches its own hosts.
        let (view, topo) = compiled(&f, &["leaf1"], &[]);
        assert_eq!(Baseline::take("leaf1", &view, &topo, &f).delivered, all);
        // leaf4 cut off (both uplinks lost): vm4 and vm5 are reached from
        // no other leaf, and nothing of theirs is asked of the new pipeline.
        let cut = [
            LinkId::new(PortRef::new("leaf4", 1), PortRef::new("spine1", 4)),
            LinkId::new(PortRef::new("leaf4", 2), PortRef::new("spine2", 4)),
        ];
        let (view, topo) = compiled(&f, &["spine1"], &cut);
        let b = Baseline::take("spine1", &view, &topo, &f);
        assert!(!b.delivered.iter().any(|p| p.to == "vm4" && p.from != "vm5"));
        assert!(b.delivered.iter().any(|p| p.from == "vm5" && p.to == "vm4"));
        assert!(b
            .delivered
            .iter()
            .any(|p| p.from == "srv1" && p.to == "vm3"));
        let verdict = check(&b, &view, &read_back(&view, "spine1"), &topo, &f);
        assert!(verdict.is_ok(), "{verdict:?}");
    }

    #[test]
    fn a_missing_or_changed_entity_fails_the_read_back_naming_it() {
        let f = example();
        let (view, topo) = compiled(&f, &["leaf2"], &[]);
        let b = Baseline::take("leaf2", &view, &topo, &f);
        let mut held = read_back(&view, "leaf2");
        let (k, _) = held.pop_last().expect("leaf2 holds entities");
        let why = check(&b, &view, &held, &topo, &f).expect_err("one missing");
        assert!(why.contains(&format!("missing {k}")), "{why}");
        assert!(why.starts_with("read back differs"), "{why}");
    }

    #[test]
    fn forwarding_lost_on_the_loaded_switch_is_named_per_probe() {
        let f = example();
        let (view, topo) = compiled(&f, &[], &[]);
        let b = Baseline::take("leaf2", &view, &topo, &f);
        // leaf2 holding nothing: everything to or through it is lost (the
        // read-back check would say so first; this is the second check).
        let lost = forwarding_regressions(&b, &view, &SwitchEntities::new(), &topo, &f);
        assert!(
            lost.iter().any(|l| l.starts_with("router -> vm1")),
            "{lost:?}"
        );
        assert!(
            lost.iter().any(|l| l.starts_with("srv1 -> vm4")),
            "LAG member on leaf2: {lost:?}"
        );
        assert!(
            !lost.iter().any(|l| l.starts_with("vm3 -> vm4")),
            "{lost:?}"
        );
        // The other leaves holding their own: vm3 <-> vm4 is untouched.
        let held = view.switch_entities("leaf2");
        assert!(forwarding_regressions(&b, &view, &held, &topo, &f).is_empty());
    }

    #[test]
    fn links_down_since_the_baseline_hold_the_check_back() {
        let f = example();
        let (view, topo) = compiled(&f, &["spine2"], &[]);
        let b = Baseline::take("spine2", &view, &topo, &f);
        let lost = LinkId::new(PortRef::new("leaf3", 2), PortRef::new("spine2", 3));
        let (_, after) = compiled(&f, &["spine2"], std::slice::from_ref(&lost));
        assert_eq!(b.links_missing(&after), vec![&lost]);
        let mut v = Verification::new(b);
        let t = Instant::now();
        assert!(matches!(v.next(t, &after), Next::Wait));
        let why = v
            .verdict
            .clone()
            .expect("verdict")
            .expect_err("links missing");
        assert!(why.contains("leaf3/2-spine2/3"), "{why}");
        // Retried after `RETRY`, once the link is back: a read is asked.
        assert!(matches!(v.next(t, &topo), Next::Wait));
        assert!(matches!(v.next(t + RETRY, &topo), Next::Read));
        let (tx, rx) = oneshot::channel();
        v.asked(rx);
        assert!(matches!(v.next(t + RETRY, &topo), Next::Wait));
        tx.send(Ok(Arc::new(read_back(&view, "spine2"))))
            .expect("send");
        let Next::Check(read) = v.next(t + RETRY, &topo) else {
            panic!("the read is checked");
        };
        let verdict = check(&v.baseline, &view, &read, &topo, &f);
        v.checked(t + RETRY, verdict);
        assert!(matches!(v.verdict, Some(Ok(_))), "{:?}", v.verdict);
        assert!(matches!(v.next(t + RETRY * 5, &topo), Next::Wait));
    }
}
