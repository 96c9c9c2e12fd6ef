//! Start-up recovery: owns the window in which the switches' read-backs
//! are collected before the first desired state, and the restoring of what
//! the switches learned (hosts, bindings) into the protocols. A learned host
//! is recovered from its home leaf, and every other leaf holds entries for
//! it too: releasing a leaf before the home leaf has reported would delete
//! them. Then, on switches that hold state (a restart or takeover), the
//! links they forward over must be re-heard before the first desired state
//! (`LinkRound`). Uses `protocols::recover` and `agent::ReadBack`; no I/O.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::agent::ReadBack;
use crate::protocols::{self, Action, Protocols};

/// At start, how long the controller waits for every switch's read-back
/// before it hands out a desired state built from what was recovered so
/// far (a switch that is down must not hold up the others for long).
/// Counted from the last read-back that came in: a large fabric reads its
/// switches back a few at a time (`bulk_syncs`) and may take longer in
/// all, and releasing a leaf before a learned host's home leaf reported
/// would delete that host's entries.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(5);

/// The longest the start-up recovery waits for switches that are connected
/// and still being read back (a restart of 256 leaves of 131k entries reads
/// for over a minute on two cores); a switch that is down or not yet
/// connected holds it up for `RECOVERY_GRACE` only.
pub const RECOVERY_MAX: Duration = Duration::from_secs(300);

/// How often, past its deadline, the window checks again whether the
/// switches still being read back are done.
const RECHECK: Duration = Duration::from_millis(500);

/// The start-up window in which read-backs are collected before the first
/// desired state that accounts for them.
#[derive(Debug)]
pub(super) struct Recovery {
    waiting_for: BTreeSet<String>,
    until: Instant,
    started: Instant,
}

impl Recovery {
    /// Waits for the read-backs of `switches`.
    pub(super) fn new(switches: impl IntoIterator<Item = String>) -> Self {
        let now = Instant::now();
        Recovery {
            waiting_for: switches.into_iter().collect(),
            until: now + RECOVERY_GRACE,
            started: now,
        }
    }

    /// When the window ends unless more read-backs come in.
    pub(super) fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.until)
    }

    /// `switch`'s read-back came in; returns whether that was the last
    /// one waited for. The grace period starts over.
    pub(super) fn reported(&mut self, switch: &str) -> bool {
        self.waiting_for.remove(switch);
        self.until = self.until.max(Instant::now() + RECOVERY_GRACE);
        self.waiting_for.is_empty()
    }

    /// The deadline passed: returns whether the window is over. Switches
    /// connected and still being read back (`reading`) extend it, up to
    /// `RECOVERY_MAX` from the start.
    pub(super) fn expired(&mut self, reading: impl Fn(&str) -> bool) -> bool {
        let still_reading = self.waiting_for.iter().any(|n| reading(n));
        if still_reading && self.started.elapsed() < RECOVERY_MAX {
            self.until = Instant::now() + RECHECK;
            return false;
        }
        if !self.waiting_for.is_empty() {
            tracing::warn!(switches = ?self.waiting_for, "no read-back yet from these switches; programming the others");
        }
        true
    }
}

/// Restores into the protocols what `rb`'s switch has learned (MACs,
/// bindings), and returns the packets to send (none expected); the
/// recompile that follows covers any host change.
pub(super) fn restore_learned(protocols: &mut Protocols, rb: &ReadBack) -> Vec<Action> {
    let recovered = protocols::recover::from_switch(rb.installed.values().map(|e| &**e));
    if recovered.is_empty() {
        return Vec::new();
    }
    let actions = protocols.restore(&rb.switch, &recovered, std::time::Instant::now());
    tracing::info!(
        switch = %rb.switch,
        macs = recovered.macs.len(),
        bindings = recovered.bindings.len(),
        "recovered learned state from the switch"
    );
    actions
        .into_iter()
        .filter(|a| matches!(a, Action::SendPacket(_)))
        .collect()
}

/// The start-up discovery round: when any read-back held entities (the
/// switches forward: a restart or a takeover, not a cold start), discovery
/// probes every fabric port once the read-backs are in, and the first
/// desired state waits until every fabric port that is up heard its link
/// or the round's time passed (`Discovery::start_round`). Compiled before
/// that, it would remove every fabric path of a fabric without `links:`.
#[derive(Debug, Default)]
pub(super) struct LinkRound {
    /// Some read-back held entities.
    switches_hold_state: bool,
    /// When the round started, while it runs.
    since: Option<Instant>,
}

impl LinkRound {
    /// A switch's read-back came in.
    pub(super) fn read_back(&mut self, rb: &ReadBack) {
        self.switches_hold_state |= !rb.installed.is_empty();
    }

    /// The read-backs are in: starts the round where switches hold state;
    /// returns whether the first desired state must wait for it.
    pub(super) fn start(&mut self, protocols: &mut Protocols, now: Instant) -> bool {
        if self.switches_hold_state {
            protocols.start_discovery_round(now);
            self.since = Some(now);
        }
        self.since.is_some()
    }

    /// The round runs: the first desired state waits.
    pub(super) fn running(&self) -> bool {
        self.since.is_some()
    }

    /// Ends the round once it is over; returns whether it just ended (the
    /// first desired state is due).
    pub(super) fn end_if_over(&mut self, protocols: &mut Protocols, now: Instant) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        if protocols.discovery_round_done(now) == Some(false) {
            return false;
        }
        protocols.end_discovery_round();
        self.since = None;
        tracing::info!(
            ms = since.elapsed().as_millis() as u64,
            links = protocols
                .observed_links()
                .values()
                .filter(|up| **up)
                .count(),
            "links re-heard after the read-backs: first desired state"
        );
        true
    }
}
