//! The LACP actor (IEEE 802.1AX), run by the controller for every member
//! port of every LACP LAG, on whichever leaf the member sits.
//!
//! The whole fabric presents one actor system (settings.lacp_system_id /
//! priority) and one key per LAG, with port numbers unique fabric-wide, so a
//! server whose bond spans two leaves sees a single partner system and puts
//! all its links in one aggregator. Selection is per LAG, not per leaf, for
//! the same reason.
//!
//! A simplified but interoperable version of the 802.1AX machines:
//! receive (current_while = 3 x the periodic interval our timeout bit asks
//! for; expiry defaults the partner), periodic transmission (1 s while the
//! partner asks for short timeouts or is unknown, else 30 s), need-to-
//! transmit on any change (at most 3 LACPDUs a second), selection (members
//! whose partner is the LAG's chosen partner system + key), and the coupled
//! mux: a member collects and distributes once it is selected and the
//! partner reports synchronization with our current information. There is
//! no wait_while delay and no marker protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::frames::{build_eth, ETH_SLOW};
use super::lacpdu::{LacpInfo, LacpState, Lacpdu, SLOW_PROTOCOLS_MAC};
use crate::config::{Fabric, LacpRate, LagMode, PortRef};
use crate::net::MacAddr;

pub const FAST_PERIOD: Duration = Duration::from_secs(1);
pub const SLOW_PERIOD: Duration = Duration::from_secs(30);
/// 802.1AX: no more than three LACPDUs in any fast periodic interval.
const MAX_TX_PER_PERIOD: u8 = 3;
const PORT_PRIORITY: u16 = 255;

/// Who a member aggregates with: partner system priority, system, key.
type PartnerKey = (u16, MacAddr, u16);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Partner {
    /// What the partner says about itself (the PDU's actor TLV).
    info: LacpInfo,
    /// What the partner last said about us (the PDU's partner TLV).
    view_of_us: LacpInfo,
    expires: Instant,
}

impl Partner {
    fn key(&self) -> PartnerKey {
        (self.info.system_priority, self.info.system, self.info.key)
    }
}

#[derive(Debug, Clone)]
struct Member {
    lag: String,
    actor_port: u16,
    partner: Option<Partner>,
    /// The partner was lost by timeout (reported as `expired`).
    expired: bool,
    selected: bool,
    state: LacpState,
    ntt: bool,
    next_tx: Option<Instant>,
    /// Start of the current rate-limit window and the PDUs sent in it.
    window: Option<(Instant, u8)>,
    /// Adopted from the switch at a controller's start (the member was in
    /// service under the previous controller): usable and silent until the
    /// partner's next LACPDU, or until this deadline (its current_while).
    adopted_until: Option<Instant>,
}

#[derive(Debug, Clone)]
struct LagInfo {
    mode: LagMode,
    /// An admin-down LAG selects no member (the server sees us out of
    /// sync and stops using the links).
    admin_up: bool,
    key: u16,
    rate: LacpRate,
    members: Vec<PortRef>,
    /// The partner the LAG aggregates with (LACP only).
    chosen: Option<PartnerKey>,
    /// Members that may carry traffic.
    usable: BTreeSet<PortRef>,
}

/// What a member looks like, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub lag: String,
    pub port: PortRef,
    pub mode: LagMode,
    pub port_up: bool,
    /// Our actor information on this port (LACP only).
    pub actor: Option<LacpInfo>,
    pub partner: Option<LacpInfo>,
    pub selected: bool,
    /// Collecting and distributing (LACP) / port up (static).
    pub usable: bool,
}

/// A LACPDU to send out of a member port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LacpTx {
    pub port: PortRef,
    pub frame: Vec<u8>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LacpOutput {
    pub send: Vec<LacpTx>,
    /// LAGs whose usable member set changed.
    pub changed_lags: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Lacp {
    system: MacAddr,
    system_priority: u16,
    lags: BTreeMap<String, LagInfo>,
    members: BTreeMap<PortRef, Member>,
    ports_down: BTreeSet<PortRef>,
    /// A new controller has not yet read back which members were in
    /// service: a member whose partner we have not heard says nothing
    /// (a first LACPDU "not in sync, defaulted" would make the server drop
    /// the link until the next exchange).
    quiet: bool,
    /// Leaves in maintenance: their members select nothing, so the actor
    /// tells the server it is out of sync (not collecting/distributing)
    /// and the server's bond moves its traffic to the other leaf.
    drained: BTreeSet<String>,
}

/// Actor port numbers: `(label & 0x7f) << 9 | port`, unique fabric-wide as
/// long as labels differ in their low 7 bits; a clash (or 0) takes the next
/// free number, in member order, so numbers stay stable across restarts.
fn actor_ports(fabric: &Fabric) -> BTreeMap<PortRef, u16> {
    let members: BTreeSet<&PortRef> = fabric
        .lags
        .values()
        .filter(|l| l.protocol == LagMode::Lacp)
        .flat_map(|l| &l.members)
        .collect();
    let mut used = BTreeSet::new();
    let mut out = BTreeMap::new();
    for m in members {
        let label = fabric.switches.get(&m.switch).map_or(0, |s| s.label);
        let mut n = (((label & 0x7f) << 9) | (m.port & 0x1ff)) as u16;
        while n == 0 || used.contains(&n) {
            n = n.wrapping_add(1);
        }
        used.insert(n);
        out.insert(m.clone(), n);
    }
    out
}

impl Lacp {
    pub fn new(fabric: &Fabric, now: Instant) -> Self {
        let mut l = Lacp {
            system: fabric.settings.lacp_system_id,
            system_priority: fabric.settings.lacp_system_priority,
            lags: BTreeMap::new(),
            members: BTreeMap::new(),
            ports_down: BTreeSet::new(),
            quiet: false,
            drained: BTreeSet::new(),
        };
        l.configure(fabric, now);
        l
    }

    /// Applies a new configuration. Members whose LAG, key and port number
    /// are unchanged keep their partner state (no flap on unrelated edits).
    pub fn configure(&mut self, fabric: &Fabric, now: Instant) -> LacpOutput {
        let system_changed = self.system != fabric.settings.lacp_system_id
            || self.system_priority != fabric.settings.lacp_system_priority;
        self.system = fabric.settings.lacp_system_id;
        self.system_priority = fabric.settings.lacp_system_priority;
        let old_usable: BTreeMap<String, BTreeSet<PortRef>> = self
            .lags
            .iter()
            .map(|(n, l)| (n.clone(), l.usable.clone()))
            .collect();
        let old_keys: BTreeMap<String, u16> =
            self.lags.iter().map(|(n, l)| (n.clone(), l.key)).collect();
        let old_chosen: BTreeMap<String, PartnerKey> = self
            .lags
            .iter()
            .filter_map(|(n, l)| Some((n.clone(), l.chosen?)))
            .collect();
        let ports = actor_ports(fabric);
        let mut members = BTreeMap::new();
        self.lags.clear();
        for (name, lag) in &fabric.lags {
            let key = lag.lacp.key.unwrap_or(lag.id);
            self.lags.insert(
                name.clone(),
                LagInfo {
                    mode: lag.protocol,
                    admin_up: lag.admin_up,
                    key,
                    rate: lag.lacp.rate,
                    members: lag.members.clone(),
                    chosen: old_chosen.get(name).copied(),
                    usable: BTreeSet::new(),
                },
            );
            if lag.protocol != LagMode::Lacp {
                continue;
            }
            for port in &lag.members {
                let actor_port = ports.get(port).copied().unwrap_or(0);
                let keep = self.members.remove(port).filter(|m| {
                    !system_changed
                        && m.lag == *name
                        && m.actor_port == actor_port
                        && old_keys.get(name) == Some(&key)
                });
                let m = keep.unwrap_or(Member {
                    lag: name.clone(),
                    actor_port,
                    partner: None,
                    expired: false,
                    selected: false,
                    state: LacpState(0),
                    ntt: true,
                    next_tx: Some(now),
                    window: None,
                    adopted_until: None,
                });
                members.insert(port.clone(), m);
            }
        }
        self.members = members;
        let mut out = LacpOutput::default();
        let names: Vec<String> = self.lags.keys().cloned().collect();
        for name in names {
            self.reselect(&name);
        }
        for (name, lag) in &self.lags {
            if old_usable.get(name) != Some(&lag.usable) {
                out.changed_lags.insert(name.clone());
            }
        }
        for name in old_usable.keys() {
            if !self.lags.contains_key(name) {
                out.changed_lags.insert(name.clone());
            }
        }
        // Changes (and new members) go out on the next tick.
        for m in self.members.values_mut().filter(|m| m.ntt) {
            m.next_tx = Some(now);
        }
        out
    }

    fn actor_info(&self, port: &PortRef) -> Option<LacpInfo> {
        let m = self.members.get(port)?;
        let lag = self.lags.get(&m.lag)?;
        Some(LacpInfo {
            system_priority: self.system_priority,
            system: self.system,
            key: lag.key,
            port_priority: PORT_PRIORITY,
            port: m.actor_port,
            state: m.state,
        })
    }

    /// A LACPDU received on `port` (a slow-protocols payload).
    pub fn on_lacpdu(&mut self, port: &PortRef, pdu: &Lacpdu, now: Instant) -> LacpOutput {
        let mut out = LacpOutput::default();
        // A frame racing a port-down report must not revive the partner.
        if self.ports_down.contains(port) {
            return out;
        }
        let Some(actor) = self.actor_info(port) else {
            return out;
        };
        let timeout = self.current_while(port);
        let Some(m) = self.members.get_mut(port) else {
            return out;
        };
        // 802.1AX 6.4.9 recordPDU: if the partner's view of us is stale,
        // tell it who we are now.
        if !actor.same_port(&pdu.partner)
            || pdu.partner.state.has(LacpState::AGGREGATION)
                != actor.state.has(LacpState::AGGREGATION)
        {
            m.ntt = true;
        }
        let changed_partner = m.partner.as_ref().map(|p| p.info) != Some(pdu.actor);
        m.partner = Some(Partner {
            info: pdu.actor,
            view_of_us: pdu.partner,
            expires: now + timeout,
        });
        m.expired = false;
        m.adopted_until = None;
        if changed_partner {
            m.ntt = true;
        }
        let lag = m.lag.clone();
        self.settle(&lag, &mut out);
        self.transmit(now, &mut out);
        out
    }

    /// Members that were in service on a switch a new controller found
    /// (read back from its LAG selector groups): they stay usable and our
    /// actor stays silent on them until the partner's next LACPDU (then the
    /// normal machines take over without a flap) or its current_while.
    pub fn adopt(&mut self, ports: &[PortRef], now: Instant) -> LacpOutput {
        let mut out = LacpOutput::default();
        let mut lags = BTreeSet::new();
        for port in ports {
            let timeout = self.current_while(port);
            let Some(m) = self.members.get_mut(port) else {
                continue;
            };
            if m.partner.is_some() || self.ports_down.contains(port) {
                continue;
            }
            m.adopted_until = Some(now + timeout);
            m.ntt = false;
            lags.insert(m.lag.clone());
        }
        for lag in lags {
            self.settle(&lag, &mut out);
        }
        out
    }

    /// The partner each member last heard (what a successor needs to keep
    /// a bond in sync across a controller failover: `restore_partners`).
    pub fn partners_heard(&self) -> BTreeMap<PortRef, LacpInfo> {
        self.members
            .iter()
            .filter_map(|(p, m)| Some((p.clone(), m.partner.as_ref()?.info)))
            .collect()
    }

    /// A controller taking over: members adopted as in service whose
    /// partner the previous controller last heard as `known` get that
    /// partner back (until current_while), so our first LACPDU, sent at
    /// once, carries the partner's own information and keeps the server in
    /// sync. Without it we would wait silently for the server's next
    /// LACPDU, and a failover longer than the server's short timeout minus
    /// its period (3 s - 1 s) would make it drop the links for an exchange.
    pub fn restore_partners(
        &mut self,
        known: &BTreeMap<PortRef, LacpInfo>,
        now: Instant,
    ) -> LacpOutput {
        let mut out = LacpOutput::default();
        let mut lags = BTreeSet::new();
        let ports: Vec<PortRef> = self
            .members
            .iter()
            .filter(|(p, m)| {
                m.adopted_until.is_some() && m.partner.is_none() && known.contains_key(*p)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for port in ports {
            let (Some(actor), Some(info)) = (self.actor_info(&port), known.get(&port)) else {
                continue;
            };
            let timeout = self.current_while(&port);
            let Some(m) = self.members.get_mut(&port) else {
                continue;
            };
            m.partner = Some(Partner {
                info: *info,
                // In service means the partner had our information.
                view_of_us: actor,
                expires: now + timeout,
            });
            m.adopted_until = None;
            m.ntt = true;
            m.next_tx = Some(now);
            lags.insert(m.lag.clone());
        }
        for lag in lags {
            self.settle(&lag, &mut out);
        }
        self.transmit(now, &mut out);
        out
    }

    /// Holds (`true`) or releases the LACPDUs of members whose partner was
    /// not heard yet (see `quiet`); releasing sends what is due.
    pub fn set_quiet(&mut self, quiet: bool, now: Instant) -> LacpOutput {
        self.quiet = quiet;
        let mut out = LacpOutput::default();
        if !quiet {
            self.transmit(now, &mut out);
        }
        out
    }

    /// Takes the members on `leaves` out of service (drain: the actor goes
    /// out of sync there) and puts the others back; changes go out at once.
    pub fn set_drained(&mut self, leaves: &BTreeSet<String>, now: Instant) -> LacpOutput {
        let mut out = LacpOutput::default();
        if *leaves == self.drained {
            return out;
        }
        let changed: BTreeSet<String> = leaves
            .symmetric_difference(&self.drained)
            .cloned()
            .collect();
        self.drained = leaves.clone();
        self.settle_where(|m| changed.contains(&m.switch), now, &mut out);
        out
    }

    /// Settles every LAG with a member `touched` says changed, then sends
    /// what is due.
    fn settle_where(
        &mut self,
        touched: impl Fn(&PortRef) -> bool,
        now: Instant,
        out: &mut LacpOutput,
    ) {
        let lags: Vec<String> = self
            .lags
            .iter()
            .filter(|(_, l)| l.members.iter().any(&touched))
            .map(|(n, _)| n.clone())
            .collect();
        for lag in lags {
            self.settle(&lag, out);
        }
        self.transmit(now, out);
    }

    /// The port's operational status changed.
    pub fn on_port_status(&mut self, port: &PortRef, up: bool, now: Instant) -> LacpOutput {
        let mut out = LacpOutput::default();
        let changed = if up {
            self.ports_down.remove(port)
        } else {
            self.ports_down.insert(port.clone())
        };
        if !changed {
            return out;
        }
        if let Some(m) = self.members.get_mut(port) {
            // A port that went down forgets its partner: the far end may
            // be a different server when it comes back.
            m.partner = None;
            m.ntt = up;
            m.next_tx = up.then_some(now);
        }
        self.settle_where(|m| m == port, now, &mut out);
        out
    }

    /// Timers: partner expiry and periodic / pending transmissions.
    pub fn on_tick(&mut self, now: Instant) -> LacpOutput {
        let mut out = LacpOutput::default();
        let mut lags = BTreeSet::new();
        for m in self.members.values_mut() {
            if m.adopted_until.is_some_and(|t| t <= now) {
                // The partner never spoke up: back to the normal machines.
                m.adopted_until = None;
                m.ntt = true;
                m.next_tx = Some(now);
                lags.insert(m.lag.clone());
            }
            if m.partner.as_ref().is_some_and(|p| p.expires <= now) {
                m.partner = None;
                m.expired = true;
                m.ntt = true;
                lags.insert(m.lag.clone());
            }
        }
        for lag in lags {
            self.settle(&lag, &mut out);
        }
        self.transmit(now, &mut out);
        out
    }

    /// When the next timer fires (for a daemon that sleeps until then).
    pub fn next_deadline(&self) -> Option<Instant> {
        // Down ports send nothing until they come up (which reschedules).
        self.members
            .iter()
            .filter(|(p, _)| !self.ports_down.contains(*p))
            .flat_map(|(_, m)| {
                let held = self.quiet && m.partner.is_none();
                [
                    m.next_tx.filter(|_| !held),
                    m.partner.as_ref().map(|p| p.expires),
                    m.adopted_until,
                ]
            })
            .flatten()
            .min()
    }

    fn current_while(&self, port: &PortRef) -> Duration {
        let fast = self
            .members
            .get(port)
            .and_then(|m| self.lags.get(&m.lag))
            .is_some_and(|l| l.rate == LacpRate::Fast);
        3 * if fast { FAST_PERIOD } else { SLOW_PERIOD }
    }

    /// Reselects `lag`, updates member states and reports a change of the
    /// usable set.
    fn settle(&mut self, lag: &str, out: &mut LacpOutput) {
        let before = self.lags.get(lag).map(|l| l.usable.clone());
        self.reselect(lag);
        if before != self.lags.get(lag).map(|l| l.usable.clone()) {
            out.changed_lags.insert(lag.to_string());
        }
    }

    fn reselect(&mut self, lag_name: &str) {
        let Some(lag) = self.lags.get(lag_name) else {
            return;
        };
        if lag.mode == LagMode::Static {
            let usable = lag
                .members
                .iter()
                .filter(|p| lag.admin_up && !self.ports_down.contains(*p))
                .cloned()
                .collect();
            if let Some(l) = self.lags.get_mut(lag_name) {
                l.usable = usable;
            }
            return;
        }
        let fast = lag.rate == LacpRate::Fast;
        let admin_up = lag.admin_up;
        // Count members per partner (aggregatable partners on up ports);
        // the biggest group wins, ties keep the current choice, then the
        // lowest key.
        let mut groups: BTreeMap<PartnerKey, usize> = BTreeMap::new();
        for p in &lag.members {
            if self.ports_down.contains(p) {
                continue;
            }
            if let Some(partner) = self.members.get(p).and_then(|m| m.partner.as_ref()) {
                if partner.info.state.has(LacpState::AGGREGATION) {
                    *groups.entry(partner.key()).or_default() += 1;
                }
            }
        }
        let best = groups.values().copied().max().unwrap_or(0);
        let chosen = lag
            .chosen
            .filter(|c| groups.get(c) == Some(&best))
            .or_else(|| groups.iter().find(|(_, n)| **n == best).map(|(k, _)| *k));
        let members = lag.members.clone();
        let mut usable = BTreeSet::new();
        for p in &members {
            // A drained leaf's member counts as down for selection.
            let down = self.ports_down.contains(p) || self.drained.contains(&p.switch);
            let key = self.lags.get(lag_name).map_or(0, |l| l.key);
            let (system, system_priority) = (self.system, self.system_priority);
            let Some(m) = self.members.get_mut(p) else {
                continue;
            };
            let selected = admin_up
                && !down
                && chosen.is_some()
                && m.partner.as_ref().map(Partner::key) == chosen;
            let mut state = LacpState(LacpState::ACTIVITY | LacpState::AGGREGATION)
                .with(LacpState::TIMEOUT, fast)
                .with(LacpState::SYNCHRONIZATION, selected)
                .with(LacpState::DEFAULTED, m.partner.is_none())
                .with(LacpState::EXPIRED, m.expired && m.partner.is_none());
            // The partner is in sync with us when it says so about the
            // information we currently send (recordPDU's "matched").
            let me = LacpInfo {
                system_priority,
                system,
                key,
                port_priority: PORT_PRIORITY,
                port: m.actor_port,
                state,
            };
            let partner_sync = m.partner.as_ref().is_some_and(|pt| {
                pt.info.state.has(LacpState::SYNCHRONIZATION) && me.same_port(&pt.view_of_us)
            });
            let adopted = m.adopted_until.is_some() && m.partner.is_none() && admin_up && !down;
            let cd = (selected && partner_sync) || adopted;
            if adopted {
                state.set(LacpState::SYNCHRONIZATION, true);
            }
            state.set(LacpState::COLLECTING, cd);
            state.set(LacpState::DISTRIBUTING, cd);
            if state != m.state || selected != m.selected {
                m.ntt = true;
            }
            m.state = state;
            m.selected = selected;
            if cd {
                usable.insert(p.clone());
            }
        }
        if let Some(l) = self.lags.get_mut(lag_name) {
            l.chosen = chosen;
            l.usable = usable;
        }
    }

    /// Sends what is due: pending changes (rate limited) and periodic PDUs.
    fn transmit(&mut self, now: Instant, out: &mut LacpOutput) {
        let ports: Vec<PortRef> = self.members.keys().cloned().collect();
        for port in ports {
            if self.ports_down.contains(&port) {
                continue;
            }
            let Some(actor) = self.actor_info(&port) else {
                continue;
            };
            let Some(m) = self.members.get_mut(&port) else {
                continue;
            };
            if m.adopted_until.is_some() || (self.quiet && m.partner.is_none()) {
                // Silent: what we would say before hearing the partner
                // (not in sync) would make it stop using the link.
                continue;
            }
            let due = m.next_tx.is_some_and(|t| t <= now);
            if !(m.ntt || due) {
                continue;
            }
            let (start, sent) = match m.window {
                Some((start, n)) if now < start + FAST_PERIOD => (start, n),
                _ => (now, 0),
            };
            if sent >= MAX_TX_PER_PERIOD {
                // Over budget: send when the window ends.
                m.next_tx = Some(start + FAST_PERIOD);
                continue;
            }
            m.window = Some((start, sent + 1));
            m.ntt = false;
            let period = match &m.partner {
                Some(p) if !p.info.state.has(LacpState::TIMEOUT) => SLOW_PERIOD,
                _ => FAST_PERIOD,
            };
            m.next_tx = Some(now + period);
            let pdu = Lacpdu {
                actor,
                partner: m.partner.as_ref().map(|p| p.info).unwrap_or_default(),
                collector_max_delay: 0,
            };
            let frame = build_eth(
                SLOW_PROTOCOLS_MAC,
                self.system,
                None,
                ETH_SLOW,
                &pdu.encode(),
            );
            out.send.push(LacpTx { port, frame });
        }
    }

    /// The members of `lag` that may carry traffic.
    pub fn usable(&self, lag: &str) -> BTreeSet<PortRef> {
        self.lags
            .get(lag)
            .map(|l| l.usable.clone())
            .unwrap_or_default()
    }

    /// Members of LACP LAGs that are not collecting/distributing.
    pub fn unsynced(&self) -> BTreeSet<PortRef> {
        self.members
            .iter()
            .filter(|(p, m)| self.lags.get(&m.lag).is_none_or(|l| !l.usable.contains(*p)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn status(&self) -> Vec<MemberStatus> {
        let mut out = Vec::new();
        for (name, lag) in &self.lags {
            for port in &lag.members {
                let m = self.members.get(port);
                out.push(MemberStatus {
                    lag: name.clone(),
                    port: port.clone(),
                    mode: lag.mode,
                    port_up: !self.ports_down.contains(port),
                    actor: self.actor_info(port),
                    partner: m.and_then(|m| m.partner.as_ref().map(|p| p.info)),
                    selected: m.is_some_and(|m| m.selected),
                    usable: lag.usable.contains(port),
                });
            }
        }
        out
    }
}
