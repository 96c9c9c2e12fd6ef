//! Support for tests that need real services (here: etcd). Public and not
//! test-only so integration tests of every crate in the workspace can use
//! it.

pub mod etcd;

pub use etcd::EtcdServer;

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it holds: how long that took, or `None`
/// after `timeout`.
pub async fn within(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
