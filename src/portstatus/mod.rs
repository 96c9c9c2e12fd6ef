//! Port status from the switches: owns `PortEvent` (a port went up or
//! down, or was first seen) and the pollers that produce it, one per
//! switch, chosen by the switch's `PortStatusSource`. The protocols take a
//! LAG member or a fabric link out of service on such an event within a
//! poll interval instead of a protocol timeout (LACP 3 s, discovery 3
//! probes) — and a *static* LAG member at all (no protocol would ever
//! notice).
//!
//! Sources: `thrift` (bmv2's management service). Production switches
//! would feed the same events from gNMI.
//!
//! May use: `config` (the parsed source, port numbers) and
//! `p4rt::backoff`. Used by the controller, which runs the pollers.

pub mod thrift;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{PortNum, PortStatusSource};

/// One port's operational status (changed, or first seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEvent {
    pub switch: String,
    pub port: PortNum,
    pub up: bool,
}

/// Reads `switch`'s port status from `source` until the receiver goes away
/// or the task is aborted, reconnecting as needed; events go to `tx`.
pub fn spawn(
    switch: String,
    source: &PortStatusSource,
    tx: mpsc::Sender<PortEvent>,
) -> JoinHandle<()> {
    match source {
        PortStatusSource::Thrift { address } => thrift::spawn(switch, address.clone(), tx),
    }
}
