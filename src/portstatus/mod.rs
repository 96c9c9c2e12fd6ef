//! Port status from the switches: owns `PortEvent` (a port went up or
//! down, or was first seen) and the readers that produce it, one per
//! switch, chosen by the switch's target (`target::SwitchTarget::
//! port_status`). The protocols take a LAG member or a fabric link out of
//! service on such an event within a poll interval instead of a protocol
//! timeout (LACP 3 s, discovery 3 probes) — and a *static* LAG member at
//! all (no protocol would ever notice).
//!
//! Sources: `thrift` (bmv2's management service, polled) and `gnmi`
//! (OpenConfig oper-status, Subscribe ON_CHANGE: Stratum on Tofino), with
//! `gnmi_server`, an in-process gNMI server for tests.
//!
//! May use: `config` (port numbers), `target` (the source), `net` and
//! `p4rt::backoff`. Used by the controller, which runs the readers.

pub mod gnmi;
pub mod gnmi_server;
pub mod thrift;

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::PortNum;
use crate::target::PortStatusSource;

/// One port's operational status (changed, or first seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEvent {
    pub switch: String,
    pub port: PortNum,
    pub up: bool,
}

/// Starts the port-status reader a switch's target names
/// (`SwitchTarget::port_status`): the Thrift poller or the gNMI
/// subscriber. Events go to `tx` until it closes or the task is aborted;
/// each reconnects as needed.
pub fn spawn(
    switch: String,
    source: &PortStatusSource,
    tx: mpsc::Sender<PortEvent>,
) -> JoinHandle<()> {
    match source {
        PortStatusSource::Thrift { address } => thrift::spawn(switch, address.clone(), tx),
        PortStatusSource::Gnmi { address, names } => {
            gnmi::spawn(switch, address, names.clone(), tx)
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
