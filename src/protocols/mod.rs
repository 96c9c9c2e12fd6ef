//! The control protocols the controller speaks through packet-in/out and
//! digests: fabric link discovery, the LACP actor, the anycast gateway's
//! ARP/ND, and MAC learning. `Protocols` ties them together as one sans-IO
//! state machine: the daemon feeds it decoded switch events, port status
//! and the clock, and executes the `Action`s it returns (send a frame, or
//! recompute topology / hosts / LAG members). Nothing here sleeps, spawns or
//! does I/O, so every behaviour is testable with an explicit `Instant`.
//! `docs/protocols.md` describes frames, timers and state machines.
//!
//! May use: `config`, `topo`, `compile` and `p4rt` types, `net`. Used by
//! the controller.

pub mod arp_nd;
pub mod bindings;
pub mod discovery;
pub mod frames;
pub mod gateway;
pub mod icmp;
pub mod lacp;
pub mod lacpdu;
pub mod learning;
pub mod ports;
pub mod ra;
pub mod ratelimit;
pub mod recover;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::config::{Attachment, Fabric, PortNum, PortRef, VlanId};
use crate::net::MacAddr;
use crate::p4rt::{CodecError, Match, P4InfoRegistry, StreamEvent, TableKey, Value};

use arp_nd::{ArpNd, NeighborOutput, NextHopStatus, Rx};
use discovery::{Discovery, DiscoveryOutput, LinkId, LinkStatus, Probe};
use frames::{parse_eth, Arp, NdPacket, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_LLDP, ETH_SLOW};
use lacp::{Lacp, LacpOutput, MemberStatus};
use lacpdu::{LacpInfo, Lacpdu};
use learning::{LearnedHost, Learning};
use ports::EdgePorts;
use ra::RouterAdverts;
use ratelimit::RateLimit;

/// `packet_in.punt_reason` values (docs/pipeline.md).
pub use crate::compile::names::reason as punt;
/// The learning digest's P4Info name.
pub use crate::compile::names::D_MAC_LEARN as LEARN_DIGEST;
/// The table whose idle timeouts age learned MACs.
pub use crate::compile::names::T_SRC_MAC as SRC_MAC_TABLE;

/// A frame for the daemon to hand to a switch as a P4Runtime PacketOut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    pub switch: String,
    pub egress_port: PortNum,
    /// false: straight out of `egress_port`, as built (tags included).
    pub do_forwarding: bool,
    pub ingress_port: PortNum,
    pub frame: Vec<u8>,
}

impl PacketOut {
    fn direct(port: &PortRef, frame: Vec<u8>) -> Self {
        PacketOut {
            switch: port.switch.clone(),
            egress_port: port.port,
            do_forwarding: false,
            ingress_port: 0,
            frame,
        }
    }

    /// The same frame with its ports through `to_device` (a switch's port
    /// map: configured -> device port): `egress_port`, and `ingress_port`
    /// where the pipeline forwards the frame (else it is unused).
    pub fn map_ports<E>(
        mut self,
        to_device: impl Fn(PortNum) -> Result<PortNum, E>,
    ) -> Result<PacketOut, E> {
        self.egress_port = to_device(self.egress_port)?;
        if self.do_forwarding {
            self.ingress_port = to_device(self.ingress_port)?;
        }
        Ok(self)
    }

    /// The `packet_out` header fields, for `P4InfoRegistry::packet_out`.
    pub fn metadata(&self) -> [(&'static str, Value); 3] {
        [
            ("egress_port", Value::from(self.egress_port)),
            ("do_forwarding", Value::from(self.do_forwarding)),
            ("ingress_port", Value::from(self.ingress_port)),
        ]
    }
}

/// What the daemon must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendPacket(PacketOut),
    /// A fabric link came up or went down: rebuild the topology from
    /// `observed_links()` / `ports_down()`.
    TopologyChanged,
    /// The learned host set (or a host's IPs) changed: recompile hosts
    /// from `learned_hosts()`.
    HostsChanged,
    /// The usable members of this LAG changed (`lag_members`).
    LagMembersChanged {
        lag: String,
    },
    /// A static route next hop was resolved, moved to another MAC, or
    /// lost: reprogram routes (`next_hops`, `uninstallable_routes`).
    NextHopsChanged,
}

/// One row of the learning digest `mac_learn_digest_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacLearn {
    pub vlan: VlanId,
    pub mac: MacAddr,
    pub ingress_port: PortNum,
    pub lag_id: u16,
}

impl MacLearn {
    /// From a decoded digest row (`P4InfoRegistry::decode_digest`).
    pub fn from_row(row: &[(&'static str, Value)]) -> Option<MacLearn> {
        let get = |n: &str| row.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        Some(MacLearn {
            vlan: u16::try_from(get("vlan_id")?).ok()?,
            mac: MacAddr::from_value(get("eth_src")?),
            ingress_port: u32::try_from(get("ingress_port")?).ok()?,
            lag_id: u16::try_from(get("lag_id").unwrap_or(0)).ok()?,
        })
    }
}

/// A `learning.src_mac` entry that idled out. The pipeline keys a host
/// on a plain edge port by (port, lag 0) and a host on a LAG by (0, lag id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleEntry {
    pub vlan: VlanId,
    pub mac: MacAddr,
    pub ingress_port: PortNum,
    pub lag_id: u16,
}

impl IdleEntry {
    /// From a decoded idle-timeout table entry key
    /// (`P4InfoRegistry::decode_table_key`); other tables give `None`.
    pub fn from_key(k: &TableKey) -> Option<IdleEntry> {
        if k.table != SRC_MAC_TABLE {
            return None;
        }
        let get = |n: &str| match k.matches.iter().find(|(f, _)| *f == n) {
            Some((_, Match::Exact(v))) => Some(*v),
            _ => None,
        };
        Some(IdleEntry {
            vlan: u16::try_from(get("vlan_id")?).ok()?,
            mac: MacAddr::from_value(get("eth_src")?),
            ingress_port: u32::try_from(get("ingress_port")?).ok()?,
            lag_id: u16::try_from(get("lag_id").unwrap_or(0)).ok()?,
        })
    }
}

/// A switch event the protocols consume, decoded from the P4Runtime
/// stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PacketIn {
        ingress_port: PortNum,
        punt_reason: u8,
        payload: Vec<u8>,
    },
    Learn(Vec<MacLearn>),
    IdleTimeout(Vec<IdleEntry>),
}

impl Event {
    /// Decodes what an agent reported (`SwitchEvent::event`) with the
    /// pipeline's P4Info. `Ok(None)`: not for the protocols (other
    /// digests or tables, stream errors, close).
    pub fn decode(reg: &P4InfoRegistry, ev: &StreamEvent) -> Result<Option<Event>, CodecError> {
        Ok(match ev {
            StreamEvent::PacketIn(p) => {
                let p = reg.decode_packet_in(p)?;
                let field = |n: &str| p.get(n).unwrap_or(0);
                // A port number that does not fit is no port of ours.
                let Ok(ingress_port) = u32::try_from(field("ingress_port")) else {
                    return Ok(None);
                };
                Some(Event::PacketIn {
                    ingress_port,
                    punt_reason: u8::try_from(field("punt_reason")).unwrap_or(0),
                    payload: p.payload,
                })
            }
            StreamEvent::Digest(d) => {
                let (name, rows) = reg.decode_digest(d)?;
                (name == LEARN_DIGEST).then(|| {
                    Event::Learn(rows.iter().filter_map(|r| MacLearn::from_row(r)).collect())
                })
            }
            StreamEvent::IdleTimeout(n) => {
                // One undecodable key (another table's) does not lose the
                // others of the notification.
                let entries: Vec<IdleEntry> = n
                    .table_entry
                    .iter()
                    .filter_map(|t| reg.decode_table_key(t).ok())
                    .filter_map(|k| IdleEntry::from_key(&k))
                    .collect();
                (!entries.is_empty()).then_some(Event::IdleTimeout(entries))
            }
            StreamEvent::Error(_) | StreamEvent::Closed(_) => None,
        })
    }

    /// The event with the device ports a switch reported as configured
    /// numbers, through `to_config` (a switch's port map). What is on a
    /// device port `to_config` does not know is left out, and the port
    /// returned: a packet-in whole (the event is `None`), learn rows and
    /// idle entries one by one. An `ingress_port` 0 beside a LAG id stands
    /// for the LAG and passes.
    pub fn map_ports(
        self,
        to_config: impl Fn(PortNum) -> Option<PortNum>,
    ) -> (Option<Event>, Vec<PortNum>) {
        let mut unmapped = Vec::new();
        let mut port = |p: PortNum, lag_id: u16| {
            if p == 0 && lag_id != 0 {
                return Some(0);
            }
            let c = to_config(p);
            if c.is_none() {
                unmapped.push(p);
            }
            c
        };
        let event = match self {
            Event::PacketIn {
                ingress_port,
                punt_reason,
                payload,
            } => port(ingress_port, 0).map(|ingress_port| Event::PacketIn {
                ingress_port,
                punt_reason,
                payload,
            }),
            Event::Learn(rows) => keep_mapped(rows, |r| {
                r.ingress_port = port(r.ingress_port, r.lag_id)?;
                Some(())
            })
            .map(Event::Learn),
            Event::IdleTimeout(entries) => keep_mapped(entries, |e| {
                e.ingress_port = port(e.ingress_port, e.lag_id)?;
                Some(())
            })
            .map(Event::IdleTimeout),
        };
        (event, unmapped)
    }
}

/// `items` whose port `map` mapped (in place), the others left out;
/// `None` when none is left.
fn keep_mapped<T>(items: Vec<T>, mut map: impl FnMut(&mut T) -> Option<()>) -> Option<Vec<T>> {
    let kept: Vec<T> = items
        .into_iter()
        .filter_map(|mut i| map(&mut i).map(|()| i))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// Engine options not in the fabric configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// ARP/ND/ICMP punts handled per edge port and second; the rest are
    /// dropped.
    pub host_pps_per_port: u32,
    /// Glean resolutions per second, fabric-wide: each floods a request
    /// out of every edge attachment of a VLAN, so a host scanning its
    /// subnet must not turn into a packet-out storm.
    pub gleans_per_second: u32,
    /// Unsolicited IPv6 router advertisement interval (`None`: no RAs,
    /// hosts need a configured IPv6 default route).
    pub router_advert_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host_pps_per_port: 50,
            gleans_per_second: 20,
            router_advert_interval: Some(Duration::from_secs(30)),
        }
    }
}

/// What the engine has handled since it started (for metrics and
/// status; a storm shows as `rate_limited`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub probes: u64,
    pub lacpdus: u64,
    /// ARP, ND and other IP punts from edge ports.
    pub host_frames: u64,
    /// Host frames dropped by the per-port limit.
    pub rate_limited: u64,
    /// New sources refused by port security (an attachment at its
    /// learned-MAC limit).
    pub learns_refused: u64,
    /// New sources refused by the per-port learning rate.
    pub learns_rate_limited: u64,
    /// Frames that were not ours or did not parse.
    pub ignored: u64,
    pub digest_rows: u64,
    pub idle_timeouts: u64,
    pub packets_out: u64,
}

/// Whether new sources count against the per-port learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Traffic: digests and ARP/ND.
    Limited,
    /// A switch's read-back (recovery).
    Unlimited,
}

/// All control protocols of the fabric.
#[derive(Debug, Clone)]
pub struct Protocols {
    ports: EdgePorts,
    discovery: Discovery,
    lacp: Lacp,
    neighbors: ArpNd,
    learning: Learning,
    host_limit: RateLimit<PortRef>,
    /// New MACs learned per edge port and second
    /// (`settings.learns_per_port_per_sec`).
    learn_limit: RateLimit<PortRef>,
    glean_limit: RateLimit<()>,
    adverts: RouterAdverts,
    counters: Counters,
}

/// Collects actions, each signal once.
#[derive(Default)]
struct Out {
    actions: Vec<Action>,
}

impl Out {
    fn push(&mut self, a: Action) {
        if matches!(a, Action::SendPacket(_)) || !self.actions.contains(&a) {
            self.actions.push(a);
        }
    }

    fn discovery(&mut self, d: DiscoveryOutput) {
        for (port, frame) in d.send {
            self.push(Action::SendPacket(PacketOut::direct(&port, frame)));
        }
        for (link, change) in &d.changes {
            tracing::info!(a = %link.0, b = %link.1, ?change, "fabric link changed");
        }
        if !d.changes.is_empty() {
            self.push(Action::TopologyChanged);
        }
    }

    fn lacp(&mut self, l: LacpOutput) {
        for tx in l.send {
            self.push(Action::SendPacket(PacketOut::direct(&tx.port, tx.frame)));
        }
        for lag in l.changed_lags {
            self.push(Action::LagMembersChanged { lag });
        }
    }

    fn neighbors(&mut self, n: &NeighborOutput) {
        for (port, frame) in &n.replies {
            self.push(Action::SendPacket(PacketOut::direct(port, frame.clone())));
        }
        if n.hosts_changed {
            self.push(Action::HostsChanged);
        }
        if n.next_hops_changed {
            self.push(Action::NextHopsChanged);
        }
    }
}

impl Protocols {
    pub fn new(fabric: &Fabric, now: Instant) -> Self {
        Self::with_options(fabric, Options::default(), now)
    }

    pub fn with_options(fabric: &Fabric, opts: Options, now: Instant) -> Self {
        Protocols {
            ports: EdgePorts::new(fabric),
            discovery: Discovery::new(fabric, now),
            lacp: Lacp::new(fabric, now),
            neighbors: ArpNd::new(fabric, now),
            learning: Learning::new(fabric),
            host_limit: RateLimit::new(opts.host_pps_per_port),
            learn_limit: RateLimit::new(fabric.settings.learns_per_port_per_sec),
            glean_limit: RateLimit::new(opts.gleans_per_second),
            adverts: RouterAdverts::new(opts.router_advert_interval),
            counters: Counters::default(),
        }
    }

    /// A new configuration was accepted.
    pub fn on_config(&mut self, fabric: &Fabric, now: Instant) -> Vec<Action> {
        let mut out = Out::default();
        self.ports = EdgePorts::new(fabric);
        self.learn_limit
            .set_rate(fabric.settings.learns_per_port_per_sec);
        out.discovery(self.discovery.configure(fabric, now));
        out.lacp(self.lacp.configure(fabric, now));
        let replaced = self.learning.configure(fabric);
        let n = self.neighbors.configure(fabric, now);
        out.neighbors(&n);
        for (vlan, mac) in replaced {
            out.neighbors(&self.neighbors.forget_mac(vlan, mac, now));
            out.push(Action::HostsChanged);
        }
        out.actions
    }

    /// Any decoded switch event (see `Event::decode`).
    pub fn on_event(&mut self, switch: &str, event: &Event, now: Instant) -> Vec<Action> {
        match event {
            Event::PacketIn {
                ingress_port,
                punt_reason,
                payload,
            } => self.on_frame(switch, *ingress_port, *punt_reason, payload, now),
            Event::Learn(rows) => self.on_digest(switch, rows, now),
            Event::IdleTimeout(entries) => self.on_idle_timeout(switch, entries, now),
        }
    }

    /// A punted frame: dispatched on its ethertype; the punt reason only
    /// tells IP packets apart (GLEAN: resolve the destination;
    /// TTL_EXPIRED: time exceeded; otherwise an echo to a gateway).
    pub fn on_frame(
        &mut self,
        switch: &str,
        ingress_port: PortNum,
        punt_reason: u8,
        frame: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Out::default();
        let c = &mut self.counters;
        let Some(eth) = parse_eth(frame) else {
            c.ignored += 1;
            return out.actions;
        };
        let at = PortRef::new(switch, ingress_port);
        match eth.ethertype {
            ETH_LLDP => match Probe::parse(eth.payload) {
                Some(probe) => {
                    c.probes += 1;
                    out.discovery(self.discovery.on_probe(&at, &probe, now));
                }
                None => c.ignored += 1,
            },
            ETH_SLOW => match Lacpdu::parse(eth.payload) {
                Some(pdu) => {
                    c.lacpdus += 1;
                    out.lacp(self.lacp.on_lacpdu(&at, &pdu, now));
                }
                None => c.ignored += 1,
            },
            ETH_ARP | ETH_IPV6 | ETH_IPV4 => {
                self.on_host_frame(&at, punt_reason, &eth, now, &mut out)
            }
            _ => c.ignored += 1,
        }
        self.count_out(&out);
        out.actions
    }

    fn count_out(&mut self, out: &Out) {
        let sent = out
            .actions
            .iter()
            .filter(|a| matches!(a, Action::SendPacket(_)))
            .count();
        self.counters.packets_out += sent as u64;
    }

    /// ARP, ND and IP punted from an edge port.
    fn on_host_frame(
        &mut self,
        at: &PortRef,
        punt_reason: u8,
        eth: &frames::Eth<'_>,
        now: Instant,
        out: &mut Out,
    ) {
        let Some((vlan, attachment)) = self.ports.classify(at, eth.vlan) else {
            self.counters.ignored += 1;
            return;
        };
        if !self.host_limit.allow(at, now) {
            self.counters.rate_limited += 1;
            return;
        }
        self.counters.host_frames += 1;
        let attachment = attachment.clone();
        // Port security first: a source the port may not teach gets
        // nothing (no reply, no binding), as if the switch dropped it.
        if !self.admit(at, vlan, eth.src, &attachment, Pace::Limited, now) {
            return;
        }
        let rx = Rx {
            port: at,
            vlan,
            tag: eth.vlan,
            eth,
        };
        if eth.ethertype == ETH_IPV6 && ra::is_router_solicit(eth.payload) {
            let gw = self.neighbors.gateways().get(&vlan);
            if let Some(frame) = gw.and_then(|gw| ra::advert_frame(gw, eth.vlan)) {
                if self.adverts.on_solicit(vlan, now) {
                    out.push(Action::SendPacket(PacketOut::direct(at, frame)));
                }
            }
            return;
        }
        let nd = match eth.ethertype {
            ETH_IPV6 => NdPacket::parse(eth.payload),
            _ => None,
        };
        let n = if eth.ethertype == ETH_ARP {
            let Some(arp) = Arp::parse(eth.payload) else {
                return;
            };
            self.neighbors.on_arp(rx, &arp, now)
        } else if let Some(nd) = nd {
            self.neighbors.on_nd(rx, &nd, now)
        } else if punt_reason == punt::GLEAN {
            return self.glean(vlan, eth, now, out);
        } else {
            if let Some(reply) = icmp::answer(self.neighbors.gateways(), rx, punt_reason) {
                out.push(Action::SendPacket(PacketOut::direct(at, reply)));
            }
            return;
        };
        out.neighbors(&n);
        // ARP/ND proves where the sender is, like a digest would.
        if let Some((vlan, mac)) = n.heard {
            self.learn(&at.switch, at.port, vlan, mac, &attachment, now, out);
        }
    }

    /// Learning digest rows from `switch`.
    pub fn on_digest(&mut self, switch: &str, rows: &[MacLearn], now: Instant) -> Vec<Action> {
        self.counters.digest_rows += rows.len() as u64;
        self.learn_rows(switch, rows, Pace::Limited, now)
    }

    /// Rows of learned MACs, from a digest or a switch's read-back.
    fn learn_rows(
        &mut self,
        switch: &str,
        rows: &[MacLearn],
        pace: Pace,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Out::default();
        for r in rows {
            let at = PortRef::new(switch, r.ingress_port);
            let attachment = match (self.ports.lag_name(r.lag_id), self.ports.attachment(&at)) {
                (Some(lag), _) if r.lag_id != 0 => Attachment::Lag(lag.to_string()),
                (_, Some(a)) => a.clone(),
                // Not an edge port we configured: nothing to attach to.
                _ => continue,
            };
            if r.mac.is_multicast() || !self.admit(&at, r.vlan, r.mac, &attachment, pace, now) {
                continue;
            }
            self.learn(
                switch,
                r.ingress_port,
                r.vlan,
                r.mac,
                &attachment,
                now,
                &mut out,
            );
        }
        out.actions
    }

    /// A controller starting: until `release_lacp`, LACP members whose
    /// partner was not heard say nothing, so that members in service on
    /// the switches (read back, then `restore`d) do not flap.
    pub fn hold_lacp(&mut self, now: Instant) {
        self.lacp.set_quiet(true, now);
    }

    /// Leaves in maintenance (`controller::maintenance`): the LACP actor
    /// on their members goes out of sync; the others come back.
    pub fn set_lacp_drained(&mut self, leaves: &BTreeSet<String>, now: Instant) -> Vec<Action> {
        let mut out = Out::default();
        out.lacp(self.lacp.set_drained(leaves, now));
        self.count_out(&out);
        out.actions
    }

    /// The read-backs are in (or their grace passed): LACP speaks, first
    /// to the partners the previous controller heard on members still in
    /// service (`Lacp::restore_partners`).
    pub fn release_lacp(
        &mut self,
        known_partners: &BTreeMap<PortRef, LacpInfo>,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Out::default();
        self.lacp.set_quiet(false, now);
        out.lacp(self.lacp.restore_partners(known_partners, now));
        self.count_out(&out);
        out.actions
    }

    /// A controller starting or taking over, with switches that hold
    /// state: probe every fabric port now (see `Discovery::start_round`).
    pub fn start_discovery_round(&mut self, now: Instant) {
        self.discovery.start_round(now);
    }

    /// The round of `start_discovery_round` is over (every fabric port that
    /// is up heard its link, or the round's time passed); `None`: no round.
    /// `end_discovery_round` forgets it.
    pub fn discovery_round_done(&self, now: Instant) -> Option<bool> {
        self.discovery.round_done(now)
    }

    pub fn end_discovery_round(&mut self) {
        self.discovery.end_round();
    }

    /// Learned state read back from `switch` (a controller starting or
    /// taking over): its learned MACs go through the learning path, its
    /// host routes restore the address bindings.
    pub fn restore(
        &mut self,
        switch: &str,
        recovered: &recover::Recovered,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Out::default();
        // What a switch already holds is not a burst of new sources: the
        // learning rate does not apply (the MAC limit does).
        for a in self.learn_rows(switch, &recovered.macs, Pace::Unlimited, now) {
            out.push(a);
        }
        let lag_ports: Vec<PortRef> = recovered
            .lag_ports
            .iter()
            .map(|p| PortRef::new(switch, *p))
            .collect();
        out.lacp(self.lacp.adopt(&lag_ports, now));
        for (vlan, ip, mac) in &recovered.bindings {
            out.neighbors(&self.neighbors.restore(*vlan, *ip, *mac, now));
        }
        out.actions
    }

    /// Idle-timeout notifications from `switch` for `learning.src_mac`.
    pub fn on_idle_timeout(
        &mut self,
        switch: &str,
        entries: &[IdleEntry],
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Out::default();
        self.counters.idle_timeouts += entries.len() as u64;
        for e in entries {
            let at = if e.lag_id == 0 {
                learning::Seen::Port(e.ingress_port)
            } else {
                learning::Seen::Lag
            };
            if self.learning.idle_timeout(switch, at, e.vlan, e.mac) {
                out.push(Action::HostsChanged);
                out.neighbors(&self.neighbors.forget_mac(e.vlan, e.mac, now));
            }
        }
        out.actions
    }

    /// A port's operational status (from the switch OS / gNMI / the test).
    pub fn on_port_status(
        &mut self,
        switch: &str,
        port: PortNum,
        up: bool,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Out::default();
        let p = PortRef::new(switch, port);
        let was_down = self.discovery.ports_down().contains(&p);
        out.discovery(self.discovery.on_port_status(&p, up, now));
        out.lacp(self.lacp.on_port_status(&p, up, now));
        if was_down == up {
            // `ports_down` is a compiler input of its own: a static LAG's
            // member leaves service with it (no protocol would notice).
            tracing::info!(port = %p, up, "port status changed");
            out.push(Action::TopologyChanged);
        }
        self.count_out(&out);
        out.actions
    }

    /// Timers: probes, LACP periodic/expiry, next-hop resolution.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Out::default();
        out.discovery(self.discovery.on_tick(now));
        out.lacp(self.lacp.on_tick(now));
        for (vlan, ip) in self.neighbors.due_requests(now) {
            self.flood_request(vlan, ip, &mut out);
        }
        for vlan in self.adverts.due(self.neighbors.gateways(), now) {
            if let Some(gw) = self.neighbors.gateways().get(&vlan) {
                self.flood(vlan, |tag| ra::advert_frame(gw, tag), &mut out);
            }
        }
        self.count_out(&out);
        out.actions
    }

    /// The earliest time `on_tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.discovery.next_deadline(),
            self.lacp.next_deadline(),
            self.neighbors.next_deadline(),
            self.adverts.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Port security for a frame or digest row from (vlan, mac) at `at`:
    /// a known source passes; a new one needs room under its attachment's
    /// limit and under the port's learning rate. Refusals are counted.
    fn admit(
        &mut self,
        at: &PortRef,
        vlan: VlanId,
        mac: MacAddr,
        attachment: &Attachment,
        pace: Pace,
        now: Instant,
    ) -> bool {
        match self.learning.admit(vlan, mac, attachment, now) {
            learning::Admit::Known => true,
            learning::Admit::New if pace == Pace::Unlimited || self.learn_limit.allow(at, now) => {
                true
            }
            learning::Admit::New => {
                self.counters.learns_rate_limited += 1;
                false
            }
            learning::Admit::OverLimit => {
                self.counters.learns_refused += 1;
                false
            }
        }
    }

    /// Forgets every host learned on `attachment` (the operator's
    /// `hosts flush`): their routes and bindings go, and a limited port
    /// learns again.
    pub fn flush_learned(&mut self, attachment: &Attachment, now: Instant) -> Vec<Action> {
        let mut out = Out::default();
        for (vlan, mac) in self.learning.flush(attachment) {
            out.neighbors(&self.neighbors.forget_mac(vlan, mac, now));
            out.push(Action::HostsChanged);
        }
        out.actions
    }

    /// Attachments at their learned-MAC limit (port security).
    pub fn limited_attachments(&self) -> Vec<learning::Limited> {
        self.learning.limited()
    }

    /// Attachments at their learned-MAC limit, where the data plane drops
    /// frames from unknown sources (`ObservedState::locked_sources`).
    pub fn locked_attachments(&self) -> BTreeSet<Attachment> {
        self.learning.locked()
    }

    /// New sources refused by port security, per attachment.
    pub fn learns_refused(&self) -> &BTreeMap<Attachment, u64> {
        self.learning.refused_total()
    }

    #[allow(clippy::too_many_arguments)]
    fn learn(
        &mut self,
        switch: &str,
        port: PortNum,
        vlan: VlanId,
        mac: MacAddr,
        attachment: &Attachment,
        now: Instant,
        out: &mut Out,
    ) {
        if self
            .learning
            .learn(switch, port, vlan, mac, attachment, now)
            .changed()
        {
            out.push(Action::HostsChanged);
        }
    }

    /// Asks for the destination of a routed packet that found no host.
    fn glean(&mut self, vlan: VlanId, eth: &frames::Eth<'_>, now: Instant, out: &mut Out) {
        let dst = match eth.ethertype {
            ETH_IPV4 => eth
                .payload
                .get(16..20)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            ETH_IPV6 => eth
                .payload
                .get(24..40)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            _ => None,
        };
        let vrf = self.neighbors.vrf_of(vlan);
        if let Some((vlan, ip)) = dst.and_then(|d| self.neighbors.glean(vrf, d, now)) {
            if self.glean_limit.allow(&(), now) {
                self.flood_request(vlan, ip, out);
            } else {
                self.counters.rate_limited += 1;
            }
        }
    }

    /// Sends an ARP request / NS for `ip` on `vlan`.
    fn flood_request(&self, vlan: VlanId, ip: IpAddr, out: &mut Out) {
        self.flood(vlan, |tag| self.neighbors.request_frame(vlan, ip, tag), out);
    }

    /// Sends `frame(tag)` out of every edge attachment of `vlan`: each
    /// port, and one usable member per LAG (so a server does not get one
    /// copy per leaf).
    fn flood(&self, vlan: VlanId, frame: impl Fn(Option<u16>) -> Option<Vec<u8>>, out: &mut Out) {
        for (attachment, members) in self.ports.vlan_members(vlan) {
            let pick = match attachment {
                Attachment::Port(_) => members.first(),
                Attachment::Lag(lag) => {
                    let usable = self.lacp.usable(lag);
                    members.iter().find(|(p, _)| usable.contains(*p))
                }
            };
            let Some((port, tag)) = pick else { continue };
            if let Some(frame) = frame(*tag) {
                out.push(Action::SendPacket(PacketOut::direct(port, frame)));
            }
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    // ---- state for the topology, the compiler and status ----

    /// Every fabric link seen or configured, with its state.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.discovery.links()
    }

    /// Links discovery found (`true`) or lost (`false`), for
    /// `topo::ObservedState::discovered`.
    pub fn observed_links(&self) -> BTreeMap<LinkId, bool> {
        self.discovery.observed()
    }

    /// Per fabric port: its link as heard (for `status/links/<port>`).
    pub fn port_links(&self) -> Vec<discovery::PortLink> {
        self.discovery.port_links()
    }

    pub fn configured_links_not_seen(&self) -> Vec<LinkId> {
        self.discovery.configured_not_seen()
    }

    pub fn seen_links_not_configured(&self) -> Vec<LinkId> {
        self.discovery.seen_not_configured()
    }

    /// Ports reported down (`topo::ObservedState::ports_down`).
    pub fn ports_down(&self) -> BTreeSet<PortRef> {
        self.discovery.ports_down().clone()
    }

    /// The members of `lag` that may carry traffic.
    pub fn lag_members(&self, lag: &str) -> BTreeSet<PortRef> {
        self.lacp.usable(lag)
    }

    /// LACP members not collecting/distributing
    /// (`topo::ObservedState::lacp_unsynced`).
    pub fn lacp_unsynced(&self) -> BTreeSet<PortRef> {
        self.lacp.unsynced()
    }

    /// The LACP partner each member last heard.
    pub fn lacp_partners(&self) -> BTreeMap<PortRef, LacpInfo> {
        self.lacp.partners_heard()
    }

    pub fn lag_status(&self) -> Vec<MemberStatus> {
        self.lacp.status()
    }

    /// The learned hosts (static hosts are the compiler's from config),
    /// plus, for a static host whose ARP / ND showed addresses beyond its
    /// configured ones (a SLAAC address), an entry with those addresses:
    /// the compiler adds them to the static host's host routes.
    pub fn learned_hosts(&self) -> Vec<LearnedHost> {
        self.learning
            .hosts(|vlan, mac| self.neighbors.ips_of(vlan, mac))
    }

    pub fn next_hops(&self) -> Vec<NextHopStatus> {
        self.neighbors.next_hops()
    }

    /// The resolved next hops of a static route (ip, vlan, mac).
    pub fn route_next_hops(&self, route: &str) -> Vec<(IpAddr, VlanId, MacAddr)> {
        self.neighbors.route_next_hops(route)
    }

    /// Static routes with no resolved next hop: not to be installed.
    pub fn uninstallable_routes(&self) -> Vec<String> {
        self.neighbors.uninstallable_routes()
    }
}
