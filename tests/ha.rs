//! Controller HA on a real etcd with in-process switches: failover after a
//! leader dies, fencing of a leader cut off from etcd, and no interleaving
//! of writes from two primaries.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use p4fabric::agent::Desired;
use p4fabric::ha::{self, HaOptions};
use p4fabric::p4rt::target::TestTarget;
use p4fabric::testing::EtcdServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

const TTL: Duration = Duration::from_secs(2);

/// Who leads in one instance: its election id while leading.
type Leading = Arc<Mutex<Option<u128>>>;

/// One controller instance: campaigns, and while leading keeps every
/// target at the desired state with its election id.
fn instance(
    endpoint: String,
    name: &str,
    targets: Vec<(String, u64)>,
    leading: Leading,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    instance_with(endpoint, name, targets, leading, |o| o.ttl = TTL)
}

/// `instance` with its HA options adjusted by `tune`.
fn instance_with(
    endpoint: String,
    name: &str,
    targets: Vec<(String, u64)>,
    leading: Leading,
    tune: impl FnOnce(&mut HaOptions) + Send + 'static,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let name = name.to_string();
    let task = tokio::spawn(async move {
        let client = etcd_client::Client::connect([endpoint], None)
            .await
            .expect("etcd");
        let mut opts = HaOptions::new("/p4fabric-test/", &name);
        tune(&mut opts);
        let want = Arc::new(desired(20, 0));
        ha::run(
            client,
            opts,
            async {
                let _ = stop_rx.await;
            },
            |election_id, mut stop| {
                let targets = targets.clone();
                let want = want.clone();
                let leading = leading.clone();
                async move {
                    *leading.lock().unwrap() = Some(election_id);
                    let agents: Vec<_> = targets
                        .iter()
                        .map(|(addr, dev)| {
                            let a = start_agent_at(addr, *dev, election_id);
                            a.set_desired(Desired {
                                generation: 1,
                                entities: want.clone().into(),
                            });
                            a
                        })
                        .collect();
                    let _ = stop.wait_for(|s| *s).await;
                    for a in agents {
                        a.stop().await;
                    }
                    *leading.lock().unwrap() = None;
                }
            },
        )
        .await;
    });
    (stop_tx, task)
}

fn current_leaders(all: &[Leading]) -> Vec<(usize, u128)> {
    all.iter()
        .enumerate()
        .filter_map(|(i, l)| l.lock().unwrap().map(|id| (i, id)))
        .collect()
}

/// Waits (10 s at most) for exactly one leader: (instance, election id).
async fn the_leader(leading: &[Leading]) -> (usize, u128) {
    assert!(
        wait_until(Duration::from_secs(10), || current_leaders(leading).len()
            == 1)
        .await,
        "no single leader"
    );
    current_leaders(leading)[0]
}

async fn wait_until(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    p4fabric::testing::within(timeout, f).await.is_some()
}

fn non_decreasing(log: &[u128]) -> bool {
    log.windows(2).all(|w| w[0] <= w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_within_ttl_and_writes_never_interleave() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let targets = [
        TestTarget::start(1).await.unwrap(),
        TestTarget::start(2).await.unwrap(),
    ];
    let addrs: Vec<_> = targets
        .iter()
        .map(|t| (t.addr().to_string(), t.device_id()))
        .collect();
    let leading: Vec<Leading> = (0..3).map(|_| Leading::default()).collect();
    let mut instances: Vec<_> = (0..3)
        .map(|i| {
            Some(instance(
                etcd.endpoint(),
                &format!("c{i}"),
                addrs.clone(),
                leading[i].clone(),
            ))
        })
        .collect();
    let (first, first_id) = the_leader(&leading).await;
    let want = desired(20, 0);
    for t in &targets {
        assert!(eventually_equal(t, &want, Duration::from_secs(5)).await);
        assert_eq!(t.primary_election_id(), Some(first_id));
    }

    let applied_before: Vec<u64> = targets.iter().map(|t| t.stats().updates_applied).collect();
    // kill -9: the task vanishes without resigning; its lease runs out.
    let (_stop, task) = instances[first].take().unwrap();
    task.abort();
    *leading[first].lock().unwrap() = None;
    let killed_at = Instant::now();
    assert!(
        wait_until(TTL + Duration::from_secs(3), || {
            targets
                .iter()
                .all(|t| t.primary_election_id().is_some_and(|id| id > first_id))
        })
        .await,
        "no standby took over"
    );
    let took = killed_at.elapsed();
    assert!(
        took <= TTL + Duration::from_secs(1),
        "failover took {took:?} (TTL {TTL:?})"
    );
    let leaders = current_leaders(&leading);
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    assert!(
        leaders[0].1 > first_id,
        "new election id must outrank the old one"
    );
    for t in &targets {
        assert!(eventually_equal(t, &want, Duration::from_secs(5)).await);
        assert!(
            non_decreasing(&t.write_log()),
            "writes interleaved: {:?}",
            t.write_log()
        );
    }
    println!("failover after kill: {took:?}");
    let applied_after: Vec<u64> = targets.iter().map(|t| t.stats().updates_applied).collect();
    assert_eq!(
        applied_before, applied_after,
        "the new leader rewrote a stable fabric"
    );

    // Graceful stop of the new leader: the last standby takes over at once.
    let (next, _) = leaders[0];
    let (stop, task) = instances[next].take().unwrap();
    let stopped_at = Instant::now();
    let _ = stop.send(());
    let _ = task.await;
    assert!(
        wait_until(Duration::from_secs(2), || current_leaders(&leading).len()
            == 1)
        .await,
        "resignation did not hand over promptly"
    );
    println!("failover after resign: {:?}", stopped_at.elapsed());
    for t in &targets {
        assert!(non_decreasing(&t.write_log()));
    }
    for i in instances.into_iter().flatten() {
        let _ = i.0.send(());
        let _ = i.1.await;
    }
}

/// With the default options (lease TTL 3 s), a standby takes over from a
/// killed leader well inside LACP's fast timeout (3 s): it watches the
/// leader's liveness port and revokes the dead leader's lease. Without
/// the liveness port it waits the whole TTL (checked below too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_in_well_under_a_second_at_the_defaults() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let target = TestTarget::start(1).await.unwrap();
    let addrs = vec![(target.addr().to_string(), target.device_id())];
    for liveness in [true, false] {
        let leading: Vec<Leading> = (0..2).map(|_| Leading::default()).collect();
        let mut instances: Vec<_> = (0..2)
            .map(|i| {
                Some(instance_with(
                    etcd.endpoint(),
                    &format!("d{i}-{liveness}"),
                    addrs.clone(),
                    leading[i].clone(),
                    move |o| {
                        if !liveness {
                            o.liveness = None;
                        }
                    },
                ))
            })
            .collect();
        let (first, first_id) = the_leader(&leading).await;
        // Let the standby connect to the leader's liveness port.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_stop, task) = instances[first].take().unwrap();
        task.abort();
        *leading[first].lock().unwrap() = None;
        let killed_at = Instant::now();
        assert!(
            wait_until(Duration::from_secs(6), || target
                .primary_election_id()
                .is_some_and(|id| id > first_id))
            .await,
            "no standby took over"
        );
        let took = killed_at.elapsed();
        println!("failover after kill, liveness {liveness}: {took:?}");
        if liveness {
            assert!(took < Duration::from_millis(1000), "took {took:?}");
        } else {
            assert!(
                took >= Duration::from_secs(2),
                "without liveness the lease TTL (3 s) runs out first: {took:?}"
            );
        }
        for i in instances.into_iter().flatten() {
            let _ = i.0.send(());
            let _ = i.1.await;
        }
    }
}

/// A TCP proxy the test can cut, to isolate one instance from etcd.
async fn proxy(to: String) -> (String, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut_tx, cut_rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let to = to.clone();
            let mut cut = cut_rx.clone();
            if *cut.borrow() {
                continue; // refused: dropped at once
            }
            tokio::spawn(async move {
                let Ok(mut out) = TcpStream::connect(to.trim_start_matches("http://")).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    _ = cut.wait_for(|c| *c) => {}
                }
            });
        }
    });
    (format!("http://{addr}"), cut_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_cut_off_from_etcd_is_fenced() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let target = TestTarget::start(1).await.unwrap();
    let addrs = vec![(target.addr().to_string(), 1)];
    let (proxied, cut) = proxy(etcd.endpoint()).await;
    let a_leading = Leading::default();
    let b_leading = Leading::default();
    let (_a_stop, _a) = instance(proxied, "a", addrs.clone(), a_leading.clone());
    assert!(
        wait_until(Duration::from_secs(10), || a_leading
            .lock()
            .unwrap()
            .is_some())
        .await
    );
    let a_id = a_leading.lock().unwrap().unwrap();
    let (_b_stop, _b) = instance(etcd.endpoint(), "b", addrs.clone(), b_leading.clone());
    assert!(eventually_equal(&target, &desired(20, 0), Duration::from_secs(5)).await);

    // Partition a from etcd: it must stop writing by itself within the TTL,
    // and b must take over with a higher id.
    cut.send_replace(true);
    assert!(
        wait_until(TTL * 3, || b_leading.lock().unwrap().is_some()).await,
        "standby did not take over"
    );
    let b_id = b_leading.lock().unwrap().unwrap();
    assert!(b_id > a_id);
    assert!(
        wait_until(TTL * 2, || a_leading.lock().unwrap().is_none()).await,
        "partitioned leader kept leading"
    );
    assert!(
        wait_until(Duration::from_secs(5), || target.primary_election_id()
            == Some(b_id))
        .await
    );

    // Even if a still reached the switch, its id is refused now.
    let stale = p4fabric::p4rt::Client::connect(p4fabric::p4rt::ClientOptions::new(
        target.addr().to_string(),
        1,
        a_id,
    ))
    .await
    .unwrap();
    let entry = desired(1, 99).into_values().next().unwrap();
    let r = p4fabric::p4rt::write_ops(
        &stale,
        &pipeline().registry,
        &[(p4fabric::p4rt::UpdateKind::Insert, &entry)],
        10,
    )
    .await;
    assert!(r[0].is_err(), "the deposed leader's write was accepted");
    assert!(
        non_decreasing(&target.write_log()),
        "writes interleaved: {:?}",
        target.write_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_leaves_forwarding_alone_and_leadership_returns() {
    let Some(mut etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let target = TestTarget::start(1).await.unwrap();
    let addrs = vec![(target.addr().to_string(), 1)];
    let leading: Vec<Leading> = (0..2).map(|_| Leading::default()).collect();
    let instances: Vec<_> = (0..2)
        .map(|i| {
            instance(
                etcd.endpoint(),
                &format!("e{i}"),
                addrs.clone(),
                leading[i].clone(),
            )
        })
        .collect();
    let want = desired(20, 0);
    assert!(eventually_equal(&target, &want, Duration::from_secs(10)).await);
    let before = target.entities();
    etcd.kill();
    // While etcd is away the switch keeps its forwarding state.
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    assert_eq!(
        target.entities(),
        before,
        "forwarding state changed while etcd was down"
    );
    etcd.restart().await.expect("etcd restarts");
    assert!(
        wait_until(Duration::from_secs(15), || current_leaders(&leading).len()
            == 1)
        .await,
        "no leader after etcd came back"
    );
    assert!(eventually_equal(&target, &want, Duration::from_secs(10)).await);
    assert!(non_decreasing(&target.write_log()));
    for (stop, task) in instances {
        let _ = stop.send(());
        let _ = task.await;
    }
}
