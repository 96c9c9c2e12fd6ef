//! Prometheus metrics: rendered on demand from the agents' status and the
//! controller's own counters, served over HTTP at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::agent::{AgentStatus, SessionState, RECONCILE_BUCKETS};

/// What the controller itself counts.
#[derive(Debug, Clone, Default)]
pub struct ControllerMetrics {
    pub config_revision: i64,
    pub config_errors: usize,
    pub compiles: u64,
    pub compile_seconds_total: f64,
    pub leader: bool,
    pub election_id: u128,
    /// Frames and events the control protocols handled (a punt storm
    /// shows as `rate_limited`).
    pub protocols: crate::protocols::Counters,
    /// Packet-ins, learn rows and idle entries dropped: their device port
    /// is not in the switch's port map.
    pub unmapped_port_events: u64,
    pub port_security: PortSecurityMetrics,
}

/// Port security (`controller::port_security`).
#[derive(Debug, Clone, Default)]
pub struct PortSecurityMetrics {
    /// Edge ports / LAGs at their learned-MAC limit now.
    pub limited: usize,
    /// New sources refused per attachment since start, by its status
    /// path (`port-security/ports/leaf1/3`); configured attachments only,
    /// so the label set is bounded.
    pub refused: BTreeMap<String, u64>,
}

/// The latest snapshot, shared with the HTTP server.
#[derive(Default)]
pub struct MetricsState {
    pub controller: ControllerMetrics,
    pub agents: BTreeMap<String, AgentStatus>,
}

pub type SharedMetrics = Arc<Mutex<MetricsState>>;

/// A per-switch gauge: name, type, help, how to read it from a status.
type Gauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&AgentStatus) -> f64,
);
/// A per-switch counter: name, how to read it.
type Counter = (&'static str, fn(&AgentStatus) -> u64);

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the Prometheus text exposition format.
pub fn render(m: &MetricsState) -> String {
    let mut o = String::new();
    let c = &m.controller;
    let _ = writeln!(
        o,
        "# HELP p4fabric_config_revision etcd revision of the configuration in force."
    );
    let _ = writeln!(o, "# TYPE p4fabric_config_revision gauge");
    let _ = writeln!(o, "p4fabric_config_revision {}", c.config_revision);
    let _ = writeln!(
        o,
        "# HELP p4fabric_config_errors Configuration keys currently rejected."
    );
    let _ = writeln!(o, "# TYPE p4fabric_config_errors gauge");
    let _ = writeln!(o, "p4fabric_config_errors {}", c.config_errors);
    let _ = writeln!(o, "# TYPE p4fabric_compiles_total counter");
    let _ = writeln!(o, "p4fabric_compiles_total {}", c.compiles);
    let _ = writeln!(o, "# TYPE p4fabric_compile_seconds_total counter");
    let _ = writeln!(
        o,
        "p4fabric_compile_seconds_total {}",
        c.compile_seconds_total
    );
    let _ = writeln!(
        o,
        "# HELP p4fabric_leader 1 if this instance is the active controller."
    );
    let _ = writeln!(o, "# TYPE p4fabric_leader gauge");
    let _ = writeln!(o, "p4fabric_leader {}", u8::from(c.leader));
    let _ = writeln!(o, "# TYPE p4fabric_election_id gauge");
    let _ = writeln!(o, "p4fabric_election_id {}", c.election_id);
    let p = &c.protocols;
    let _ = writeln!(
        o,
        "# HELP p4fabric_protocol_events_total Frames and events the control protocols handled, by kind."
    );
    let _ = writeln!(o, "# TYPE p4fabric_protocol_events_total counter");
    for (kind, n) in [
        ("probe", p.probes),
        ("lacpdu", p.lacpdus),
        ("host_frame", p.host_frames),
        ("rate_limited", p.rate_limited),
        ("learn_refused", p.learns_refused),
        ("learn_rate_limited", p.learns_rate_limited),
        ("ignored", p.ignored),
        ("digest_row", p.digest_rows),
        ("idle_timeout", p.idle_timeouts),
        ("packet_out", p.packets_out),
        ("unmapped_port", c.unmapped_port_events),
    ] {
        let _ = writeln!(o, "p4fabric_protocol_events_total{{kind=\"{kind}\"}} {n}");
    }
    let ps = &c.port_security;
    let _ = writeln!(
        o,
        "# HELP p4fabric_port_security_limited Edge ports and LAGs at their learned-MAC limit."
    );
    let _ = writeln!(o, "# TYPE p4fabric_port_security_limited gauge");
    let _ = writeln!(o, "p4fabric_port_security_limited {}", ps.limited);
    let _ = writeln!(
        o,
        "# HELP p4fabric_port_security_refused_total New sources not learned on an attachment at its limit."
    );
    let _ = writeln!(o, "# TYPE p4fabric_port_security_refused_total counter");
    for (attachment, n) in &ps.refused {
        let a = attachment
            .strip_prefix(crate::config::status::paths::PORT_SECURITY)
            .unwrap_or(attachment);
        let _ = writeln!(
            o,
            "p4fabric_port_security_refused_total{{attachment=\"{}\"}} {n}",
            esc(a)
        );
    }
    let up = m
        .agents
        .values()
        .filter(|a| a.state == SessionState::Primary)
        .count();
    let _ = writeln!(
        o,
        "# HELP p4fabric_switch_sessions_up Switches with a primary session."
    );
    let _ = writeln!(o, "# TYPE p4fabric_switch_sessions_up gauge");
    let _ = writeln!(o, "p4fabric_switch_sessions_up {up}");
    let gauges: [Gauge; 4] = [
        (
            "p4fabric_switch_up",
            "gauge",
            "1 if the switch has our primary session.",
            |a| f64::from(u8::from(a.state == SessionState::Primary)),
        ),
        (
            "p4fabric_switch_entities",
            "gauge",
            "Entities installed on the switch.",
            |a| a.installed as f64,
        ),
        (
            "p4fabric_switch_pending_operations",
            "gauge",
            "Updates failing and awaiting retry.",
            |a| a.failing_count as f64,
        ),
        (
            "p4fabric_switch_converged",
            "gauge",
            "1 if the switch holds the desired state.",
            |a| f64::from(u8::from(a.converged())),
        ),
    ];
    for (name, kind, help, f) in gauges {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (sw, a) in &m.agents {
            let _ = writeln!(o, "{name}{{switch=\"{}\"}} {}", esc(sw), f(a));
        }
    }
    let counters: [Counter; 4] = [
        ("p4fabric_writes_total", |a| a.counters.updates_written),
        ("p4fabric_write_errors_total", |a| a.counters.update_errors),
        ("p4fabric_pipeline_pushes_total", |a| {
            a.counters.pipeline_pushes
        }),
        ("p4fabric_sessions_total", |a| a.counters.sessions),
    ];
    for (name, f) in counters {
        let _ = writeln!(o, "# TYPE {name} counter");
        for (sw, a) in &m.agents {
            let _ = writeln!(o, "{name}{{switch=\"{}\"}} {}", esc(sw), f(a));
        }
    }
    let h = "p4fabric_reconcile_seconds";
    let _ = writeln!(
        o,
        "# HELP {h} Duration of reconcile passes.\n# TYPE {h} histogram"
    );
    for (sw, a) in &m.agents {
        let sw = esc(sw);
        for (bound, n) in RECONCILE_BUCKETS.iter().zip(a.counters.reconcile_buckets) {
            let _ = writeln!(o, "{h}_bucket{{switch=\"{sw}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "{h}_bucket{{switch=\"{sw}\",le=\"+Inf\"}} {}",
            a.counters.reconciles
        );
        let sum = a.counters.reconcile_micros_total as f64 / 1e6;
        let _ = writeln!(o, "{h}_sum{{switch=\"{sw}\"}} {sum}");
        let _ = writeln!(o, "{h}_count{{switch=\"{sw}\"}} {}", a.counters.reconciles);
    }
    o
}

/// Serves `/metrics` and `/healthz` until the process ends.
pub async fn serve(addr: SocketAddr, state: SharedMetrics) -> std::io::Result<SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let state = state.clone();
                async move {
                    let body = render(&state.lock().unwrap_or_else(|p| p.into_inner()));
                    ([("content-type", "text/plain; version=0.0.4")], body)
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_security_figures_are_rendered() {
        let mut m = MetricsState::default();
        m.controller.protocols.learns_refused = 7;
        m.controller.unmapped_port_events = 2;
        m.controller.port_security = PortSecurityMetrics {
            limited: 1,
            refused: [("port-security/ports/leaf1/3".to_string(), 7)].into(),
        };
        let text = render(&m);
        for line in [
            "p4fabric_port_security_limited 1",
            "p4fabric_port_security_refused_total{attachment=\"ports/leaf1/3\"} 7",
            "p4fabric_protocol_events_total{kind=\"learn_refused\"} 7",
            "p4fabric_protocol_events_total{kind=\"unmapped_port\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
