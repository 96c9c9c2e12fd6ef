//! MAC learning: the switches' learning digests (a source (VLAN, MAC) the
//! `learning.src_mac` table missed on an edge port) become the learned host
//! table the compiler turns into bridging entries fabric-wide.
//!
//! A host is known by (VLAN, MAC) and attached to a port or a LAG. A digest
//! from another attachment is a move. Aging is the switches' job: the
//! compiler installs `src_mac` entries with an idle timeout, and each
//! timeout notification removes the (switch, port) it names; the host goes
//! when no switch has seen it any more (a LAG host may be seen on both
//! leaves). Static hosts from the configuration win over learned ones;
//! addresses learned from a static host's ARP / ND beyond its configured
//! ones (a SLAAC address, say) are reported under the static host, so the
//! compiler routes them too.
//!
//! Port security: each attachment may teach at most its limit of MACs
//! (`settings.max_learned_macs_per_port`, or the port's / LAG's own
//! `max_learned_macs`). At the limit new sources are refused (counted)
//! and the attachment is reported `Limited` until hosts age out below it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use crate::config::{Attachment, Fabric, PortNum, VlanId};
use crate::net::MacAddr;

/// A host the fabric learned, as the compiler consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedHost {
    pub vlan: VlanId,
    pub mac: MacAddr,
    /// Addresses learned from its ARP / ND.
    pub ips: Vec<IpAddr>,
    pub attachment: Attachment,
    /// The leaf it was first seen on (for a LAG host, one of its leaves).
    pub leaf: String,
    /// When a digest or ARP/ND last reported it (for status).
    pub last_seen: Instant,
}

impl From<LearnedHost> for crate::compile::HostEntry {
    /// What the compiler gets for a learned host (it ages out).
    fn from(h: LearnedHost) -> Self {
        crate::compile::HostEntry {
            vlan: h.vlan,
            mac: h.mac,
            ips: h.ips,
            attachment: h.attachment,
            learned: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    attachment: Attachment,
    leaf: String,
    /// Where the switches saw it: switch -> ingress ports.
    seen: BTreeMap<String, BTreeSet<PortNum>>,
    last_seen: Instant,
}

/// Which `src_mac` entry of a switch idled out: a plain edge port's, or
/// the switch's entry for a LAG host (keyed by LAG, not port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Port(PortNum),
    Lag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    New,
    Moved,
    /// Already known there (nothing for the compiler to do).
    Known,
    /// A configured static host: config wins.
    Static,
    /// The attachment is at its learned-MAC limit.
    OverLimit,
}

impl Learned {
    pub fn changed(self) -> bool {
        matches!(self, Learned::New | Learned::Moved)
    }
}

/// An attachment at its learned-MAC limit (port security), for status,
/// metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub attachment: Attachment,
    pub learned: usize,
    pub limit: usize,
    /// When it reached the limit.
    pub since: Instant,
    /// New sources refused since then.
    pub refused: u64,
}

/// Whether a frame from (vlan, mac) on an attachment may teach the fabric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Learned there already, or a configured host.
    Known,
    /// A new source (or a move) the attachment has room for.
    New,
    /// The attachment is at its limit: refused (and counted).
    OverLimit,
}

#[derive(Debug, Clone, Default)]
pub struct Learning {
    entries: BTreeMap<(VlanId, MacAddr), Entry>,
    /// Learned MACs per attachment (for the limit, without a scan).
    counts: BTreeMap<Attachment, usize>,
    /// Configured hosts: where the configuration puts them, and the leaf
    /// reported for them.
    statics: BTreeMap<(VlanId, MacAddr), (Attachment, String)>,
    /// When ARP / ND last proved a configured host was there.
    statics_seen: BTreeMap<(VlanId, MacAddr), Instant>,
    /// Most learned MACs per attachment (port or LAG); absent: unlimited.
    limits: BTreeMap<Attachment, usize>,
    /// Attachments at their limit: since when, sources refused since.
    limited: BTreeMap<Attachment, (Instant, u64)>,
    /// Sources refused per attachment since start (a metric).
    refused_total: BTreeMap<Attachment, u64>,
}

impl Learning {
    pub fn new(fabric: &Fabric) -> Self {
        let mut l = Learning::default();
        l.configure(fabric);
        l
    }

    /// Applies the static hosts and drops hosts whose port or LAG is no
    /// longer configured; returns the learned hosts removed.
    pub fn configure(&mut self, fabric: &Fabric) -> Vec<(VlanId, MacAddr)> {
        self.statics = fabric
            .hosts
            .values()
            .map(|h| {
                let leaf = match &h.attachment {
                    Attachment::Port(p) => Some(p.switch.clone()),
                    Attachment::Lag(l) => fabric
                        .lags
                        .get(l)
                        .and_then(|g| g.members.first())
                        .map(|p| p.switch.clone()),
                };
                (
                    (h.vlan, h.mac),
                    (h.attachment.clone(), leaf.unwrap_or_default()),
                )
            })
            .collect();
        let exists = |a: &Attachment| match a {
            Attachment::Port(p) => fabric.ports.contains_key(p),
            Attachment::Lag(l) => fabric.lags.contains_key(l),
        };
        let statics = &self.statics;
        self.statics_seen.retain(|k, _| statics.contains_key(k));
        let s = &fabric.settings;
        let ports = fabric.ports.iter().filter_map(|(p, e)| {
            Some((
                Attachment::Port(p.clone()),
                s.learned_mac_limit(e.max_learned_macs)?,
            ))
        });
        let lags = fabric.lags.iter().filter_map(|(name, l)| {
            Some((
                Attachment::Lag(name.clone()),
                s.learned_mac_limit(l.max_learned_macs)?,
            ))
        });
        self.limits = ports.chain(lags).collect();
        self.refused_total.retain(|a, _| exists(a));
        let gone: Vec<_> = self
            .entries
            .iter()
            .filter(|(k, e)| self.statics.contains_key(k) || !exists(&e.attachment))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.remove(k);
        }
        // A limit raised (or a port removed) may lift a limited state.
        let limited: Vec<Attachment> = self.limited.keys().cloned().collect();
        for a in limited {
            self.clear_if_under(&a);
        }
        gone
    }

    fn count(&self, a: &Attachment) -> usize {
        self.counts.get(a).copied().unwrap_or(0)
    }

    fn at_limit(&self, a: &Attachment) -> bool {
        self.limits.get(a).is_some_and(|l| self.count(a) >= *l)
    }

    /// Enters the limited state (once: one log line, not one per frame).
    fn mark_limited(&mut self, a: &Attachment, now: Instant) {
        if self.limited.contains_key(a) || !self.at_limit(a) {
            return;
        }
        let limit = self.limits.get(a).copied().unwrap_or_default();
        tracing::warn!(attachment = ?a, limit, "port security: learned-MAC limit reached; new sources on it are not learned until hosts age out");
        self.limited.insert(a.clone(), (now, 0));
    }

    /// Leaves the limited state once the attachment is below its limit.
    fn clear_if_under(&mut self, a: &Attachment) {
        if self.at_limit(a) {
            return;
        }
        if let Some((_, refused)) = self.limited.remove(a) {
            tracing::info!(attachment = ?a, learned = self.count(a), refused, "port security: below the learned-MAC limit again; learning resumes");
        }
    }

    /// Port security, before (vlan, mac) from `attachment` teaches the
    /// fabric anything: see `Admit`. A refusal is counted.
    pub fn admit(
        &mut self,
        vlan: VlanId,
        mac: MacAddr,
        attachment: &Attachment,
        now: Instant,
    ) -> Admit {
        let key = (vlan, mac);
        if self.statics.contains_key(&key)
            || self
                .entries
                .get(&key)
                .is_some_and(|e| e.attachment == *attachment)
        {
            return Admit::Known;
        }
        if !self.at_limit(attachment) {
            return Admit::New;
        }
        self.mark_limited(attachment, now);
        if let Some((_, refused)) = self.limited.get_mut(attachment) {
            *refused += 1;
        }
        *self.refused_total.entry(attachment.clone()).or_default() += 1;
        Admit::OverLimit
    }

    /// The attachments at their limit.
    pub fn limited(&self) -> Vec<Limited> {
        self.limited
            .iter()
            .map(|(a, (since, refused))| Limited {
                attachment: a.clone(),
                learned: self.count(a),
                limit: self.limits.get(a).copied().unwrap_or_default(),
                since: *since,
                refused: *refused,
            })
            .collect()
    }

    /// The attachments at their limit (what the data plane locks).
    pub fn locked(&self) -> std::collections::BTreeSet<Attachment> {
        self.limited.keys().cloned().collect()
    }

    /// Sources refused per attachment since start (configured
    /// attachments only, so the set is bounded).
    pub fn refused_total(&self) -> &BTreeMap<Attachment, u64> {
        &self.refused_total
    }

    /// Forgets every host learned on `attachment` (an operator's flush);
    /// returns them.
    pub fn flush(&mut self, attachment: &Attachment) -> Vec<(VlanId, MacAddr)> {
        let keys: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| e.attachment == *attachment)
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            self.remove(k);
        }
        self.clear_if_under(attachment);
        keys
    }

    fn remove(&mut self, key: &(VlanId, MacAddr)) {
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&e.attachment) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&e.attachment);
            }
        }
        self.clear_if_under(&e.attachment);
    }

    /// `mac` on `vlan` was seen entering `switch`/`port`, which belongs to
    /// `attachment`.
    pub fn learn(
        &mut self,
        switch: &str,
        port: PortNum,
        vlan: VlanId,
        mac: MacAddr,
        attachment: &Attachment,
        now: Instant,
    ) -> Learned {
        let key = (vlan, mac);
        if self.statics.contains_key(&key) {
            self.statics_seen.insert(key, now);
            return Learned::Static;
        }
        if let Some(e) = self.entries.get_mut(&key) {
            e.last_seen = now;
            if e.attachment == *attachment {
                e.seen.entry(switch.to_string()).or_default().insert(port);
                return Learned::Known;
            }
        }
        if self.at_limit(attachment) {
            self.mark_limited(attachment, now);
            return Learned::OverLimit;
        }
        let moved = self.entries.contains_key(&key);
        self.remove(&key);
        *self.counts.entry(attachment.clone()).or_default() += 1;
        self.mark_limited(attachment, now);
        self.entries.insert(
            key,
            Entry {
                attachment: attachment.clone(),
                leaf: switch.to_string(),
                seen: BTreeMap::from([(switch.to_string(), BTreeSet::from([port]))]),
                last_seen: now,
            },
        );
        if moved {
            Learned::Moved
        } else {
            Learned::New
        }
    }

    /// The `src_mac` entry for (vlan, mac) at `at` on `switch` idled out.
    /// True when that removed the host.
    pub fn idle_timeout(&mut self, switch: &str, at: Seen, vlan: VlanId, mac: MacAddr) -> bool {
        let key = (vlan, mac);
        let Some(e) = self.entries.get_mut(&key) else {
            return false;
        };
        match at {
            // One entry per leaf for a LAG host.
            Seen::Lag if matches!(e.attachment, Attachment::Lag(_)) => {
                e.seen.remove(switch);
            }
            Seen::Lag => {}
            Seen::Port(port) => {
                if let Some(ports) = e.seen.get_mut(switch) {
                    ports.remove(&port);
                    if ports.is_empty() {
                        e.seen.remove(switch);
                    }
                }
            }
        }
        if e.seen.is_empty() {
            self.remove(&key);
            return true;
        }
        if !e.seen.contains_key(&e.leaf) {
            if let Some(other) = e.seen.keys().next() {
                e.leaf = other.clone();
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The learned hosts, with their IPs from `ips_of`; and the configured
    /// hosts `ips_of` knows addresses of (learned beyond the configured
    /// ones), at their configured attachment.
    pub fn hosts(&self, ips_of: impl Fn(VlanId, MacAddr) -> Vec<IpAddr>) -> Vec<LearnedHost> {
        let learned = self.entries.iter().map(|((vlan, mac), e)| LearnedHost {
            vlan: *vlan,
            mac: *mac,
            ips: ips_of(*vlan, *mac),
            attachment: e.attachment.clone(),
            leaf: e.leaf.clone(),
            last_seen: e.last_seen,
        });
        let configured = self.statics_seen.iter().filter_map(|(key, seen)| {
            let (attachment, leaf) = self.statics.get(key)?;
            let ips = ips_of(key.0, key.1);
            (!ips.is_empty()).then(|| LearnedHost {
                vlan: key.0,
                mac: key.1,
                ips,
                attachment: attachment.clone(),
                leaf: leaf.clone(),
                last_seen: *seen,
            })
        });
        let mut all: Vec<LearnedHost> = learned.chain(configured).collect();
        all.sort_by_key(|h| (h.vlan, h.mac));
        all
    }
}
