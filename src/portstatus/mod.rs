//! Port status sources: where the controller learns that a switch port
//! went up or down, per switch by its `port_events` address. The bmv2
//! Thrift poller still lives in `agent::port_events`; this module owns
//! the gNMI source (Stratum, Tofino) and an in-process gNMI server for
//! tests.

pub mod gnmi;
pub mod gnmi_server;

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent::port_events::PortEvent;
use crate::config::PortNum;
use crate::target::PortStatusSource;

/// Starts the port-status reader a switch's target names
/// (`SwitchTarget::port_status`): the Thrift poller or the gNMI
/// subscriber. Events go to `tx` until it closes or the task is aborted.
pub fn spawn(
    switch: String,
    source: &PortStatusSource,
    tx: mpsc::Sender<PortEvent>,
) -> anyhow::Result<JoinHandle<()>> {
    match source {
        PortStatusSource::Thrift { address } => {
            crate::agent::port_events::spawn(switch, &format!("thrift://{address}"), tx)
        }
        PortStatusSource::Gnmi { address, names } => {
            Ok(gnmi::spawn(switch, address, names.clone(), tx))
        }
    }
}

/// Sends one switch's port states on as events: each port once after a
/// (re)connect (a new `Changes`), then only changes.
pub struct Changes<'a> {
    switch: &'a str,
    known: BTreeMap<PortNum, bool>,
    tx: &'a mpsc::Sender<PortEvent>,
}

impl<'a> Changes<'a> {
    pub fn new(switch: &'a str, tx: &'a mpsc::Sender<PortEvent>) -> Self {
        Changes {
            switch,
            known: BTreeMap::new(),
            tx,
        }
    }

    /// Reports `port` if its state is new; false once the receiver is
    /// gone.
    pub async fn report(&mut self, port: PortNum, up: bool) -> bool {
        if self.known.insert(port, up) == Some(up) {
            return true;
        }
        let ev = PortEvent {
            switch: self.switch.to_string(),
            port,
            up,
        };
        self.tx.send(ev).await.is_ok()
    }
}

/// `scheme://host:port` -> `host:port`, if `addr` is that (a non-empty
/// host and a numeric port).
pub fn host_port<'a>(addr: &'a str, scheme: &str) -> Option<&'a str> {
    let hp = addr.strip_prefix(scheme)?.strip_prefix("://")?;
    let (h, p) = hp.rsplit_once(':')?;
    (!h.is_empty() && p.parse::<u16>().is_ok()).then_some(hp)
}
