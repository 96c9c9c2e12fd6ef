//! The server side of LACP for lab bonds: an 802.1AX actor the user-space
//! bond (`bond::UserBond`) runs on its uplinks, since the lab kernel has no
//! bonding driver. Sans-IO like `protocols::lacp` (which is the fabric's
//! side): frames in, frames out, an explicit clock.
//!
//! Simplified like the fabric's actor, and interoperable with it: receive
//! (the partner expires after 3 x the periodic interval we ask for),
//! periodic transmission (1 s with fast timeouts, else 30 s) plus "need to
//! transmit" on any change (at most 3 PDUs a second per port), selection
//! (the partner system + key with the most members), and the coupled mux:
//! a member collects and distributes once it is selected and the partner
//! reports synchronization with our current information. A *muted* member
//! sends nothing (a server whose LACP died on that port) but still listens.

use std::time::{Duration, Instant};

use crate::net::MacAddr;
use crate::protocols::frames::{build_eth, ETH_SLOW};
use crate::protocols::lacpdu::{LacpInfo, LacpState, Lacpdu, SLOW_PROTOCOLS_MAC};

const FAST: Duration = Duration::from_secs(1);
const SLOW: Duration = Duration::from_secs(30);
const MAX_TX_PER_SECOND: u8 = 3;

/// The server's LACP identity.
#[derive(Debug, Clone, Copy)]
pub struct PartnerConfig {
    pub system: MacAddr,
    pub system_priority: u16,
    pub key: u16,
    /// Ask for short timeouts (LACPDUs every second).
    pub fast: bool,
}

#[derive(Debug, Clone)]
struct Heard {
    /// The other side about itself.
    info: LacpInfo,
    /// The other side about us.
    view_of_us: LacpInfo,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Member {
    mac: MacAddr,
    port: u16,
    heard: Option<Heard>,
    state: LacpState,
    muted: bool,
    ntt: bool,
    next_tx: Instant,
    window: (Instant, u8),
    pdus_rx: u64,
    pdus_tx: u64,
}

/// One member's state, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    /// Our state bits as last sent (or about to be).
    pub state: LacpState,
    /// What the fabric last said about itself on this member.
    pub partner: Option<LacpInfo>,
    pub muted: bool,
    pub pdus_rx: u64,
    pub pdus_tx: u64,
}

impl MemberReport {
    pub fn distributing(&self) -> bool {
        self.state.has(LacpState::DISTRIBUTING)
    }
}

#[derive(Debug, Clone)]
pub struct LacpPartner {
    cfg: PartnerConfig,
    members: Vec<Member>,
}

impl LacpPartner {
    /// `macs`: each member port's MAC (the LACPDUs' source), in uplink
    /// order; member `i` is actor port `i + 1`.
    pub fn new(cfg: PartnerConfig, macs: &[MacAddr], now: Instant) -> Self {
        let members = macs
            .iter()
            .enumerate()
            .map(|(i, mac)| Member {
                mac: *mac,
                port: u16::try_from(i + 1).unwrap_or(u16::MAX),
                heard: None,
                state: LacpState(0),
                muted: false,
                ntt: true,
                next_tx: now,
                window: (now, 0),
                pdus_rx: 0,
                pdus_tx: 0,
            })
            .collect();
        let mut p = LacpPartner { cfg, members };
        p.reselect();
        p
    }

    fn info(&self, i: usize) -> Option<LacpInfo> {
        let m = self.members.get(i)?;
        Some(LacpInfo {
            system_priority: self.cfg.system_priority,
            system: self.cfg.system,
            key: self.cfg.key,
            port_priority: 255,
            port: m.port,
            state: m.state,
        })
    }

    fn period(&self) -> Duration {
        if self.cfg.fast {
            FAST
        } else {
            SLOW
        }
    }

    /// A slow-protocols payload (after the ethertype) received on member
    /// `i`. Returns frames to send, by member.
    pub fn on_slow_frame(
        &mut self,
        i: usize,
        payload: &[u8],
        now: Instant,
    ) -> Vec<(usize, Vec<u8>)> {
        let Some(pdu) = Lacpdu::parse(payload) else {
            return Vec::new();
        };
        let Some(me) = self.info(i) else {
            return Vec::new();
        };
        let timeout = 3 * self.period();
        let Some(m) = self.members.get_mut(i) else {
            return Vec::new();
        };
        m.pdus_rx += 1;
        let changed = m.heard.as_ref().map(|h| h.info) != Some(pdu.actor);
        if changed || !me.same_port(&pdu.partner) || pdu.partner.state != me.state {
            m.ntt = true;
        }
        m.heard = Some(Heard {
            info: pdu.actor,
            view_of_us: pdu.partner,
            expires: now + timeout,
        });
        self.reselect();
        self.transmit(now)
    }

    /// Timers: partner expiry, periodic and pending transmissions.
    pub fn on_tick(&mut self, now: Instant) -> Vec<(usize, Vec<u8>)> {
        let mut expired = false;
        for m in &mut self.members {
            if m.heard.as_ref().is_some_and(|h| h.expires <= now) {
                m.heard = None;
                expired = true;
            }
        }
        if expired {
            self.reselect();
        }
        self.transmit(now)
    }

    /// Stops (or resumes) sending on member `i`.
    pub fn set_muted(&mut self, i: usize, muted: bool, now: Instant) {
        if let Some(m) = self.members.get_mut(i) {
            m.muted = muted;
            m.ntt = !muted;
            m.next_tx = now;
        }
    }

    /// May member `i` carry traffic (collecting and distributing)?
    pub fn distributing(&self, i: usize) -> bool {
        self.members
            .get(i)
            .is_some_and(|m| m.state.has(LacpState::DISTRIBUTING))
    }

    pub fn report(&self) -> Vec<MemberReport> {
        self.members
            .iter()
            .map(|m| MemberReport {
                state: m.state,
                partner: m.heard.as_ref().map(|h| h.info),
                muted: m.muted,
                pdus_rx: m.pdus_rx,
                pdus_tx: m.pdus_tx,
            })
            .collect()
    }

    fn reselect(&mut self) {
        // The partner (system priority, system, key) heard on most members.
        let mut groups: Vec<((u16, MacAddr, u16), usize)> = Vec::new();
        for h in self.members.iter().filter_map(|m| m.heard.as_ref()) {
            if !h.info.state.has(LacpState::AGGREGATION) {
                continue;
            }
            let k = (h.info.system_priority, h.info.system, h.info.key);
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, n)) => *n += 1,
                None => groups.push((k, 1)),
            }
        }
        groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let chosen = groups.first().map(|(k, _)| *k);
        let cfg = self.cfg;
        for m in &mut self.members {
            let selected = chosen.is_some()
                && m.heard
                    .as_ref()
                    .map(|h| (h.info.system_priority, h.info.system, h.info.key))
                    == chosen;
            let mut state = LacpState(LacpState::ACTIVITY | LacpState::AGGREGATION)
                .with(LacpState::TIMEOUT, cfg.fast)
                .with(LacpState::SYNCHRONIZATION, selected)
                .with(LacpState::DEFAULTED, m.heard.is_none());
            let me = LacpInfo {
                system_priority: cfg.system_priority,
                system: cfg.system,
                key: cfg.key,
                port_priority: 255,
                port: m.port,
                state,
            };
            let in_sync = m.heard.as_ref().is_some_and(|h| {
                h.info.state.has(LacpState::SYNCHRONIZATION) && me.same_port(&h.view_of_us)
            });
            state.set(LacpState::COLLECTING, selected && in_sync);
            state.set(LacpState::DISTRIBUTING, selected && in_sync);
            if state != m.state {
                m.ntt = true;
            }
            m.state = state;
        }
    }

    fn transmit(&mut self, now: Instant) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        let period = self.period();
        for i in 0..self.members.len() {
            let Some(actor) = self.info(i) else { continue };
            let m = &mut self.members[i];
            if m.muted || !(m.ntt || m.next_tx <= now) {
                continue;
            }
            if now >= m.window.0 + FAST {
                m.window = (now, 0);
            }
            if m.window.1 >= MAX_TX_PER_SECOND {
                m.next_tx = m.window.0 + FAST;
                continue;
            }
            m.window.1 += 1;
            m.ntt = false;
            m.next_tx = now + period;
            m.pdus_tx += 1;
            let pdu = Lacpdu {
                actor,
                partner: m.heard.as_ref().map(|h| h.info).unwrap_or_default(),
                collector_max_delay: 0,
            };
            out.push((
                i,
                build_eth(SLOW_PROTOCOLS_MAC, m.mac, None, ETH_SLOW, &pdu.encode()),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Fabric, PortRef};
    use crate::protocols::frames::parse_eth;
    use crate::protocols::lacp::Lacp;

    const FABRIC: &str = r#"
settings: {lacp_system_id: "02:00:00:fa:b0:02"}
switches:
  leaf1: {address: "127.0.0.1:1", device_id: 1, role: leaf, label: 101, fabric_ports: [1]}
  leaf2: {address: "127.0.0.1:2", device_id: 2, role: leaf, label: 102, fabric_ports: [1]}
lags:
  bond1: {id: 1, members: [leaf1/4, leaf2/4], protocol: lacp, lacp: {rate: fast}, mode: access, vlan: 10}
vlans:
  10: {name: web}
"#;

    /// The fabric's LACP actor and this partner, wired back to back.
    struct Wire {
        fabric: Lacp,
        server: LacpPartner,
        ports: [PortRef; 2],
        now: Instant,
        /// Member `i` of the server is not connected (its frames vanish).
        cut_to_fabric: [bool; 2],
    }

    impl Wire {
        fn new() -> Wire {
            let f: Fabric = serde_yaml::from_str(FABRIC).unwrap();
            let now = Instant::now();
            let cfg = PartnerConfig {
                system: MacAddr([2, 0, 0, 0, 0xee, 1]),
                system_priority: 65535,
                key: 9,
                fast: true,
            };
            let macs = [
                MacAddr([2, 0, 0, 0, 0xee, 2]),
                MacAddr([2, 0, 0, 0, 0xee, 3]),
            ];
            Wire {
                fabric: Lacp::new(&f, now),
                server: LacpPartner::new(cfg, &macs, now),
                ports: [PortRef::new("leaf1", 4), PortRef::new("leaf2", 4)],
                now,
                cut_to_fabric: [false; 2],
            }
        }

        /// Runs both sides for `secs` in 100 ms steps.
        fn run(&mut self, secs: u64) {
            for _ in 0..secs * 10 {
                self.now += Duration::from_millis(100);
                let mut to_server: Vec<(usize, Vec<u8>)> = self
                    .fabric
                    .on_tick(self.now)
                    .send
                    .into_iter()
                    .filter_map(|tx| {
                        let i = self.ports.iter().position(|p| *p == tx.port)?;
                        Some((i, tx.frame))
                    })
                    .collect();
                let mut to_fabric = self.server.on_tick(self.now);
                while !to_server.is_empty() || !to_fabric.is_empty() {
                    for (i, f) in std::mem::take(&mut to_fabric) {
                        if self.cut_to_fabric[i] {
                            continue;
                        }
                        let eth = parse_eth(&f).unwrap();
                        let pdu = Lacpdu::parse(eth.payload).unwrap();
                        for tx in self.fabric.on_lacpdu(&self.ports[i], &pdu, self.now).send {
                            let j = self.ports.iter().position(|p| *p == tx.port).unwrap();
                            to_server.push((j, tx.frame));
                        }
                    }
                    for (i, f) in std::mem::take(&mut to_server) {
                        let eth = parse_eth(&f).unwrap();
                        to_fabric.extend(self.server.on_slow_frame(i, eth.payload, self.now));
                    }
                }
            }
        }
    }

    #[test]
    fn syncs_with_the_fabric_actor_on_both_leaves() {
        let mut w = Wire::new();
        assert!(!w.server.distributing(0));
        w.run(3);
        assert!(w.server.distributing(0) && w.server.distributing(1));
        assert_eq!(w.fabric.usable("bond1").len(), 2);
        // One partner system for both legs: the fabric's.
        let r = w.server.report();
        assert_eq!(
            r[0].partner.map(|p| p.system),
            r[1].partner.map(|p| p.system)
        );
        // Steady state: about one PDU a second each way.
        let before = w.server.report()[0].pdus_tx;
        w.run(10);
        let sent = w.server.report()[0].pdus_tx - before;
        assert!((9..=12).contains(&sent), "{sent} PDUs in 10 s");
    }

    #[test]
    fn a_muted_member_times_out_on_both_sides() {
        let mut w = Wire::new();
        w.run(3);
        let now = w.now;
        w.server.set_muted(1, true, now);
        w.run(2);
        // Not yet: the fabric waits 3 x 1 s.
        assert_eq!(w.fabric.usable("bond1").len(), 2);
        w.run(2);
        assert_eq!(w.fabric.usable("bond1"), [w.ports[0].clone()].into());
        // The fabric now says "not in sync" on it: the server stops too.
        assert!(w.server.distributing(0));
        assert!(!w.server.distributing(1));
        let now = w.now;
        w.server.set_muted(1, false, now);
        w.run(2);
        assert_eq!(w.fabric.usable("bond1").len(), 2);
        assert!(w.server.distributing(1));
    }

    #[test]
    fn a_member_whose_frames_never_arrive_is_not_used() {
        let mut w = Wire::new();
        w.cut_to_fabric[1] = true;
        w.run(5);
        assert_eq!(w.fabric.usable("bond1"), [w.ports[0].clone()].into());
        // The server hears the fabric on member 1, but the fabric's view of
        // the server there stays empty: no sync, no traffic.
        assert!(!w.server.distributing(1));
    }
}
