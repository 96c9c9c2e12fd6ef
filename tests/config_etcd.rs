//! The configuration API against a real etcd (Debian's `etcd-server`,
//! started per test on free ports with a temp dir). Without /usr/bin/etcd
//! every test prints a SKIPPED line and passes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use p4fabric::config::etcd::{EtcdOptions, EtcdStore};
use p4fabric::config::file::FileStore;
use p4fabric::config::keys::encode;
use p4fabric::config::status::{ControllerStatus, SessionState, StatusWriter, SwitchStatus};
use p4fabric::config::store::ConfigStore;
use p4fabric::config::watch::{spawn_etcd_feed, ConfigWatch, Feed, Tuning};
use p4fabric::config::{Change, ConfigState, Fabric};
use p4fabric::testkit::EtcdServer;

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/fabric.yaml")
}

fn example() -> Fabric {
    let text = std::fs::read_to_string(example_path()).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

async fn store(etcd: &EtcdServer) -> EtcdStore {
    EtcdOptions::new([etcd.endpoint()]).connect().await.unwrap()
}

/// A status writer for controller "c1" with a lease of `ttl` seconds.
async fn writer(s: &EtcdStore, ttl: u64) -> StatusWriter {
    let me = ControllerStatus::this_process("c1");
    StatusWriter::start(s, &me, Duration::from_secs(ttl))
        .await
        .unwrap()
}

fn tuning() -> Tuning {
    Tuning {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..Tuning::default()
    }
}

/// Runs the CLI; returns (exit ok, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_p4fabric"))
        .args(args)
        .env_remove("P4FABRIC_ETCD")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn eventually<F: Fn() -> bool>(what: &str, limit: Duration, f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_apply_get_validate_status_round_trip() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let ep = etcd.endpoint();
    let file = example_path();
    let file = file.to_str().unwrap();

    let (ok, out, err) = cli(&["validate", "-f", file]);
    assert!(ok, "{out}{err}");

    let (ok, out, err) = cli(&["apply", "-f", file, "--etcd", &ep]);
    assert!(ok, "{out}{err}");
    let n = encode(&example()).len();
    assert!(
        out.contains(&format!("added {n}, changed 0, removed 0, unchanged 0")),
        "{out}"
    );
    assert!(out.contains("+ hosts/srv1"), "{out}");

    // Idempotent.
    let (ok, out, _) = cli(&["apply", "-f", file, "--etcd", &ep]);
    assert!(ok);
    assert!(
        out.contains(&format!("added 0, changed 0, removed 0, unchanged {n}")),
        "{out}"
    );

    // `get -o fabric` gives back the file's configuration.
    let (ok, out, err) = cli(&["get", "-o", "fabric", "--etcd", &ep]);
    assert!(ok, "{err}");
    let back: Fabric = serde_yaml::from_str(&out).unwrap();
    assert_eq!(back, example());

    let (ok, out, _) = cli(&["get", "switches/leaf1", "-o", "json", "--etcd", &ep]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["switches/leaf1"]["device_id"], 1);
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "leaf1 must not match leaf10: {out}"
    );
    let (ok, out, _) = cli(&["get", "vlans", "--etcd", &ep]);
    assert!(
        ok && out.contains("vlans/30:") && out.contains("name: storage"),
        "{out}"
    );
    let (ok, _, err) = cli(&["get", "switches/nope", "--etcd", &ep]);
    assert!(!ok && err.contains("no key"), "{err}");

    // --prune with a smaller file removes what it no longer has; an invalid
    // file is refused before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let mut small = example();
    small.hosts.remove("vm5");
    small.ports.remove(&"leaf4/4".parse().unwrap());
    let small_path = dir.path().join("small.yaml");
    std::fs::write(&small_path, serde_yaml::to_string(&small).unwrap()).unwrap();
    let sp = small_path.to_str().unwrap();
    let (ok, out, _) = cli(&["apply", "-f", sp, "--etcd", &ep]);
    assert!(ok && out.contains("removed 0"), "{out}");
    let (ok, out, _) = cli(&["apply", "-f", sp, "--prune", "--etcd", &ep]);
    assert!(ok, "{out}");
    assert!(
        out.contains("- hosts/vm5") && out.contains("- ports/leaf4/4") && out.contains("removed 2"),
        "{out}"
    );

    let bad_path = dir.path().join("bad.yaml");
    std::fs::write(&bad_path, "vlans:\n  10: {ipv4_gateway: 10.0.10.255/24}\n").unwrap();
    let bp = bad_path.to_str().unwrap();
    let (ok, _, err) = cli(&["validate", "-f", bp]);
    assert!(!ok && err.contains("bad.yaml:2: vlans/10"), "{err}");
    let (ok, _, err) = cli(&["apply", "-f", bp, "--etcd", &ep]);
    assert!(!ok && err.contains("problem"), "{err}");
    // A file valid alone but not with what etcd holds (VLAN 10 still used).
    std::fs::write(&bad_path, "vlans:\n  11: {ipv4_gateway: 10.0.10.1/25}\n").unwrap();
    let (ok, _, err) = cli(&["apply", "-f", bp, "--etcd", &ep]);
    assert!(!ok && err.contains("overlaps"), "{err}");
    let (ok, _, err) = cli(&["apply", "-f", "/nonexistent.yaml", "--etcd", &ep]);
    assert!(!ok && err.contains("cannot read"), "{err}");

    // Status written by a controller shows up in `status`.
    let s = store(&etcd).await;
    let w = writer(&s, 10).await;
    w.set_switch(
        "leaf1",
        &SwitchStatus {
            state: SessionState::Primary,
            controller: "c1".into(),
            election_id: Some("42".into()),
            entities: 17,
            last_error: None,
            since: 0,
            pipeline_cookie: Some("0x00000000000000ab".into()),
            pipeline_version: Some("v2".into()),
        },
    )
    .await
    .unwrap();
    let (ok, out, err) = cli(&["status", "--etcd", &ep]);
    assert!(ok, "{err}");
    assert!(
        out.contains("switches") && out.contains("state=primary") && out.contains("controllers"),
        "{out}"
    );
    let (ok, out, _) = cli(&["status", "--json", "--etcd", &ep]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["switches/leaf1"]["entities"], 17);
    w.shutdown().await.unwrap();
    let (_, out, _) = cli(&["status", "--etcd", &ep]);
    assert!(out.contains("no status"), "{out}");

    // Unreachable etcd: a clear error, non-zero exit.
    drop(etcd);
    let (ok, _, err) = cli(&["get", "--etcd", &ep]);
    assert!(!ok && err.contains("cannot reach etcd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_and_etcd_store_agree() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let file = FileStore::new(example_path()).load().await.unwrap();
    let s = store(&etcd).await;
    s.commit(file.kvs.clone().into_iter().collect(), vec![])
        .await
        .unwrap();
    let from_etcd = s.load().await.unwrap();

    // A guarded commit fails if configuration changed after the read, and
    // is not disturbed by status writes.
    let r = from_etcd.revision;
    s.client()
        .put("/p4fabric/v1/status/controllers/x", "{}", None)
        .await
        .unwrap();
    let vlan = |n: &str| vec![(n.to_string(), b"{}".to_vec())];
    s.commit_if_unchanged_since(vlan("vlans/98"), vec![], r)
        .await
        .unwrap();
    let r2 = s.load().await.unwrap().revision;
    assert!(matches!(
        s.commit_if_unchanged_since(vlan("vlans/99"), vec![], r)
            .await,
        Err(p4fabric::config::store::StoreError::Conflict)
    ));
    s.commit_if_unchanged_since(vec![], vec!["vlans/98".into()], r2)
        .await
        .unwrap();
    assert_eq!(s.load().await.unwrap().kvs, from_etcd.kvs);
    assert_eq!(from_etcd.kvs, file.kvs);
    let (a, ea) = file.fabric();
    let (b, eb) = from_etcd.fabric();
    assert!(ea.is_empty() && eb.is_empty(), "{ea:?} {eb:?}");
    assert_eq!(a, b);
    assert_eq!(a, example());
    // And the watchers of both publish the same configuration.
    let mut we = ConfigWatch::etcd(EtcdOptions::new([etcd.endpoint()]), tuning());
    let mut wf = ConfigWatch::file(example_path(), Duration::from_millis(50), tuning());
    let ue = we.wait_for_revision(1).await;
    let uf = wf.wait_for_revision(1).await;
    assert_eq!(*ue.fabric, *uf.fabric);
    assert_eq!(*ue.fabric, example());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_every_change_once_in_order_under_a_burst() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let s = store(&etcd).await;
    let (mut feed, _task) = spawn_etcd_feed(EtcdOptions::new([etcd.endpoint()]), tuning());
    let first = feed.recv().await.unwrap();
    assert!(matches!(first, Feed::Reset { ref kvs, .. } if kvs.is_empty()));
    let mut watch = ConfigWatch::etcd(EtcdOptions::new([etcd.endpoint()]), tuning());
    watch.wait_for_revision(1).await;
    let gen0 = watch.current().generation;

    // 4 writers x 250 puts; writer w cycles over its own 50 VLAN keys and
    // writes its sequence number into the name.
    let writers: Vec<_> = (0..4u16)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..250u16 {
                    let vlan = w * 100 + i % 50 + 1;
                    let v = format!(r#"{{"name":"w{w}-{i}"}}"#);
                    s.commit(vec![(format!("vlans/{vlan}"), v.into_bytes())], vec![])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let last_rev = s.load().await.unwrap().revision;

    let mut seen: Vec<(i64, Change)> = Vec::new();
    let mut rev = 0;
    while rev < last_rev {
        let f = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .expect("feed stalled")
            .unwrap();
        let Feed::Changes { revision, changes } = f else {
            panic!("unexpected reset");
        };
        assert!(revision > rev, "revisions must increase");
        rev = revision;
        seen.extend(changes.into_iter().map(|c| (revision, c)));
    }
    assert_eq!(seen.len(), 1000, "every put exactly once");
    let mut next = [0u16; 4];
    for (_, c) in &seen {
        let v: serde_json::Value = serde_json::from_slice(c.value.as_ref().unwrap()).unwrap();
        let name = v["name"].as_str().unwrap();
        let (w, i) = name[1..].split_once('-').unwrap();
        let (w, i): (usize, u16) = (w.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[w], "writer {w} out of order");
        next[w] += 1;
    }

    // The debounced consumer converges with a handful of recomputations.
    let u = watch.wait_for_revision(last_rev).await;
    assert_eq!(u.fabric.vlans.len(), 200);
    assert_eq!(u.fabric.vlans[&1].name, "w0-200");
    assert_eq!(u.fabric.vlans[&350].name, "w3-249");
    let recomputations = u.generation - gen0;
    println!("1000 puts -> {recomputations} recomputations");
    assert!(recomputations < 200, "{recomputations} recomputations");
}

/// A put after a quiet period is applied at once (leading edge), not after
/// the debounce; a burst right after it is still coalesced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_put_is_applied_at_once_and_a_burst_still_coalesced() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let s = store(&etcd).await;
    // A debounce long enough to see whether a change waited for it.
    let slow = Tuning {
        quiet: Duration::from_millis(400),
        max_delay: Duration::from_secs(2),
        ..tuning()
    };
    let mut watch = ConfigWatch::etcd(EtcdOptions::new([etcd.endpoint()]), slow);
    watch.wait_for_revision(1).await;
    for i in 1..=3u16 {
        tokio::time::sleep(slow.quiet).await;
        let put = (format!("vlans/{i}"), br#"{"name":"one"}"#.to_vec());
        let c = s.commit(vec![put], vec![]).await.unwrap();
        let t = Instant::now();
        let u = watch.wait_for_revision(c.revision).await;
        assert!(u.fabric.vlans.contains_key(&i));
        let took = t.elapsed();
        assert!(took < Duration::from_millis(200), "put {i} took {took:?}");
    }
    let gen0 = watch.current().generation;
    // 300 puts from 3 writers at once.
    let writers: Vec<_> = (0..3u16)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..100u16 {
                    let v = format!(r#"{{"name":"w{w}-{i}"}}"#).into_bytes();
                    s.commit(vec![(format!("vlans/{}", 100 + w * 100 + i), v)], vec![])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let started = Instant::now();
    for w in writers {
        w.await.unwrap();
    }
    let took = started.elapsed();
    let last = s.load().await.unwrap().revision;
    let u = watch.wait_for_revision(last).await;
    assert_eq!(u.fabric.vlans.len(), 303);
    let recomputations = u.generation - gen0;
    println!("300 puts in {took:?} -> {recomputations} recomputations");
    // The leading ones, one per max_delay, the last (and a little slack
    // for gaps in etcd's commits that end a burst early).
    let bound = slow.leading as u128 + took.as_millis() / slow.max_delay.as_millis() + 4;
    assert!(
        u128::from(recomputations) <= bound,
        "{recomputations} recomputations (bound {bound})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_while_the_watcher_is_stopped_is_recovered() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let s = store(&etcd).await;
    let opts = EtcdOptions::new([etcd.endpoint()]);
    s.commit(
        vec![
            ("vlans/10".into(), br#"{"name":"a"}"#.to_vec()),
            ("vlans/11".into(), br#"{"name":"b"}"#.to_vec()),
        ],
        vec![],
    )
    .await
    .unwrap();

    // A consumer that saw everything up to revision R, then stopped.
    let (mut feed, task) = spawn_etcd_feed(opts.clone(), tuning());
    let Some(Feed::Reset { revision: r, kvs }) = feed.recv().await else {
        panic!("no reset");
    };
    let mut state = ConfigState::new();
    state.reset(kvs);
    task.abort();
    drop(feed);

    // Meanwhile: changes, a delete, and the history compacted away.
    s.commit(
        vec![("vlans/12".into(), br#"{"name":"c"}"#.to_vec())],
        vec!["vlans/10".into()],
    )
    .await
    .unwrap();
    s.commit(
        vec![("vlans/11".into(), br#"{"name":"b2"}"#.to_vec())],
        vec![],
    )
    .await
    .unwrap();
    let now = s.load().await.unwrap();
    s.compact(now.revision).await.unwrap();

    // Resuming from R+1 hits the compaction: full re-read, nothing lost.
    let (mut feed, _task) = p4fabric::config::watch::spawn_etcd_feed_from(opts, tuning(), r);
    let f = tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .unwrap()
        .unwrap();
    let Feed::Reset { revision, kvs } = f else {
        panic!("expected a full re-read after compaction, got {f:?}");
    };
    assert_eq!(revision, now.revision);
    let (fabric, errors) = state.reset(kvs);
    assert!(errors.is_empty());
    assert_eq!(fabric, now.fabric().0);
    assert!(!fabric.vlans.contains_key(&10));
    assert_eq!(fabric.vlans[&11].name, "b2");

    // And the watch goes on after the re-read.
    s.commit(vec![("vlans/13".into(), b"{}".to_vec())], vec![])
        .await
        .unwrap();
    let f = tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        f,
        Feed::Changes {
            revision: now.revision + 1,
            changes: vec![Change::put("vlans/13", "{}")]
        }
    );
}

/// Drains `feed` until `revision`; returns every change in order, after the
/// first `Reset` (which must be the only one).
async fn changes_until(
    feed: &mut tokio::sync::mpsc::UnboundedReceiver<Feed>,
    revision: i64,
) -> Vec<Change> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < revision {
        let f = tokio::time::timeout(Duration::from_secs(20), feed.recv())
            .await
            .expect("feed stalled")
            .expect("feed ended");
        assert!(f.revision() > at || at == 0, "revision went back");
        at = f.revision();
        match f {
            Feed::Changes { changes, .. } => out.extend(changes),
            Feed::Reset { .. } => assert!(out.is_empty(), "unexpected re-read"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_mid_stream_converges() {
    let Some(mut etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let opts = EtcdOptions::new([etcd.endpoint()]);
    let mut watch = ConfigWatch::etcd(opts.clone(), tuning());
    let (mut feed, _task) = spawn_etcd_feed(opts.clone(), tuning());
    watch.wait_for_revision(1).await;

    // A writer that keeps going through the outage, retrying each put
    // until etcd takes it.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u16);
    let writer = {
        let opts = opts.clone();
        tokio::spawn(async move {
            for i in 1..=150u16 {
                let v = format!(r#"{{"name":"v{i}"}}"#).into_bytes();
                loop {
                    if let Ok(s) = opts.connect().await {
                        if s.commit(vec![(format!("vlans/{i}"), v.clone())], vec![])
                            .await
                            .is_ok()
                        {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = progress_tx.send(i);
            }
        })
    };
    progress.wait_for(|i| *i >= 50).await.unwrap();
    etcd.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // etcd is gone: the last good configuration stays in force.
    assert!(watch.current().fabric.vlans.len() >= 40);
    etcd.restart().await.unwrap();
    writer.await.unwrap();
    let s = store(&etcd).await;
    s.commit(vec![], vec!["vlans/1".into()]).await.unwrap();
    let now = s.load().await.unwrap();

    let u = tokio::time::timeout(
        Duration::from_secs(20),
        watch.wait_for_revision(now.revision),
    )
    .await
    .expect("watcher did not reconnect");
    assert_eq!(*u.fabric, now.fabric().0);
    assert_eq!(u.fabric.vlans.len(), 149);

    // Exactly once, in order: the feed that lived through the outage saw
    // the same changes as a fresh replay of etcd's whole history.
    let seen = changes_until(&mut feed, now.revision).await;
    let (mut replay, _t) = p4fabric::config::watch::spawn_etcd_feed_from(opts, tuning(), 1);
    let truth = changes_until(&mut replay, now.revision).await;
    assert!(truth.len() >= 151, "{}", truth.len());
    assert_eq!(seen, truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_are_rejected_and_the_last_good_version_stays() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let s = store(&etcd).await;
    s.commit(
        vec![
            (
                "switches/leaf1".into(),
                br#"{"address":"127.0.0.1:50001","device_id":1,"role":"leaf","label":101,"fabric_ports":[1]}"#.to_vec(),
            ),
            ("vlans/10".into(), br#"{"ipv4_gateway":"10.0.10.1/24"}"#.to_vec()),
        ],
        vec![],
    )
    .await
    .unwrap();
    let mut watch = ConfigWatch::etcd(EtcdOptions::new([etcd.endpoint()]), tuning());
    let u = watch.wait_for_revision(2).await;
    assert!(u.errors.is_empty());

    let c = s
        .commit(
            vec![
                // Was good: the old version must stay.
                ("vlans/10".into(), br#"{"ipv4_gateway":"10.0.10.0/24"}"#.to_vec()),
                ("vlans/20".into(), b"\xff\xfe not json".to_vec()),
                ("ports/leaf1/1".into(), br#"{"mode":"access","vlan":10}"#.to_vec()),
                ("ports/leaf1/3".into(), br#"{"mode":"access","vlan":10,"colour":"red"}"#.to_vec()),
                ("widgets/x".into(), b"{}".to_vec()),
                // Valid, and its VLAN arrives in the same transaction.
                ("hosts/vm1".into(), br#"{"mac":"02:00:00:00:00:01","vlan":30,"ips":["10.0.30.5"],"attachment":{"port":"leaf1/4"}}"#.to_vec()),
                ("ports/leaf1/4".into(), br#"{"mode":"access","vlan":30}"#.to_vec()),
                ("vlans/30".into(), br#"{"ipv4_gateway":"10.0.30.1/24"}"#.to_vec()),
            ],
            vec![],
        )
        .await
        .unwrap();
    let u = watch.wait_for_revision(c.revision).await;
    let errs: BTreeMap<&str, &str> = u
        .errors
        .iter()
        .map(|e| (e.key.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        errs.keys().copied().collect::<Vec<_>>(),
        [
            "ports/leaf1/1",
            "ports/leaf1/3",
            "vlans/10",
            "vlans/20",
            "widgets/x"
        ],
        "{errs:#?}"
    );
    assert!(errs["vlans/10"].contains("network or broadcast"));
    assert!(errs["vlans/20"].contains("invalid JSON"));
    assert!(errs["ports/leaf1/1"].contains("fabric port"));
    assert!(errs["ports/leaf1/3"].contains("colour"));
    assert_eq!(
        u.fabric.vlans[&10].ipv4_gateway,
        Some("10.0.10.1/24".parse().unwrap())
    );
    assert!(u.fabric.hosts.contains_key("vm1"));
    assert!(u.fabric.vlans.contains_key(&30));

    // The errors go to status/config/<key>; fixing a key clears its entry.
    let w = writer(&s, 2).await;
    w.set_config_errors(&u.errors);
    assert!(w.flush(Duration::from_secs(5)).await);
    let st = s.get_dir("status/config/").await.unwrap();
    assert_eq!(st.kvs.len(), 5);
    assert!(String::from_utf8_lossy(&st.kvs["status/config/vlans/10"]).contains("broadcast"));
    let c = s
        .commit(
            vec![(
                "vlans/10".into(),
                br#"{"ipv4_gateway":"10.0.10.254/24"}"#.to_vec(),
            )],
            vec![],
        )
        .await
        .unwrap();
    let u = watch.wait_for_revision(c.revision).await;
    assert_eq!(u.errors.len(), 4);
    w.set_config_errors(&u.errors);
    assert!(w.flush(Duration::from_secs(5)).await);
    assert!(!s
        .get_dir("status/config/")
        .await
        .unwrap()
        .kvs
        .contains_key("status/config/vlans/10"));
    // Status writes never reach the configuration watcher as changes.
    assert_eq!(watch.current().generation, u.generation);

    // A dead controller's status expires with its lease (TTL 2 s).
    drop(w);
    let s2 = s.clone();
    let start = Instant::now();
    loop {
        if s2.get_dir("status/").await.unwrap().kvs.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "status did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_watch_follows_edits_and_keeps_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fabric.yaml");
    std::fs::write(&path, "vlans:\n  10: {name: a}\n").unwrap();
    let mut w = ConfigWatch::file(path.clone(), Duration::from_millis(20), tuning());
    let u = w.wait_for_revision(1).await;
    assert_eq!(u.fabric.vlans[&10].name, "a");
    // Size changes too, so the edit is seen even within one mtime tick.
    std::fs::write(&path, "vlans:\n  10: {name: bb}\n  11: {}\n").unwrap();
    let u = w.wait_for_revision(2).await;
    assert_eq!(u.fabric.vlans[&10].name, "bb");
    // A broken file changes nothing; a bad key is rejected on its own.
    std::fs::write(&path, "vlans: [unclosed\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.current().revision, 2);
    std::fs::write(
        &path,
        "vlans:\n  10: {name: ccc, vrf: x}\n  11: {}\n  12: {}\n",
    )
    .unwrap();
    let u = w.wait_for_revision(3).await;
    assert_eq!(u.fabric.vlans[&10].name, "bb");
    assert!(u.fabric.vlans.contains_key(&12));
    assert_eq!(u.errors.len(), 1);
    eventually("nothing", Duration::from_secs(1), || true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_rebuilt_behind_our_revision_is_reread() {
    let Some(mut etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let mut watch = ConfigWatch::etcd(EtcdOptions::new([etcd.endpoint()]), tuning());
    let s = store(&etcd).await;
    for i in 1..=20u16 {
        s.commit(vec![(format!("vlans/{i}"), b"{}".to_vec())], vec![])
            .await
            .unwrap();
    }
    watch.wait_for_revision(21).await;

    // A new, empty etcd: its revisions start over, below ours.
    etcd.restart_empty().await.unwrap();
    let s = store(&etcd).await;
    s.commit(vec![("vlans/100".into(), b"{}".to_vec())], vec![])
        .await
        .unwrap();
    let want = s.load().await.unwrap().fabric().0;
    let start = Instant::now();
    while *watch.current().fabric != want {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not re-read: {:?}",
            watch.current().fabric.vlans.keys()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_authentication() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let mut c = store(&etcd).await.client();
    let _ = c.role_add("root").await;
    c.user_add("root", "s3cret", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.auth_enable().await.unwrap();

    let ep = etcd.endpoint();
    let file = example_path();
    let file = file.to_str().unwrap();
    let (ok, _, err) = cli(&["apply", "-f", file, "--etcd", &ep]);
    assert!(!ok && err.contains("cannot reach etcd"), "{err}");
    let auth = [
        "--etcd",
        &ep,
        "--etcd-user",
        "root",
        "--etcd-password",
        "s3cret",
    ];
    let (ok, out, err) = cli(&[&["apply", "-f", file][..], &auth[..]].concat());
    assert!(ok, "{out}{err}");
    let mut opts = EtcdOptions::new([ep.clone()]);
    opts.user = Some("root".into());
    opts.password = Some("s3cret".into());
    let mut w = ConfigWatch::etcd(opts, tuning());
    let u = w.wait_for_revision(2).await;
    assert_eq!(*u.fabric, example());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tls) = p4fabric::testkit::etcd::TlsFiles::generate(dir.path()) else {
        println!("SKIPPED: openssl not found (apt-get install openssl)");
        return;
    };
    let Some(etcd) = EtcdServer::start_tls_or_skip(Some(tls.clone())).await else {
        return;
    };
    let ep = etcd.endpoint();
    assert!(ep.starts_with("https://"));
    let file = example_path();
    let file = file.to_str().unwrap();
    let (ca, cert, key) = (
        tls.ca.to_str().unwrap(),
        tls.cert.to_str().unwrap(),
        tls.key.to_str().unwrap(),
    );
    // Without a client certificate etcd refuses.
    let (ok, _, err) = cli(&["get", "--etcd", &ep, "--etcd-ca", ca]);
    assert!(!ok && err.contains("cannot reach etcd"), "{err}");
    let tls_args = [
        "--etcd",
        &ep,
        "--etcd-ca",
        ca,
        "--etcd-cert",
        cert,
        "--etcd-key",
        key,
    ];
    let (ok, out, err) = cli(&[&["apply", "-f", file][..], &tls_args[..]].concat());
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&[&["get", "-o", "fabric"][..], &tls_args[..]].concat());
    assert!(ok, "{err}");
    assert_eq!(serde_yaml::from_str::<Fabric>(&out).unwrap(), example());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_rewritten_under_a_new_lease_when_the_old_one_is_lost() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let s = store(&etcd).await;
    let w = writer(&s, 3).await;
    let st = SwitchStatus {
        state: SessionState::Backup,
        controller: "c1".into(),
        election_id: None,
        entities: 0,
        last_error: None,
        since: 0,
        pipeline_cookie: None,
        pipeline_version: None,
    };
    w.set_switch("leaf1", &st).await.unwrap();
    let keys = || async {
        s.get_dir("status/")
            .await
            .unwrap()
            .kvs
            .into_keys()
            .collect::<Vec<_>>()
    };
    let all = vec![
        "status/controllers/c1".to_string(),
        "status/switches/leaf1".to_string(),
    ];
    assert_eq!(keys().await, all);

    // The lease goes (as if it expired while etcd was unreachable): the
    // keys vanish, then come back under a fresh lease.
    let old = w.lease().await;
    s.client().lease_revoke(old).await.unwrap();
    assert!(keys().await.is_empty());
    let start = Instant::now();
    while keys().await != all {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "status not rewritten"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(w.lease().await, old);
}

/// The write-behind queue the controller's loop uses: thousands of values
/// handed over return at once, land in etcd in transactions at the paced
/// rate, the latest value per key wins, a removal removes, and the keys
/// live under the lease like the awaited writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_status_batches_paces_and_keeps_the_latest_value() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let s = store(&etcd).await;
    let w = writer(&s, 10).await;
    const N: usize = 3000;
    let handed = Instant::now();
    for i in 0..N {
        w.set_later(&format!("hosts/10/h{i:05}"), &serde_json::json!({"v": 1}));
    }
    for i in 0..N / 2 {
        w.set_later(&format!("hosts/10/h{i:05}"), &serde_json::json!({"v": 2}));
    }
    w.set_later("switches/leaf1", &serde_json::json!({"urgent": true}));
    w.remove_later("hosts/10/h00007");
    let handing = handed.elapsed();
    assert!(
        handing < Duration::from_millis(500),
        "handing over took {handing:?}"
    );
    // The urgent key does not wait behind thousands of hosts.
    let start = Instant::now();
    while s.get_dir("status/switches/").await.unwrap().kvs.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "urgent key late");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        w.flush(Duration::from_secs(20)).await,
        "queue never emptied"
    );
    let took = start.elapsed();
    let kvs = s.get_dir("status/hosts/").await.unwrap().kvs;
    assert_eq!(kvs.len(), N - 1);
    let v = |i: usize| -> serde_json::Value {
        serde_json::from_slice(&kvs[&format!("status/hosts/10/h{i:05}")]).unwrap()
    };
    assert_eq!(v(0)["v"], 2);
    assert_eq!(v(N - 1)["v"], 1);
    assert!(!kvs.contains_key("status/hosts/10/h00007"));
    // Paced: N keys need at least N / MAX_KEYS_PER_SEC seconds.
    let floor = Duration::from_secs_f64(
        N as f64 / f64::from(p4fabric::config::status::MAX_KEYS_PER_SEC) * 0.9,
    );
    assert!(took >= floor, "{N} keys in {took:?}: not paced");
    let stats = w.queue_stats();
    assert_eq!(stats.pending, 0);
    assert!(stats.written >= N as u64, "{stats:?}");
    // Under the lease: revoking it removes them.
    s.client().lease_revoke(w.lease().await).await.unwrap();
    assert!(s.get_dir("status/hosts/").await.unwrap().kvs.is_empty());
}

/// A leader's election key lives under the prefix too: `apply --prune` must
/// not delete it (that handed leadership to a second controller while the
/// first still led, found by the bmv2 HA test), and the configuration
/// watch must not take it for a configuration key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_prune_and_the_config_watch_leave_the_election_alone() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let ep = etcd.endpoint();
    let s = store(&etcd).await;
    let mut watch = ConfigWatch::etcd(EtcdOptions::new([ep.clone()]), tuning());
    let opts = p4fabric::ha::HaOptions::new(s.prefix(), "c1");
    let term = p4fabric::ha::campaign(&s.client(), &opts, "c1")
        .await
        .unwrap();
    let file = example_path();
    let (ok, out, err) = cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--prune",
        "--etcd",
        &ep,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("removed 0"), "{out}");
    assert!(!out.contains("election"), "{out}");
    let all = s.get_dir("").await.unwrap();
    assert_eq!(
        all.kvs
            .keys()
            .filter(|k| k.starts_with("election/"))
            .count(),
        1,
        "the election key is gone: {:?}",
        all.kvs.keys().collect::<Vec<_>>()
    );
    let rev = all.revision;
    let cur = tokio::time::timeout(Duration::from_secs(5), watch.wait_for_revision(rev))
        .await
        .expect("the watch saw the apply");
    assert!(cur.errors.is_empty(), "{:?}", cur.errors);
    // A second candidate waits: the first still leads.
    let opts2 = p4fabric::ha::HaOptions::new(s.prefix(), "c2");
    let client = s.client();
    let second = tokio::time::timeout(
        Duration::from_secs(1),
        p4fabric::ha::campaign(&client, &opts2, "c2"),
    )
    .await;
    assert!(second.is_err(), "two leaders");
    term.resign().await;
}

/// An idle watch stays up: etcd refuses HTTP/2 pings more frequent than its
/// `--grpc-keepalive-min-time` (5 s) with GOAWAY "too_many_pings", and a
/// client pinging every 2 s lost its connection (and re-watched) every
/// ~8 s. 18 s covers two such cycles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_is_not_dropped_by_etcd() {
    let Some(etcd) = EtcdServer::start_or_skip().await else {
        return;
    };
    let s = store(&etcd).await;
    let (rev, _) = s.revision().await.expect("revision");
    let mut stream = s.watch_from(rev + 1).await.expect("watch");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(18);
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => break,             // quiet until the deadline, still connected
            Ok(Ok(Some(_))) => continue, // progress or the created event
            Ok(other) => panic!("the idle watch ended: {other:?}"),
        }
    }
}
