//! Port-watcher lifecycle: owns one port-status subscriber task per switch
//! whose configuration names a port-status source (`Switch::port_events`),
//! started, restarted on a source change and stopped as the configuration
//! changes. The switch's target says which source (`target::SwitchTarget::
//! port_status`: bmv2's Thrift service or gNMI); `portstatus::spawn` starts
//! it. The events go to the controller's channel; what they mean is the
//! protocols' business.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Fabric;
use crate::portstatus::{self, PortEvent};
use crate::target::{self, PortStatusSource};

pub(super) struct PortWatchers {
    events: mpsc::Sender<PortEvent>,
    /// Per switch: the source subscribed to and the subscriber task.
    running: BTreeMap<String, (PortStatusSource, JoinHandle<()>)>,
}

impl PortWatchers {
    pub(super) fn new(events: mpsc::Sender<PortEvent>) -> Self {
        PortWatchers {
            events,
            running: BTreeMap::new(),
        }
    }

    /// One port-event subscriber per switch that has `port_events`.
    pub(super) fn sync(&mut self, fabric: &Fabric) {
        let wanted: BTreeMap<&String, PortStatusSource> = fabric
            .switches
            .iter()
            .filter_map(|(n, sw)| match target::for_switch(n, sw) {
                Ok(t) => t.port_status().map(|s| (n, s)),
                // Validation rejects such a switch before it gets here.
                Err(e) => {
                    tracing::warn!(switch = %n, error = %e, "port events not subscribed");
                    None
                }
            })
            .collect();
        self.running.retain(|name, (source, task)| {
            let keep = wanted.get(name).is_some_and(|s| s == source);
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, source) in wanted {
            if self.running.contains_key(name) {
                continue;
            }
            let task = portstatus::spawn(name.clone(), &source, self.events.clone());
            self.running.insert(name.clone(), (source, task));
        }
    }

    pub(super) fn stop(&mut self) {
        for (_, (_, w)) in std::mem::take(&mut self.running) {
            w.abort();
        }
    }
}
