//! Status publishing: owns what the controller last wrote to etcd's status
//! keys and writes the rest: each switch's session state, the observed
//! links, learned hosts and LAG members (removing those that disappeared,
//! so status never shows a stale link or host), the observed state the
//! compiler used, configuration errors, and the LACP partners heard (read
//! back at start from a previous controller). Uses `config::status` for the
//! schema and the writer; without a writer (tests, benches) it does nothing.
//!
//! Everything here runs in the controller's loop, so it never waits on
//! etcd: values go to the writer's write-behind queue (`*_later`), which
//! paces and batches the puts. Only start-up reads await.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::agent::{AgentStatus, SessionState};
use crate::config::status::{self as st, StatusWriter};
use crate::config::KeyError;
use crate::config::PortRef;
use crate::protocols::lacpdu::LacpInfo;
use crate::protocols::Protocols;
use crate::topo::{FloodTree, ObservedState};

/// Granularity of a learned host's `last_seen` in status, in seconds.
const HOST_LAST_SEEN_STEP: u64 = 60;

pub(super) struct StatusPublisher {
    writer: Option<Arc<StatusWriter>>,
    controller_id: String,
    election_id: u128,
    /// When each switch entered its current session state (unix seconds).
    state_since: BTreeMap<String, (st::SessionState, u64)>,
    /// Status paths of observed links/hosts/LAG members last written.
    observed_paths: BTreeSet<String>,
    /// Learned hosts as last handed to the writer: an unchanged host costs
    /// no serialisation (there may be thousands).
    hosts: BTreeMap<String, st::HostStatus>,
    /// LACP partners as published (`status/lacp-partners/`): read at
    /// start from the previous controller, then what this one heard.
    lacp_partners: BTreeMap<PortRef, LacpInfo>,
}

impl StatusPublisher {
    pub(super) fn new(
        writer: Option<Arc<StatusWriter>>,
        controller_id: String,
        election_id: u128,
    ) -> Self {
        StatusPublisher {
            writer,
            controller_id,
            election_id,
            state_since: BTreeMap::new(),
            observed_paths: BTreeSet::new(),
            hosts: BTreeMap::new(),
            lacp_partners: BTreeMap::new(),
        }
    }

    /// The LACP partners as last published (or read at start).
    pub(super) fn lacp_partners(&self) -> &BTreeMap<PortRef, LacpInfo> {
        &self.lacp_partners
    }

    /// Reports the configuration keys rejected (`status/config/`).
    pub(super) fn config_errors(&self, errors: &[KeyError]) {
        if let Some(w) = &self.writer {
            w.set_config_errors(errors);
        }
    }

    /// Reads the LACP partners a previous controller heard (none without
    /// status or on any error: LACP then waits for the partners to speak).
    pub(super) async fn read_lacp_partners(&mut self) {
        let Some(w) = &self.writer else {
            self.lacp_partners = BTreeMap::new();
            return;
        };
        self.lacp_partners = match w.read_dir(st::paths::LACP_PARTNERS).await {
            Ok(kvs) => kvs
                .iter()
                .filter_map(|(k, v)| {
                    let port = k.strip_prefix(st::paths::LACP_PARTNERS)?.parse().ok()?;
                    Some((port, serde_json::from_slice(v).ok()?))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the LACP partners heard before");
                BTreeMap::new()
            }
        };
    }

    /// The flood tree the previous leader compiled with (its
    /// `status/observed`, alive until its status lease runs out, 10 s by
    /// default): a successor that builds on it writes no multicast change
    /// where the tree it would pick afresh differs from the one installed
    /// (trees are built incrementally as links come and go).
    pub(super) async fn read_flood_tree(&self) -> Option<FloodTree> {
        let w = self.writer.as_ref()?;
        let kvs = w.read_dir(st::paths::OBSERVED).await.ok()?;
        let status: BTreeMap<String, serde_json::Value> = kvs
            .into_iter()
            .filter(|(k, _)| k == st::paths::OBSERVED)
            .filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?)))
            .collect();
        let (_, tree, _) = super::observations::from_status(&status);
        tree.filter(|t| !t.links.is_empty())
    }

    /// The rolling upgrade's status as the previous leader left it
    /// (`status/upgrade`, durable: it outlives its writer), for
    /// `upgrade::Upgrade::resume`; none without status, without the key,
    /// or on any error (then the roll-out resumes from the switches'
    /// cookies alone).
    pub(super) async fn read_upgrade(&self) -> Option<st::UpgradeStatus> {
        let w = self.writer.as_ref()?;
        let kvs = match w.read_dir(st::paths::UPGRADE).await {
            Ok(kvs) => kvs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the previous leader's status/upgrade");
                return None;
            }
        };
        let v = kvs.get(st::paths::UPGRADE)?;
        match serde_json::from_slice(v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "status/upgrade unreadable; not resumed from it");
                None
            }
        }
    }

    /// Writes each switch's session state, entity count, errors and
    /// pipeline (cookie, and its label from `labels`).
    pub(super) fn switches(
        &mut self,
        statuses: &BTreeMap<String, AgentStatus>,
        labels: &BTreeMap<u64, String>,
    ) {
        let Some(w) = &self.writer else {
            return;
        };
        for (name, s) in statuses {
            let state = match s.state {
                SessionState::Primary => st::SessionState::Primary,
                SessionState::Backup => st::SessionState::Backup,
                SessionState::Connecting => st::SessionState::Connecting,
                SessionState::Down(_) | SessionState::Stopped => st::SessionState::Down,
            };
            let since = match self.state_since.get(name) {
                Some((prev, t)) if *prev == state => *t,
                _ => {
                    let now = st::unix_now();
                    self.state_since.insert(name.clone(), (state, now));
                    now
                }
            };
            let value = st::SwitchStatus {
                state,
                controller: self.controller_id.clone(),
                election_id: Some(self.election_id.to_string()),
                entities: s.installed as u64,
                last_error: s.last_error.clone().or_else(|| {
                    s.failing
                        .first()
                        .map(|(k, e)| format!("{} failing, e.g. {k}: {e}", s.failing_count))
                }),
                since,
                pipeline_cookie: s.pipeline_cookie.map(|c| format!("{c:#018x}")),
                pipeline_version: s.pipeline_cookie.and_then(|c| labels.get(&c).cloned()),
            };
            w.set_later(&st::paths::switch(name), &value);
        }
    }

    /// Publishes the LACP partners heard that changed (durable keys: a
    /// successor reads them after this controller died).
    fn lacp_partners_heard(&mut self, p: &Protocols) {
        let Some(w) = &self.writer else {
            return;
        };
        for (port, info) in p.lacp_partners() {
            if self.lacp_partners.get(&port) == Some(&info) {
                continue;
            }
            w.set_durable_later(&st::paths::lacp_partner(&port), &info);
            self.lacp_partners.insert(port, info);
        }
    }

    /// Writes what the protocols observe: links (both ends), learned hosts,
    /// LAG members with their LACP state, and the observed state and flood
    /// tree the compiler used. Entries that disappeared are removed, so
    /// status never shows a stale link or host.
    pub(super) fn observed(
        &mut self,
        protocols: Option<&Protocols>,
        observed: &ObservedState,
        flood_tree: Option<&FloodTree>,
    ) {
        let Some(p) = protocols else {
            return;
        };
        self.lacp_partners_heard(p);
        let Some(w) = &self.writer else {
            return;
        };
        let now = std::time::Instant::now();
        let unix = st::unix_now();
        let ago = |t: Option<std::time::Instant>| {
            t.map(|t| unix.saturating_sub(now.saturating_duration_since(t).as_secs()))
                .unwrap_or(0)
        };
        let mut values: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for l in p.links() {
            for (here, there) in [(&l.id.0, &l.id.1), (&l.id.1, &l.id.0)] {
                let v = st::LinkStatus {
                    state: if l.up {
                        st::LinkState::Up
                    } else {
                        st::LinkState::Down
                    },
                    remote: Some(there.clone()),
                    matches_config: Some(l.configured),
                    last_seen: ago(l.last_seen),
                };
                values.insert(
                    st::paths::link(here),
                    serde_json::to_value(v).unwrap_or_default(),
                );
            }
        }
        for id in p.configured_links_not_seen() {
            for here in [&id.0, &id.1] {
                values.entry(st::paths::link(here)).or_insert_with(|| {
                    serde_json::json!({"state": "down", "matches_config": true, "last_seen": 0,
                                       "note": "configured, never seen by discovery"})
                });
            }
        }
        let mut hosts = BTreeMap::new();
        for h in p.learned_hosts() {
            let v = st::HostStatus {
                attachment: h.attachment.clone(),
                ips: h.ips.clone(),
                learned: true,
                // To the minute: a busy host's key is rewritten at most
                // once a minute, not on every status tick.
                last_seen: ago(Some(h.last_seen)) / HOST_LAST_SEEN_STEP * HOST_LAST_SEEN_STEP,
            };
            let path = st::paths::host(h.vlan, h.mac);
            if self.hosts.get(&path) != Some(&v) {
                w.set_later(&path, &v);
            }
            hosts.insert(path, v);
        }
        for m in p.lag_status() {
            let v = serde_json::json!({
                "port_up": m.port_up,
                "selected": m.selected,
                "usable": m.usable,
                "mode": format!("{:?}", m.mode).to_lowercase(),
                "actor_state": m.actor.as_ref().map(|a| format!("{:?}", a.state)),
                "partner_system": m.partner.as_ref().map(|a| a.system.to_string()),
                "partner_key": m.partner.as_ref().map(|a| a.key),
                "partner_state": m.partner.as_ref().map(|a| format!("{:?}", a.state)),
            });
            values.insert(format!("lags/{}/{}", m.lag, m.port), v);
        }
        let observed = st::ObservedStatus {
            links: observed
                .discovered
                .iter()
                .map(|(id, seen)| (id.0.clone(), id.1.clone(), *seen))
                .collect(),
            ports_down: observed.ports_down.iter().cloned().collect(),
            lacp_unsynced: observed.lacp_unsynced.iter().cloned().collect(),
            flood_tree: flood_tree
                .into_iter()
                .flat_map(|t| t.links.iter())
                .map(|l| (l.0.clone(), l.1.clone()))
                .collect(),
            drained: observed.drained.iter().cloned().collect(),
            lags_handed_over: observed.lags_handed_over.iter().cloned().collect(),
        };
        values.insert(
            st::paths::OBSERVED.to_string(),
            serde_json::to_value(observed).unwrap_or_default(),
        );
        for (path, v) in &values {
            w.set_later(path, v);
        }
        for gone in self
            .observed_paths
            .iter()
            .filter(|p| !values.contains_key(*p) && !hosts.contains_key(*p))
        {
            w.remove_later(gone);
        }
        self.observed_paths = values.into_keys().chain(hosts.keys().cloned()).collect();
        self.hosts = hosts;
    }
}
