//! p4fabric: a P4Runtime fabric controller.
//!
//! Data flows one way: etcd (`config`) -> topology (`topo`) -> desired
//! entities (`compile`) -> per-switch reconcilers (`agent`) -> switches over
//! P4Runtime (`p4rt`).

pub mod agent;
pub mod bench;
pub mod cli;
pub mod compile;
pub mod config;
pub mod controller;
pub mod ha;
pub mod lab;
pub mod net;
pub mod p4rt;
pub mod portstatus;
pub mod protocols;
pub mod target;
pub mod testing;
pub mod topo;
