//! End-to-end tests on real bmv2 switches. The harness itself lives in
//! `p4fabric::lab` (the demo uses it too); this crate holds the tests and,
//! for the pipeline packet tests, a switch rig (`rig`) and the fixtures of
//! docs/pipeline.md (`fabric`).

pub mod fabric;
pub mod rig;

pub use p4fabric::lab::*;
pub use p4fabric::require_bmv2;
