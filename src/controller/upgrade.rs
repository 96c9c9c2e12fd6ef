//! Rolling pipeline upgrade (the `upgrade` key, `p4fabric upgrade`): one
//! switch at a time — spines first, then leaves, each in name order —
//! drained, loaded with the new pipeline, verified, undrained; and
//! `status/upgrade`.
//!
//! Per switch:
//! 1. *draining*: an internal drain request (`drain_request`, served by
//!    `controller::maintenance` exactly as an operator's drain, forced for
//!    leaves: their single-homed hosts lose service while the leaf
//!    reloads) until maintenance reports it drained;
//! 2. *loading*: its agent is restarted on the new pipeline (`pinned`);
//!    the cookie differs, so the agent pushes it (bmv2 reloads and starts
//!    empty), reads back and writes its entities; done when the agent runs
//!    the new cookie and holds its desired state with no failing write;
//! 3. *verifying*: still drained, the switch is read back and the
//!    forwarding checker run over what the switches hold (`verify`: the
//!    read-back must equal its desired state, and every probe delivered
//!    just before the load must still be delivered); done when both pass,
//!    failed when they do not within `VERIFY_TIMEOUT` (rolled back like a
//!    refused push);
//! 4. *undraining*: the drain request goes; done when maintenance has
//!    brought it back (read-back, links heard again, groups restored).
//!
//! Stops at the first failure (drain refused or not done in time, push
//! refused, not converged in time, not verified in time, not back in time), saying why in
//! status; a switch that failed while loading goes back to the old
//! pipeline first (drained meanwhile), or stays drained if that fails too.
//! The switches not reached keep the old pipeline.
//!
//! Which switches are done is read from their agents' cookies, every
//! tick. Which one is in progress, and its phase, a controller taking over
//! (start, restart, HA failover) reads from the previous leader's
//! `status/upgrade`, written without a lease so that it outlives a stopped
//! or dead controller (`resume`, before the first drain request): a
//! switch named *draining*, *loading*, *verifying*, *rolling_back* or
//! *left_drained* for this very upgrade is the current one again, in that phase, so it
//! is out of service from the successor's first desired state on — one
//! being loaded (pushed, partly written) until its agent runs the new
//! cookie and holds its entities and it is verified (without the baseline
//! from before the load, which went with the previous leader: against the
//! fabric as it stands, so only the read-back can fail), then back through maintenance's undrain
//! (read-back, links heard, LACP); one the previous leader had drained is
//! taken as drained at once (`Maintenance::adopt_drained`: a leaf's LACP
//! stays out of sync); one left drained stays so; a failure stays one. A
//! status of another upgrade (the key changed or went), a finished one,
//! *undraining* or a switch no longer configured resumes nothing. Without
//! that status (a file configuration: no etcd) the switch in progress is
//! adopted in service on whatever pipeline it runs (old or new, see
//! `AgentConfig::accept`). Either way the roll-out goes on from the first
//! switch not on the new cookie. Pure state machine plus the status it
//! writes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::status::{
    self as st, MaintenanceState, StatusWriter, UpgradeState, UpgradeStatus,
};
use crate::config::{Fabric, Maintenance as DrainRequest, Role, Upgrade as Request};

/// The longest a switch may take to drain (maintenance's own steps: every
/// switch converged twice, `QUIESCE`).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a drained switch may take to run the new pipeline and hold
/// its entities (push, read-back, one full write).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest the verify step may keep failing (a read racing a new
/// desired state, links still being heard again) before the roll-out stops.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest it may take to come back into service (read-back, links
/// heard for a discovery miss window, LACP, groups restored).
pub const UNDRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the controller knows of one switch, for the upgrade.
#[derive(Debug, Clone)]
pub struct SwitchView {
    pub role: Role,
    /// Its agent is primary (a backup reports no cookie).
    pub primary: bool,
    /// The cookie of the pipeline it runs, as its agent found it.
    pub cookie: Option<u64>,
    /// Its agent holds the desired state, no write failing.
    pub converged: bool,
    /// The last pipeline push refused.
    pub pipeline_error: Option<String>,
    /// The new pipeline's cookie for this switch, or why it cannot be
    /// used: it does not load, or is not rollable from the old one.
    pub target: Result<u64, String>,
    /// The old pipeline's cookie (what a failed switch goes back to).
    pub old: Option<u64>,
    /// The verify step's last verdict for this switch (`Ok`: what was
    /// verified; `Err`: what failed), once it is being verified.
    pub verified: Option<Result<String, String>>,
    /// Its maintenance state and detail (none: in service).
    pub maintenance: Option<(MaintenanceState, String)>,
    /// An operator's `maintenance/<switch>` key is present.
    pub operator_drain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Draining,
    Loading,
    /// Loaded: read back and checked before it goes back into service.
    Verifying,
    Undraining,
    /// Failed while loading: back to the old pipeline, still drained.
    RollingBack,
    /// Failed and could not go back: stays drained.
    LeftDrained,
}

impl Phase {
    /// The phase `as_str` names (`status/upgrade`'s `phase`).
    fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Draining,
            Phase::Loading,
            Phase::Verifying,
            Phase::Undraining,
            Phase::RollingBack,
            Phase::LeftDrained,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    fn as_str(&self) -> &'static str {
        match self {
            Phase::Draining => "draining",
            Phase::Loading => "loading",
            Phase::Verifying => "verifying",
            Phase::Undraining => "undraining",
            Phase::RollingBack => "rolling_back",
            Phase::LeftDrained => "left_drained",
        }
    }
}

#[derive(Debug, Clone)]
struct Current {
    switch: String,
    role: Role,
    phase: Phase,
    entered: Instant,
    since: u64,
    /// What the verify step found (shown while it comes back).
    verified: Option<String>,
}

/// What changed in a step: the controller re-runs maintenance (`drain`)
/// and re-syncs the agents' pipelines (`pipelines`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub drain: bool,
    pub pipelines: bool,
}

/// Which pipeline a switch's agent should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineChoice {
    /// Pushed where the switch runs none of `accept` (and `dir`).
    pub dir: PathBuf,
    /// Adopted without a push when the switch runs one of them.
    pub accept: Vec<PathBuf>,
    /// A running agent on another directory is restarted on `dir` (only
    /// the drained switch being loaded or rolled back).
    pub pinned: bool,
    /// Pushed even where the switch reports `dir`'s cookie (a rollback:
    /// after a refused push the switch's state is in doubt).
    pub push: bool,
}

/// The switch a takeover resumed the roll-out at (`Upgrade::resume`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub switch: String,
    /// Its phase (`status/upgrade`'s name for it).
    pub phase: &'static str,
    /// It was drained already (the previous leader had moved on from
    /// draining it): maintenance may take it as drained at once.
    pub drained: bool,
}

/// Why no switch is picked.
enum Wait {
    For(String),
    /// Stops the roll-out: (switch, why).
    Failed(String, String),
}

/// The roll-out in progress (or done, or failed).
#[derive(Default)]
pub struct Upgrade {
    request: Option<Request>,
    current: Option<Current>,
    /// Where and why it stopped.
    failure: Option<(String, String)>,
    status: Option<UpgradeStatus>,
    published: bool,
}

impl Upgrade {
    /// Takes the configuration's `upgrade`. A new one starts over (a
    /// failure is forgotten); the switch in progress carries on towards the
    /// new target (it is drained), or comes back into service when the key
    /// went.
    pub fn on_config(&mut self, fabric: &Fabric) -> Changed {
        let mut changed = Changed::default();
        if fabric.upgrade == self.request {
            return changed;
        }
        self.request = fabric.upgrade.clone();
        self.failure = None;
        if let Some(c) = self.current.as_mut() {
            let gone = !fabric.switches.contains_key(&c.switch);
            let phase = match (&self.request, &c.phase) {
                _ if gone => None,
                (None, _) => Some(Phase::Undraining),
                (Some(_), Phase::RollingBack | Phase::LeftDrained) => Some(Phase::Loading),
                (Some(_), p) => Some(p.clone()),
            };
            match phase {
                None => self.current = None,
                Some(p) => {
                    if p != c.phase {
                        c.phase = p;
                        c.entered = Instant::now();
                        c.since = st::unix_now();
                    }
                }
            }
            changed = Changed {
                drain: true,
                pipelines: true,
            };
        }
        changed
    }

    /// The switch being loaded (the verify step's baseline is taken as it
    /// enters this phase, before its pipeline is pushed).
    pub fn loading(&self) -> Option<&str> {
        self.current
            .as_ref()
            .filter(|c| c.phase == Phase::Loading)
            .map(|c| c.switch.as_str())
    }

    /// The switch being verified.
    pub fn verifying(&self) -> Option<&str> {
        self.current
            .as_ref()
            .filter(|c| c.phase == Phase::Verifying)
            .map(|c| c.switch.as_str())
    }

    /// A controller taking over (start, restart, HA failover) picks the
    /// roll-out up where the previous leader's `status/upgrade` says it
    /// was, when that is this upgrade (same `pipeline_dir` and `version`)
    /// at a configured switch out of service — *draining*, *loading*, *verifying*,
    /// *rolling_back* or *left_drained*: that switch is the current one
    /// again, in that phase (its timeout counted from now), so
    /// `drain_request` keeps it out of service from the successor's first
    /// desired state on (a switch being loaded holds a part of its
    /// entities). A failure stays one. Anything else resumes nothing: no
    /// upgrade, another one, done, waiting, *undraining* (the switch holds
    /// its entities), a switch no longer configured; the switches' cookies
    /// say the rest. Call after the first `on_config`, before the first
    /// `drain_request`.
    pub fn resume(
        &mut self,
        previous: &UpgradeStatus,
        fabric: &Fabric,
        now: Instant,
    ) -> Option<Resumed> {
        // Whatever it says, it is this controller's to rewrite or remove
        // (it outlives its writer, see `publish`).
        self.published = true;
        let request = self.request.as_ref()?;
        let ours =
            previous.pipeline_dir == request.pipeline_dir && previous.version == request.version;
        if !ours || self.current.is_some() || self.failure.is_some() {
            return None;
        }
        let switch = previous.switch.clone()?;
        let role = fabric.switches.get(&switch)?.role;
        if previous.state == UpgradeState::Failed {
            let why = previous.failure.clone().unwrap_or_default();
            self.failure = Some((switch.clone(), why));
        }
        let phase = previous.phase.as_deref().and_then(Phase::parse)?;
        let drained = match phase {
            Phase::Draining => false,
            Phase::Loading | Phase::Verifying | Phase::RollingBack | Phase::LeftDrained => true,
            Phase::Undraining => return None,
        };
        let resumed = Resumed {
            switch: switch.clone(),
            phase: phase.as_str(),
            drained,
        };
        self.current = Some(Current {
            switch,
            role,
            phase,
            entered: now,
            since: previous.since,
            verified: None,
        });
        Some(resumed)
    }

    /// The configured upgrade, if any.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// Where the old and new pipelines live (`default_dir`: the
    /// controller's own).
    pub fn dirs(&self, default_dir: &std::path::Path) -> Option<(PathBuf, PathBuf)> {
        let r = self.request.as_ref()?;
        let old = r
            .from_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| default_dir.to_path_buf());
        Some((old, PathBuf::from(&r.pipeline_dir)))
    }

    /// The pipeline `switch`'s agent should run: the new one for the
    /// switch being loaded (pinned) and for switches done, the old one
    /// for the switch rolled back (pinned) and the rest; either accepted.
    pub fn choice(
        &self,
        switch: &str,
        on_new: bool,
        default_dir: &std::path::Path,
    ) -> PipelineChoice {
        let Some((old, new)) = self.dirs(default_dir) else {
            return PipelineChoice {
                dir: default_dir.to_path_buf(),
                accept: Vec::new(),
                pinned: false,
                push: false,
            };
        };
        let phase = self
            .current
            .as_ref()
            .filter(|c| c.switch == switch)
            .map(|c| &c.phase);
        let (use_new, pinned) = match phase {
            Some(Phase::Loading | Phase::Verifying) => (true, true),
            Some(Phase::RollingBack | Phase::LeftDrained) => (false, true),
            Some(Phase::Undraining) => (true, false),
            _ => (on_new, false),
        };
        // A pinned switch must end on `dir`: nothing else is adopted.
        let mut accept = if pinned {
            Vec::new()
        } else {
            vec![old.clone(), new.clone(), default_dir.to_path_buf()]
        };
        accept.dedup();
        PipelineChoice {
            dir: if use_new { new } else { old },
            accept,
            pinned,
            push: phase == Some(&Phase::RollingBack),
        }
    }

    /// The internal drain the upgrade needs (served like an operator's
    /// `maintenance/<switch>`).
    pub fn drain_request(&self) -> Option<(String, DrainRequest)> {
        let c = self.current.as_ref()?;
        if c.phase == Phase::Undraining {
            return None;
        }
        let version = self
            .request
            .as_ref()
            .and_then(|r| r.version.clone())
            .unwrap_or_else(|| "a new pipeline".to_string());
        Some((
            c.switch.clone(),
            DrainRequest {
                drain: true,
                // Leaves always (their single-homed hosts lose service
                // while they reload); spines only when asked.
                force: c.role == Role::Leaf || self.request.as_ref().is_some_and(|r| r.force),
                reason: Some(format!("pipeline upgrade to {version}")),
            },
        ))
    }

    /// Advances the roll-out (called on the status tick). `order`: the
    /// switches in upgrade order (`order`); `views`: what is known of each.
    pub fn step(
        &mut self,
        order: &[String],
        views: &BTreeMap<String, SwitchView>,
        now: Instant,
    ) -> Changed {
        let mut changed = Changed::default();
        let Some(request) = self.request.clone() else {
            // The key went: finish bringing the last switch back.
            if let Some(c) = &self.current {
                let back = views.get(&c.switch).is_none_or(|v| v.maintenance.is_none());
                if back || now >= c.entered + UNDRAIN_TIMEOUT {
                    self.current = None;
                }
            }
            self.status = None;
            return changed;
        };
        let on_new =
            |v: &SwitchView| v.cookie.is_some() && v.target.as_ref().ok() == v.cookie.as_ref();
        let mut detail = String::new();
        if let Some(c) = self.current.clone() {
            let Some(v) = views.get(&c.switch) else {
                // Removed from the configuration meanwhile.
                self.current = None;
                return Changed {
                    drain: true,
                    pipelines: true,
                };
            };
            let elapsed = now.saturating_duration_since(c.entered);
            let mut next: Option<Phase> = None;
            let mut failed: Option<String> = None;
            match c.phase {
                Phase::Draining => match &v.maintenance {
                    Some((MaintenanceState::Drained, _)) => next = Some(Phase::Loading),
                    Some((MaintenanceState::Refused, why)) => {
                        failed = Some(format!("drain refused: {why}"))
                    }
                    _ if elapsed >= DRAIN_TIMEOUT => {
                        failed = Some(format!("not drained within {} s", DRAIN_TIMEOUT.as_secs()))
                    }
                    _ => detail = "waiting for it to drain".to_string(),
                },
                Phase::Loading => {
                    let why = match (&v.target, &v.pipeline_error) {
                        (Err(e), _) => Some(format!("cannot load the new pipeline: {e}")),
                        (_, Some(e)) => Some(format!("pipeline push refused: {e}")),
                        _ if on_new(v) && v.primary && v.converged => {
                            next = Some(Phase::Verifying);
                            None
                        }
                        _ if elapsed >= LOAD_TIMEOUT => Some(format!(
                            "not converged on the new pipeline within {} s",
                            LOAD_TIMEOUT.as_secs()
                        )),
                        _ => {
                            detail = "waiting for it to run the new pipeline and hold its entities"
                                .to_string();
                            None
                        }
                    };
                    if let Some(why) = why {
                        self.failure = Some((c.switch.clone(), why));
                        next = Some(Phase::RollingBack);
                    }
                }
                Phase::Verifying => {
                    let why = match (&v.pipeline_error, &v.verified) {
                        (Some(e), _) => Some(format!("pipeline push refused: {e}")),
                        (None, Some(Ok(what))) => {
                            if let Some(cur) = self.current.as_mut() {
                                cur.verified = Some(what.clone());
                            }
                            next = Some(Phase::Undraining);
                            None
                        }
                        (None, Some(Err(e))) if elapsed >= VERIFY_TIMEOUT => Some(format!(
                            "verification failed for {} s: {e}",
                            VERIFY_TIMEOUT.as_secs()
                        )),
                        (None, Some(Err(e))) => {
                            detail = format!("verifying (retrying): {e}");
                            None
                        }
                        (None, None) if elapsed >= VERIFY_TIMEOUT => Some(format!(
                            "not verified within {} s",
                            VERIFY_TIMEOUT.as_secs()
                        )),
                        (None, None) => {
                            detail = "verifying: reading it back".to_string();
                            None
                        }
                    };
                    if let Some(why) = why {
                        self.failure = Some((c.switch.clone(), why));
                        next = Some(Phase::RollingBack);
                    }
                }
                Phase::Undraining => {
                    if v.maintenance.is_none() {
                        self.current = None;
                        changed.pipelines = true;
                    } else if elapsed >= UNDRAIN_TIMEOUT {
                        // Maintenance goes on bringing it back; the
                        // roll-out stops here.
                        if self.failure.is_none() {
                            self.failure = Some((
                                c.switch.clone(),
                                format!(
                                    "not back in service within {} s",
                                    UNDRAIN_TIMEOUT.as_secs()
                                ),
                            ));
                        }
                        self.current = None;
                    } else {
                        detail = match &c.verified {
                            Some(v) => {
                                format!("verified ({v}); waiting for it to come back into service")
                            }
                            None => "waiting for it to come back into service".to_string(),
                        };
                    }
                }
                Phase::RollingBack => {
                    let back = v.cookie.is_some() && v.cookie == v.old && v.primary && v.converged;
                    if back {
                        // Back on the old pipeline: into service again.
                        self.append_failure("; back on the old pipeline, in service again");
                        next = Some(Phase::Undraining);
                    } else if v.pipeline_error.is_some() || elapsed >= LOAD_TIMEOUT {
                        self.append_failure(
                            "; could not go back to the old pipeline: left drained",
                        );
                        next = Some(Phase::LeftDrained);
                    } else {
                        detail = "going back to the old pipeline".to_string();
                    }
                }
                Phase::LeftDrained => {}
            }
            if let Some(why) = failed {
                // Nothing loaded: simply back into service (if drained).
                self.failure = Some((c.switch.clone(), why));
                next = Some(Phase::Undraining);
            }
            if let Some(p) = next {
                if let Some(cur) = self.current.as_mut() {
                    cur.phase = p;
                    cur.entered = now;
                    cur.since = st::unix_now();
                }
                changed = Changed {
                    drain: true,
                    pipelines: true,
                };
            }
        }
        if self.current.is_none() && self.failure.is_none() {
            match self.pick(order, views) {
                Ok(Some(next)) => {
                    let role = views.get(&next).map_or(Role::Leaf, |v| v.role);
                    self.current = Some(Current {
                        switch: next,
                        role,
                        phase: Phase::Draining,
                        entered: now,
                        since: st::unix_now(),
                        verified: None,
                    });
                    changed.drain = true;
                    detail = "waiting for it to drain".to_string();
                }
                Ok(None) => {}
                Err(Wait::For(why)) => detail = why,
                Err(Wait::Failed(sw, why)) => self.failure = Some((sw, why)),
            }
        }
        self.status = Some(self.describe(&request, order, views, detail));
        changed
    }

    fn append_failure(&mut self, what: &str) {
        if let Some((_, why)) = self.failure.as_mut() {
            if !why.contains(what) {
                why.push_str(what);
            }
        }
    }

    /// The next switch to upgrade, none when all are done, or what the
    /// roll-out waits for: every switch must report its pipeline (primary,
    /// converged: the fabric works before a switch leaves it), and none be
    /// in an operator's maintenance (two switches out at once could cut
    /// traffic off).
    fn pick(
        &self,
        order: &[String],
        views: &BTreeMap<String, SwitchView>,
    ) -> Result<Option<String>, Wait> {
        for name in order {
            let Some(v) = views.get(name) else {
                return Err(Wait::For(format!("waiting for {name}'s agent")));
            };
            if let Err(e) = &v.target {
                return Err(Wait::Failed(
                    name.clone(),
                    format!("cannot load the new pipeline: {e}"),
                ));
            }
            if v.operator_drain || v.maintenance.is_some() {
                return Err(Wait::For(format!("waiting: {name} is in maintenance")));
            }
            if !v.primary || v.cookie.is_none() {
                return Err(Wait::For(format!(
                    "waiting for {name} to report its pipeline"
                )));
            }
            if !v.converged {
                return Err(Wait::For(format!("waiting for {name} to converge")));
            }
        }
        for name in order {
            let v = &views[name];
            match &v.target {
                Err(_) => {}
                Ok(t) if v.cookie != Some(*t) => return Ok(Some(name.clone())),
                Ok(_) => {}
            }
        }
        Ok(None)
    }

    fn describe(
        &self,
        request: &Request,
        order: &[String],
        views: &BTreeMap<String, SwitchView>,
        detail: String,
    ) -> UpgradeStatus {
        let (done, remaining): (Vec<String>, Vec<String>) = order.iter().cloned().partition(|n| {
            views
                .get(n)
                .is_some_and(|v| v.cookie.is_some() && v.target.as_ref().ok() == v.cookie.as_ref())
        });
        let (state, detail) = match (&self.failure, &self.current) {
            (Some((sw, why)), c) => (
                UpgradeState::Failed,
                match c {
                    Some(c) if c.phase == Phase::LeftDrained => format!("{sw}: {why}"),
                    Some(c) => format!("{sw}: {why} ({})", c.phase.as_str()),
                    None => format!("stopped at {sw}: {why}; the rest keep their pipeline"),
                },
            ),
            (None, Some(c)) if detail.is_empty() => (
                UpgradeState::Running,
                match c.phase {
                    Phase::Loading => "drained; loading the new pipeline",
                    Phase::Verifying => "loaded; verifying by read-back and the forwarding checker",
                    Phase::Undraining => "on the new pipeline; coming back into service",
                    _ => "in progress",
                }
                .to_string(),
            ),
            (None, Some(_)) => (UpgradeState::Running, detail),
            (None, None) if remaining.is_empty() => (
                UpgradeState::Done,
                "every switch runs the new pipeline".to_string(),
            ),
            (None, None) => (UpgradeState::Waiting, detail),
        };
        let since = self
            .current
            .as_ref()
            .map(|c| c.since)
            .or(self
                .status
                .as_ref()
                .filter(|s| s.state == state)
                .map(|s| s.since))
            .unwrap_or_else(st::unix_now);
        UpgradeStatus {
            state,
            version: request.version.clone(),
            pipeline_dir: request.pipeline_dir.clone(),
            switch: self
                .current
                .as_ref()
                .map(|c| c.switch.clone())
                .or(self.failure.as_ref().map(|(s, _)| s.clone())),
            phase: self.current.as_ref().map(|c| c.phase.as_str().to_string()),
            detail,
            done,
            remaining,
            failure: self.failure.as_ref().map(|(_, why)| why.clone()),
            controller: String::new(),
            since,
        }
    }

    /// The status as of the last step (none without an `upgrade`).
    pub fn status(&self) -> Option<&UpgradeStatus> {
        self.status.as_ref()
    }

    /// Hands `status/upgrade` to the write-behind queue (removed when the
    /// key goes). Durable (no lease): a successor started after this
    /// controller stopped or died reads it (`resume`).
    pub fn publish(&mut self, writer: Option<&Arc<StatusWriter>>, controller: &str) {
        let Some(w) = writer else {
            return;
        };
        match &self.status {
            Some(s) => {
                let mut s = s.clone();
                s.controller = controller.to_string();
                w.set_durable_later(st::paths::UPGRADE, &s);
                self.published = true;
            }
            None if self.published => {
                w.remove_later(st::paths::UPGRADE);
                self.published = false;
            }
            None => {}
        }
    }
}

/// The upgrade order: spines, then leaves, each by name — one at a time,
/// so the fabric always keeps every other switch.
pub fn order(fabric: &Fabric) -> Vec<String> {
    let of = |role: Role| {
        fabric
            .switches
            .iter()
            .filter(move |(_, s)| s.role == role)
            .map(|(n, _)| n.clone())
    };
    of(Role::Spine).chain(of(Role::Leaf)).collect()
}

/// The labels of the pipelines an upgrade names, by cookie (status).
pub fn labels(
    request: Option<&Request>,
    old: Option<u64>,
    new: Option<u64>,
) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let Some(r) = request else {
        return out;
    };
    if let (Some(c), Some(l)) = (old, r.from_version.clone()) {
        out.insert(c, l);
    }
    if let (Some(c), Some(l)) = (new, r.version.clone()) {
        out.insert(c, l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::sample::leaf_spine;

    const OLD: u64 = 1;
    const NEW: u64 = 2;

    fn request() -> Request {
        Request {
            pipeline_dir: "/tmp/v2".into(),
            version: Some("v2".into()),
            from_dir: None,
            from_version: Some("v1".into()),
            force: false,
        }
    }

    /// A fabric in service, every switch on `OLD`, converged.
    fn views(f: &Fabric) -> BTreeMap<String, SwitchView> {
        f.switches
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    SwitchView {
                        role: s.role,
                        primary: true,
                        cookie: Some(OLD),
                        converged: true,
                        pipeline_error: None,
                        verified: None,
                        target: Ok(NEW),
                        old: Some(OLD),
                        maintenance: None,
                        operator_drain: false,
                    },
                )
            })
            .collect()
    }

    /// `f` with an upgrade requested: its order, the upgrade that took the
    /// request, every switch in service on `OLD`, the time.
    fn started(f: &mut Fabric) -> (Vec<String>, Upgrade, BTreeMap<String, SwitchView>, Instant) {
        f.upgrade = Some(request());
        let mut u = Upgrade::default();
        u.on_config(f);
        (order(f), u, views(f), Instant::now())
    }

    /// The switch the upgrade drains now, if any.
    fn draining(u: &Upgrade) -> Option<String> {
        u.drain_request().map(|(s, _)| s)
    }

    /// Plays maintenance, the agent and the verify step for the switch in
    /// progress, one phase per call: drained, loaded (new cookie,
    /// converged), verified, back.
    fn advance(
        u: &mut Upgrade,
        order: &[String],
        v: &mut BTreeMap<String, SwitchView>,
        t: Instant,
    ) {
        if let Some(c) = &u.current {
            let sw = c.switch.clone();
            let e = v.get_mut(&sw).expect("view");
            match c.phase {
                Phase::Draining => e.maintenance = Some((MaintenanceState::Drained, String::new())),
                Phase::Loading => e.cookie = Some(NEW),
                Phase::Verifying => e.verified = Some(Ok("verified".into())),
                Phase::Undraining => {
                    e.maintenance = None;
                    e.verified = None;
                }
                _ => {}
            }
        }
        u.step(order, v, t);
    }

    #[test]
    fn spines_then_leaves_one_at_a_time_until_every_switch_runs_the_new_cookie() {
        let mut f = leaf_spine(2, 3);
        f.upgrade = Some(request());
        let order = order(&f);
        assert_eq!(
            order,
            ["spine1", "spine2", "leaf01", "leaf02", "leaf03"].map(String::from)
        );
        let mut u = Upgrade::default();
        u.on_config(&f);
        let mut v = views(&f);
        let t = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..100 {
            advance(&mut u, &order, &mut v, t);
            // Never two switches out at once.
            let out: Vec<&String> = v
                .iter()
                .filter(|(_, s)| s.maintenance.is_some())
                .map(|(n, _)| n)
                .collect();
            assert!(out.len() <= 1, "{out:?}");
            if let Some(d) = draining(&u) {
                if seen.last() != Some(&d) {
                    seen.push(d);
                }
            }
            if u.status().is_some_and(|s| s.state == UpgradeState::Done) {
                break;
            }
        }
        assert_eq!(seen, order);
        let s = u.status().expect("status");
        assert_eq!(s.state, UpgradeState::Done);
        assert_eq!(s.done, order);
        assert!(s.remaining.is_empty());
        assert!(v.values().all(|s| s.cookie == Some(NEW)));
    }

    #[test]
    fn the_switch_being_loaded_is_pinned_to_the_new_pipeline_the_rest_stay() {
        let mut f = leaf_spine(2, 2);
        let (order, mut u, mut v, t) = started(&mut f);
        let base = std::path::Path::new("/base");
        u.step(&order, &v, t);
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
        let c = u.choice("spine1", false, base);
        assert!(!c.pinned && c.dir == base, "{c:?}");
        v.get_mut("spine1").expect("v").maintenance =
            Some((MaintenanceState::Drained, String::new()));
        let ch = u.step(&order, &v, t);
        assert!(ch.pipelines);
        let c = u.choice("spine1", false, base);
        assert!(
            c.pinned && c.dir == std::path::Path::new("/tmp/v2"),
            "{c:?}"
        );
        assert!(c.accept.is_empty(), "a pinned switch adopts nothing else");
        let c = u.choice("spine2", false, base);
        assert!(c.accept.contains(&base.to_path_buf()));
        assert!(!c.pinned && c.dir == base, "{c:?}");
        // Still drained while loading.
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
        // Loaded and converged: verified while still drained and pinned.
        v.get_mut("spine1").expect("v").cookie = Some(NEW);
        u.step(&order, &v, t);
        assert_eq!(u.verifying(), Some("spine1"));
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
        assert!(u.choice("spine1", true, base).pinned);
        assert_eq!(u.status().expect("s").phase.as_deref(), Some("verifying"));
        // Verified: undrained, no longer pinned.
        v.get_mut("spine1").expect("v").verified = Some(Ok("verified".into()));
        u.step(&order, &v, t);
        assert_eq!(draining(&u), None);
        assert!(!u.choice("spine1", true, base).pinned);
        assert_eq!(u.status().expect("s").phase.as_deref(), Some("undraining"));
        // spine2 waits until spine1 is back; status says what was verified.
        u.step(&order, &v, t);
        assert_eq!(draining(&u), None);
        let d = &u.status().expect("s").detail;
        assert!(d.contains("verified (verified)"), "{d}");
        v.get_mut("spine1").expect("v").maintenance = None;
        u.step(&order, &v, t);
        assert_eq!(draining(&u).as_deref(), Some("spine2"));
    }

    #[test]
    fn a_failed_verification_is_retried_then_rolls_the_switch_back() {
        let mut f = leaf_spine(2, 2);
        let (order, mut u, mut v, t) = started(&mut f);
        u.step(&order, &v, t);
        let e = v.get_mut("spine1").expect("v");
        e.maintenance = Some((MaintenanceState::Drained, String::new()));
        u.step(&order, &v, t);
        v.get_mut("spine1").expect("v").cookie = Some(NEW);
        u.step(&order, &v, t);
        assert_eq!(u.verifying(), Some("spine1"));
        // A failing check within the timeout: retried, said so.
        let why = "the forwarding checker no longer delivers 1 probes";
        v.get_mut("spine1").expect("v").verified = Some(Err(why.into()));
        u.step(&order, &v, t + Duration::from_secs(5));
        assert_eq!(u.verifying(), Some("spine1"));
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Running);
        assert!(
            s.detail.contains("retrying") && s.detail.contains(why),
            "{}",
            s.detail
        );
        // Still failing at the timeout: back to the old pipeline, drained.
        u.step(&order, &v, t + VERIFY_TIMEOUT);
        assert_eq!(u.verifying(), None);
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
        let c = u.choice("spine1", true, std::path::Path::new("/base"));
        assert!(c.pinned && c.dir == std::path::Path::new("/base"), "{c:?}");
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Failed);
        assert!(
            s.failure.as_deref().is_some_and(|f| f.contains(why)),
            "{:?}",
            s.failure
        );
        // Back on the old pipeline: in service again, the rest untouched.
        let e = v.get_mut("spine1").expect("v");
        e.cookie = Some(OLD);
        e.verified = None;
        u.step(&order, &v, t + VERIFY_TIMEOUT);
        assert_eq!(draining(&u), None);
        assert!(v.iter().all(|(_, s)| s.cookie == Some(OLD)));
    }

    #[test]
    fn a_refused_push_stops_the_rollout_and_the_switch_goes_back() {
        let mut f = leaf_spine(2, 2);
        let (order, mut u, mut v, t) = started(&mut f);
        advance(&mut u, &order, &mut v, t); // spine1 draining
        advance(&mut u, &order, &mut v, t); // drained -> loading
        v.get_mut("spine1").expect("v").pipeline_error = Some("INVALID_ARGUMENT bad json".into());
        v.get_mut("spine1").expect("v").cookie = None;
        u.step(&order, &v, t);
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Failed);
        assert!(
            s.failure.as_deref().is_some_and(|f| f.contains("bad json")),
            "{s:?}"
        );
        // Rolled back: pinned to the old pipeline and pushed even where the
        // switch reports it (its state is in doubt), still drained.
        let c = u.choice("spine1", false, std::path::Path::new("/base"));
        assert!(c.pinned && c.push && c.dir == std::path::Path::new("/base"));
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
        // The agent runs the old one again: undrained, and nothing else starts.
        let e = v.get_mut("spine1").expect("v");
        e.pipeline_error = None;
        e.cookie = Some(OLD);
        u.step(&order, &v, t);
        assert_eq!(draining(&u), None);
        v.get_mut("spine1").expect("v").maintenance = None;
        for _ in 0..5 {
            u.step(&order, &v, t + Duration::from_secs(1));
        }
        assert_eq!(draining(&u), None, "stopped at the first failure");
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Failed);
        assert!(s.detail.contains("stopped at spine1"), "{}", s.detail);
        assert_eq!(s.remaining.len(), 4);
        // A new request starts over.
        let mut r = request();
        r.version = Some("v3".into());
        f.upgrade = Some(r);
        u.on_config(&f);
        u.step(&order, &v, t);
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
    }

    #[test]
    fn not_converged_in_time_rolls_back_and_a_failed_rollback_stays_drained() {
        let mut f = leaf_spine(1, 2);
        let (order, mut u, mut v, t) = started(&mut f);
        advance(&mut u, &order, &mut v, t);
        advance(&mut u, &order, &mut v, t);
        // On the new cookie but never converged.
        let e = v.get_mut("spine1").expect("v");
        e.cookie = Some(NEW);
        e.converged = false;
        u.step(&order, &v, t + LOAD_TIMEOUT - Duration::from_secs(1));
        assert_eq!(u.status().expect("s").state, UpgradeState::Running);
        u.step(&order, &v, t + LOAD_TIMEOUT);
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Failed);
        assert_eq!(s.phase.as_deref(), Some("rolling_back"));
        // The old pipeline does not come back either: left drained.
        u.step(&order, &v, t + LOAD_TIMEOUT * 2);
        let s = u.status().expect("s");
        assert_eq!(s.phase.as_deref(), Some("left_drained"));
        assert!(s.detail.contains("left drained"), "{}", s.detail);
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
        // The key removed: it comes back into service.
        f.upgrade = None;
        u.on_config(&f);
        assert_eq!(draining(&u), None);
        u.step(&order, &v, t);
        assert!(u.status().is_none(), "no upgrade, no status");
    }

    #[test]
    fn a_refused_drain_stops_without_loading_anything() {
        let mut f = leaf_spine(1, 1);
        let (order, mut u, mut v, t) = started(&mut f);
        u.step(&order, &v, t);
        v.get_mut("spine1").expect("v").maintenance = Some((
            MaintenanceState::Refused,
            "spine1 is the last spine in service".into(),
        ));
        u.step(&order, &v, t);
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Failed);
        assert!(s.detail.contains("last spine"), "{}", s.detail);
        assert_eq!(draining(&u), None);
        assert!(!u.choice("spine1", false, std::path::Path::new("/b")).pinned);
    }

    #[test]
    fn a_restart_resumes_from_the_cookies_the_switches_report() {
        let mut f = leaf_spine(2, 2);
        f.upgrade = Some(request());
        let order = order(&f);
        let mut v = views(&f);
        // Before the restart: both spines done, leaf01 loaded (not yet
        // undrained: the new controller sees it in service on NEW).
        for n in ["spine1", "spine2", "leaf01"] {
            v.get_mut(n).expect("v").cookie = Some(NEW);
        }
        // One switch not reporting yet: nothing starts.
        v.get_mut("leaf02").expect("v").primary = false;
        let mut u = Upgrade::default();
        u.on_config(&f);
        let t = Instant::now();
        u.step(&order, &v, t);
        assert_eq!(draining(&u), None);
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Waiting);
        assert!(s.detail.contains("leaf02"), "{}", s.detail);
        assert_eq!(s.done, ["spine1", "spine2", "leaf01"].map(String::from));
        // Switches done keep the new pipeline, unpinned (no restart).
        let c = u.choice("spine1", true, std::path::Path::new("/b"));
        assert!(!c.pinned && c.dir == std::path::Path::new("/tmp/v2"));
        v.get_mut("leaf02").expect("v").primary = true;
        u.step(&order, &v, t);
        assert_eq!(draining(&u).as_deref(), Some("leaf02"));
        // An operator's drain elsewhere holds the roll-out back.
        let mut u = Upgrade::default();
        u.on_config(&f);
        v.get_mut("spine1").expect("v").operator_drain = true;
        u.step(&order, &v, t);
        assert_eq!(draining(&u), None);
        assert!(u.status().expect("s").detail.contains("maintenance"));
    }

    /// What a previous leader left in `status/upgrade`: `switch` in
    /// `phase`, upgrading to `request()`.
    fn left(state: UpgradeState, switch: Option<&str>, phase: Option<&str>) -> UpgradeStatus {
        UpgradeStatus {
            state,
            version: Some("v2".into()),
            pipeline_dir: "/tmp/v2".into(),
            switch: switch.map(String::from),
            phase: phase.map(String::from),
            detail: String::new(),
            done: Vec::new(),
            remaining: Vec::new(),
            failure: None,
            controller: "c0".into(),
            since: 1,
        }
    }

    #[test]
    fn a_takeover_keeps_the_switch_being_loaded_drained_until_it_holds_its_entities() {
        let mut f = leaf_spine(2, 2);
        f.upgrade = Some(request());
        let order = order(&f);
        let mut v = views(&f);
        // spine1 done; spine2 pushed (the new cookie), partly written.
        v.get_mut("spine1").expect("v").cookie = Some(NEW);
        let e = v.get_mut("spine2").expect("v");
        e.cookie = Some(NEW);
        e.converged = false;
        let mut u = Upgrade::default();
        u.on_config(&f);
        let t = Instant::now();
        let prev = left(UpgradeState::Running, Some("spine2"), Some("loading"));
        let r = u.resume(&prev, &f, t).expect("resumed");
        assert_eq!(
            r,
            Resumed {
                switch: "spine2".into(),
                phase: "loading",
                drained: true
            }
        );
        // Drained before any step, and pinned to the new pipeline.
        assert_eq!(draining(&u).as_deref(), Some("spine2"));
        let c = u.choice("spine2", true, std::path::Path::new("/b"));
        assert!(
            c.pinned && c.dir == std::path::Path::new("/tmp/v2"),
            "{c:?}"
        );
        // On the new cookie but not converged: still drained (without the
        // resume it would count as done and be in service).
        for i in 0..3 {
            u.step(&order, &v, t + Duration::from_secs(i));
            assert_eq!(draining(&u).as_deref(), Some("spine2"));
        }
        let s = u.status().expect("s");
        assert_eq!(s.state, UpgradeState::Running);
        assert_eq!(s.phase.as_deref(), Some("loading"));
        assert_eq!(
            s.since, 1,
            "the phase's start as the previous leader saw it"
        );
        // Converged: verified (still drained), undrained, then the
        // roll-out goes on.
        v.get_mut("spine2").expect("v").converged = true;
        u.step(&order, &v, t);
        assert_eq!(u.verifying(), Some("spine2"));
        assert_eq!(draining(&u).as_deref(), Some("spine2"));
        v.get_mut("spine2").expect("v").verified = Some(Ok("verified".into()));
        u.step(&order, &v, t);
        assert_eq!(draining(&u), None);
        assert_eq!(u.status().expect("s").phase.as_deref(), Some("undraining"));
        u.step(&order, &v, t);
        assert_eq!(draining(&u).as_deref(), Some("leaf01"));
        // The load timeout counts from the takeover.
        let mut u = Upgrade::default();
        u.on_config(&f);
        v.get_mut("spine2").expect("v").converged = false;
        u.resume(&prev, &f, t + Duration::from_secs(100));
        u.step(&order, &v, t + Duration::from_secs(100) + LOAD_TIMEOUT / 2);
        assert!(u.status().expect("s").failure.is_none());
    }

    #[test]
    fn a_takeover_resumes_draining_rolling_back_and_left_drained_too() {
        let mut f = leaf_spine(2, 2);
        f.upgrade = Some(request());
        let t = Instant::now();
        let mut u = Upgrade::default();
        u.on_config(&f);
        let r = u.resume(
            &left(UpgradeState::Running, Some("leaf01"), Some("draining")),
            &f,
            t,
        );
        assert_eq!(
            r.map(|r| (r.switch, r.drained)),
            Some(("leaf01".into(), false))
        );
        let (sw, req) = u.drain_request().expect("drain");
        assert!(sw == "leaf01" && req.force, "leaves are drained forced");
        for phase in ["rolling_back", "left_drained"] {
            let mut u = Upgrade::default();
            u.on_config(&f);
            let mut prev = left(UpgradeState::Failed, Some("spine1"), Some(phase));
            prev.failure = Some("pipeline push refused: bad json".into());
            let r = u.resume(&prev, &f, t).expect("resumed");
            assert!(r.drained, "{phase}");
            assert_eq!(draining(&u).as_deref(), Some("spine1"), "{phase}");
            // Pinned to the old pipeline; the failure stands.
            let c = u.choice("spine1", true, std::path::Path::new("/b"));
            assert!(c.pinned && c.dir == std::path::Path::new("/b"), "{c:?}");
            let order = order(&f);
            let mut v = views(&f);
            v.get_mut("spine1").expect("v").cookie = Some(NEW);
            u.step(&order, &v, t);
            let s = u.status().expect("s");
            assert_eq!(s.state, UpgradeState::Failed, "{phase}");
            assert!(s.detail.contains("bad json"), "{}", s.detail);
            assert_eq!(draining(&u).as_deref(), Some("spine1"), "{phase}");
        }
        // A failure where the switch came back: nothing drained, stopped.
        let mut u = Upgrade::default();
        u.on_config(&f);
        let mut prev = left(UpgradeState::Failed, Some("spine1"), None);
        prev.failure = Some("drain refused: last spine".into());
        assert!(u.resume(&prev, &f, t).is_none());
        u.step(&order(&f), &views(&f), t);
        assert_eq!(draining(&u), None);
        let s = u.status().expect("s");
        assert!(s.detail.contains("stopped at spine1"), "{}", s.detail);
    }

    #[test]
    fn a_stale_or_foreign_status_resumes_nothing() {
        let mut f = leaf_spine(2, 2);
        f.upgrade = Some(request());
        let t = Instant::now();
        let loading = left(UpgradeState::Running, Some("spine2"), Some("loading"));
        let resumes = |f: &Fabric, prev: &UpgradeStatus| {
            let mut u = Upgrade::default();
            u.on_config(f);
            let r = u.resume(prev, f, t);
            assert_eq!(r.is_some(), draining(&u).is_some());
            r.is_some()
        };
        assert!(resumes(&f, &loading));
        // Finished, or between switches: nothing named out of service.
        assert!(!resumes(&f, &left(UpgradeState::Done, None, None)));
        assert!(!resumes(&f, &left(UpgradeState::Waiting, None, None)));
        // Undraining: the switch holds its entities.
        let undraining = left(UpgradeState::Running, Some("spine2"), Some("undraining"));
        assert!(!resumes(&f, &undraining));
        // Another upgrade (the key changed since), or none any more.
        let mut other = loading.clone();
        other.version = Some("v1.9".into());
        assert!(!resumes(&f, &other));
        let mut other = loading.clone();
        other.pipeline_dir = "/tmp/v3".into();
        assert!(!resumes(&f, &other));
        let mut none = f.clone();
        none.upgrade = None;
        assert!(!resumes(&none, &loading));
        // A switch removed from the configuration.
        let mut gone = f.clone();
        gone.switches.remove("spine2");
        assert!(!resumes(&gone, &loading));
        // A phase this version does not know.
        let odd = left(UpgradeState::Running, Some("spine2"), Some("warp"));
        assert!(!resumes(&f, &odd));
        // Only at a takeover: not over a switch already in progress.
        let mut u = Upgrade::default();
        u.on_config(&f);
        u.step(&order(&f), &views(&f), t);
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
        assert!(u.resume(&loading, &f, t).is_none());
        assert_eq!(draining(&u).as_deref(), Some("spine1"));
    }
}
