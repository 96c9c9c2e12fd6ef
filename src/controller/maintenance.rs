//! Drain and undrain (`maintenance/<switch>` keys, `p4fabric drain`): the
//! order in which a switch leaves service and comes back, and its
//! `status/maintenance/<switch>`.
//!
//! Drain, make-before-break:
//! 1. *route around*: the switch joins `ObservedState::drained`; the next
//!    compile takes it out of the other switches' ECMP groups and the flood
//!    tree, and a leaf's LAG members out of the LAGs (the DF moves to the
//!    other leaf, remote leaves send its LAG hosts' traffic there, its own
//!    LAG group falls back to the other leaf). The drained switch's own
//!    entries stay, so frames already sent to it still arrive.
//! 2. once every connected switch holds that compile (converged on its
//!    generation), a leaf's own LAG groups hand over to the other leaf (one
//!    more compile: only frames from its own edge ports still reach them),
//!    and once every switch holds that, its LACP actor goes out of sync on
//!    its members, so
//!    the servers' bonds stop using them (only now: a bond discards frames
//!    on a member it does not collect on);
//! 3. *quiesce*: the pipeline has no counters to show that nothing is
//!    forwarded any more, so a bounded wait (`QUIESCE`), said so in status.
//!
//! Undrain, the reverse, starting only once the switch's agent has read
//! its state back and holds its desired state (converged) *and* discovery
//! has heard every one of its links again (a restarted switch's links are
//! lost meanwhile: the compile that brings them back adds the switch's own
//! entries while the others still route around it): a leaf's LACP
//! actor comes back in sync (the server may use the members again: the
//! leaf forwards what it gets), then — when its LACP members are back in
//! use, or after `LACP_RETURN` — its own LAG groups deliver on them again,
//! and once every switch holds that, the fabric stops routing around it.
//!
//! A controller taking over mid-upgrade adopts the switch its predecessor
//! had drained for it as drained at once (`adopt_drained`): the switches
//! hold that compile already, and the first desired state must not put
//! it back in service.
//!
//! A drain that would cut traffic off is refused unless forced: the last
//! spine in service, or a leaf with hosts attached to it alone (named in
//! the status). Pure state machine plus the status it writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::{AgentStatus, SessionState};
use crate::compile::Hosts;
use crate::config::status::{self as st, MaintenanceState, MaintenanceStatus, StatusWriter};
use crate::config::{Attachment, Fabric, Maintenance as Request, Role};

/// How long a drained switch is given to finish forwarding what was sent
/// to it before the new groups were in place (no counters to watch).
pub const QUIESCE: Duration = Duration::from_secs(2);
/// The longest an undraining leaf waits for its LACP members to come back
/// in sync before the fabric uses it again anyway (LACP fast rate: one
/// exchange takes ~1 s).
pub const LACP_RETURN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Refused(String),
    /// Routed around; waits for every switch to hold the compile that did
    /// it (`None`: not compiled yet).
    RoutingAround(Option<u64>),
    /// Leaf: its own LAG groups hand what reaches them to the other leaf
    /// (only frames from its own edge ports still do: the others moved);
    /// waits for every switch to hold that compile.
    HandingOver(Option<u64>),
    Quiescing(Instant),
    Drained,
    /// Waits for the switch's read-back and desired state and its links,
    /// held for a whole discovery miss window (since when, if so).
    WaitReadBack(Option<Instant>),
    /// LACP back in sync (leaves); the fabric still routes around it.
    WaitLacp(Instant),
    /// Leaf: its own LAG groups deliver on its members again; waits for
    /// every switch to hold that compile before the others use it.
    Restoring(Option<u64>),
    /// Back in the fabric; waits for every switch to hold that compile.
    Returning(Option<u64>),
}

#[derive(Debug, Clone)]
struct Entry {
    phase: Phase,
    role: Role,
    force_note: Option<String>,
    reason: Option<String>,
    since: u64,
    /// Drained by the previous leader (`adopt_drained`).
    taken_over: bool,
}

/// What changed in a step: the controller recompiles (`routed`) and
/// passes the LACP set on (`lacp`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub routed: bool,
    pub lacp: bool,
}

impl Changed {
    fn merge(&mut self, o: Changed) {
        self.routed |= o.routed;
        self.lacp |= o.lacp;
    }
}

/// The drains in progress or done.
#[derive(Default)]
pub struct Maintenance {
    switches: BTreeMap<String, Entry>,
    /// Discovery's miss window (interval x miss limit): how long an
    /// undrained switch must look ready before it is used again.
    settle: Duration,
    /// Status paths last written.
    published: BTreeSet<String>,
    /// A drain the controller itself asks for (a rolling upgrade), served
    /// like an operator's `maintenance/<switch>` (which wins if both).
    internal: Option<(String, Request)>,
    /// A switch the previous leader had drained (`adopt_drained`), for
    /// the next `on_config`.
    adopted: Option<String>,
}

impl Maintenance {
    /// A controller taking over mid-upgrade: `switch` was drained by the
    /// previous leader (`upgrade::Upgrade::resume`). If the next
    /// `on_config` starts a drain of it, that drain starts *drained*, not
    /// routing around: the switches hold that compile already, and a
    /// leaf's LACP actor must be out of sync from its first LACPDU on.
    pub fn adopt_drained(&mut self, switch: &str) {
        self.adopted = Some(switch.to_string());
    }

    /// Sets (or clears) the controller's own drain request; applied by
    /// the next `on_config`.
    pub fn set_internal(&mut self, request: Option<(String, Request)>) {
        self.internal = request;
    }

    /// The drain requests in force: the operator's, and the internal one.
    fn requests<'a>(&'a self, fabric: &'a Fabric) -> BTreeMap<&'a String, &'a Request> {
        let mut out: BTreeMap<&String, &Request> = fabric.maintenance.iter().collect();
        if let Some((name, r)) = &self.internal {
            out.entry(name).or_insert(r);
        }
        out
    }

    /// Where `switch` is in maintenance: its state and detail (none: in
    /// service).
    pub fn state_of(&self, switch: &str) -> Option<(MaintenanceState, String)> {
        self.switches.get(switch).map(describe)
    }

    /// Takes a new configuration (and the hosts the fabric knows): starts
    /// requested drains (or refuses them), starts undrains of switches
    /// whose key went, re-checks refused ones.
    pub fn on_config(&mut self, fabric: &Fabric, hosts: &Hosts) -> Changed {
        let mut changed = Changed::default();
        self.settle = Duration::from_millis(
            u64::from(fabric.settings.discovery_interval_ms)
                * u64::from(fabric.settings.discovery_miss_limit),
        );
        let before = (self.routed(), self.handed_over());
        let requests: BTreeMap<String, Request> = self
            .requests(fabric)
            .into_iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        // Undrain what is no longer requested; a refused drain is simply over.
        let mut over = Vec::new();
        for (name, e) in self.switches.iter_mut() {
            let requested =
                requests.get(name).is_some_and(|m| m.drain) && fabric.switches.contains_key(name);
            if requested {
                continue;
            }
            match e.phase {
                Phase::Refused(_) => over.push(name.clone()),
                Phase::RoutingAround(_)
                | Phase::HandingOver(_)
                | Phase::Quiescing(_)
                | Phase::Drained => {
                    set(e, Phase::WaitReadBack(None));
                }
                _ => {}
            }
        }
        for name in over {
            self.switches.remove(&name);
        }
        for (name, m) in &requests {
            let Some(sw) = fabric.switches.get(name) else {
                continue;
            };
            if !m.drain {
                continue;
            }
            let current = self.switches.get(name).map(|e| e.phase.clone());
            match current {
                None | Some(Phase::Refused(_)) => {}
                Some(
                    Phase::WaitReadBack(_)
                    | Phase::WaitLacp(_)
                    | Phase::Restoring(_)
                    | Phase::Returning(_),
                ) => {
                    // Drained again while coming back: route around again
                    // (the switch was never back in service for long).
                    if let Some(e) = self.switches.get_mut(name) {
                        set(e, Phase::RoutingAround(None));
                        changed.lacp = true;
                    }
                    continue;
                }
                Some(_) => {
                    if let Some(e) = self.switches.get_mut(name) {
                        e.reason = m.reason.clone();
                    }
                    continue;
                }
            }
            let routed = self.routed();
            let (mut phase, force_note) = match refusal(fabric, hosts, name, sw.role, &routed) {
                None => (Phase::RoutingAround(None), None),
                Some(why) if m.force => (Phase::RoutingAround(None), Some(why)),
                Some(why) => (Phase::Refused(why), None),
            };
            let taken_over = current.is_none()
                && phase == Phase::RoutingAround(None)
                && self.adopted.as_ref() == Some(name);
            if taken_over {
                phase = Phase::Drained;
                changed.lacp |= sw.role == Role::Leaf;
            }
            let entry = self.switches.entry(name.clone()).or_insert_with(|| Entry {
                phase: phase.clone(),
                role: sw.role,
                force_note: None,
                reason: None,
                since: st::unix_now(),
                taken_over,
            });
            if entry.phase != phase {
                set(entry, phase);
            }
            entry.force_note = force_note;
            entry.reason = m.reason.clone();
        }
        // Only the first configuration after a takeover.
        self.adopted = None;
        changed.routed |= before != (self.routed(), self.handed_over());
        changed
    }

    /// Advances drains and undrains that wait for switches (called on the
    /// status tick). `links_up(switch)`: has discovery heard all its links
    /// again (none lost)? `lacp_back(leaf)`: are the leaf's LACP
    /// members collecting/distributing again?
    pub fn step(
        &mut self,
        agents: &BTreeMap<String, AgentStatus>,
        links_up: impl Fn(&str) -> bool,
        lacp_back: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Changed {
        let mut changed = Changed::default();
        let all_hold = |g: u64| {
            agents
                .values()
                .filter(|a| a.state == SessionState::Primary)
                .all(|a| a.converged_generation.is_some_and(|c| c >= g))
        };
        let mut gone = Vec::new();
        for (name, e) in self.switches.iter_mut() {
            match e.phase.clone() {
                Phase::RoutingAround(None)
                | Phase::HandingOver(None)
                | Phase::Restoring(None)
                | Phase::Returning(None) => {
                    // Compiled in `compiled`; nothing to wait for before.
                }
                Phase::RoutingAround(Some(g)) if all_hold(g) => {
                    if e.role == Role::Leaf {
                        set(e, Phase::HandingOver(None));
                        changed.routed = true;
                    } else {
                        set(e, Phase::Quiescing(now + QUIESCE));
                    }
                }
                Phase::HandingOver(Some(g)) if all_hold(g) => {
                    set(e, Phase::Quiescing(now + QUIESCE));
                    changed.merge(Changed {
                        routed: false,
                        lacp: true,
                    });
                }
                Phase::Quiescing(until) if now >= until => set(e, Phase::Drained),
                Phase::WaitReadBack(since) => {
                    let ready =
                        agents.get(name).is_some_and(AgentStatus::converged) && links_up(name);
                    // Held for a whole miss window: a switch restarted a
                    // moment ago may still look up to discovery (its links
                    // are lost only after the window); bringing it back
                    // then would race the compile that re-adds its entries.
                    match (ready, since) {
                        (false, _) => e.phase = Phase::WaitReadBack(None),
                        (true, None) => e.phase = Phase::WaitReadBack(Some(now)),
                        (true, Some(t)) if now >= t + self.settle => {}
                        (true, Some(_)) => continue,
                    }
                    if !ready || since.is_none() {
                        continue;
                    }
                    if e.role == Role::Leaf {
                        set(e, Phase::WaitLacp(now + LACP_RETURN));
                        changed.lacp = true;
                    } else {
                        set(e, Phase::Returning(None));
                        changed.routed = true;
                    }
                }
                Phase::WaitLacp(deadline) if now >= deadline || lacp_back(name) => {
                    set(e, Phase::Restoring(None));
                    changed.routed = true;
                }
                Phase::Restoring(Some(g)) if all_hold(g) => {
                    set(e, Phase::Returning(None));
                    changed.routed = true;
                }
                Phase::Returning(Some(g)) if all_hold(g) => gone.push(name.clone()),
                _ => {}
            }
        }
        for name in gone {
            self.switches.remove(&name);
        }
        changed
    }

    /// A compile of `generation` was handed to the agents: phases waiting
    /// for "the compile that routes around / back" take it.
    pub fn compiled(&mut self, generation: u64) {
        for e in self.switches.values_mut() {
            match e.phase {
                Phase::RoutingAround(None) => e.phase = Phase::RoutingAround(Some(generation)),
                Phase::HandingOver(None) => e.phase = Phase::HandingOver(Some(generation)),
                Phase::Restoring(None) => e.phase = Phase::Restoring(Some(generation)),
                Phase::Returning(None) => e.phase = Phase::Returning(Some(generation)),
                _ => {}
            }
        }
    }

    /// Switches the fabric routes around (`ObservedState::drained`).
    pub fn routed(&self) -> BTreeSet<String> {
        self.names(|e| {
            matches!(
                e.phase,
                Phase::RoutingAround(_)
                    | Phase::HandingOver(_)
                    | Phase::Quiescing(_)
                    | Phase::Drained
                    | Phase::WaitReadBack(_)
                    | Phase::WaitLacp(_)
                    | Phase::Restoring(_)
            )
        })
    }

    /// Leaves whose own LAG groups hand over to the other leaf
    /// (`ObservedState::lags_handed_over`).
    pub fn handed_over(&self) -> BTreeSet<String> {
        self.names(|e| {
            e.role == Role::Leaf
                && matches!(
                    e.phase,
                    Phase::HandingOver(_)
                        | Phase::Quiescing(_)
                        | Phase::Drained
                        | Phase::WaitReadBack(_)
                        | Phase::WaitLacp(_)
                )
        })
    }

    /// Leaves whose LACP actor is out of sync (after the fabric moved).
    pub fn lacp_drained(&self) -> BTreeSet<String> {
        self.names(|e| {
            e.role == Role::Leaf
                && matches!(
                    e.phase,
                    Phase::Quiescing(_) | Phase::Drained | Phase::WaitReadBack(_)
                )
        })
    }

    fn names(&self, pick: impl Fn(&Entry) -> bool) -> BTreeSet<String> {
        self.switches
            .iter()
            .filter(|(_, e)| pick(e))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The status of each switch in maintenance (none: in service).
    pub fn status(&self, controller: &str) -> BTreeMap<String, MaintenanceStatus> {
        self.switches
            .iter()
            .map(|(name, e)| {
                let (state, detail) = describe(e);
                (
                    name.clone(),
                    MaintenanceStatus {
                        state,
                        detail,
                        reason: e.reason.clone(),
                        controller: controller.to_string(),
                        since: e.since,
                    },
                )
            })
            .collect()
    }

    /// Writes `status/maintenance/<switch>`, removing keys of switches
    /// back in service.
    /// Hands the maintenance status to the writer's write-behind queue
    /// (the controller's loop never waits on etcd).
    pub fn publish(&mut self, writer: Option<&Arc<StatusWriter>>, controller: &str) {
        let Some(w) = writer else {
            return;
        };
        let mut paths = BTreeSet::new();
        for (name, s) in self.status(controller) {
            let path = st::paths::maintenance(&name);
            w.set_later(&path, &s);
            paths.insert(path);
        }
        for gone in self.published.difference(&paths) {
            w.remove_later(gone);
        }
        self.published = paths;
    }

    /// Removes every status key `publish` wrote (the end of a term).
    pub fn unpublish(&mut self, writer: Option<&Arc<StatusWriter>>) {
        let Some(w) = writer else {
            return;
        };
        for path in std::mem::take(&mut self.published) {
            w.remove_later(&path);
        }
    }
}

fn set(e: &mut Entry, phase: Phase) {
    e.phase = phase;
    e.since = st::unix_now();
    e.taken_over = false;
}

fn describe(e: &Entry) -> (MaintenanceState, String) {
    let forced = e
        .force_note
        .as_ref()
        .map(|n| format!(" (forced: {n})"))
        .unwrap_or_default();
    match &e.phase {
        Phase::Refused(why) => (MaintenanceState::Refused, why.clone()),
        Phase::RoutingAround(_) => (
            MaintenanceState::Draining,
            format!("moving traffic off: waiting for every switch to hold the new groups{forced}"),
        ),
        Phase::HandingOver(_) => (
            MaintenanceState::Draining,
            format!("others moved; its own LAG groups hand over to the other leaf{forced}"),
        ),
        Phase::Quiescing(_) => (
            MaintenanceState::Draining,
            format!(
                "groups moved{}; waiting {} s for traffic in flight (counters not available){forced}",
                lacp_note(e),
                QUIESCE.as_secs()
            ),
        ),
        Phase::Drained if e.taken_over => (
            MaintenanceState::Drained,
            format!(
                "drained by the previous leader, taken over as such; no switch forwards through it{}{forced}",
                lacp_note(e)
            ),
        ),
        Phase::Drained => (
            MaintenanceState::Drained,
            format!(
                "after {} s, counters not available; no switch forwards through it{}{forced}",
                QUIESCE.as_secs(),
                lacp_note(e)
            ),
        ),
        Phase::WaitReadBack(_) => (
            MaintenanceState::Undraining,
            "waiting for its state read back and converged and its links heard again"
                .to_string(),
        ),
        Phase::WaitLacp(_) => (
            MaintenanceState::Undraining,
            "LACP back in sync; waiting for the servers to use its members".to_string(),
        ),
        Phase::Restoring(_) => (
            MaintenanceState::Undraining,
            "its LAG members serve again; waiting for every switch to hold that".to_string(),
        ),
        Phase::Returning(_) => (
            MaintenanceState::Undraining,
            "back in the groups: waiting for every switch to hold them".to_string(),
        ),
    }
}

fn lacp_note(e: &Entry) -> &'static str {
    if e.role == Role::Leaf {
        "; LACP out of sync on its LAG members"
    } else {
        ""
    }
}

/// Why draining `name` would cut traffic off, given the switches already
/// routed around: the last spine, or hosts attached to this leaf alone.
pub fn refusal(
    fabric: &Fabric,
    hosts: &Hosts,
    name: &str,
    role: Role,
    routed: &BTreeSet<String>,
) -> Option<String> {
    match role {
        Role::Spine => {
            let others = fabric
                .switches
                .iter()
                .any(|(n, s)| n != name && s.role == Role::Spine && !routed.contains(n));
            (!others).then(|| {
                format!(
                    "{name} is the last spine in service: the leaves would keep using it \
                     (with --force they do; traffic between leaves stops when it goes down)"
                )
            })
        }
        Role::Leaf => {
            let alone = single_homed(fabric, hosts, name, routed);
            (!alone.is_empty()).then(|| {
                format!(
                    "hosts attached to {name} alone would lose service: {}",
                    alone.join(", ")
                )
            })
        }
    }
}

/// The hosts attached to `leaf` alone (a port there, or a LAG whose other
/// leaves are all routed around), configured by name and learned by
/// `vlan/mac`, sorted.
pub fn single_homed(
    fabric: &Fabric,
    hosts: &Hosts,
    leaf: &str,
    routed: &BTreeSet<String>,
) -> Vec<String> {
    let alone = |a: &Attachment| match a {
        Attachment::Port(p) => p.switch == leaf,
        Attachment::Lag(l) => fabric.lags.get(l).is_some_and(|lag| {
            lag.members.iter().any(|m| m.switch == leaf)
                && lag
                    .members
                    .iter()
                    .all(|m| m.switch == leaf || routed.contains(&m.switch))
        }),
    };
    let mut out: Vec<String> = fabric
        .hosts
        .iter()
        .filter(|(_, h)| alone(&h.attachment))
        .map(|(n, _)| n.clone())
        .collect();
    let configured: BTreeSet<_> = fabric.hosts.values().map(|h| (h.vlan, h.mac)).collect();
    out.extend(
        hosts
            .values()
            .filter(|h| !configured.contains(&(h.vlan, h.mac)) && alone(&h.attachment))
            .map(|h| format!("{}/{}", h.vlan, h.mac)),
    );
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::sample::leaf_spine;
    use crate::config::{Host, PortRef};
    use crate::net::MacAddr;

    fn agent(name: &str, converged: u64) -> (String, AgentStatus) {
        let status = AgentStatus {
            state: SessionState::Primary,
            converged_generation: Some(converged),
            desired_generation: converged,
            ..AgentStatus::new(name)
        };
        (name.to_string(), status)
    }

    fn agents(f: &Fabric, converged: u64) -> BTreeMap<String, AgentStatus> {
        f.switches.keys().map(|n| agent(n, converged)).collect()
    }

    fn drain(f: &mut Fabric, switch: &str, force: bool) {
        f.maintenance.insert(
            switch.into(),
            Request {
                drain: true,
                force,
                reason: Some("optics".into()),
            },
        );
    }

    #[test]
    fn a_spine_drains_after_every_switch_holds_the_new_groups_and_comes_back() {
        let mut f = leaf_spine(2, 2);
        let mut m = Maintenance::default();
        let t0 = Instant::now();
        drain(&mut f, "spine1", false);
        let c = m.on_config(&f, &Hosts::new());
        assert!(c.routed && !c.lacp);
        assert_eq!(m.routed(), BTreeSet::from(["spine1".to_string()]));
        m.compiled(5);
        // A switch still on generation 4: not yet.
        let mut a = agents(&f, 5);
        a.insert("leaf02".into(), agent("leaf02", 4).1);
        m.step(&a, |_| true, |_| true, t0);
        assert_eq!(m.status("c1")["spine1"].state, MaintenanceState::Draining);
        m.step(&agents(&f, 5), |_| true, |_| true, t0);
        m.step(&agents(&f, 5), |_| true, |_| true, t0 + QUIESCE);
        let s = &m.status("c1")["spine1"];
        assert_eq!(s.state, MaintenanceState::Drained);
        assert!(s.detail.contains("counters not available"), "{}", s.detail);
        assert_eq!(s.reason.as_deref(), Some("optics"));
        // Undrain: waits for the spine's read-back, then back in the groups.
        f.maintenance.clear();
        m.on_config(&f, &Hosts::new());
        let mut a = agents(&f, 5);
        if let Some(s) = a.get_mut("spine1") {
            s.converged_generation = None;
        }
        assert_eq!(m.step(&a, |_| true, |_| true, t0), Changed::default());
        assert_eq!(m.status("c1")["spine1"].state, MaintenanceState::Undraining);
        assert!(m.routed().contains("spine1"));
        // Converged, but a link not heard again yet: still routed around.
        let c = m.step(&agents(&f, 5), |_| false, |_| true, t0);
        assert_eq!(c, Changed::default());
        // Ready: held for discovery's miss window (3 s) first.
        let c = m.step(&agents(&f, 5), |_| true, |_| true, t0);
        assert_eq!(c, Changed::default());
        let c = m.step(
            &agents(&f, 5),
            |_| true,
            |_| true,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(c, Changed::default());
        let c = m.step(
            &agents(&f, 5),
            |_| true,
            |_| true,
            t0 + Duration::from_secs(3),
        );
        assert!(c.routed);
        assert!(m.routed().is_empty());
        m.compiled(6);
        m.step(&agents(&f, 6), |_| true, |_| true, t0);
        assert!(m.status("c1").is_empty(), "in service");
    }

    #[test]
    fn the_last_spine_is_refused_unless_forced() {
        let mut f = leaf_spine(2, 2);
        let mut m = Maintenance::default();
        drain(&mut f, "spine1", false);
        drain(&mut f, "spine2", false);
        m.on_config(&f, &Hosts::new());
        let st = m.status("c1");
        assert_eq!(st["spine1"].state, MaintenanceState::Draining);
        assert_eq!(st["spine2"].state, MaintenanceState::Refused);
        assert!(st["spine2"].detail.contains("last spine"));
        assert_eq!(m.routed(), BTreeSet::from(["spine1".to_string()]));
        // spine1 comes back: the refused drain of spine2 goes ahead.
        f.maintenance.remove("spine1");
        m.on_config(&f, &Hosts::new());
        let mut a = agents(&f, 1);
        m.compiled(1);
        let t0 = Instant::now();
        m.step(&a, |_| true, |_| true, t0);
        m.step(&a, |_| true, |_| true, t0 + Duration::from_secs(3));
        m.step(&a, |_| true, |_| true, t0 + Duration::from_secs(3));
        m.on_config(&f, &Hosts::new());
        assert_eq!(m.status("c1")["spine2"].state, MaintenanceState::Draining);
        // Forced: done, and said so.
        let mut m = Maintenance::default();
        let mut f = leaf_spine(1, 2);
        drain(&mut f, "spine1", true);
        m.on_config(&f, &Hosts::new());
        m.compiled(1);
        a = agents(&f, 1);
        m.step(&a, |_| true, |_| true, Instant::now());
        let s = &m.status("c1")["spine1"];
        assert_eq!(s.state, MaintenanceState::Draining);
        assert!(s.detail.contains("forced"), "{}", s.detail);
    }

    #[test]
    fn a_leaf_with_single_homed_hosts_is_refused_naming_them() {
        let mut f = leaf_spine(1, 2);
        f.hosts.insert(
            "web1".into(),
            Host {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                vlan: 10,
                ips: vec![],
                attachment: Attachment::Port(PortRef::new("leaf01", 10)),
            },
        );
        let learned = crate::compile::HostEntry {
            vlan: 10,
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            ips: vec![],
            attachment: Attachment::Port(PortRef::new("leaf01", 11)),
            learned: true,
        };
        let hosts: Hosts = [(learned.key(), learned)].into();
        let mut m = Maintenance::default();
        drain(&mut f, "leaf01", false);
        m.on_config(&f, &hosts);
        let s = &m.status("c1")["leaf01"];
        assert_eq!(s.state, MaintenanceState::Refused);
        assert!(
            s.detail.contains("web1") && s.detail.contains("10/02:00:00:00:00:02"),
            "{}",
            s.detail
        );
        assert!(m.routed().is_empty());
        // Undrained while refused: nothing left.
        f.maintenance.clear();
        m.on_config(&f, &hosts);
        assert!(m.status("c1").is_empty());
    }

    #[test]
    fn a_leaf_goes_out_of_lacp_sync_only_after_the_fabric_moved() {
        let mut f = leaf_spine(1, 2);
        let mut m = Maintenance::default();
        let t0 = Instant::now();
        let none = Changed::default();
        drain(&mut f, "leaf01", false);
        let c = m.on_config(&f, &Hosts::new());
        assert!(c.routed && !c.lacp);
        assert!(m.lacp_drained().is_empty());
        m.compiled(3);
        assert_eq!(m.step(&agents(&f, 2), |_| true, |_| true, t0), none);
        assert!(m.lacp_drained().is_empty(), "fabric not moved yet");
        assert!(m.handed_over().is_empty(), "fabric not moved yet");
        // The others moved: its own LAG groups hand over, then LACP.
        let c = m.step(&agents(&f, 3), |_| true, |_| true, t0);
        assert!(c.routed && !c.lacp);
        assert_eq!(m.handed_over(), BTreeSet::from(["leaf01".to_string()]));
        m.compiled(4);
        assert_eq!(m.step(&agents(&f, 3), |_| true, |_| true, t0), none);
        assert!(m.lacp_drained().is_empty(), "groups not handed over yet");
        let c = m.step(&agents(&f, 4), |_| true, |_| true, t0);
        assert!(c.lacp);
        assert_eq!(m.lacp_drained(), BTreeSet::from(["leaf01".to_string()]));
        // Undrain: LACP first, then its own groups, then the others.
        f.maintenance.clear();
        m.on_config(&f, &Hosts::new());
        m.step(&agents(&f, 4), |_| true, |_| false, t0);
        let t0 = t0 + Duration::from_secs(3);
        let c = m.step(&agents(&f, 4), |_| true, |_| false, t0);
        assert!(c.lacp && !c.routed);
        assert!(m.lacp_drained().is_empty());
        assert!(m.routed().contains("leaf01"));
        assert!(m.handed_over().contains("leaf01"));
        assert_eq!(m.step(&agents(&f, 4), |_| true, |_| false, t0), none);
        let c = m.step(&agents(&f, 4), |_| true, |_| true, t0);
        assert!(c.routed);
        assert!(m.handed_over().is_empty());
        assert!(m.routed().contains("leaf01"));
        m.compiled(5);
        let c = m.step(&agents(&f, 5), |_| true, |_| true, t0);
        assert!(c.routed);
        assert!(m.routed().is_empty());
    }

    #[test]
    fn an_internal_request_drains_like_an_operators_and_its_removal_undrains() {
        let f = leaf_spine(2, 2);
        let mut m = Maintenance::default();
        let t0 = Instant::now();
        m.set_internal(Some((
            "spine1".into(),
            Request {
                drain: true,
                force: false,
                reason: Some("pipeline upgrade to v2".into()),
            },
        )));
        let c = m.on_config(&f, &Hosts::new());
        assert!(c.routed);
        assert_eq!(m.routed(), BTreeSet::from(["spine1".to_string()]));
        m.compiled(2);
        m.step(&agents(&f, 2), |_| true, |_| true, t0);
        m.step(&agents(&f, 2), |_| true, |_| true, t0 + QUIESCE);
        let (state, _) = m.state_of("spine1").expect("in maintenance");
        assert_eq!(state, MaintenanceState::Drained);
        assert_eq!(
            m.status("c1")["spine1"].reason.as_deref(),
            Some("pipeline upgrade to v2")
        );
        // Released: undrains as when an operator's key goes.
        m.set_internal(None);
        m.on_config(&f, &Hosts::new());
        assert_eq!(
            m.state_of("spine1").map(|s| s.0),
            Some(MaintenanceState::Undraining)
        );
    }

    #[test]
    fn a_drain_taken_over_starts_drained_with_lacp_out_of_sync() {
        let f = leaf_spine(2, 2);
        let mut m = Maintenance::default();
        let upgrade = Request {
            drain: true,
            force: true,
            reason: Some("pipeline upgrade to v2".into()),
        };
        m.adopt_drained("leaf01");
        m.set_internal(Some(("leaf01".into(), upgrade)));
        let c = m.on_config(&f, &Hosts::new());
        assert!(c.routed && c.lacp, "{c:?}");
        let leaf01 = BTreeSet::from(["leaf01".to_string()]);
        // The first compile routes around it and hands its LAGs over, as
        // the previous leader's last one did; LACP out of sync at once.
        assert_eq!(m.routed(), leaf01);
        assert_eq!(m.handed_over(), leaf01);
        assert_eq!(m.lacp_drained(), leaf01);
        let s = &m.status("c2")["leaf01"];
        assert_eq!(s.state, MaintenanceState::Drained);
        assert!(s.detail.contains("previous leader"), "{}", s.detail);
        // Released: the ordinary undrain (read-back, links, LACP).
        m.set_internal(None);
        m.on_config(&f, &Hosts::new());
        let s = &m.status("c2")["leaf01"];
        assert_eq!(s.state, MaintenanceState::Undraining);
        assert!(!s.detail.contains("previous leader"), "{}", s.detail);
        assert_eq!(
            m.lacp_drained(),
            leaf01,
            "LACP comes back after the read-back"
        );
        // Only the first configuration after the takeover: a later drain
        // goes the make-before-break way.
        let mut m = Maintenance::default();
        m.adopt_drained("spine1");
        m.on_config(&f, &Hosts::new());
        m.set_internal(Some((
            "spine1".into(),
            Request {
                drain: true,
                force: false,
                reason: None,
            },
        )));
        m.on_config(&f, &Hosts::new());
        assert_eq!(
            m.state_of("spine1").map(|s| s.0),
            Some(MaintenanceState::Draining)
        );
    }
}
