//! A per-key packets-per-second limit for punted ARP/ND. The switch's punt
//! meter guards the control channel; this guards the controller and the
//! shared packet-out queue, so one host's ARP storm cannot crowd out LACP
//! and discovery frames.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RateLimit<K> {
    per_second: u32,
    windows: BTreeMap<K, (Instant, u32)>,
}

impl<K: Ord + Clone> RateLimit<K> {
    pub fn new(per_second: u32) -> Self {
        RateLimit {
            per_second,
            windows: BTreeMap::new(),
        }
    }

    /// A new rate (a configuration change); windows carry on.
    pub fn set_rate(&mut self, per_second: u32) {
        self.per_second = per_second;
    }

    /// Counts one packet for `key`; false when it is over the limit.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        if self.windows.len() > 4096 {
            // Forget idle keys so a scan of many ports stays bounded.
            self.windows
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
        }
        let w = self.windows.entry(key.clone()).or_insert((now, 0));
        if now.saturating_duration_since(w.0) >= WINDOW {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 <= self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_window() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(2);
        assert!(r.allow(&1, t0));
        assert!(r.allow(&1, t0));
        assert!(!r.allow(&1, t0));
        assert!(r.allow(&2, t0));
        assert!(r.allow(&1, t0 + WINDOW));
    }
}
