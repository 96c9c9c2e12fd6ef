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
//! - `etcd`: a real etcd server started for a test; `within`;
//! - `sim_fabric`: simulated switches for a whole fabric with its
//!   configuration in a real etcd, and the forwarding checker sampling it.
//!
//! May use every production module; none of them may use it.

pub mod cables;
pub mod chaos;
pub mod conformance;
pub mod etcd;
pub mod lab;
pub mod sim;
pub mod sim_fabric;

pub use etcd::EtcdServer;
pub use sim_fabric::SimFabric;

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

/// Writes into `dir` a second build of the compiled fabric pipeline: a copy
/// of `p4/build` whose bmv2 JSON names another program. Same program, new
/// cookie: what the rolling-upgrade tests roll out (bmv2 really reloads).
pub fn relabelled_pipeline(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::{ensure, Context};
    let src = crate::p4rt::Pipeline::default_dir();
    for f in ["fabric.json", "fabric.p4info.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).with_context(|| format!("copy {f}"))?;
    }
    let json = std::fs::read_to_string(dir.join("fabric.json")).context("read fabric.json")?;
    let changed = json.replacen(
        "\"program\" : \"p4/fabric.p4\"",
        "\"program\" : \"p4/fabric.p4 (upgrade test v2)\"",
        1,
    );
    ensure!(changed != json, "the bmv2 JSON names its program");
    std::fs::write(dir.join("fabric.json"), changed).context("write fabric.json")
}
