//! The pass scheduler: owns *when* an agent reads its switch back and when
//! it reconciles, as a plain state machine without I/O (the session loop
//! in `session.rs` does the I/O and feeds it events). Events in: a new
//! desired state, a retry or resync due, a bulk permit granted, a
//! read-back done, a pass done, the read-back wait over; decision out:
//! read back, reconcile, or wait (for the timers and the permit it names).
//! Uses only `p4rt::backoff`.
//!
//! The rules it keeps:
//! - A session starts with a read-back, reported to the controller; no
//!   write until a desired state newer than the one current at the report
//!   comes (it accounts for what the switch holds), or `read_back_wait`
//!   passed — and never while this controller has computed nothing yet
//!   (generation 0: the empty state would delete what the switch holds).
//! - A read-back and the pass after it (session start, retry, resync: the
//!   passes that may rewrite a whole switch) run under a bulk permit where
//!   the controller bounds them; single changes go on without one. The
//!   permit goes back once the read-back is reported (the wait for the
//!   controller's answer must not hold up the others) and after the pass.
//! - A pass with failed updates schedules a retry with capped backoff,
//!   which reads the switch back first (the failures may mean our view is
//!   stale); a clean pass resets the backoff.
//! - Resyncs (read back, diff) come every resync interval, counted from
//!   the end of the first pass (which may take minutes on a large switch).

use std::time::Duration;

use tokio::time::Instant;

use crate::p4rt::backoff::Backoff;

/// What the session loop is to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read the whole switch back; with `report`, hand it to the
    /// controller (taking the permit along: `take_permit`) and call
    /// `read_back_done` with the generation current then.
    ReadBack { report: bool },
    /// Run a pass, then call `reconciled`.
    Reconcile,
    /// Wait for an event: the timers (`retry_at`, `resync_at`,
    /// `awaiting_until`), a new desired state, a permit (`wants_permit`).
    Wait,
}

/// What the end of the read-back wait decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadBackWait {
    /// No newer desired state came: reconcile with the last one.
    ReconcileAnyway,
    /// This controller has computed nothing yet: write nothing until it
    /// has.
    Hold,
}

/// One session's pass schedule. `P` is the bulk permit (held while a bulk
/// read-back or pass may run; dropped to hand it back).
#[derive(Debug)]
pub(crate) struct Scheduler<P> {
    /// The controller bounds bulk passes (without a bound every pass may
    /// run at once).
    bounded: bool,
    read_back_wait: Duration,
    retry: Backoff,
    retry_at: Option<Instant>,
    resync_at: Instant,
    first_pass: bool,
    /// The desired state may differ from what the switch holds.
    dirty: bool,
    /// The next pass follows a read-back (and may be large).
    bulk: bool,
    /// The switch is to be read back.
    read_pending: bool,
    /// The next read-back is the session's first: reported.
    report_pending: bool,
    /// After the report: the generation the controller had then, and until
    /// when to wait for a newer one (`None`: until it comes).
    awaiting: Option<(u64, Option<Instant>)>,
    permit: Option<P>,
}

impl<P> Scheduler<P> {
    /// A new session at `now`: read back, report, then reconcile. The
    /// first resync is `resync` after `now` (re-counted after the first
    /// pass).
    pub(crate) fn new(
        now: Instant,
        bounded: bool,
        retry: Backoff,
        read_back_wait: Duration,
        resync: Duration,
    ) -> Self {
        Scheduler {
            bounded,
            read_back_wait,
            retry,
            retry_at: None,
            resync_at: now + resync,
            first_pass: true,
            dirty: true,
            bulk: true,
            read_pending: true,
            report_pending: true,
            awaiting: None,
            permit: None,
        }
    }

    /// May a read-back or the pass after it run: with a permit, or where
    /// the controller bounds none.
    fn may_bulk(&self) -> bool {
        self.permit.is_some() || !self.bounded
    }

    /// The next step, given the generation of the latest desired state.
    /// A step returned is taken: the caller does it, then reports back.
    pub(crate) fn next(&mut self, desired_generation: u64) -> Step {
        if self.read_pending && self.may_bulk() {
            self.read_pending = false;
            return Step::ReadBack {
                report: std::mem::take(&mut self.report_pending),
            };
        }
        if self
            .awaiting
            .is_some_and(|(seen, _)| desired_generation > seen)
        {
            self.awaiting = None;
        }
        // (The report may have handed the permit back.)
        if self.dirty && self.awaiting.is_none() && (!self.bulk || self.may_bulk()) {
            self.dirty = false;
            return Step::Reconcile;
        }
        Step::Wait
    }

    /// The permit, for the report to hand back once it is delivered.
    pub(crate) fn take_permit(&mut self) -> Option<P> {
        self.permit.take()
    }

    /// The read-back is in; `reported`: the generation current when it was
    /// reported to the controller (`None`: not reported).
    pub(crate) fn read_back_done(&mut self, now: Instant, reported: Option<u64>) {
        if let Some(seen) = reported {
            self.awaiting = Some((seen, Some(now + self.read_back_wait)));
        }
        self.bulk = true;
        self.dirty = true;
    }

    /// A pass ended at `now`; `failed`: some update failed. `resync`: the
    /// interval to the next resync, asked for after the first pass only.
    pub(crate) fn reconciled(
        &mut self,
        now: Instant,
        failed: bool,
        resync: impl FnOnce() -> Duration,
    ) {
        if std::mem::take(&mut self.bulk) {
            self.permit = None;
        }
        if std::mem::take(&mut self.first_pass) {
            self.resync_at = now + resync();
        }
        if failed {
            self.retry_at = Some(now + self.retry.next_delay());
        } else {
            self.retry.reset();
            self.retry_at = None;
        }
    }

    /// A new desired state arrived.
    pub(crate) fn desired_changed(&mut self) {
        self.dirty = true;
    }

    /// Does the next step wait for a bulk permit (to be acquired now)?
    pub(crate) fn wants_permit(&self) -> bool {
        let wants = self.read_pending || (self.dirty && self.bulk && self.awaiting.is_none());
        wants && self.bounded && self.permit.is_none()
    }

    pub(crate) fn permit_granted(&mut self, permit: P) {
        self.permit = Some(permit);
    }

    /// The retry is due: the failures may mean our view is stale (an entry
    /// that exists, or one that vanished), so read back, then retry.
    pub(crate) fn retry_due(&mut self) {
        self.retry_at = None;
        self.read_pending = true;
    }

    /// The resync is due at `now`; the next one is `resync` later.
    pub(crate) fn resync_due(&mut self, now: Instant, resync: Duration) {
        self.resync_at = now + resync;
        self.read_pending = true;
    }

    /// No desired state newer than the one at the report came in time.
    pub(crate) fn read_back_wait_over(&mut self) -> ReadBackWait {
        let seen = self.awaiting.map_or(0, |(seen, _)| seen);
        if seen > 0 {
            self.awaiting = None;
            ReadBackWait::ReconcileAnyway
        } else {
            self.awaiting = Some((0, None));
            ReadBackWait::Hold
        }
    }

    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    pub(crate) fn resync_at(&self) -> Instant {
        self.resync_at
    }

    /// Until when the read-back wait lasts (`None`: not waiting, or until
    /// a desired state comes).
    pub(crate) fn awaiting_until(&self) -> Option<Instant> {
        self.awaiting.and_then(|(_, until)| until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);
    const RESYNC: Duration = Duration::from_secs(60);

    /// A permit that says when it is handed back.
    #[derive(Debug)]
    struct Permit(std::rc::Rc<std::cell::Cell<bool>>);
    impl Drop for Permit {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    fn permit() -> (Permit, std::rc::Rc<std::cell::Cell<bool>>) {
        let back = std::rc::Rc::new(std::cell::Cell::new(false));
        (Permit(back.clone()), back)
    }

    fn scheduler(bounded: bool) -> (Scheduler<Permit>, Instant) {
        let now = Instant::now();
        let retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        (Scheduler::new(now, bounded, retry, WAIT, RESYNC), now)
    }

    #[test]
    fn a_session_reads_back_reports_and_writes_only_after_a_newer_desired_state() {
        let (mut s, now) = scheduler(false);
        assert_eq!(s.next(4), Step::ReadBack { report: true });
        s.read_back_done(now, Some(4));
        assert_eq!(s.awaiting_until(), Some(now + WAIT));
        // The controller has not answered yet: nothing to write.
        assert_eq!(s.next(4), Step::Wait);
        assert_eq!(s.next(4), Step::Wait);
        // Generation 5 accounts for the read-back.
        assert_eq!(s.next(5), Step::Reconcile);
        s.reconciled(now, false, || RESYNC);
        assert_eq!(s.next(5), Step::Wait);
        s.desired_changed();
        assert_eq!(s.next(6), Step::Reconcile);
        assert_eq!(s.next(6), Step::Wait);
    }

    #[test]
    fn without_a_report_channel_the_pass_follows_the_read_back() {
        let (mut s, now) = scheduler(false);
        assert_eq!(s.next(0), Step::ReadBack { report: true });
        s.read_back_done(now, None);
        assert_eq!(s.next(0), Step::Reconcile);
    }

    #[test]
    fn the_read_back_wait_reconciles_anyway_but_never_on_generation_0() {
        let (mut s, now) = scheduler(false);
        s.next(3);
        s.read_back_done(now, Some(3));
        assert_eq!(s.next(3), Step::Wait);
        assert_eq!(s.read_back_wait_over(), ReadBackWait::ReconcileAnyway);
        assert_eq!(s.next(3), Step::Reconcile);

        let (mut s, now) = scheduler(false);
        s.next(0);
        s.read_back_done(now, Some(0));
        assert_eq!(s.read_back_wait_over(), ReadBackWait::Hold);
        // Held with no deadline until the controller's first desired state.
        assert_eq!(s.awaiting_until(), None);
        assert_eq!(s.next(0), Step::Wait);
        s.desired_changed();
        assert_eq!(s.next(0), Step::Wait);
        assert_eq!(s.next(1), Step::Reconcile);
    }

    #[test]
    fn bulk_work_waits_for_a_permit_and_hands_it_back() {
        let (mut s, now) = scheduler(true);
        // The read-back needs a permit.
        assert_eq!(s.next(1), Step::Wait);
        assert!(s.wants_permit());
        let (p, back) = permit();
        s.permit_granted(p);
        assert!(!s.wants_permit());
        assert_eq!(s.next(1), Step::ReadBack { report: true });
        // The report hands the permit back.
        drop(s.take_permit());
        assert!(back.get());
        s.read_back_done(now, Some(1));
        // Waiting for the controller's answer holds no permit and wants none.
        assert!(!s.wants_permit());
        assert_eq!(s.next(1), Step::Wait);
        // The pass after a read-back is bulk: it waits for a permit again.
        assert_eq!(s.next(2), Step::Wait);
        assert!(s.wants_permit());
        let (p, back) = permit();
        s.permit_granted(p);
        assert_eq!(s.next(2), Step::Reconcile);
        assert!(!back.get());
        s.reconciled(now, false, || RESYNC);
        // Handed back after the bulk pass.
        assert!(back.get());
        // A single change goes on without a permit.
        s.desired_changed();
        assert!(!s.wants_permit());
        assert_eq!(s.next(3), Step::Reconcile);
    }

    #[test]
    fn a_failed_pass_retries_after_reading_back_under_a_permit() {
        let (mut s, now) = scheduler(true);
        let (p, _) = permit();
        s.permit_granted(p);
        s.next(1);
        s.take_permit();
        s.read_back_done(now, None);
        let (p, _) = permit();
        s.permit_granted(p);
        assert_eq!(s.next(1), Step::Reconcile);
        s.reconciled(now, true, || RESYNC);
        let first = s.retry_at().expect("a retry");
        assert!(first > now && first <= now + Duration::from_millis(125));
        assert_eq!(s.next(1), Step::Wait);
        s.retry_due();
        assert_eq!(s.retry_at(), None);
        // The retry's read-back waits for a permit and is not reported.
        assert_eq!(s.next(1), Step::Wait);
        assert!(s.wants_permit());
        let (p, _) = permit();
        s.permit_granted(p);
        assert_eq!(s.next(1), Step::ReadBack { report: false });
        s.read_back_done(now, None);
        assert_eq!(s.next(1), Step::Reconcile);
        // Failing again backs off further; a clean pass resets.
        s.reconciled(now, true, || RESYNC);
        assert!(s.retry_at().expect("a retry") >= now + Duration::from_millis(200));
        s.retry_due();
        let (p, _) = permit();
        s.permit_granted(p);
        s.next(1);
        s.read_back_done(now, None);
        s.next(1);
        s.reconciled(now, false, || RESYNC);
        assert_eq!(s.retry_at(), None);
    }

    #[test]
    fn resyncs_are_counted_from_the_end_of_the_first_pass() {
        let (mut s, start) = scheduler(false);
        assert_eq!(s.resync_at(), start + RESYNC);
        s.next(1);
        s.read_back_done(start, None);
        assert_eq!(s.next(1), Step::Reconcile);
        let later = start + Duration::from_secs(100);
        s.reconciled(later, false, || Duration::from_secs(70));
        assert_eq!(s.resync_at(), later + Duration::from_secs(70));
        // Only the first pass moves it.
        s.desired_changed();
        s.next(2);
        s.reconciled(later + Duration::from_secs(5), false, || unreachable!());
        assert_eq!(s.resync_at(), later + Duration::from_secs(70));
        // Due: read back (not reported), then a pass.
        let due = later + Duration::from_secs(70);
        s.resync_due(due, RESYNC);
        assert_eq!(s.resync_at(), due + RESYNC);
        assert_eq!(s.next(2), Step::ReadBack { report: false });
        s.read_back_done(due, None);
        assert_eq!(s.next(2), Step::Reconcile);
    }
}
