//! The whole controller (config -> topology -> compile -> agents) against
//! in-process switches running the fabric pipeline's P4Info: every switch
//! ends up holding exactly what the compiler says, a config change writes
//! only its delta, and a controller restart writes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p4fabric::compile;
use p4fabric::config::watch::ConfigUpdate;
use p4fabric::config::{ConfigState, Fabric};
use p4fabric::controller::{Controller, ControllerOptions};
use p4fabric::p4rt::target::TestTarget;
use p4fabric::p4rt::{Pipeline, SwitchEntities};
use p4fabric::topo::{ObservedState, Topology};
use tokio::sync::{oneshot, watch};

fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: controller_sim: {why}");
}

fn example() -> Fabric {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fabric.yaml"))
            .expect("example");
    let kvs = p4fabric::config::keys::document_to_raw(&text).expect("example parses");
    let (fabric, errors) = ConfigState::new().reset(kvs);
    assert!(errors.is_empty(), "{errors:?}");
    fabric
}

fn expected(f: &Fabric) -> std::collections::BTreeMap<String, SwitchEntities> {
    let topo = Topology::build(f, &ObservedState::default(), None);
    compile::compile(f, &topo, &compile::Hosts::new())
}

fn update(f: &Fabric, rev: i64) -> ConfigUpdate {
    ConfigUpdate {
        revision: rev,
        fabric: Arc::new(f.clone()),
        errors: Default::default(),
        generation: rev as u64,
    }
}

async fn all_hold(
    targets: &[(String, TestTarget)],
    want: &std::collections::BTreeMap<String, SwitchEntities>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let bad: Vec<String> = targets
            .iter()
            .filter(|(n, t)| want.get(n).map(|w| *w != t.entities()).unwrap_or(true))
            .map(|(n, t)| {
                let w = want.get(n).cloned().unwrap_or_default();
                let have = t.entities();
                let missing = w.keys().filter(|k| !have.contains_key(k)).count();
                let extra = have.keys().filter(|k| !w.contains_key(k)).count();
                format!("{n}: {missing} missing, {extra} extra of {}", w.len())
            })
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(bad.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_example_fabric_and_writes_only_deltas() {
    if Pipeline::load(&Pipeline::default_dir(), "fabric").is_err() {
        skip("p4/build/fabric.p4info.txt not compiled yet (p4/compile.sh)");
        return;
    }
    let mut fabric = example();
    let mut targets = Vec::new();
    for (name, sw) in fabric.switches.iter_mut() {
        let t = TestTarget::start(sw.device_id).await.unwrap();
        sw.address = t.addr().to_string();
        targets.push((name.clone(), t));
    }
    let (tx, rx) = watch::channel(update(&fabric, 1));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let controller = Controller::new(ControllerOptions::new("test"), rx.clone(), None);
    let task = tokio::spawn(controller.run(async {
        let _ = stop_rx.await;
    }));
    let want = expected(&fabric);
    assert!(want.values().all(|e| !e.is_empty()));
    all_hold(&targets, &want, Duration::from_secs(20))
        .await
        .expect("converged to the compiled state");

    // Remove one host: exactly the entities that differ are written.
    let before: Vec<u64> = targets
        .iter()
        .map(|(_, t)| t.stats().updates_applied)
        .collect();
    let mut changed = fabric.clone();
    changed.hosts.remove("vm5");
    let want2 = expected(&changed);
    let delta: usize = targets
        .iter()
        .map(|(n, _)| compile::diff(&want2[n], &want[n]).len())
        .sum();
    assert!(delta > 0);
    tx.send_replace(update(&changed, 2));
    all_hold(&targets, &want2, Duration::from_secs(20))
        .await
        .expect("converged after the change");
    let written: u64 = targets
        .iter()
        .zip(&before)
        .map(|((_, t), b)| t.stats().updates_applied - b)
        .sum();
    assert_eq!(written as usize, delta, "only the delta is written");

    // Restart the controller: it reads back and writes nothing.
    let _ = stop_tx.send(());
    let _ = task.await;
    let before: Vec<u64> = targets
        .iter()
        .map(|(_, t)| t.stats().updates_applied)
        .collect();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let controller = Controller::new(ControllerOptions::new("test2"), rx, None);
    let metrics = controller.metrics();
    let task = tokio::spawn(controller.run(async {
        let _ = stop_rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = {
            let m = metrics.lock().unwrap();
            m.agents.len() == targets.len() && m.agents.values().all(|a| a.converged())
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written: u64 = targets
        .iter()
        .zip(&before)
        .map(|((_, t), b)| t.stats().updates_applied - b)
        .sum();
    assert_eq!(written, 0, "a restarted controller rewrote entries");
    all_hold(&targets, &want2, Duration::from_secs(1))
        .await
        .unwrap();
    let _ = stop_tx.send(());
    let _ = task.await;
}
