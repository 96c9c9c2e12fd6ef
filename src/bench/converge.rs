//! `p4fabric bench converge`: config-to-wire latency on bmv2. A real etcd,
//! the demo topology on bmv2 switches (`LabFabric`, free ports), the
//! controller in-process watching etcd; N single-key changes (a host
//! binding, a route, a VLAN, in turn), one at a time. Each is timed from
//! the etcd transaction's commit (its response) until every entity it adds
//! or changes is *read back* from every affected switch over P4Runtime —
//! the bench polls those entities itself, it never asks the controller.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{load_average, machine, percentiles};
use crate::config::etcd::{EtcdOptions, EtcdStore};
use crate::config::keys;
use crate::config::watch::{ConfigWatch, Tuning};
use crate::config::{Attachment, Fabric, Host, LagMode, PortRef, Route, Vlan};
use crate::controller::{Controller, ControllerOptions};
use crate::net::MacAddr;
use crate::p4rt::{Client, ClientOptions, Entity, P4InfoRegistry, Pipeline};
use crate::testkit::lab::readback;
use crate::testkit::lab::{LabFabric, LabOptions};
use crate::testkit::EtcdServer;

#[derive(Debug, clap::Args)]
pub struct ConvergeArgs {
    /// The fabric (6 bmv2 switches in the example).
    #[arg(long = "config", short = 'f', default_value = "examples/fabric.yaml")]
    pub config: PathBuf,
    /// Single-key changes to apply and time (host, route, VLAN in turn).
    #[arg(long, default_value_t = 210)]
    pub changes: usize,
    /// The config watch's debounce of bursts: apply a burst once no change
    /// came for this long (`Tuning::quiet`; the daemon's default is 20 ms).
    /// A change that comes alone is applied at once (`Tuning::burst_gap`,
    /// `Tuning::leading`).
    #[arg(long, default_value_t = 20)]
    pub quiet_ms: u64,
    /// ...or this long after the first pending change (`Tuning::max_delay`).
    #[arg(long, default_value_t = 250)]
    pub max_delay_ms: u64,
    /// Changes applied at once within `--quiet-ms` before changes count as
    /// a burst (`Tuning::leading`; 0: every change waits for the debounce,
    /// as the watch did before it applied single changes at once).
    #[arg(long, default_value_t = Tuning::default().leading)]
    pub leading: usize,
    /// Give up on one change after this long.
    #[arg(long, default_value_t = 10)]
    pub change_timeout_secs: u64,
    #[arg(long, env = "P4FABRIC_PIPELINE_DIR")]
    pub pipeline_dir: Option<PathBuf>,
}

/// What one change must make readable on which switch.
struct Expect {
    switch: String,
    entities: Vec<Entity>,
}

/// The `i`-th change: a host binding, a route or a VLAN.
fn change(f: &Fabric, i: usize) -> (String, Fabric) {
    let mut f = f.clone();
    let n = i / 3;
    let what = match i % 3 {
        0 => {
            // Access ports of the example: leaf1/3 (VLAN 10), leaf2/3 (20),
            // leaf4/3 (30).
            let (port, vlan) = [("leaf1", 10u16), ("leaf2", 20), ("leaf4", 30)][n % 3];
            let host = Host {
                mac: MacAddr([0x02, 0xcc, 0, 0, (n >> 8) as u8, n as u8]),
                vlan,
                ips: vec![IpAddr::V4(Ipv4Addr::new(
                    10,
                    0,
                    vlan as u8,
                    100 + (n % 150) as u8,
                ))],
                attachment: Attachment::Port(PortRef::new(port, 3)),
            };
            let name = format!("bench-host-{n}");
            f.hosts.insert(name.clone(), host);
            format!("hosts/{name}")
        }
        1 => {
            let route = Route {
                vrf: 0,
                prefix: format!("172.{}.{}.0/24", 16 + n / 256, n % 256)
                    .parse()
                    .unwrap_or_default(),
                next_hops: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 20, 254))],
            };
            let name = format!("bench-route-{n}");
            f.routes.insert(name.clone(), route);
            format!("routes/{name}")
        }
        _ => {
            let id = 1000 + n as u16;
            let vlan = Vlan {
                name: format!("bench{n}"),
                tenant: "bench".into(),
                vrf: 0,
                ipv4_gateway: format!("10.{}.{}.1/24", 100 + n / 256, n % 256)
                    .parse()
                    .ok(),
                ipv6_gateway: None,
                gateway_mac: None,
            };
            f.vlans.insert(id, vlan);
            format!("vlans/{id}")
        }
    };
    (what, f)
}

/// The entities `after` adds or changes relative to `before`, per switch
/// (what must become readable).
fn expectations(before: &Fabric, after: &Fabric) -> Vec<Expect> {
    let (b, a) = (readback::expected(before), readback::expected(after));
    let empty = Default::default();
    a.iter()
        .filter_map(|(sw, want)| {
            let had = b.get(sw).unwrap_or(&empty);
            let entities: Vec<Entity> = crate::compile::diff(want, had)
                .ops()
                .filter(|op| op.kind != crate::compile::OpKind::Delete)
                .filter(|op| matches!(op.entity, Entity::Table(_)))
                .map(|op| op.entity.clone())
                .collect();
            (!entities.is_empty()).then(|| Expect {
                switch: sw.clone(),
                entities,
            })
        })
        .collect()
}

/// Reads `entities` from the switch until all are there as wanted; the
/// instant that was first true.
async fn poll_until_present(
    client: &Client,
    reg: &P4InfoRegistry,
    entities: &[Entity],
    deadline: Instant,
) -> anyhow::Result<Instant> {
    let req: Vec<_> = entities
        .iter()
        .map(|e| reg.encode_entity(e, true))
        .collect::<Result<_, _>>()?;
    loop {
        let got = client.read(req.clone()).await.unwrap_or_default();
        let got: BTreeMap<_, _> = got
            .iter()
            .filter_map(|e| reg.decode_entity(e).ok())
            .map(|e| (e.key(), e))
            .collect();
        let all = entities
            .iter()
            .all(|e| got.get(&e.key()).is_some_and(|g| g.same_on_switch(e)));
        if all {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("not readable in time");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

async fn commit(store: &EtcdStore, before: &Fabric, after: &Fabric) -> anyhow::Result<i64> {
    let (old, new) = (keys::encode(before), keys::encode(after));
    let puts: Vec<(String, Vec<u8>)> = new
        .into_iter()
        .filter(|(k, v)| old.get(k) != Some(v))
        .collect();
    Ok(store.commit(puts, Vec::new()).await?.revision)
}

pub async fn run(args: &ConvergeArgs) -> anyhow::Result<()> {
    let doc = crate::config::document::Document::read(&args.config)?;
    let mut fabric = doc.fabric.clone().context("configuration has no fabric")?;
    let dir = args
        .pipeline_dir
        .clone()
        .unwrap_or_else(Pipeline::default_dir);
    if let Some(why) = crate::testkit::lab::bmv2_missing(&dir, &fabric) {
        println!("SKIPPED: bench converge needs bmv2: {why}");
        return Ok(());
    }
    if EtcdServer::binary().is_none() {
        println!("SKIPPED: bench converge needs etcd (apt-get install etcd-server)");
        return Ok(());
    }
    // No LACP partner in the lab (as in the demo).
    for lag in fabric.lags.values_mut() {
        if lag.protocol == LagMode::Lacp {
            lag.protocol = LagMode::Static;
        }
    }
    let pipelines = readback::load_pipelines(&dir, &fabric)?;
    let lab = LabFabric::start(
        &fabric,
        &LabOptions {
            free_ports: true,
            host_ns_prefix: format!("p4c{}-", std::process::id() % 10_000),
            json: None,
            ..LabOptions::default()
        },
    )?;
    lab.wire_config(&mut fabric);
    let etcd = EtcdServer::start().await.map_err(anyhow::Error::msg)?;
    let store = EtcdOptions::new([etcd.endpoint()]).connect().await?;
    commit(&store, &Fabric::default(), &fabric).await?;
    let tuning = Tuning {
        quiet: Duration::from_millis(args.quiet_ms),
        max_delay: Duration::from_millis(args.max_delay_ms),
        leading: args.leading,
        ..Tuning::default()
    };
    let watch = ConfigWatch::etcd(EtcdOptions::new([etcd.endpoint()]), tuning);
    let mut seen = watch.subscribe();
    let mut opts = ControllerOptions::new("bench-converge");
    opts.pipeline_dir = dir.clone();
    let controller = Controller::new(opts, watch.subscribe(), None);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ctl = tokio::spawn(controller.run(async {
        let _ = stop_rx.await;
    }));
    println!(
        "converge: {} bmv2 switches ({}), etcd {}, controller in-process (watch quiet {} ms, max delay {} ms, leading {}); {}; load average {}",
        fabric.switches.len(),
        args.config.display(),
        etcd.endpoint(),
        args.quiet_ms,
        args.max_delay_ms,
        args.leading,
        machine(),
        load_average()
    );
    let t0 = Instant::now();
    let conv = readback::wait_converged(
        &fabric,
        &pipelines,
        &readback::expected(&fabric),
        Duration::from_secs(20),
    )
    .await;
    if conv.converged() {
        println!(
            "initial state read back on every switch after {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    } else {
        // The controller's observed state (discovery, learning) may differ
        // from the configured-only expectation; the changes below add
        // entries that do not depend on it.
        println!(
            "note: read-back differs from the configured-only expectation after {:.1} s: {:?}",
            t0.elapsed().as_secs_f64(),
            conv.pending
        );
    }
    let mut readers: BTreeMap<String, (Client, Arc<Pipeline>)> = BTreeMap::new();
    for (name, sw) in &fabric.switches {
        let client = Client::connect(ClientOptions::new(&sw.address, sw.device_id, 0)).await?;
        let p = pipelines.get(&sw.pipeline).context("pipeline")?.clone();
        readers.insert(name.clone(), (client, p));
    }

    let mut total = Vec::new();
    let mut to_watch = Vec::new();
    let mut by_kind: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let mut failures = 0usize;
    for i in 0..args.changes {
        let (key, next) = change(&fabric, i);
        let expect = expectations(&fabric, &next);
        let _ = seen.borrow_and_update();
        let revision = commit(&store, &fabric, &next).await?;
        let committed = Instant::now();
        let deadline = committed + Duration::from_secs(args.change_timeout_secs);
        let seen_at = async {
            let _ = tokio::time::timeout_at(
                tokio::time::Instant::from_std(deadline),
                seen.wait_for(|u| u.revision >= revision),
            )
            .await;
            Instant::now()
        };
        let polls = futures::future::join_all(expect.iter().filter_map(|e| {
            let (client, p) = readers.get(&e.switch)?;
            Some(poll_until_present(
                client,
                &p.registry,
                &e.entities,
                deadline,
            ))
        }));
        let (seen_at, results) = tokio::join!(seen_at, polls);
        fabric = next;
        let mut last = committed;
        let mut ok = true;
        for r in results {
            match r {
                Ok(t) => last = last.max(t),
                Err(e) => {
                    ok = false;
                    println!("  change {i} ({key}): {e}");
                }
            }
        }
        if !ok {
            failures += 1;
            continue;
        }
        let d = last - committed;
        total.push(d);
        to_watch.push(seen_at.saturating_duration_since(committed));
        by_kind
            .entry(key.split('/').next().unwrap_or("").to_string())
            .or_default()
            .push(d);
    }
    let (p50, p99, max) = percentiles(&mut total);
    println!(
        "{} single-key changes ({} failed): etcd commit -> last affected entry readable on every affected switch: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        total.len(),
        failures
    );
    let (w50, w99, wmax) = percentiles(&mut to_watch);
    println!(
        "  of which commit -> controller's config watch published it: p50 {w50:.1} ms, p99 {w99:.1} ms, max {wmax:.1} ms"
    );
    for (kind, mut v) in by_kind {
        let (a, b, c) = percentiles(&mut v);
        println!(
            "  {kind}: {} changes, p50 {a:.1} ms, p99 {b:.1} ms, max {c:.1} ms",
            v.len()
        );
    }
    println!("load average {}", load_average());
    let _ = stop_tx.send(());
    let _ = ctl.await;
    drop(watch);
    drop(lab);
    drop(etcd);
    Ok(())
}
