//! One reconcile pass: owns turning the difference between what the
//! switch holds and the desired state into staged writes (the compiler's
//! `compile::diff::staged`), writing them stage by stage, and recording
//! what succeeded, what failed and the pass's figures in the agent's
//! status. Uses `compile::diff` and `p4rt::switch`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::handle::RECONCILE_BUCKETS;
use super::session::{Agent, SessionEnd};
use super::snapshot::Installed;
use crate::compile::diff::staged;
use crate::p4rt::switch::{write_ops_with, OpError, ToDevice, UpdateKind};
use crate::p4rt::{Client, ClientError, Entity};
use crate::target::{ports::op_to_device, SwitchTarget};

/// Writes through the switch's port map: configured ports to device ports;
/// a port outside the map fails that update alone, naming switch and port.
fn port_map(
    t: &dyn SwitchTarget,
) -> impl for<'e> Fn(UpdateKind, &'e Entity) -> Result<Cow<'e, Entity>, OpError> + Sync + '_ {
    move |kind, e| op_to_device(t, kind, e).map_err(|err| OpError::Ports(Arc::new(err)))
}

impl Agent {
    /// One pass: diff, write stage by stage, record results. Returns whether
    /// any update failed (to schedule a retry).
    pub(super) async fn reconcile(&mut self, client: &Client) -> Result<bool, SessionEnd> {
        let started = std::time::Instant::now();
        let desired = self.desired.borrow_and_update().clone();
        let name = self.cfg.name.clone();
        let reg = self.cfg.pipeline.registry.clone();
        let ports = self.cfg.ports.clone();
        let mut failing: Vec<(String, String)> = Vec::new();
        let mut failing_count = 0usize;
        let mut written = 0u64;
        let planned;
        self.update_status(|s| {
            s.desired_generation = desired.generation;
            s.desired = desired.entities.len(&name);
        });
        // The ops borrow from `installed` and `desired`; what succeeded is
        // recorded after the pass (copied only if something failed:
        // otherwise the switch holds exactly `desired`). Results are kept
        // per batch, failures by position: memory stays at one reference
        // per op however large the switch.
        let succeeded: Vec<(UpdateKind, Entity)> = {
            let stages = staged(self.installed.changes(&desired.entities, &name));
            planned = started.elapsed();
            let mut failed: BTreeSet<(usize, usize)> = BTreeSet::new();
            let batch = self.cfg.batch_size.max(1);
            for (si, ops) in stages.iter().enumerate() {
                let ops: Vec<(UpdateKind, &Entity)> =
                    ops.iter().map(|(k, e)| (*k, e.as_ref())).collect();
                if tracing::enabled!(tracing::Level::DEBUG) {
                    // What changes on the switch, for whoever asks why
                    // (bounded: a full restore is thousands).
                    for (kind, e) in ops.iter().take(100) {
                        tracing::debug!(switch = %name, stage = si, ?kind, key = %e.key(), "write");
                    }
                }
                let mut call_failed: Option<std::sync::Arc<ClientError>> = None;
                let to_device = ports.as_deref().map(port_map);
                let to_device: Option<ToDevice> = to_device.as_ref().map(|m| m as ToDevice);
                write_ops_with(client, &reg, &ops, batch, to_device, |i, r| match r {
                    Ok(()) => {
                        written += 1;
                        true
                    }
                    Err(OpError::Call(e)) => {
                        call_failed = Some(e);
                        false
                    }
                    Err(e) => {
                        failed.insert((si, i));
                        failing_count += 1;
                        if failing.len() < 20 {
                            let (kind, entity) = &ops[i];
                            failing.push((format!("{kind:?} {}", entity.key()), e.to_string()));
                        }
                        true
                    }
                })
                .await;
                if let Some(e) = call_failed {
                    // The call itself failed: the session is in doubt (the
                    // next one reads the switch back).
                    return Err(SessionEnd::Write(e));
                }
            }
            if failed.is_empty() {
                Vec::new()
            } else {
                stages
                    .iter()
                    .enumerate()
                    .flat_map(|(si, ops)| ops.iter().enumerate().map(move |(i, op)| (si, i, op)))
                    .filter(|(si, i, _)| !failed.contains(&(*si, *i)))
                    .map(|(_, _, (k, e))| (*k, e.clone().into_owned()))
                    .collect()
            }
        };
        if failing_count == 0 {
            // The switch now holds exactly the desired state: keep that
            // (shared) instead of our own copy.
            self.installed = Installed::Based {
                base: desired.entities.clone(),
                overlay: BTreeMap::new(),
            };
        } else {
            for (kind, entity) in &succeeded {
                self.installed.apply(*kind, entity);
            }
        }
        let elapsed = started.elapsed();
        if failing_count > 0 {
            tracing::warn!(switch = %self.cfg.name, failing = failing_count, first = ?failing.first(), "updates failed; will retry");
        } else if written > 0 {
            tracing::info!(switch = %self.cfg.name, written, ms = elapsed.as_millis() as u64, plan_ms = planned.as_millis() as u64, generation = desired.generation, "reconciled");
        }
        let installed = self.installed.len(&name);
        self.update_status(|s| {
            s.last_reconcile = Some(SystemTime::now());
            s.installed = installed;
            s.counters.reconciles += 1;
            s.counters.updates_written += written;
            s.counters.update_errors += failing_count as u64;
            s.counters.reconcile_micros_total += elapsed.as_micros() as u64;
            let secs = elapsed.as_secs_f64();
            for (i, bound) in RECONCILE_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    s.counters.reconcile_buckets[i] += 1;
                }
            }
            s.failing_count = failing_count;
            s.failing = failing;
            if failing_count == 0 {
                s.converged_generation = Some(desired.generation);
                s.last_error = None;
            }
        });
        Ok(failing_count > 0)
    }
}
