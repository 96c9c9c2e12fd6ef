//! Port security as the operator sees it: one status key per edge port or
//! LAG at its learned-MAC limit (`status/port-security/...`, removed when
//! it is below the limit again) and the figures `/metrics` shows. The
//! state itself (limits, counts, refusals, the one log line per
//! transition) is `protocols::learning`'s; this only publishes it (through
//! the status writer's write-behind queue: the controller's loop never
//! waits on etcd), and hands over only what changed, so a flood costs etcd
//! at most one put per limited attachment and status tick.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::config::status::{self as st, PortSecurityStatus, StatusWriter};
use crate::protocols::learning::Limited;
use crate::protocols::Protocols;

use super::metrics::PortSecurityMetrics;

pub(super) struct PortSecurityPublisher {
    writer: Option<Arc<StatusWriter>>,
    /// Path -> value last written.
    written: BTreeMap<String, PortSecurityStatus>,
}

/// The status value of a limited attachment (`now`/`unix`: the same
/// moment on both clocks).
fn status_of(l: &Limited, now: Instant, unix: u64) -> PortSecurityStatus {
    PortSecurityStatus {
        state: "limited".to_string(),
        learned: l.learned as u64,
        limit: l.limit as u64,
        since: unix.saturating_sub(now.saturating_duration_since(l.since).as_secs()),
        refused: l.refused,
        reason: format!(
            "{} MACs learned, the limit is {}: frames from new sources are not learned or answered; \
             it clears when learned hosts age out (settings.mac_aging_secs) or the limit is raised \
             (max_learned_macs / settings.max_learned_macs_per_port)",
            l.learned, l.limit
        ),
    }
}

impl PortSecurityPublisher {
    pub(super) fn new(writer: Option<Arc<StatusWriter>>) -> Self {
        PortSecurityPublisher {
            writer,
            written: BTreeMap::new(),
        }
    }

    /// The figures for `/metrics`.
    pub(super) fn metrics(p: &Protocols) -> PortSecurityMetrics {
        PortSecurityMetrics {
            limited: p.limited_attachments().len(),
            refused: p
                .learns_refused()
                .iter()
                .map(|(a, n)| (st::paths::port_security(a), *n))
                .collect(),
        }
    }

    /// Writes the limited attachments that changed and removes the keys of
    /// those no longer limited.
    pub(super) fn publish(&mut self, p: &Protocols) {
        let Some(w) = &self.writer else {
            return;
        };
        let now = Instant::now();
        let unix = st::unix_now();
        let want: BTreeMap<String, PortSecurityStatus> = p
            .limited_attachments()
            .iter()
            .map(|l| {
                (
                    st::paths::port_security(&l.attachment),
                    status_of(l, now, unix),
                )
            })
            .collect();
        for (path, v) in &want {
            // `since` is derived from two clocks: a second's jitter is no
            // change worth a put.
            let same = self.written.get(path).is_some_and(|old| {
                PortSecurityStatus {
                    since: v.since,
                    ..old.clone()
                } == *v
                    && old.since.abs_diff(v.since) <= 1
            });
            if same {
                continue;
            }
            w.set_later(path, v);
            self.written.insert(path.clone(), v.clone());
        }
        let gone: Vec<String> = self
            .written
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for path in gone {
            w.remove_later(&path);
            self.written.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Attachment;
    use std::time::Duration;

    #[test]
    fn a_limited_port_says_why_and_since_when() {
        let now = Instant::now();
        let l = Limited {
            attachment: Attachment::Port("leaf1/3".parse().unwrap()),
            learned: 1000,
            limit: 1000,
            since: now - Duration::from_secs(30),
            refused: 4000,
        };
        let v = status_of(&l, now, 1_000_000);
        assert_eq!(
            (v.state.as_str(), v.learned, v.limit, v.since, v.refused),
            ("limited", 1000, 1000, 999_970, 4000)
        );
        assert!(v.reason.contains("limit is 1000"), "{}", v.reason);
        assert!(v.reason.contains("age out"), "{}", v.reason);
        assert_eq!(
            st::paths::port_security(&l.attachment),
            "port-security/ports/leaf1/3"
        );
        assert_eq!(
            st::paths::port_security(&Attachment::Lag("bond1".into())),
            "port-security/lags/bond1"
        );
    }
}
