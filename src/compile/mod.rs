//! The big-switch compiler: configuration + topology + hosts -> the exact
//! entities every switch must hold, so the leaf-spine fabric forwards like
//! one switch. Pure and deterministic: same input, same output, and stable
//! ids (see `ids`). `docs/compile.md` describes what each table gets.
//!
//! `compile` is the whole answer as one map; `CompiledFabric` is the same
//! answer kept compact (entries every leaf shares are stored once) and
//! updated incrementally when a host, the topology or a host, port or VLAN
//! of the configuration changes (`reconfig`), returning the per-switch
//! write plans.

mod build;
pub mod check;
pub mod contract;
pub mod diff;
#[cfg(test)]
mod drain_tests;
mod hosts;
mod ids;
mod infra;
mod l3;
pub mod names;
pub mod reach;
pub mod reconfig;
pub mod sample;
mod state;
#[cfg(test)]
pub(crate) mod tests;
pub mod view;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{Attachment, Fabric, VlanId};
use crate::net::MacAddr;
use crate::p4rt::entity::SwitchEntities;
use crate::topo::Topology;

pub use diff::{diff, Op, OpKind, Plan};
pub use reconfig::{classify, ConfigChange};
pub use state::CompiledFabric;
pub use view::FabricView;

/// A host is known by its VLAN and MAC.
pub type HostKey = (VlanId, MacAddr);

/// A host the fabric forwards to: learned (MAC learning, ARP/ND) or static
/// (configured in `Fabric::hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub vlan: VlanId,
    pub mac: MacAddr,
    pub ips: Vec<IpAddr>,
    pub attachment: Attachment,
    /// Learned entries age out (idle timeout); static ones don't.
    pub learned: bool,
}

impl HostEntry {
    pub fn key(&self) -> HostKey {
        (self.vlan, self.mac)
    }
}

/// Learned hosts, by key.
pub type Hosts = BTreeMap<HostKey, HostEntry>;

/// Every switch's desired entities. Static hosts (`fabric.hosts`) win over
/// learned ones with the same key.
pub fn compile(
    fabric: &Fabric,
    topo: &Topology,
    hosts: &Hosts,
) -> BTreeMap<String, SwitchEntities> {
    CompiledFabric::new(fabric, topo, hosts).materialize()
}
