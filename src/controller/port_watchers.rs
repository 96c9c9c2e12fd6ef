//! Port-watcher lifecycle: owns one port-status subscriber task per switch
//! whose configuration names a port-status source (`Switch::port_events`),
//! started, restarted on a change of source and stopped as the
//! configuration changes. The events go to the controller's channel; what
//! they mean is the protocols' business. Uses `portstatus`.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Fabric, PortStatusSource};
use crate::portstatus::{self, PortEvent};

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
        let mut wanted: BTreeMap<&String, PortStatusSource> = BTreeMap::new();
        for (name, sw) in &fabric.switches {
            match sw.port_status_source() {
                Some(Ok(source)) => {
                    wanted.insert(name, source);
                }
                // Validation rejects such a source before it gets here.
                Some(Err(e)) => {
                    tracing::warn!(switch = %name, error = %e, "port events not subscribed")
                }
                None => {}
            }
        }
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
