//! The test kit: what tests, the demo and the benchmarks run the
//! controller against, never part of the controller itself. Behind the
//! `testkit` cargo feature (on by default for the `p4fabric` command, whose
//! `demo` and `bench` need it; bmv2-tests, the integration tests and the
//! benches use it): `cargo check --lib --no-default-features` builds the
//! production library without it, so nothing there can depend on it.
//!
//! Owns:
//! - `sim`: `SimSwitch`, an in-process P4Runtime switch (no data plane);
//! - `cables`: punts, digests and probe-carrying cables between them;
//! - `chaos`: seeded faults driven into simulated switches;
//! - `conformance`: the P4Runtime client's acceptance scenario, for any
//!   server (simulated switches, bmv2);
//! - `lab`: real bmv2 switches, veths and namespaces, the end-to-end
//!   harness;
//! - `etcd`: a real etcd server started for a test; `within`.
//!
//! May use every production module; none of them may use it.

pub mod cables;
pub mod chaos;
pub mod conformance;
pub mod etcd;
pub mod lab;
pub mod sim;

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
