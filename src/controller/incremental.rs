//! The incremental compiler: owns the controller's compiled fabric and
//! keeps it equal to `compile::compile` of the current inputs, doing only
//! the work a change needs (a new configuration compiles anew; links, ports
//! and LACP state run `update_topology`; a host change `update_host`).
//! Pure: no I/O, no channels; `tests/controller_incremental.rs` checks it
//! against the whole compiler.

use std::sync::Arc;

use crate::compile::{self, CompiledFabric, FabricView, Hosts};
use crate::config::Fabric;
use crate::topo::{FloodTree, ObservedState, Topology};

/// The controller's compiled fabric, kept up to date incrementally: a
/// configuration change compiles anew, an observed-state change (links,
/// ports, LACP) runs `update_topology`, a host change `update_host`. The
/// result always equals `compile::compile` of the same inputs (and the same
/// previous flood tree); `tests/controller_incremental.rs` checks that.
#[derive(Debug, Default)]
pub struct IncrementalCompiler {
    /// None before the first configuration.
    compiled: Option<CompiledFabric>,
    /// The observed state and hosts `compiled` reflects.
    observed: ObservedState,
    hosts: Hosts,
    /// The snapshot taken after the last update.
    snapshot: Arc<FabricView>,
    previous_tree: Option<FloodTree>,
}

impl IncrementalCompiler {
    /// Brings the compiled fabric up to `fabric` (when `config_changed`, or
    /// the first time: compiled anew), `observed` and `hosts`, and takes a
    /// new snapshot. Returns whether it compiled anew.
    pub fn update(
        &mut self,
        fabric: &Fabric,
        observed: &ObservedState,
        hosts: &Hosts,
        config_changed: bool,
    ) -> Option<bool> {
        let full = config_changed || self.compiled.is_none();
        if full {
            let topo = Topology::build(fabric, observed, self.previous_tree.as_ref());
            self.previous_tree = Some(topo.flood_tree().clone());
            let mut c = CompiledFabric::new(fabric, &topo, hosts);
            // Share structure with what the agents hold, so each finds the
            // difference without comparing every entity.
            c.share_with(&self.snapshot);
            self.compiled = Some(c);
            self.observed = observed.clone();
            self.hosts = hosts.clone();
        } else {
            let c = self.compiled.as_mut()?;
            if *observed != self.observed {
                let topo = Topology::build(fabric, observed, self.previous_tree.as_ref());
                self.previous_tree = Some(topo.flood_tree().clone());
                c.update_topology(fabric, &topo);
                self.observed = observed.clone();
            }
            apply_host_changes(c, &mut self.hosts, hosts);
        }
        let c = self.compiled.as_ref()?;
        self.snapshot = Arc::new(c.view().clone());
        Some(full)
    }

    /// The desired entities of every switch as of the last update (shared;
    /// cheap to clone).
    pub fn snapshot(&self) -> Arc<FabricView> {
        self.snapshot.clone()
    }

    /// The flood tree of the last update (the next update builds on it).
    pub fn flood_tree(&self) -> Option<&FloodTree> {
        self.previous_tree.as_ref()
    }
}

/// Applies the difference between the hosts `compiled` reflects
/// (`applied`, brought up to date) and `hosts`, one `update_host` each.
fn apply_host_changes(compiled: &mut CompiledFabric, applied: &mut Hosts, hosts: &Hosts) {
    let gone: Vec<compile::HostKey> = applied
        .keys()
        .filter(|k| !hosts.contains_key(*k))
        .copied()
        .collect();
    for k in gone {
        compiled.update_host(k, None);
        applied.remove(&k);
    }
    for (k, h) in hosts {
        if applied.get(k) != Some(h) {
            compiled.update_host(*k, Some(h.clone()));
            applied.insert(*k, h.clone());
        }
    }
}
