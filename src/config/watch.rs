//! The watcher: turns a store into a stream of configurations.
//!
//! Two layers. The *feed* (`spawn_etcd_feed`) delivers every change of
//! etcd exactly once and in revision order: read everything at revision R,
//! watch from R+1, resume from the last revision seen after a lost
//! connection (capped exponential backoff), and re-read everything when the
//! history it needs was compacted. The *applier* (`spawn_applier`) applies
//! a change at once when it comes alone, coalesces bursts (a Neutron bulk
//! update of 1,000 keys becomes a handful of recomputations; see `Pacing`)
//! and applies them to a `ConfigState`, publishing each result on a tokio
//! watch channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::etcd::EtcdOptions;
use super::keys::controller_owned;
use super::model::Fabric;
use super::state::{Change, ConfigState, KeyError};
use super::store::{ConfigStore, Source, StoreError};

/// One step of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// The whole configuration as read at `revision`.
    Reset {
        revision: i64,
        kvs: BTreeMap<String, Vec<u8>>,
    },
    /// Changes up to and including `revision`, in order.
    Changes { revision: i64, changes: Vec<Change> },
}

impl Feed {
    pub fn revision(&self) -> i64 {
        match self {
            Feed::Reset { revision, .. } | Feed::Changes { revision, .. } => *revision,
        }
    }
}

/// Timing of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// A burst is applied once no change arrived for this long...
    pub quiet: Duration,
    /// ...or this long after its first pending change, whichever is first.
    pub max_delay: Duration,
    /// A change is applied at once unless it arrived within `burst_gap` of
    /// the one before, or `leading` changes were applied at once within
    /// the last `quiet`: then the changes are a burst, coalesced until it
    /// goes quiet.
    pub burst_gap: Duration,
    pub leading: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            quiet: Duration::from_millis(20),
            max_delay: Duration::from_millis(250),
            // A bulk writer's puts come well under 2 ms apart; one change
            // at a time, each waiting for the last to reach the switches,
            // comes 5 ms or more apart. At most one change per 5 ms on
            // average goes out at once.
            burst_gap: Duration::from_millis(2),
            leading: 4,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// When the applier applies: a change that comes alone at once (leading
/// edge), a burst once it goes quiet or `max_delay` after it started
/// (trailing edge). A burst starts when a change arrives within
/// `burst_gap` of the one before, or after `leading` changes were applied
/// at once within the last `quiet`; it lasts until no change arrived for
/// `quiet`.
#[derive(Debug)]
struct Pacing {
    tuning: Tuning,
    /// When the changes applied at once within the last `quiet` arrived.
    at_once: VecDeque<Instant>,
    last_arrival: Option<Instant>,
    burst: bool,
}

impl Pacing {
    fn new(tuning: Tuning) -> Self {
        Pacing {
            tuning,
            at_once: VecDeque::new(),
            last_arrival: None,
            burst: false,
        }
    }

    /// A change arrived at `now` with nothing pending: true to apply it at
    /// once, false to coalesce it with what follows.
    fn apply_at_once(&mut self, now: Instant) -> bool {
        let quiet = self.tuning.quiet;
        let since = self.last_arrival.map(|t| now.duration_since(t));
        if since.is_none_or(|d| d >= quiet) {
            self.burst = false;
        }
        if since.is_some_and(|d| d < self.tuning.burst_gap) {
            self.burst = true;
        }
        self.last_arrival = Some(now);
        while self
            .at_once
            .front()
            .is_some_and(|t| now.duration_since(*t) >= quiet)
        {
            self.at_once.pop_front();
        }
        if self.burst || self.at_once.len() >= self.tuning.leading {
            self.burst = true;
            return false;
        }
        self.at_once.push_back(now);
        true
    }

    /// Another change arrived while one is pending.
    fn arrived(&mut self, now: Instant) {
        self.last_arrival = Some(now);
    }
}

/// The configuration in force, as published to the controller.
#[derive(Debug, Clone, Default)]
pub struct ConfigUpdate {
    /// Store revision of the last configuration change applied (0: nothing
    /// read yet). Status writes move etcd's revision but not this one.
    pub revision: i64,
    pub fabric: Arc<Fabric>,
    /// Every key whose current value is rejected, and why.
    pub errors: Arc<Vec<KeyError>>,
    /// How many times the configuration was recomputed so far.
    pub generation: u64,
}

/// A running watcher; its tasks stop when it is dropped.
pub struct ConfigWatch {
    rx: watch::Receiver<ConfigUpdate>,
    tasks: Vec<JoinHandle<()>>,
}

impl ConfigWatch {
    /// Watches `source`: etcd, or a file polled every second.
    pub fn start(source: Source, tuning: Tuning) -> Self {
        match source {
            Source::Etcd(opts) => Self::etcd(opts, tuning),
            Source::File(path) => Self::file(path, Duration::from_secs(1), tuning),
        }
    }

    /// Watches etcd.
    pub fn etcd(opts: EtcdOptions, tuning: Tuning) -> Self {
        let (feed, t1) = spawn_etcd_feed(opts, tuning);
        let (rx, t2) = spawn_applier(feed, tuning);
        ConfigWatch {
            rx,
            tasks: vec![t1, t2],
        }
    }

    /// Watches a YAML file, polling its modification time.
    pub fn file(path: std::path::PathBuf, poll: Duration, tuning: Tuning) -> Self {
        let (feed, t1) = super::file::spawn_file_feed(path, poll);
        let (rx, t2) = spawn_applier(feed, tuning);
        ConfigWatch {
            rx,
            tasks: vec![t1, t2],
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<ConfigUpdate> {
        self.rx.clone()
    }

    pub fn current(&self) -> ConfigUpdate {
        self.rx.borrow().clone()
    }

    /// Waits until a configuration at `revision` or later is in force.
    pub async fn wait_for_revision(&mut self, revision: i64) -> ConfigUpdate {
        let mut rx = self.rx.clone();
        let r = rx
            .wait_for(|u| u.revision >= revision)
            .await
            .map(|u| u.clone());
        // The applier only stops when the watch is dropped.
        r.unwrap_or_else(|_| self.current())
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the exactly-once, in-order feed of etcd changes (status keys
/// excluded). It runs until the receiver is dropped.
pub fn spawn_etcd_feed(
    opts: EtcdOptions,
    tuning: Tuning,
) -> (mpsc::UnboundedReceiver<Feed>, JoinHandle<()>) {
    feed(opts, tuning, Cursor::default())
}

/// Like `spawn_etcd_feed`, for a consumer that already holds everything up
/// to `revision`: only the changes after it are fed (or a full re-read if
/// they were compacted away).
pub fn spawn_etcd_feed_from(
    opts: EtcdOptions,
    tuning: Tuning,
    revision: i64,
) -> (mpsc::UnboundedReceiver<Feed>, JoinHandle<()>) {
    let cursor = Cursor {
        last: Some(revision),
        cluster: None,
    };
    feed(opts, tuning, cursor)
}

fn feed(
    opts: EtcdOptions,
    tuning: Tuning,
    mut cursor: Cursor,
) -> (mpsc::UnboundedReceiver<Feed>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut backoff = tuning.backoff_min;
        loop {
            match session(&opts, &mut cursor, &tx, &mut backoff, tuning).await {
                Ok(()) => return, // receiver gone
                Err(SessionEnd::Compacted(at)) => {
                    info!(
                        compacted = at,
                        "etcd history compacted; re-reading everything"
                    );
                    cursor.last = None;
                }
                Err(SessionEnd::Lost(e)) => {
                    warn!(error = %e, retry_in = ?backoff, "etcd connection lost; keeping the last good config");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(tuning.backoff_max);
                }
            }
        }
    });
    (rx, task)
}

#[derive(Debug, Default)]
struct Cursor {
    /// Every change up to this revision was delivered; `None`: re-read.
    last: Option<i64>,
    /// The etcd cluster the revisions belong to.
    cluster: Option<u64>,
}

enum SessionEnd {
    Compacted(i64),
    Lost(StoreError),
}

impl From<StoreError> for SessionEnd {
    fn from(e: StoreError) -> Self {
        SessionEnd::Lost(e)
    }
}

impl From<etcd_client::Error> for SessionEnd {
    fn from(e: etcd_client::Error) -> Self {
        SessionEnd::Lost(e.into())
    }
}

/// One connection's worth of feeding. `Ok` means the receiver is gone.
async fn session(
    opts: &EtcdOptions,
    cursor: &mut Cursor,
    tx: &mpsc::UnboundedSender<Feed>,
    backoff: &mut Duration,
    tuning: Tuning,
) -> Result<(), SessionEnd> {
    let store = opts.connect().await?;
    let (now, cluster) = store.revision().await?;
    if let Some(r) = cursor.last {
        // An etcd restored from a backup or rebuilt (another cluster id, or
        // behind us) has another history: resuming would miss its state.
        if now < r || cursor.cluster.is_some_and(|c| c != cluster) {
            warn!(
                ours = r,
                etcd = now,
                "etcd has another history; re-reading everything"
            );
            cursor.last = None;
        }
    }
    cursor.cluster = Some(cluster);
    let last = match cursor.last {
        Some(r) => r,
        None => {
            let snap = store.load().await?;
            if tx
                .send(Feed::Reset {
                    revision: snap.revision,
                    kvs: snap.kvs,
                })
                .is_err()
            {
                return Ok(());
            }
            cursor.last = Some(snap.revision);
            snap.revision
        }
    };
    let mut stream = store.watch_from(last + 1).await?;
    debug!(from = last + 1, "watching etcd");
    loop {
        let Some(resp) = stream.message().await? else {
            return Err(SessionEnd::Lost(StoreError::Invalid(
                "etcd closed the watch stream".into(),
            )));
        };
        *backoff = tuning.backoff_min;
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return Err(SessionEnd::Compacted(resp.compact_revision()));
            }
            return Err(SessionEnd::Lost(StoreError::Invalid(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            ))));
        }
        let events = resp.events();
        if events.is_empty() {
            // A progress notification: everything up to the header revision
            // was sent. (Not the creation response, whose header revision
            // is "now" while the replay from `last + 1` is still to come.)
            if !resp.created() {
                if let Some(h) = resp.header() {
                    let r = h.revision();
                    if cursor.last.is_some_and(|l| r > l) {
                        cursor.last = Some(r);
                    }
                }
            }
            continue;
        }
        let mut changes = Vec::with_capacity(events.len());
        let mut revision = cursor.last.unwrap_or_default();
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            // Replays after a reconnect can overlap what was delivered.
            if kv.mod_revision() <= cursor.last.unwrap_or_default() {
                continue;
            }
            revision = revision.max(kv.mod_revision());
            let Some(rel) = store.relative(kv.key()) else {
                continue;
            };
            if controller_owned(&rel) {
                continue;
            }
            changes.push(match ev.event_type() {
                etcd_client::EventType::Put => Change::put(rel, kv.value().to_vec()),
                etcd_client::EventType::Delete => Change::delete(rel),
            });
        }
        cursor.last = Some(revision);
        if !changes.is_empty() && tx.send(Feed::Changes { revision, changes }).is_err() {
            return Ok(());
        }
    }
}

/// Applies the feed to a `ConfigState`, coalescing bursts, and publishes
/// every result.
pub fn spawn_applier(
    mut feed: mpsc::UnboundedReceiver<Feed>,
    tuning: Tuning,
) -> (watch::Receiver<ConfigUpdate>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(ConfigUpdate::default());
    let task = tokio::spawn(async move {
        let mut state = ConfigState::new();
        let mut generation = 0;
        let mut pacing = Pacing::new(tuning);
        while let Some(first) = feed.recv().await {
            let mut batch = vec![first];
            // What is queued already goes with it.
            let mut closed = loop {
                match feed.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(mpsc::error::TryRecvError::Empty) => break false,
                    Err(mpsc::error::TryRecvError::Disconnected) => break true,
                }
            };
            if !closed && !pacing.apply_at_once(Instant::now()) {
                let deadline = Instant::now() + tuning.max_delay;
                loop {
                    let until = (Instant::now() + tuning.quiet).min(deadline);
                    match tokio::time::timeout_at(until, feed.recv()).await {
                        Ok(Some(f)) => {
                            pacing.arrived(Instant::now());
                            batch.push(f);
                        }
                        Ok(None) => {
                            closed = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            let revision = batch.last().map(Feed::revision).unwrap_or_default();
            let changes = coalesce(state.raw(), batch);
            let (fabric, errors) = state.apply(changes);
            generation += 1;
            debug!(
                revision,
                generation,
                errors = errors.len(),
                "configuration recomputed"
            );
            let update = ConfigUpdate {
                revision,
                fabric: Arc::new(fabric),
                errors: Arc::new(errors),
                generation,
            };
            if tx.send(update).is_err() || closed {
                return;
            }
        }
    });
    (rx, task)
}

/// Folds a batch of feed steps into one set of changes against `raw`: the
/// last write of each key wins, a reset replaces everything before it.
pub fn coalesce(raw: &BTreeMap<String, Vec<u8>>, batch: Vec<Feed>) -> Vec<Change> {
    let mut out: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for step in batch {
        match step {
            Feed::Reset { kvs, .. } => {
                out = raw
                    .keys()
                    .filter(|k| !kvs.contains_key(*k))
                    .map(|k| (k.clone(), None))
                    .collect();
                out.extend(kvs.into_iter().map(|(k, v)| (k, Some(v))));
            }
            Feed::Changes { changes, .. } => {
                out.extend(changes.into_iter().map(|c| (c.key, c.value)));
            }
        }
    }
    out.into_iter()
        .filter(|(k, v)| raw.get(k) != v.as_ref())
        .map(|(key, value)| Change { key, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_keeps_last_write_and_resets() {
        let mut raw = BTreeMap::new();
        raw.insert("a".to_string(), b"1".to_vec());
        raw.insert("b".to_string(), b"1".to_vec());
        let batch = vec![
            Feed::Changes {
                revision: 2,
                changes: vec![Change::put("c", "1"), Change::put("c", "2")],
            },
            Feed::Reset {
                revision: 3,
                kvs: [
                    ("a".to_string(), b"1".to_vec()),
                    ("d".to_string(), b"4".to_vec()),
                ]
                .into(),
            },
            Feed::Changes {
                revision: 4,
                changes: vec![Change::put("e", "5")],
            },
        ];
        let c = coalesce(&raw, batch);
        assert_eq!(
            c,
            vec![
                Change::delete("b"),
                Change::put("d", "4"),
                Change::put("e", "5")
            ]
        );
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn changes_one_at_a_time_go_out_at_once_and_bursts_wait() {
        let mut p = Pacing::new(Tuning::default());
        let t0 = Instant::now();
        // One change every 6 ms (each waiting for the last to converge):
        // never a burst.
        for i in 0..100 {
            assert!(p.apply_at_once(t0 + ms(6 * i)), "change {i}");
        }
        // 1,000 puts 0.1 ms apart: the first at once, then the burst is
        // coalesced (the applier calls `arrived` meanwhile)...
        let t1 = t0 + ms(1000);
        let at_once = (0..1000u32)
            .filter(|i| p.apply_at_once(t1 + Duration::from_micros(100) * *i))
            .count();
        assert_eq!(at_once, 1);
        // ...until it goes quiet: the next change alone goes out at once.
        assert!(!p.apply_at_once(t1 + ms(100) + ms(19)));
        assert!(p.apply_at_once(t1 + ms(100) + ms(19) + ms(20)));
    }

    #[test]
    fn a_burst_lasts_while_changes_keep_coming() {
        let mut p = Pacing::new(Tuning::default());
        let t0 = Instant::now();
        // A slow writer, 3 ms a put: `leading` at once, then a burst.
        for i in 0..4 {
            assert!(p.apply_at_once(t0 + ms(3 * i)));
        }
        assert!(!p.apply_at_once(t0 + ms(12)));
        let t0 = t0 + ms(8);
        // Applied at `max_delay` while changes kept arriving every 10 ms:
        // still a burst, though the leading changes are long past.
        for i in 1..=25 {
            p.arrived(t0 + ms(4 + 10 * i));
        }
        assert!(!p.apply_at_once(t0 + ms(264)));
        assert!(p.apply_at_once(t0 + ms(284)));
    }

    #[tokio::test]
    async fn a_change_after_a_quiet_period_is_applied_at_once() {
        let (tx, rx) = mpsc::unbounded_channel();
        // A long debounce: waiting for it would show.
        let tuning = Tuning {
            quiet: ms(500),
            max_delay: ms(2000),
            ..Tuning::default()
        };
        let (mut out, _task) = spawn_applier(rx, tuning);
        for revision in 1..=3 {
            // One at a time, a little apart (as a client waiting for each
            // to take effect sends them): well inside `quiet`.
            tokio::time::sleep(ms(5)).await;
            let t = Instant::now();
            tx.send(Feed::Changes {
                revision,
                changes: vec![Change::put(format!("vlans/{revision}"), "{}")],
            })
            .unwrap();
            out.wait_for(|u| u.revision == revision).await.unwrap();
            let took = t.elapsed();
            assert!(took < ms(250), "change {revision} waited {took:?}");
        }
        assert_eq!(out.borrow().generation, 3);
    }

    #[tokio::test]
    async fn a_trickling_burst_becomes_a_handful_of_recomputations() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (mut out, _task) = spawn_applier(rx, Tuning::default());
        // 1,000 puts over ~100 ms, a few at a time.
        let started = Instant::now();
        let sender = tokio::spawn(async move {
            for i in 1..=1000i64 {
                let change = Change::put(format!("vlans/{}", i % 4000 + 1), "{}");
                if tx
                    .send(Feed::Changes {
                        revision: i,
                        changes: vec![change],
                    })
                    .is_err()
                {
                    return;
                }
                if i % 10 == 0 {
                    tokio::time::sleep(ms(1)).await;
                }
            }
        });
        out.wait_for(|u| u.revision == 1000).await.unwrap();
        sender.await.unwrap();
        let took = started.elapsed();
        let u = out.borrow().clone();
        assert_eq!(u.fabric.vlans.len(), 1000);
        // `leading` at once, then one per `max_delay` and the last; plus
        // two for timers that fire late on a loaded machine (a burst per
        // change would be 1,000).
        let t = Tuning::default();
        let bound = t.leading as u64 + (took.as_millis() / t.max_delay.as_millis()) as u64 + 3;
        assert!(
            u.generation <= bound,
            "generation {} (bound {bound}, {took:?})",
            u.generation
        );
    }

    #[tokio::test]
    async fn bursts_are_coalesced() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (mut out, _task) = spawn_applier(rx, Tuning::default());
        for i in 1..=1000 {
            tx.send(Feed::Changes {
                revision: i,
                changes: vec![Change::put(format!("vlans/{}", i % 4000 + 1), "{}")],
            })
            .unwrap();
        }
        out.wait_for(|u| u.revision == 1000).await.unwrap();
        let u = out.borrow().clone();
        assert_eq!(u.fabric.vlans.len(), 1000);
        assert!(u.generation <= 2, "generation {}", u.generation);
    }
}
