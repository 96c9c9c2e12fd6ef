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

/// Writes into `dir` the second build of the fabric pipeline, as a
/// pipeline directory named `fabric`: p4/testing/build/fabric_v2.*, the
/// same program plus one table (p4/testing/upgrade_probe.p4, compiled by
/// p4/compile.sh). A real new version — another P4Info and bmv2 JSON,
/// another cookie — made the way a rollable change must be (an addition
/// that forwards as before): what the rolling-upgrade tests roll out.
pub fn second_pipeline(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("p4/testing/build");
    for (from, to) in [
        ("fabric_v2.json", "fabric.json"),
        ("fabric_v2.p4info.txt", "fabric.p4info.txt"),
    ] {
        std::fs::copy(src.join(from), dir.join(to))
            .with_context(|| format!("copy {}", src.join(from).display()))?;
    }
    Ok(())
}

/// Writes into `dir` a build of the fabric pipeline named `fabric`:
/// p4/build's bmv2 JSON and its P4Info changed by `change` (written as
/// text). Another cookie; a build that may break the rule of a rollable
/// change (`p4rt::compat`), which nothing but the P4Info check notices
/// before a switch is loaded with it.
pub fn changed_pipeline(
    dir: &std::path::Path,
    change: impl FnOnce(&mut p4runtime_proto::config::v1::P4Info),
) -> anyhow::Result<()> {
    use anyhow::Context;
    let src = crate::p4rt::Pipeline::default_dir();
    let mut p4info = crate::p4rt::P4InfoRegistry::load(&src.join("fabric.p4info.txt"))?
        .p4info()
        .clone();
    change(&mut p4info);
    let text = crate::p4rt::p4info::to_text(&p4info)?;
    std::fs::write(dir.join("fabric.p4info.txt"), text).context("write P4Info")?;
    std::fs::copy(src.join("fabric.json"), dir.join("fabric.json")).context("copy fabric.json")?;
    Ok(())
}
