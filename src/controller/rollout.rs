//! The controller's side of a rolling upgrade (`upgrade`): gathers what
//! the state machine needs about each switch (its agent's cookie and
//! convergence, the old and new pipelines' cookies — the new one refused
//! where it is not rollable from the old, `p4rt::compat` — its maintenance
//! state), and carries out what it decides — the internal drain request
//! to `maintenance`, the pipeline each agent runs. Uses `upgrade`,
//! `maintenance`, `agents`.

use std::collections::BTreeMap;

use super::upgrade::{self, SwitchView};
use super::verify;
use super::Controller;
use crate::agent::SessionState;
use crate::topo::Topology;

impl Controller {
    /// Starts, restarts and stops agents for the configuration, each on
    /// the pipeline the upgrade chooses for its switch.
    pub(super) fn sync_agents(&mut self) {
        let default_dir = self.agents.default_dir().to_path_buf();
        let statuses = self.agents.statuses();
        let views = self.upgrade_views(&statuses);
        let upgrade = &self.upgrade;
        let choice = |name: &str| {
            let on_new = views
                .get(name)
                .is_some_and(|v| v.cookie.is_some() && v.target.as_ref().ok() == v.cookie.as_ref());
            upgrade.choice(name, on_new, &default_dir)
        };
        self.agents.sync(&self.fabric, choice);
    }

    /// A controller's first configuration (start, restart, HA takeover):
    /// resumes the roll-out at the switch the previous leader's
    /// `status/upgrade` names as out of service, so that the internal
    /// drain covers it from the first desired state on — before its agent
    /// holds its entities, it must not be put back in service. Awaits one
    /// etcd read (start-up only).
    pub(super) async fn resume_upgrade(&mut self) {
        let Some(previous) = self.status.read_upgrade().await else {
            return;
        };
        let now = std::time::Instant::now();
        match self.upgrade.resume(&previous, &self.fabric, now) {
            Some(r) => {
                tracing::info!(
                    switch = %r.switch,
                    phase = r.phase,
                    drained = r.drained,
                    previous = %previous.controller,
                    "rolling upgrade resumed where the previous leader was: kept out of service"
                );
                if r.drained {
                    self.maintenance.adopt_drained(&r.switch);
                }
            }
            None => tracing::debug!(
                state = ?previous.state,
                switch = ?previous.switch,
                phase = ?previous.phase,
                "previous status/upgrade: no switch to keep out of service"
            ),
        }
    }

    /// The upgrade's step on the status tick (before maintenance's): hands
    /// maintenance its drain request and re-syncs the agents' pipelines
    /// when that changed.
    pub(super) fn upgrade_tick(&mut self) {
        if self.upgrade.request().is_none() && self.upgrade.status().is_none() {
            self.maintenance.set_internal(self.upgrade.drain_request());
            // A previous leader's status of an upgrade since removed goes.
            self.upgrade
                .publish(self.status_writer.as_ref(), &self.opts.controller_id);
            return;
        }
        let statuses = self.agents.statuses();
        let views = self.upgrade_views(&statuses);
        let order = upgrade::order(&self.fabric);
        let now = std::time::Instant::now();
        let changed = self.upgrade.step(&order, &views, now);
        self.verify_tick(now);
        self.maintenance.set_internal(self.upgrade.drain_request());
        if changed.pipelines {
            self.sync_agents();
        }
        self.upgrade
            .publish(self.status_writer.as_ref(), &self.opts.controller_id);
    }

    /// The verify step's side: takes the baseline as a switch enters
    /// loading (the fabric as the switches hold it, drained, before the
    /// push), and while it is verified asks its agent for reads and checks
    /// them (`verify`). The verdict reaches the upgrade on the next tick.
    fn verify_tick(&mut self, now: std::time::Instant) {
        let (sw, loading) = match (self.upgrade.loading(), self.upgrade.verifying()) {
            (Some(sw), _) => (sw.to_string(), true),
            (None, Some(sw)) => (sw.to_string(), false),
            (None, None) => {
                self.verification = None;
                return;
            }
        };
        let has_baseline = self
            .verification
            .as_ref()
            .is_some_and(|v| v.baseline.switch == sw);
        if loading && has_baseline {
            return;
        }
        let topo = self.topology();
        let view = self.compiler.snapshot();
        let Some(v) = self.verification.as_mut().filter(|_| has_baseline) else {
            let baseline = verify::Baseline::take(&sw, view.as_ref(), &topo, &self.fabric);
            if loading {
                tracing::info!(switch = %sw, probes = baseline.delivered.len(), links = baseline.links.len(), "upgrade: verify baseline taken before the load");
            } else {
                // Verifying without a baseline (the controller took over
                // after the load): the fabric as it stands, this switch
                // included, is the baseline. Weaker: only the read-back
                // then tells.
                tracing::warn!(switch = %sw, "upgrade: no baseline from before the load; verifying against the fabric as it stands");
            }
            self.verification = Some(verify::Verification::new(baseline));
            return;
        };
        match v.next(now, &topo) {
            verify::Next::Wait => {}
            verify::Next::Read => {
                if let Some(rx) = self.agents.get(&sw).and_then(|a| a.read_switch()) {
                    v.asked(rx);
                }
            }
            verify::Next::Check(read) => {
                let verdict = verify::check(&v.baseline, view.as_ref(), &read, &topo, &self.fabric);
                match &verdict {
                    Ok(what) => tracing::info!(switch = %sw, "upgrade: verified: {what}"),
                    Err(why) => tracing::warn!(switch = %sw, "upgrade: verification failed: {why}"),
                }
                v.checked(now, verdict);
            }
        }
    }

    /// The topology the compiler works on now.
    fn topology(&self) -> Topology {
        Topology::build(&self.fabric, &self.observed, self.compiler.flood_tree())
    }

    /// What the upgrade needs to know of each configured switch.
    fn upgrade_views(
        &mut self,
        statuses: &BTreeMap<String, crate::agent::AgentStatus>,
    ) -> BTreeMap<String, SwitchView> {
        let Some((old_dir, new_dir)) = self.upgrade.dirs(self.agents.default_dir()) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (name, sw) in &self.fabric.switches {
            let s = statuses.get(name);
            // A new build not rollable from the old one is as good as
            // one that does not load: the roll-out stops before a drain.
            let old = self.agents.load(&old_dir, name, sw).ok();
            let target = self
                .agents
                .load(&new_dir, name, sw)
                .and_then(|new| match &old {
                    Some(old) => self.agents.rollable(old, &new).map(|()| new.cookie),
                    None => Ok(new.cookie),
                });
            let old = old.map(|p| p.cookie);
            out.insert(
                name.clone(),
                SwitchView {
                    role: sw.role,
                    primary: s.is_some_and(|s| s.state == SessionState::Primary),
                    cookie: s.and_then(|s| s.pipeline_cookie),
                    converged: s.is_some_and(|s| s.converged()),
                    pipeline_error: s.and_then(|s| s.pipeline_error.clone()),
                    // The verify step's last verdict, for the switch it is on.
                    verified: self
                        .verification
                        .as_ref()
                        .filter(|v| v.baseline.switch == *name)
                        .and_then(|v| v.verdict.clone()),
                    target,
                    old,
                    maintenance: self.maintenance.state_of(name),
                    operator_drain: self.fabric.maintenance.get(name).is_some_and(|m| m.drain),
                },
            );
        }
        out
    }

    /// The labels of the pipelines switches may run, by cookie (status).
    pub(super) fn pipeline_labels(&mut self) -> BTreeMap<u64, String> {
        let Some((old_dir, new_dir)) = self.upgrade.dirs(self.agents.default_dir()) else {
            return BTreeMap::new();
        };
        // Every switch of one target shares a cookie; one of each is enough
        // for the labels, but cookies differ by target: take them all
        // (cached loads).
        let mut out = BTreeMap::new();
        for (name, sw) in &self.fabric.switches {
            let old = self.agents.load(&old_dir, name, sw).ok().map(|p| p.cookie);
            let new = self.agents.load(&new_dir, name, sw).ok().map(|p| p.cookie);
            out.extend(upgrade::labels(self.upgrade.request(), old, new));
        }
        out
    }
}
