//! p4fabric: a P4Runtime fabric controller.
//!
//! Data flows one way: etcd (`config`) -> topology (`topo`) -> desired
//! entities (`compile`) -> per-switch reconcilers (`agent`) -> switches over
//! P4Runtime (`p4rt`). The controller (`controller`) runs it, fed also by
//! port status (`portstatus`) and the control protocols (`protocols`).
//! `docs/architecture.md` says what each module owns and may use.
//!
//! The test kit (`testkit`: simulated switches, chaos, the bmv2 lab) and the
//! benchmarks (`bench`) are behind the `testkit` feature; nothing else
//! depends on them.

pub mod agent;
#[cfg(feature = "testkit")]
pub mod bench;
pub mod cli;
pub mod compile;
pub mod config;
pub mod controller;
pub mod ha;
pub mod net;
pub mod p4rt;
pub mod portstatus;
pub mod protocols;
pub mod target;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod topo;
