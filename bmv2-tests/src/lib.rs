//! End-to-end tests on real bmv2 switches. The harness itself lives in
//! `p4fabric::testkit::lab` (the demo uses it too); this crate holds the tests and,
//! for the pipeline packet tests, a switch rig (`rig`) and the fixtures of
//! docs/pipeline.md (`pipeline`).
//!
//! The pipeline packet tests (`tests/pipeline_*.rs`, one file per concern)
//! follow the "Test plan" of docs/pipeline.md, case numbers in comments and
//! failure messages. Each test starts one switch, pushes `p4/build/fabric.*`
//! and checks many cases on it; the end-to-end cases 60 and 61
//! (`pipeline_fabric_hosts`) program a three-switch `LabFabric` with the
//! compiler's entities through `rig::Primary`. As root:
//! `cargo test -p bmv2-tests -- --test-threads 2` (all bmv2 tests), or one
//! file with `--test pipeline_routing`. `P4FABRIC_BMV2_LOG=1` keeps bmv2's
//! packet log in the temp directory.

pub mod pipeline;
pub mod protocols;
pub mod rig;

pub use p4fabric::require_bmv2;
pub use p4fabric::testkit::lab::*;

/// Returns early from a pipeline test, loudly, where the fabric pipeline
/// has not been compiled (bmv2 can be installed without p4c).
#[macro_export]
macro_rules! require_fabric_pipeline {
    () => {
        let json = $crate::rig::fabric_build_dir().join("fabric.json");
        if !json.exists() {
            $crate::say_skipped(
                module_path!(),
                &format!(
                    "{} missing: compile the pipeline with p4/compile.sh (needs p4c)",
                    json.display()
                ),
            );
            return;
        }
    };
}
