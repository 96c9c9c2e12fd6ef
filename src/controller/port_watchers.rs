//! Port-watcher lifecycle: owns one port-status subscriber task per switch
//! whose configuration names a port-status source (`Switch::port_events`),
//! started, restarted on an address change and stopped as the
//! configuration changes. The events go to the controller's channel; what
//! they mean is the protocols' business. Uses `agent::port_events`.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent::port_events::{self, PortEvent};
use crate::config::Fabric;

pub(super) struct PortWatchers {
    events: mpsc::Sender<PortEvent>,
    /// Per switch: the address subscribed to and the subscriber task.
    running: BTreeMap<String, (String, JoinHandle<()>)>,
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
        let wanted: BTreeMap<&String, &String> = fabric
            .switches
            .iter()
            .filter_map(|(n, sw)| sw.port_events.as_ref().map(|a| (n, a)))
            .collect();
        self.running.retain(|name, (addr, task)| {
            let keep = wanted.get(name).is_some_and(|a| *a == addr);
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, addr) in wanted {
            if self.running.contains_key(name) {
                continue;
            }
            match port_events::spawn(name.clone(), addr, self.events.clone()) {
                Ok(task) => {
                    self.running.insert(name.clone(), (addr.clone(), task));
                }
                // Validation rejects such an address before it gets here.
                Err(e) => tracing::warn!(switch = %name, error = %e, "port events not subscribed"),
            }
        }
    }

    pub(super) fn stop(&mut self) {
        for (_, (_, w)) in std::mem::take(&mut self.running) {
            w.abort();
        }
    }
}
