//! Test support shared by the agent and HA tests: desired states for the
//! P4Runtime test program, and helpers to compare a target with them.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use p4fabric::agent::{self, AgentConfig, AgentHandle};
use p4fabric::p4rt::conformance::test_program_registry;
use p4fabric::p4rt::target::TestTarget;
use p4fabric::p4rt::*;
use tokio::sync::mpsc;

const ECMP: &str = "TestIngress.ecmp";

/// A desired state for the test program: `n` dmac entries, ECMP members and
/// a group, routes, a multicast group. `variant` shifts some contents so two
/// variants differ by inserts, modifies and deletes.
pub fn desired(n: u64, variant: u64) -> SwitchEntities {
    let mut es = Vec::new();
    for i in 0..n {
        es.push(Entity::Table(TableEntry {
            key: TableKey::new("TestIngress.dmac")
                .exact("hdr.ethernet.dst_addr", 0x0200_0000_0000 + i + variant),
            action: TableAction::Direct(
                ActionCall::new("TestIngress.forward")
                    .param("port", ((i + variant) % 4 + 1) as u32),
            ),
            idle_timeout_ns: 0,
        }));
    }
    for m in 1..=3u32 {
        es.push(Entity::Member(ActionProfileMember {
            profile: ECMP,
            member_id: m,
            action: ActionCall::new("TestIngress.route")
                .param("port", m)
                .param("dmac", 0x0200_0000_0100u64 + u64::from(m) + variant)
                .param("smac", 0x0200_0000_00feu64),
        }));
    }
    es.push(Entity::Group(ActionProfileGroup {
        profile: ECMP,
        group_id: 1,
        members: (1..=(2 + (variant % 2) as u32))
            .map(|m| GroupMember {
                member_id: m,
                weight: 1,
                watch_port: Some(m),
            })
            .collect(),
        max_size: 8,
    }));
    es.push(Entity::Table(TableEntry {
        key: TableKey::new("TestIngress.nexthop").exact("meta.nexthop_id", 1u32),
        action: TableAction::Group(1),
        idle_timeout_ns: 0,
    }));
    es.push(Entity::Table(TableEntry {
        key: TableKey::new("TestIngress.ipv4_lpm").with(
            "hdr.ipv4.dst_addr",
            Match::Lpm {
                value: 0x0a00_0000 + ((variant as u128) << 8),
                prefix_len: 24,
            },
        ),
        action: TableAction::Direct(ActionCall::new("TestIngress.set_nexthop").param("id", 1u32)),
        idle_timeout_ns: 0,
    }));
    es.push(Entity::Multicast(MulticastGroup {
        group_id: 1,
        replicas: (1..=3)
            .map(|p| Replica {
                port: p,
                instance: 0,
            })
            .collect(),
    }));
    es.into_iter().map(|e| (e.key(), e)).collect()
}

/// Polls until the target holds exactly `want` (the property that matters:
/// what the switch holds, not what the agent believes).
pub async fn eventually_equal(t: &TestTarget, want: &SwitchEntities, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if t.entities() == *want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A short description of how two entity sets differ (not both dumps).
pub fn difference(have: &SwitchEntities, want: &SwitchEntities) -> String {
    let missing = want.keys().filter(|k| !have.contains_key(k)).count();
    let extra = have.keys().filter(|k| !want.contains_key(k)).count();
    let changed = want
        .iter()
        .filter(|(k, v)| have.get(k).is_some_and(|h| h != *v))
        .count();
    format!(
        "{missing} missing, {extra} extra, {changed} different of {}",
        want.len()
    )
}

pub fn pipeline() -> Arc<Pipeline> {
    Arc::new(Pipeline::new(
        "p4rt_test",
        test_program_registry().unwrap(),
        Vec::new(),
    ))
}

/// The daemon's agent configuration for target `t`.
pub fn agent_config(t: &TestTarget, election_id: u128) -> AgentConfig {
    let opts = ClientOptions::new(t.addr().to_string(), t.device_id(), election_id);
    AgentConfig::new(&format!("sw{}", t.device_id()), opts, pipeline())
}

/// An agent with `cfg`; its switch events are dropped.
pub fn spawn(cfg: AgentConfig) -> AgentHandle {
    let (tx, _rx) = mpsc::channel(1024);
    agent::spawn(cfg, tx)
}

/// Hands `a` the desired state `want` as generation `generation`.
pub fn desire(a: &AgentHandle, generation: u64, want: &Arc<SwitchEntities>) {
    a.set_desired(agent::Desired {
        generation,
        entities: want.clone().into(),
    });
}

pub fn start_agent(
    t: &TestTarget,
    election_id: u128,
) -> (AgentHandle, mpsc::Receiver<agent::SwitchEvent>) {
    let mut cfg = agent_config(t, election_id);
    cfg.retry = backoff::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    cfg.reconnect = backoff::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    cfg.resync_interval = Duration::from_millis(500);
    let (tx, rx) = mpsc::channel(1024);
    (agent::spawn(cfg, tx), rx)
}

/// An agent for the switch at `addr` with the given election id.
pub fn start_agent_at(addr: &str, device_id: u64, election_id: u128) -> AgentHandle {
    let opts = ClientOptions::new(addr, device_id, election_id);
    let mut cfg = AgentConfig::new(&format!("sw{device_id}"), opts, pipeline());
    cfg.retry = backoff::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    cfg.reconnect = backoff::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    let (tx, _rx) = mpsc::channel(1024);
    agent::spawn(cfg, tx)
}
