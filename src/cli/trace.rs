//! `p4fabric trace --from HOST --to HOST`: "why can't A reach B?".
//!
//! Reads the entities *installed* on every switch (not what the controller
//! meant to install) and walks them with the forwarding checker, hop by
//! hop, to where the frame is delivered, punted or dropped — and why.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::EtcdArgs;
use crate::compile::check::{Checker, Frame, Outcome};
use crate::config::keys::STATUS_DIR;
use crate::config::{Attachment, ConfigState, Fabric, Host, PortRef, VlanMode};
use crate::p4rt::{read_all, Client, ClientOptions, Pipeline, SwitchEntities};
use crate::topo::{ObservedState, Topology};

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Source host (a `hosts/` name).
    #[arg(long)]
    pub from: String,
    /// Destination host (a `hosts/` name).
    #[arg(long)]
    pub to: String,
    /// Trace IPv6 instead of IPv4 (when the hosts have both).
    #[arg(long)]
    pub ipv6: bool,
    /// Read the configuration from this file instead of etcd.
    #[arg(long = "config", short = 'f', conflicts_with = "endpoints")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[arg(long)]
    pub pipeline_dir: Option<PathBuf>,
}

/// The configuration in force, from a file or etcd.
pub async fn load_fabric(config: &Option<PathBuf>, etcd: &EtcdArgs) -> anyhow::Result<Fabric> {
    let (fabric, errors) = match config {
        Some(path) => crate::config::file::FileStore::new(path)
            .load_now()?
            .fabric(),
        None => {
            let store = etcd.connect().await?;
            let mut snap = store.get_dir("").await?;
            snap.kvs.retain(|k, _| !k.starts_with(STATUS_DIR));
            ConfigState::new().reset(snap.kvs)
        }
    };
    for e in &errors {
        eprintln!("note: key rejected, last good value used: {e}");
    }
    Ok(fabric)
}

/// Reads every switch back. Switches that cannot be read are reported and
/// left empty (a trace through them shows drops there).
pub async fn read_fabric(
    fabric: &Fabric,
    pipeline_dir: &std::path::Path,
) -> BTreeMap<String, SwitchEntities> {
    let mut out = BTreeMap::new();
    for (name, sw) in &fabric.switches {
        let entities = async {
            let pipeline = Pipeline::load(pipeline_dir, &sw.pipeline)?;
            // Reads need no arbitration: election id 0, no stream opened.
            let mut opts = ClientOptions::new(&sw.address, sw.device_id, 0);
            opts.connect_timeout = Duration::from_secs(2);
            let client = Client::connect(opts).await?;
            anyhow::Ok(read_all(&client, &pipeline.registry).await?)
        }
        .await;
        match entities {
            Ok(e) => {
                out.insert(name.clone(), e);
            }
            Err(e) => {
                eprintln!("warning: cannot read {name} at {}: {e:#}", sw.address);
                out.insert(name.clone(), SwitchEntities::new());
            }
        }
    }
    out
}

/// Where a host's frames enter the fabric: its port, or every member of its
/// LAG (the server's bond may pick any).
fn ingress_ports(fabric: &Fabric, h: &Host) -> Vec<(PortRef, Option<u16>)> {
    let tag = |mode: &VlanMode| (!mode.is_untagged(h.vlan)).then_some(h.vlan);
    match &h.attachment {
        Attachment::Port(p) => {
            let t = fabric.ports.get(p).and_then(|e| tag(&e.vlans));
            vec![(p.clone(), t)]
        }
        Attachment::Lag(l) => match fabric.lags.get(l) {
            Some(lag) => lag
                .members
                .iter()
                .map(|m| (m.clone(), tag(&lag.vlans)))
                .collect(),
            None => Vec::new(),
        },
    }
}

fn pick_ip(h: &Host, v6: bool) -> Option<IpAddr> {
    h.ips.iter().copied().find(|ip| ip.is_ipv6() == v6)
}

pub async fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let fabric = load_fabric(&args.config, &args.etcd).await?;
    let from = fabric
        .hosts
        .get(&args.from)
        .with_context(|| format!("no host {}", args.from))?;
    let to = fabric
        .hosts
        .get(&args.to)
        .with_context(|| format!("no host {}", args.to))?;
    let dir = args
        .pipeline_dir
        .clone()
        .unwrap_or_else(Pipeline::default_dir);
    let installed = read_fabric(&fabric, &dir).await;
    let topo = Topology::build(&fabric, &ObservedState::default(), None);
    let dst_ip = pick_ip(to, args.ipv6);
    let same_vlan = from.vlan == to.vlan;
    let dst_mac = if same_vlan {
        to.mac
    } else {
        // Routed: the host sends to its gateway's (anycast) MAC.
        fabric
            .vlans
            .get(&from.vlan)
            .and_then(|v| v.gateway_mac)
            .unwrap_or(fabric.settings.gateway_mac)
    };
    if !same_vlan && dst_ip.is_none() {
        bail!(
            "{} has no {} address to route to",
            args.to,
            if args.ipv6 { "IPv6" } else { "IPv4" }
        );
    }
    let targets = ingress_ports(&fabric, to);
    let checker = Checker::new(&installed, &topo);
    let mut all_ok = true;
    for (port, tag) in ingress_ports(&fabric, from) {
        let frame = Frame {
            dst: dst_mac,
            src: from.mac,
            vlan: tag,
            eth_type: match dst_ip {
                Some(IpAddr::V6(_)) => 0x86dd,
                _ => 0x0800,
            },
            ip_dst: dst_ip,
            ttl: 64,
        };
        println!(
            "{} -> {} entering at {port} ({}):",
            args.from,
            args.to,
            describe(&frame)
        );
        let trace = checker.trace(&port, frame);
        for hop in &trace.hops {
            println!("  {} -> {}  label {}", hop.from, hop.to, hop.label);
        }
        if trace.branched {
            println!("  (through a selector: each outcome below is one alternative)");
        }
        for o in &trace.outcomes {
            match o {
                Outcome::Delivered { port, frame } => {
                    let ok = targets.iter().any(|(p, _)| p == port) && frame.dst == to.mac;
                    println!(
                        "  delivered out of {port} [{}]{}",
                        describe(frame),
                        if ok {
                            "  <- reaches the destination"
                        } else {
                            ""
                        }
                    );
                }
                Outcome::Punted { switch, reason } => {
                    println!("  punted to the controller on {switch} (reason {reason})")
                }
                Outcome::Dropped { switch, reason } => {
                    all_ok = false;
                    println!("  DROPPED on {switch}: {reason}");
                }
                Outcome::Loop { switch } => {
                    all_ok = false;
                    println!("  LOOP: still in the fabric at {switch}");
                }
            }
        }
        let reached = trace
            .outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Delivered { port, .. } if targets.iter().any(|(p, _)| p == port)));
        all_ok &= reached;
        if !reached {
            println!("  => does NOT reach {}", args.to);
        }
    }
    if all_ok {
        println!("OK: every path from {} reaches {}", args.from, args.to);
        Ok(())
    } else {
        bail!("{} cannot (always) reach {}", args.from, args.to)
    }
}

fn describe(f: &Frame) -> String {
    let mut s = format!("{} -> {}", f.src, f.dst);
    if let Some(v) = f.vlan {
        s.push_str(&format!(" vlan {v}"));
    }
    if let Some(ip) = f.ip_dst {
        s.push_str(&format!(" to {ip} ttl {}", f.ttl));
    }
    s
}
