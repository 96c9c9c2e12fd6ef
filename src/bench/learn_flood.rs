//! `p4fabric bench learn-flood`: what a MAC flood from one edge port costs
//! the control plane, with discovery, the status writer and real etcd on.
//!
//! The fabric (the embedded example or `--fabric`) runs on in-process
//! switches whose cables carry discovery probes (its `links:` are the
//! cabling; the configuration the controller gets has none, so every
//! fabric path exists because discovery keeps hearing the link). One edge
//! port then sends `--sources` new source MACs in `--secs` seconds, each a
//! learn digest plus a punted ARP request claiming an address of the
//! port's subnet, as a flooding host does on bmv2. Measured throughout:
//! fabric link state changes in `status/links/` (any is a failure of the
//! control plane), the controller's answer time to a bystander's ARP
//! request every 50 ms (how long its loop stalls), learned hosts in
//! `status/hosts/`, and the etcd revisions (writes) status cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use p4runtime_proto::v1 as p4;
use tokio::sync::{mpsc, oneshot, watch};

use super::{cpu_time, machine, percentiles};
use crate::compile::names::reason;
use crate::config::etcd::{EtcdOptions, EtcdStore};
use crate::config::status::{ControllerStatus, StatusWriter};
use crate::config::watch::ConfigUpdate;
use crate::config::{ConfigState, PortRef};
use crate::controller::{Controller, ControllerOptions};
use crate::net::MacAddr;
use crate::protocols::frames::{build_eth, parse_eth, Arp, ARP_REPLY, ARP_REQUEST};
use crate::testkit::cables;
use crate::testkit::sim::SimSwitch;
use crate::testkit::EtcdServer;

const EXAMPLE: &str = include_str!("../../examples/fabric.yaml");

#[derive(Debug, clap::Args)]
pub struct LearnFloodArgs {
    /// New source MACs the flooding port sends.
    #[arg(long, default_value_t = 5000)]
    pub sources: u32,
    /// Seconds the flood lasts.
    #[arg(long, default_value_t = 9)]
    pub secs: u64,
    /// Seconds measured after the flood.
    #[arg(long, default_value_t = 20)]
    pub after_secs: u64,
    /// The flooding edge port (an access port with an IPv4 gateway).
    #[arg(long, default_value = "leaf1/3")]
    pub port: PortRef,
    /// The bystander whose ARP requests time the controller's loop (a
    /// configured host on another port).
    #[arg(long, default_value = "vm5")]
    pub bystander: String,
    /// A fabric file (its `links:` are the cabling); the example otherwise.
    #[arg(long)]
    pub fabric: Option<std::path::PathBuf>,
}

pub async fn run(args: &LearnFloodArgs) -> anyhow::Result<()> {
    let text = match &args.fabric {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?,
        None => EXAMPLE.to_string(),
    };
    let kvs = crate::config::keys::document_to_raw(&text).context("fabric file")?;
    let (mut fabric, errors) = ConfigState::new().reset(kvs);
    if !errors.is_empty() {
        bail!("fabric file has errors: {errors:?}");
    }
    let cabling: Vec<(PortRef, PortRef)> = fabric
        .links
        .values()
        .map(|l| (l.a.clone(), l.b.clone()))
        .collect();
    if cabling.is_empty() {
        bail!("the fabric file names no links: they are the cabling here");
    }
    fabric.links.clear();
    let vlan = fabric
        .ports
        .get(&args.port)
        .and_then(|p| p.vlans.member_vlans().first().copied())
        .context("the flooding port has no VLAN")?;
    let subnet = fabric
        .vlans
        .get(&vlan)
        .and_then(|v| v.ipv4_gateway)
        .context("the flooding port's VLAN has no IPv4 gateway")?;
    let by = fabric
        .hosts
        .get(&args.bystander)
        .context("no such bystander host")?
        .clone();
    let (by_port, by_ip, by_gw) = match (
        &by.attachment,
        by.ips.iter().find_map(|i| match i {
            std::net::IpAddr::V4(a) => Some(*a),
            _ => None,
        }),
    ) {
        (crate::config::Attachment::Port(p), Some(ip)) => {
            let gw = fabric
                .vlans
                .get(&by.vlan)
                .and_then(|v| v.ipv4_gateway)
                .context("the bystander's VLAN has no IPv4 gateway")?;
            (p.clone(), ip, gw.addr())
        }
        _ => bail!("the bystander must sit on a port and have an IPv4 address"),
    };

    let etcd = EtcdServer::start()
        .await
        .map_err(|e| anyhow::anyhow!("etcd: {e}"))?;
    let store = EtcdOptions::new([etcd.endpoint()]).connect().await?;
    let me = ControllerStatus::this_process("bench");
    let status = Arc::new(StatusWriter::start(&store, &me, Duration::from_secs(10)).await?);

    let mut targets = Vec::new();
    for (name, sw) in fabric.switches.iter_mut() {
        let t = SimSwitch::start(sw.device_id).await?;
        sw.address = t.addr().to_string();
        targets.push((name.clone(), t));
    }
    let targets = Arc::new(targets);
    let mut opts = ControllerOptions::new("bench");
    opts.simulated = true;
    let (pipeline, _) = crate::compile::contract::simulation_pipeline(&opts.pipeline_dir);
    let reg = pipeline.registry.clone();
    let (others_tx, mut others_rx) = mpsc::unbounded_channel();
    let wires = cables::wire(
        targets.clone(),
        reg.clone(),
        cabling.clone(),
        Some(others_tx),
    );
    println!(
        "learn-flood: {} switches (in-process), {} cables carrying discovery, etcd status on; {} sources from {} in {} s; {}",
        targets.len(),
        cabling.len(),
        args.sources,
        args.port,
        args.secs,
        machine()
    );

    let (_cfg_tx, cfg_rx) = watch::channel(ConfigUpdate {
        revision: 1,
        fabric: Arc::new(fabric.clone()),
        errors: Default::default(),
        generation: 1,
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let ctl = tokio::spawn(
        Controller::new(opts, cfg_rx, Some(status.clone())).run(async {
            let _ = stop_rx.await;
        }),
    );

    // Every link discovered and reported up before the flood.
    let want_up = cabling.len() * 2;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = links(&store).await?.values().filter(|u| **u).count();
        if up == want_up {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {up} of {want_up} link ends up after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("all {want_up} link ends up; flooding");

    // Link watcher: every change of a link end's state in status.
    let (links_stop_tx, mut links_stop_rx) = oneshot::channel::<()>();
    let watcher_store = store.clone();
    let watcher = tokio::spawn(async move {
        let mut last = links(&watcher_store).await.unwrap_or_default();
        let mut changes: Vec<(Duration, String, bool)> = Vec::new();
        let t0 = Instant::now();
        loop {
            tokio::select! {
                _ = &mut links_stop_rx => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let Ok(now) = links(&watcher_store).await else {
                continue;
            };
            for (k, up) in &now {
                if last.get(k) != Some(up) {
                    changes.push((t0.elapsed(), k.clone(), *up));
                }
            }
            for k in last.keys().filter(|k| !now.contains_key(*k)) {
                changes.push((t0.elapsed(), k.clone(), false));
            }
            last = now;
        }
        changes
    });

    let rev0 = revision(&store).await?;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let flood_end = start + Duration::from_secs(args.secs);
    let end = flood_end + Duration::from_secs(args.after_secs);
    let target = |n: &str| targets.iter().find(|(x, _)| x == n).map(|(_, t)| t);
    let flooder = target(&args.port.switch).context("flooding switch")?;
    let by_switch = target(&by_port.switch).context("bystander switch")?;
    let gap = Duration::from_secs_f64(args.secs as f64 / f64::from(args.sources.max(1)));
    let mut sent = 0u32;
    let mut next_send = start;
    let mut next_probe = start;
    let mut probe_sent: Option<Instant> = None;
    let mut during = Vec::new();
    let mut after = Vec::new();
    let mut lost_probes = 0u32;
    let mut max_learned = 0usize;
    let mut next_count = start;
    let net = subnet;
    let hosts_in_net = u32::try_from(net.hosts().count())
        .unwrap_or(u32::MAX)
        .max(1);
    while Instant::now() < end {
        let now = Instant::now();
        // The flood, paced.
        while sent < args.sources && next_send <= now {
            let i = sent;
            let mac = MacAddr([0x02, 0xf1, 0x00, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let ip = std::net::Ipv4Addr::from(
                u32::from(net.network()) + 1 + (i.wrapping_mul(2_654_435_761) % hosts_in_net),
            );
            if let Some(d) =
                cables::learn_digest(&reg, vlan, mac.as_u64(), args.port.port, u64::from(i))
            {
                flooder.send_to_primary(p4::stream_message_response::Update::Digest(d));
            }
            let req = Arp {
                op: ARP_REQUEST,
                sender_mac: mac,
                sender_ip: ip,
                target_mac: MacAddr([0; 6]),
                target_ip: std::net::Ipv4Addr::from(u32::from(ip) ^ 1),
            };
            let frame = build_eth(MacAddr::BROADCAST, mac, None, 0x0806, &req.encode());
            flooder.send_to_primary(p4::stream_message_response::Update::Packet(
                cables::packet_in(&reg, frame, args.port.port, reason::ARP),
            ));
            sent += 1;
            next_send += gap;
        }
        // The bystander's ARP request, one at a time.
        if probe_sent.is_none() && next_probe <= now {
            let req = Arp {
                op: ARP_REQUEST,
                sender_mac: by.mac,
                sender_ip: by_ip,
                target_mac: MacAddr([0; 6]),
                target_ip: by_gw,
            };
            let frame = build_eth(MacAddr::BROADCAST, by.mac, None, 0x0806, &req.encode());
            by_switch.send_to_primary(p4::stream_message_response::Update::Packet(
                cables::packet_in(&reg, frame, by_port.port, reason::ARP),
            ));
            probe_sent = Some(now);
        }
        while let Ok((sw, out, seen)) = others_rx.try_recv() {
            let answered = sw == by_port.switch
                && parse_eth(&out.payload)
                    .and_then(|e| Arp::parse(e.payload))
                    .is_some_and(|a| a.op == ARP_REPLY && a.target_mac == by.mac);
            if let (true, Some(t)) = (answered, probe_sent) {
                let rtt = seen.saturating_duration_since(t);
                if t < flood_end {
                    during.push(rtt);
                } else {
                    after.push(rtt);
                }
                probe_sent = None;
                next_probe = t + Duration::from_millis(50);
            }
        }
        if let Some(t) = probe_sent {
            if now.saturating_duration_since(t) > Duration::from_secs(2) {
                lost_probes += 1;
                probe_sent = None;
                next_probe = now;
            }
        }
        if next_count <= now {
            max_learned = max_learned.max(learned(&store).await.unwrap_or(0));
            next_count = now + Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cpu = cpu_time().saturating_sub(cpu0);
    let revs = revision(&store).await?.saturating_sub(rev0);
    let _ = links_stop_tx.send(());
    let changes = watcher.await.unwrap_or_default();
    let learned_end = learned(&store).await?;
    let _ = stop_tx.send(());
    let _ = ctl.await;
    wires.abort();

    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} sources in {:.1} s; learned hosts in status: at most {max_learned} (sampled each second), {learned_end} at the end",
        args.secs
    );
    println!(
        "link state changes in status/links: {} {}",
        changes.len(),
        if changes.is_empty() {
            "(none: discovery kept every link)".to_string()
        } else {
            format!(
                "FIRST: {}",
                changes
                    .iter()
                    .take(6)
                    .map(|(t, k, up)| format!(
                        "{:.1}s {k} {}",
                        t.as_secs_f64(),
                        if *up { "up" } else { "down" }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for (what, samples) in [
        ("during the flood", &mut during),
        ("after the flood", &mut after),
    ] {
        let n = samples.len();
        let max = samples.iter().max().copied().unwrap_or_default();
        let (p50, p99, _) = percentiles(samples);
        println!(
            "bystander ARP answer {what}: {n} samples, p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
            max.as_secs_f64() * 1000.0
        );
    }
    println!("bystander ARP requests unanswered after 2 s: {lost_probes}");
    println!(
        "etcd revisions (status writes) during the run: {revs} ({:.0}/s); process CPU {:.1} s over {elapsed:.1} s",
        revs as f64 / elapsed,
        cpu.as_secs_f64()
    );
    Ok(())
}

/// Every link end in `status/links/` and whether it is up.
async fn links(store: &EtcdStore) -> anyhow::Result<std::collections::BTreeMap<String, bool>> {
    let d = store.get_dir("status/links/").await?;
    Ok(d.kvs
        .into_iter()
        .map(|(k, v)| {
            let up = serde_json::from_slice::<serde_json::Value>(&v)
                .ok()
                .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(|s| s == "up"))
                .unwrap_or(false);
            (k, up)
        })
        .collect())
}

async fn learned(store: &EtcdStore) -> anyhow::Result<usize> {
    let d = store.get_dir("status/hosts/").await?;
    Ok(d.kvs
        .values()
        .filter(|v| {
            serde_json::from_slice::<serde_json::Value>(v)
                .ok()
                .and_then(|v| v.get("learned").and_then(|l| l.as_bool()))
                == Some(true)
        })
        .count())
}

async fn revision(store: &EtcdStore) -> anyhow::Result<i64> {
    Ok(store.get_dir("status/").await?.revision)
}
