//! Fabric link discovery. Every fabric port of every switch sends a probe
//! each interval, straight out of the port (packet-out, no forwarding); the
//! neighbour punts it (DISCOVERY) and the probe names the sender's switch
//! and port, so the controller learns the link's two ends.
//!
//! A link is up while probes are seen in both directions (a one-way link
//! must not carry traffic); it goes down when either direction has been
//! silent for `miss_limit` intervals, when a port at either end reports
//! down, or when one of its ports hears a different neighbour (recabling).
//!
//! The probe is an LLDP frame (ethertype 0x88cc, to 01:80:c2:00:00:0e, the
//! nearest-bridge group that bridges never forward): chassis id = switch
//! name and port id = port number in decimal, both "locally assigned"
//! (subtype 7), then TTL and end TLVs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::frames::{build_eth, ETH_LLDP};
use crate::config::{Fabric, PortNum, PortRef};
use crate::net::MacAddr;

pub const LLDP_MAC: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e]);
const TLV_END: u8 = 0;
const TLV_CHASSIS: u8 = 1;
const TLV_PORT: u8 = 2;
const TLV_TTL: u8 = 3;
const SUBTYPE_LOCAL: u8 = 7;

/// A discovery probe: who sent it, from which port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub switch: String,
    pub port: PortNum,
    pub ttl_secs: u16,
}

fn push_tlv(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    // 7-bit type, 9-bit length; callers keep values under 512 bytes.
    let header = (u16::from(ty) << 9) | (value.len() as u16 & 0x1ff);
    out.extend_from_slice(&header.to_be_bytes());
    out.extend_from_slice(value);
}

impl Probe {
    /// The LLDPDU (the Ethernet payload). Switch names are cut to 255
    /// bytes, the longest chassis id LLDP carries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.switch.len());
        let name = &self.switch.as_bytes()[..self.switch.len().min(255)];
        push_tlv(&mut out, TLV_CHASSIS, &[&[SUBTYPE_LOCAL], name].concat());
        let port = self.port.to_string();
        push_tlv(
            &mut out,
            TLV_PORT,
            &[&[SUBTYPE_LOCAL], port.as_bytes()].concat(),
        );
        push_tlv(&mut out, TLV_TTL, &self.ttl_secs.to_be_bytes());
        push_tlv(&mut out, TLV_END, &[]);
        out
    }

    /// The whole frame, from `src` (the switch's MAC).
    pub fn frame(&self, src: MacAddr) -> Vec<u8> {
        build_eth(LLDP_MAC, src, None, ETH_LLDP, &self.encode())
    }

    /// Parses an LLDPDU; LLDP from anything other than a p4fabric probe
    /// (other subtypes, missing TLVs) gives `None`.
    pub fn parse(mut b: &[u8]) -> Option<Probe> {
        let (mut switch, mut port, mut ttl) = (None, None, None);
        loop {
            let header = u16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
            let (ty, len) = ((header >> 9) as u8, usize::from(header & 0x1ff));
            let value = b.get(2..2 + len)?;
            b = &b[2 + len..];
            match ty {
                TLV_END => break,
                TLV_CHASSIS if value.first() == Some(&SUBTYPE_LOCAL) => {
                    switch = Some(std::str::from_utf8(&value[1..]).ok()?.to_string());
                }
                TLV_PORT if value.first() == Some(&SUBTYPE_LOCAL) => {
                    port = Some(std::str::from_utf8(&value[1..]).ok()?.parse().ok()?);
                }
                TLV_TTL => ttl = Some(u16::from_be_bytes(value.try_into().ok()?)),
                _ => {}
            }
        }
        Some(Probe {
            switch: switch.filter(|s| !s.is_empty())?,
            port: port?,
            ttl_secs: ttl?,
        })
    }
}

/// Links are named as the topology names them.
pub use crate::topo::LinkId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub id: LinkId,
    pub configured: bool,
    pub up: bool,
    /// Last probe heard in either direction.
    pub last_seen: Option<Instant>,
}

/// What discovery sees on one fabric port (for `status/links/<port>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLink {
    pub port: PortRef,
    pub up: bool,
    /// The far end of the link this port is on, when one was heard.
    pub remote: Option<PortRef>,
    /// Does the heard link match the configured one? `None`: no link is
    /// configured on this port.
    pub matches_config: Option<bool>,
    pub last_seen: Option<Instant>,
}

#[derive(Debug, Clone)]
struct LinkEntry {
    /// Last probe sent by `.0` heard at `.1`, and the reverse.
    heard: [Option<Instant>; 2],
    up: bool,
    /// Reported lost to the topology: it went down after being up, its
    /// port heard another neighbour, or it stayed one-way for a whole
    /// timeout. A link heard one way only just now is neither up nor lost
    /// (the other direction is usually a probe interval away; reporting it
    /// lost would take a configured link out of service at every start).
    lost: bool,
    /// When the first probe of this link was heard.
    since: Instant,
}

impl LinkEntry {
    fn new(now: Instant) -> Self {
        LinkEntry {
            heard: [None, None],
            up: false,
            lost: false,
            since: now,
        }
    }

    fn go_down(&mut self) -> bool {
        self.lost = true;
        std::mem::take(&mut self.up)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryOutput {
    /// Probe frames to send straight out of these ports.
    pub send: Vec<(PortRef, Vec<u8>)>,
    pub changes: Vec<(LinkId, LinkChange)>,
}

#[derive(Debug, Clone)]
pub struct Discovery {
    interval: Duration,
    miss_limit: u32,
    /// Fabric ports and when each sends its next probe.
    ports: BTreeMap<PortRef, Instant>,
    macs: BTreeMap<String, MacAddr>,
    ports_down: BTreeSet<PortRef>,
    configured: BTreeSet<LinkId>,
    links: BTreeMap<LinkId, LinkEntry>,
    /// When the current start-up round began (`start_round`), until
    /// `end_round`.
    round: Option<Instant>,
}

/// The MAC a switch sends probes from: configured, else derived from its
/// label (as the topology does for fabric frames).
fn switch_mac(mac: Option<MacAddr>, label: u32) -> MacAddr {
    let l = label.to_be_bytes();
    mac.unwrap_or(MacAddr([0x02, 0xfa, 0xb1, l[1], l[2], l[3]]))
}

impl Discovery {
    pub fn new(fabric: &Fabric, now: Instant) -> Self {
        let mut d = Discovery {
            interval: Duration::from_secs(1),
            miss_limit: 3,
            ports: BTreeMap::new(),
            macs: BTreeMap::new(),
            ports_down: BTreeSet::new(),
            configured: BTreeSet::new(),
            links: BTreeMap::new(),
            round: None,
        };
        d.configure(fabric, now);
        d
    }

    /// Applies a new configuration; links whose ends are no longer fabric
    /// ports are forgotten (reported down if they were up).
    pub fn configure(&mut self, fabric: &Fabric, now: Instant) -> DiscoveryOutput {
        let s = &fabric.settings;
        self.interval = Duration::from_millis(u64::from(s.discovery_interval_ms.max(1)));
        self.miss_limit = s.discovery_miss_limit.max(1);
        let mut ports = BTreeMap::new();
        self.macs.clear();
        for (name, sw) in &fabric.switches {
            self.macs.insert(name.clone(), switch_mac(sw.mac, sw.label));
            for p in &sw.fabric_ports {
                let r = PortRef::new(name.clone(), *p);
                let next = self.ports.get(&r).copied().unwrap_or(now);
                ports.insert(r, next);
            }
        }
        self.ports = ports;
        self.configured = fabric
            .links
            .values()
            .map(|l| LinkId::new(l.a.clone(), l.b.clone()))
            .collect();
        let mut out = DiscoveryOutput::default();
        let gone: Vec<LinkId> = self
            .links
            .keys()
            .filter(|id| !self.ports.contains_key(&id.0) || !self.ports.contains_key(&id.1))
            .cloned()
            .collect();
        for id in gone {
            if self.links.remove(&id).is_some_and(|l| l.up) {
                out.changes.push((id, LinkChange::Down));
            }
        }
        out
    }

    fn timeout(&self) -> Duration {
        self.interval * self.miss_limit
    }

    /// A probe punted by `at` (the receiving switch and port).
    pub fn on_probe(&mut self, at: &PortRef, probe: &Probe, now: Instant) -> DiscoveryOutput {
        let mut out = DiscoveryOutput::default();
        let from = PortRef::new(probe.switch.clone(), probe.port);
        // Only probes between two known fabric ports count: an edge port
        // hearing one means miscabling, not a fabric link.
        if from == *at || !self.ports.contains_key(at) || !self.ports.contains_key(&from) {
            return out;
        }
        let id = LinkId::new(from.clone(), at.clone());
        // A port has one neighbour: any other link on either end is gone.
        let stale: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(l, _)| **l != id && (l.touches(at) || l.touches(&from)))
            .map(|(l, _)| l.clone())
            .collect();
        for l in stale {
            // Kept as lost (not forgotten): a configured link must not
            // fall back to "assumed up".
            if let Some(e) = self.links.get_mut(&l) {
                e.heard = [None, None];
                if e.go_down() {
                    out.changes.push((l, LinkChange::Down));
                }
            }
        }
        if self.ports_down.contains(at) || self.ports_down.contains(&from) {
            return out;
        }
        let timeout = self.timeout();
        let entry = self
            .links
            .entry(id.clone())
            .or_insert_with(|| LinkEntry::new(now));
        entry.heard[usize::from(id.0 != from)] = Some(now);
        let fresh = entry
            .heard
            .iter()
            .all(|h| h.is_some_and(|t| now.saturating_duration_since(t) < timeout));
        if fresh && !entry.up {
            entry.up = true;
            entry.lost = false;
            out.changes.push((id, LinkChange::Up));
        }
        out
    }

    /// A port's operational status changed.
    pub fn on_port_status(&mut self, port: &PortRef, up: bool, now: Instant) -> DiscoveryOutput {
        let mut out = DiscoveryOutput::default();
        if up {
            if self.ports_down.remove(port) {
                if let Some(t) = self.ports.get_mut(port) {
                    *t = now;
                }
            }
            return out;
        }
        self.ports_down.insert(port.clone());
        for (id, e) in self.links.iter_mut().filter(|(id, _)| id.touches(port)) {
            e.heard = [None, None];
            if e.go_down() {
                out.changes.push((id.clone(), LinkChange::Down));
            }
        }
        out
    }

    /// Sends due probes and expires silent links.
    pub fn on_tick(&mut self, now: Instant) -> DiscoveryOutput {
        let mut out = DiscoveryOutput::default();
        let timeout = self.timeout();
        for (id, e) in self.links.iter_mut() {
            let stale = e
                .heard
                .iter()
                .any(|h| h.is_none_or(|t| now.saturating_duration_since(t) >= timeout));
            if e.up && stale {
                e.go_down();
                out.changes.push((id.clone(), LinkChange::Down));
            } else if !e.up && !e.lost && now.saturating_duration_since(e.since) >= timeout {
                // Heard one way only for a whole timeout: a one-way link.
                e.lost = true;
                out.changes.push((id.clone(), LinkChange::Down));
            }
        }
        let ttl = u16::try_from(timeout.as_secs().max(1)).unwrap_or(u16::MAX);
        for (port, next) in self.ports.iter_mut() {
            if *next > now || self.ports_down.contains(port) {
                continue;
            }
            *next = now + self.interval;
            let probe = Probe {
                switch: port.switch.clone(),
                port: port.port,
                ttl_secs: ttl,
            };
            let src = self.macs.get(&port.switch).copied().unwrap_or_default();
            out.send.push((port.clone(), probe.frame(src)));
        }
        out
    }

    /// Probes every fabric port at the next tick and starts a round: a
    /// controller starting or taking over must hear the links its switches
    /// forward over before its first desired state, which would otherwise
    /// remove every fabric path not re-heard yet (on a fabric without
    /// `links:` discovery is the only source of them).
    pub fn start_round(&mut self, now: Instant) {
        for next in self.ports.values_mut() {
            *next = now;
        }
        self.round = Some(now);
    }

    /// How long a round may take: one interval (a lost first probe is
    /// followed by a second) and half of one for probes in flight.
    fn round_time(&self) -> Duration {
        self.interval + self.interval / 2
    }

    /// Whether the round started by `start_round` is over: every fabric
    /// port that is not down is on a link that is up (both directions
    /// heard), or the round's time passed (ports with nothing at the other
    /// end, a neighbour that is down). `None` when no round is running.
    pub fn round_done(&self, now: Instant) -> Option<bool> {
        let started = self.round?;
        if now >= started + self.round_time() {
            return Some(true);
        }
        let all_heard = self
            .ports
            .keys()
            .filter(|p| !self.ports_down.contains(*p))
            .all(|p| self.links.iter().any(|(id, e)| e.up && id.touches(p)));
        Some(all_heard)
    }

    /// Forgets the round (its result was taken).
    pub fn end_round(&mut self) {
        self.round = None;
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let round_end = self.round.map(|t| t + self.round_time());
        let timeout = self.timeout();
        let expiries = self
            .links
            .values()
            .filter(|e| e.up)
            .filter_map(|e| e.heard.iter().flatten().min().map(|t| *t + timeout));
        let one_way = self
            .links
            .values()
            .filter(|e| !e.up && !e.lost)
            .map(|e| e.since + timeout);
        // Down ports send nothing until they come up (which reschedules).
        let probes = self
            .ports
            .iter()
            .filter(|(p, _)| !self.ports_down.contains(*p))
            .map(|(_, t)| *t);
        probes.chain(expiries).chain(one_way).chain(round_end).min()
    }

    /// Every link seen or configured, with its state.
    pub fn links(&self) -> Vec<LinkStatus> {
        let ids: BTreeSet<&LinkId> = self.links.keys().chain(&self.configured).collect();
        ids.into_iter()
            .map(|id| {
                let e = self.links.get(id);
                LinkStatus {
                    id: id.clone(),
                    configured: self.configured.contains(id),
                    up: e.is_some_and(|e| e.up),
                    last_seen: e.and_then(|e| e.heard.iter().flatten().max().copied()),
                }
            })
            .collect()
    }

    /// Links discovery has an opinion on: seen (`true`) or lost (`false`).
    /// Configured links never heard of are absent (the topology treats them
    /// as up until discovery says otherwise).
    pub fn observed(&self) -> BTreeMap<LinkId, bool> {
        self.links
            .iter()
            .filter(|(_, e)| e.up || e.lost)
            .map(|(id, e)| (id.clone(), e.up))
            .collect()
    }

    /// Configured links that are not up (never seen, or lost).
    pub fn configured_not_seen(&self) -> Vec<LinkId> {
        self.configured
            .iter()
            .filter(|id| !self.links.get(*id).is_some_and(|e| e.up))
            .cloned()
            .collect()
    }

    /// Links that are up but not in the configuration.
    pub fn seen_not_configured(&self) -> Vec<LinkId> {
        self.links
            .iter()
            .filter(|(id, e)| e.up && !self.configured.contains(*id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every fabric port with the link discovery last heard on it.
    pub fn port_links(&self) -> Vec<PortLink> {
        self.ports
            .keys()
            .map(|port| {
                let heard = self
                    .links
                    .iter()
                    .filter(|(id, e)| id.touches(port) && e.heard.iter().any(Option::is_some))
                    .max_by_key(|(_, e)| e.heard.iter().flatten().max().copied());
                let configured = self.configured.iter().find(|id| id.touches(port));
                let far = |id: &LinkId| {
                    if id.0 == *port {
                        id.1.clone()
                    } else {
                        id.0.clone()
                    }
                };
                PortLink {
                    port: port.clone(),
                    up: heard.is_some_and(|(_, e)| e.up),
                    remote: heard.map(|(id, _)| far(id)),
                    matches_config: configured.map(|c| heard.is_some_and(|(id, _)| id == c)),
                    last_seen: heard.and_then(|(_, e)| e.heard.iter().flatten().max().copied()),
                }
            })
            .collect()
    }

    pub fn ports_down(&self) -> &BTreeSet<PortRef> {
        &self.ports_down
    }
}
