//! `p4fabric trace --from HOST --to HOST`: "why can't A reach B?".
//!
//! Reads the entities *installed* on every switch (not what the controller
//! meant to install) and walks them with the forwarding checker, hop by
//! hop, to where the frame is delivered, punted or dropped — and why. Each
//! switch is read with the P4Info it says it runs (any target, any build:
//! mid-upgrade switches run two), on configured port numbers (a Tofino
//! switch's port map applied back).
//!
//! The walk needs the fabric as the controller sees it, not as configured:
//! links discovery found (a fabric without `links:` has no other), ports
//! down, and hosts learned from traffic. These come from the leader's
//! status keys (`status/observed`, `status/hosts/`); with a file
//! configuration, or no controller running, the configuration alone is used
//! and the trace says so.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::EtcdArgs;
use crate::compile::check::{first_hop_mac, Checker, DataPlane, Frame, Outcome};
use crate::compile::HostEntry;
use crate::config::keys::{controller_owned, STATUS_DIR};
use crate::config::{Attachment, ConfigState, Fabric, Host, PortRef, VlanMode};
use crate::controller::observations;
use crate::net::MacAddr;
use crate::p4rt::{Client, ClientOptions, P4InfoRegistry, Pipeline, SwitchEntities};
use crate::topo::{FloodTree, ObservedState, Topology};

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Source host: a `hosts/` name, or the MAC or IP address of a
    /// configured or learned host.
    #[arg(long)]
    pub from: String,
    /// Destination host, as `--from`.
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

/// The fabric as the controller sees it: the configuration in force plus
/// what the leader published about links, ports and learned hosts.
#[derive(Debug, Default)]
pub struct SeenFabric {
    pub fabric: Fabric,
    pub observed: ObservedState,
    pub flood_tree: Option<FloodTree>,
    pub learned: Vec<HostEntry>,
    /// Whether a controller's `status/observed` was found (else the
    /// configuration alone describes the links).
    pub from_controller: bool,
}

impl SeenFabric {
    /// The configuration and the status keys of one etcd snapshot (paths
    /// relative to the prefix). Keys the controller owns (status,
    /// election) are not configuration and are never reported as rejected.
    pub fn from_snapshot(kvs: BTreeMap<String, Vec<u8>>) -> (SeenFabric, Vec<String>) {
        let mut status = BTreeMap::new();
        let mut config = BTreeMap::new();
        for (k, v) in kvs {
            if let Some(path) = k.strip_prefix(STATUS_DIR) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&v) {
                    status.insert(path.to_string(), v);
                }
            } else if !controller_owned(&k) {
                config.insert(k, v);
            }
        }
        let (fabric, errors) = ConfigState::new().reset(config);
        let (observed, flood_tree, learned) = observations::from_status(&status);
        let seen = SeenFabric {
            fabric,
            observed,
            flood_tree,
            learned: learned.into_values().collect(),
            from_controller: status.contains_key(crate::config::status::paths::OBSERVED),
        };
        (seen, errors.iter().map(|e| e.to_string()).collect())
    }

    /// The topology the controller compiles with.
    pub fn topology(&self) -> Topology {
        Topology::build(&self.fabric, &self.observed, self.flood_tree.as_ref())
    }

    /// A host by configured name, or by the MAC or IP address of a
    /// configured or learned host. A MAC or IP that names several hosts
    /// (one MAC in two VLANs, one IP in two VRFs) is refused, listing them.
    pub fn find_host(&self, query: &str) -> anyhow::Result<(String, Host)> {
        if let Some(h) = self.fabric.hosts.get(query) {
            return Ok((query.to_string(), h.clone()));
        }
        let mac: Option<MacAddr> = query.parse().ok();
        let ip: Option<IpAddr> = query.parse().ok();
        if mac.is_none() && ip.is_none() {
            bail!("no host {query:?}: not a configured host name, nor a MAC or IP address");
        }
        let matches = |m: &MacAddr, ips: &[IpAddr]| {
            mac.is_some_and(|x| x == *m) || ip.is_some_and(|x| ips.contains(&x))
        };
        let mut found: Vec<(String, Host)> = self
            .fabric
            .hosts
            .iter()
            .filter(|(_, h)| matches(&h.mac, &h.ips))
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect();
        for h in self.learned.iter().filter(|h| matches(&h.mac, &h.ips)) {
            // A configured host always wins over a learned one of the same
            // MAC in the same VLAN (the controller never learns it).
            if found
                .iter()
                .any(|(_, c)| c.mac == h.mac && c.vlan == h.vlan)
            {
                continue;
            }
            let host = Host {
                mac: h.mac,
                vlan: h.vlan,
                ips: h.ips.clone(),
                attachment: h.attachment.clone(),
            };
            found.push((format!("learned {} in vlan {}", h.mac, h.vlan), host));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => bail!("no configured or learned host has the address {query}"),
            _ => bail!(
                "{query} names {} hosts: {}; give a host name",
                found.len(),
                found
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The configuration in force and the controller's observations, from a
/// file (no observations) or etcd. Rejected keys are printed as notes.
pub async fn load_seen(config: &Option<PathBuf>, etcd: &EtcdArgs) -> anyhow::Result<SeenFabric> {
    let (seen, errors) = match config {
        Some(path) => {
            let (fabric, errors) = crate::config::file::FileStore::new(path)
                .load_now()?
                .fabric();
            let errors = errors.iter().map(|e| e.to_string()).collect();
            (
                SeenFabric {
                    fabric,
                    ..Default::default()
                },
                errors,
            )
        }
        None => {
            let store = etcd.connect().await?;
            SeenFabric::from_snapshot(store.get_dir("").await?.kvs)
        }
    };
    for e in &errors {
        eprintln!("note: key rejected, last good value used: {e}");
    }
    Ok(seen)
}

/// Reads every switch back. Switches that cannot be read are reported and
/// left empty (a trace through them shows drops there).
pub async fn read_fabric(
    fabric: &Fabric,
    pipeline_dir: &std::path::Path,
) -> BTreeMap<String, SwitchEntities> {
    let mut out = BTreeMap::new();
    for (name, sw) in &fabric.switches {
        let entities = read_switch(name, sw, pipeline_dir).await;
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

/// What one switch holds, on configured port numbers. Decoded with the
/// P4Info the switch says it runs (mid-upgrade a switch may run another
/// build than `pipeline_dir`'s, with other ids), else with the build in
/// `pipeline_dir` for the switch's target; device ports mapped back
/// through the switch's port map (Tofino).
async fn read_switch(
    name: &str,
    sw: &crate::config::Switch,
    pipeline_dir: &std::path::Path,
) -> anyhow::Result<SwitchEntities> {
    let target = crate::target::for_switch(name, sw)?;
    // Reads need no arbitration: election id 0, no stream opened.
    let mut opts = ClientOptions::new(&sw.address, sw.device_id, 0);
    opts.connect_timeout = Duration::from_secs(2);
    let client = Client::connect(opts).await?;
    let registry = match client.pipeline_p4info().await {
        Ok(Some((p4info, _))) => std::sync::Arc::new(P4InfoRegistry::new(p4info)?),
        Ok(None) => bail!("the switch runs no pipeline"),
        Err(e) => {
            eprintln!(
                "note: {name} does not say which P4Info it runs ({e}); using {}",
                pipeline_dir.display()
            );
            Pipeline::load_for(pipeline_dir, &sw.pipeline, target.as_ref())?.registry
        }
    };
    let (read, strays) =
        crate::target::read_configured(&client, &registry, Some(target.as_ref())).await?;
    if let (n @ 1.., Some(first)) = strays {
        eprintln!("warning: {name} holds {n} entities on device ports outside its port map (first: device port {first}); shown as read");
    }
    Ok(crate::p4rt::intern::unshared(&read))
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

/// One way into the fabric for the source's frames, and where they went.
#[derive(Debug)]
pub struct PathTrace {
    pub ingress: PortRef,
    pub frame: Frame,
    pub trace: crate::compile::check::Trace,
    /// Some outcome delivers the frame to the destination.
    pub reached: bool,
}

/// A whole trace: every ingress of the source (each member of its LAG).
#[derive(Debug)]
pub struct TraceReport {
    pub from: String,
    pub to: String,
    /// The destination's MAC and the ports it is reached through.
    pub to_mac: MacAddr,
    pub to_ports: Vec<PortRef>,
    pub paths: Vec<PathTrace>,
}

impl TraceReport {
    /// Every path reaches the destination, and none is dropped or loops.
    pub fn ok(&self) -> bool {
        !self.paths.is_empty()
            && self.paths.iter().all(|p| {
                p.reached
                    && p.trace
                        .outcomes
                        .iter()
                        .all(|o| !matches!(o, Outcome::Dropped { .. } | Outcome::Loop { .. }))
            })
    }
}

/// Traces `from` -> `to` through `installed` (what the switches hold) on
/// `topo`: the frame a host sends (to the peer's MAC in one VLAN, to its
/// gateway's MAC when routed), from every port the source may use.
pub fn trace_hosts<D: DataPlane>(
    fabric: &Fabric,
    topo: &Topology,
    installed: &D,
    (from_name, from): (&str, &Host),
    (to_name, to): (&str, &Host),
    ipv6: bool,
) -> anyhow::Result<TraceReport> {
    let dst_ip = pick_ip(to, ipv6);
    let same_vlan = from.vlan == to.vlan;
    // Routed: the host sends to its gateway's (anycast) MAC.
    let dst_mac = first_hop_mac(fabric, from, to);
    if !same_vlan && dst_ip.is_none() {
        bail!(
            "{to_name} has no {} address to route to",
            if ipv6 { "IPv6" } else { "IPv4" }
        );
    }
    let targets = ingress_ports(fabric, to);
    let checker = Checker::new(installed, topo);
    let mut paths = Vec::new();
    for (port, tag) in ingress_ports(fabric, from) {
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
        let trace = checker.trace(&port, frame.clone());
        let reached = trace.outcomes.iter().any(|o| {
            matches!(o, Outcome::Delivered { port, frame }
                if targets.iter().any(|(p, _)| p == port) && frame.dst == to.mac)
        });
        paths.push(PathTrace {
            ingress: port,
            frame,
            trace,
            reached,
        });
    }
    Ok(TraceReport {
        from: from_name.to_string(),
        to: to_name.to_string(),
        to_mac: to.mac,
        to_ports: targets.into_iter().map(|(p, _)| p).collect(),
        paths,
    })
}

impl fmt::Display for TraceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.paths {
            writeln!(
                f,
                "{} -> {} entering at {} ({}):",
                self.from,
                self.to,
                p.ingress,
                describe(&p.frame)
            )?;
            for hop in &p.trace.hops {
                writeln!(f, "  {} -> {}  label {}", hop.from, hop.to, hop.label)?;
            }
            if p.trace.branched {
                writeln!(
                    f,
                    "  (through a selector: each outcome below is one alternative)"
                )?;
            }
            for o in &p.trace.outcomes {
                match o {
                    Outcome::Delivered { port, frame } => {
                        let ok = frame.dst == self.to_mac && self.to_ports.contains(port);
                        writeln!(
                            f,
                            "  delivered out of {port} [{}]{}",
                            describe(frame),
                            if ok {
                                "  <- reaches the destination"
                            } else {
                                ""
                            }
                        )?;
                    }
                    Outcome::Punted { switch, reason } => writeln!(
                        f,
                        "  punted to the controller on {switch} (reason {reason})"
                    )?,
                    Outcome::Dropped { switch, reason } => {
                        writeln!(f, "  DROPPED on {switch}: {reason}")?
                    }
                    Outcome::Loop { switch } => {
                        writeln!(f, "  LOOP: still in the fabric at {switch}")?
                    }
                }
            }
            if !p.reached {
                writeln!(f, "  => does NOT reach {}", self.to)?;
            }
        }
        Ok(())
    }
}

pub async fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let seen = load_seen(&args.config, &args.etcd).await?;
    if !seen.from_controller {
        eprintln!(
            "note: no controller status found: links are taken from the configuration only \
             (discovered links, ports down and learned hosts are unknown)"
        );
    }
    let (from_name, from) = seen
        .find_host(&args.from)
        .with_context(|| format!("--from {}", args.from))?;
    let (to_name, to) = seen
        .find_host(&args.to)
        .with_context(|| format!("--to {}", args.to))?;
    let dir = args
        .pipeline_dir
        .clone()
        .unwrap_or_else(Pipeline::default_dir);
    let installed = read_fabric(&seen.fabric, &dir).await;
    let topo = seen.topology();
    let report = trace_hosts(
        &seen.fabric,
        &topo,
        &installed,
        (&from_name, &from),
        (&to_name, &to),
        args.ipv6,
    )?;
    print!("{report}");
    if report.ok() {
        println!("OK: every path from {from_name} reaches {to_name}");
        Ok(())
    } else {
        bail!("{from_name} cannot (always) reach {to_name}")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{self, Hosts};
    use crate::topo::LinkId;

    /// The example fabric's keys, with or without its `links:`.
    fn example_kvs(with_links: bool) -> BTreeMap<String, Vec<u8>> {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fabric.yaml"))
                .expect("example");
        let mut kvs = crate::config::keys::document_to_raw(&text).expect("example parses");
        if !with_links {
            kvs.retain(|k, _| !k.starts_with("links/"));
        }
        kvs
    }

    /// What discovery finds on the example's cabling: every leaf's port 1
    /// to spine1, port 2 to spine2.
    fn cabling() -> ObservedState {
        let mut o = ObservedState::default();
        for leaf in 1..=4u32 {
            for spine in 1..=2u32 {
                o.discovered.insert(
                    LinkId::new(
                        PortRef::new(format!("leaf{leaf}"), spine),
                        PortRef::new(format!("spine{spine}"), leaf),
                    ),
                    true,
                );
            }
        }
        o
    }

    fn status_kvs(observed: &ObservedState, learned: &[HostEntry]) -> BTreeMap<String, Vec<u8>> {
        let o = crate::config::status::ObservedStatus {
            links: observed
                .discovered
                .iter()
                .map(|(id, seen)| (id.0.clone(), id.1.clone(), *seen))
                .collect(),
            ..Default::default()
        };
        let mut kvs = BTreeMap::new();
        kvs.insert(
            "status/observed".to_string(),
            serde_json::to_vec(&o).unwrap(),
        );
        for h in learned {
            let v = crate::config::status::HostStatus {
                attachment: h.attachment.clone(),
                ips: h.ips.clone(),
                learned: true,
                last_seen: 1,
            };
            kvs.insert(
                format!("status/hosts/{}/{}", h.vlan, h.mac),
                serde_json::to_vec(&v).unwrap(),
            );
        }
        kvs
    }

    fn learned_vm() -> HostEntry {
        HostEntry {
            vlan: 30,
            mac: "02:00:00:00:03:99".parse().unwrap(),
            ips: vec!["10.0.30.99".parse().unwrap()],
            attachment: Attachment::Port(PortRef::new("leaf3", 3)),
            learned: true,
        }
    }

    /// The switches hold what the controller compiled from the links it
    /// discovered and the host it learned.
    fn installed(seen: &SeenFabric) -> BTreeMap<String, SwitchEntities> {
        let hosts: Hosts = seen.learned.iter().map(|h| (h.key(), h.clone())).collect();
        compile::compile(&seen.fabric, &seen.topology(), &hosts)
    }

    fn trace(seen: &SeenFabric, from: &str, to: &str, topo: &Topology) -> TraceReport {
        let installed = installed(seen);
        let from = seen.find_host(from).unwrap();
        let to = seen.find_host(to).unwrap();
        trace_hosts(
            &seen.fabric,
            topo,
            &installed,
            (&from.0, &from.1),
            (&to.0, &to.1),
            false,
        )
        .unwrap()
    }

    #[test]
    fn a_fabric_without_configured_links_is_traced_over_the_discovered_ones() {
        let mut kvs = example_kvs(false);
        kvs.extend(status_kvs(&cabling(), &[]));
        // An HA election key is not configuration.
        kvs.insert("election/694d9b3a1c2e".into(), b"ctl-a".to_vec());
        let (seen, errors) = SeenFabric::from_snapshot(kvs);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(seen.from_controller);
        assert!(seen.fabric.links.is_empty());
        // vm1 (leaf1) to srv1 (bond over leaf1 + leaf2, routed) and vm4
        // (leaf4, across a spine).
        for to in ["srv1", "vm4", "vm5"] {
            let r = trace(&seen, "vm1", to, &seen.topology());
            assert!(r.ok(), "vm1 -> {to}:\n{r}");
        }
        // The configuration alone knows no fabric link: the old trace's
        // answer, "DROPPED ... no link", for a flow that works.
        let config_only = Topology::build(&seen.fabric, &ObservedState::default(), None);
        let r = trace(&seen, "vm1", "vm4", &config_only);
        assert!(!r.ok(), "{r}");
        assert!(r.to_string().contains("DROPPED"), "{r}");
    }

    #[test]
    fn a_learned_host_is_traced_by_mac_or_ip() {
        let mut kvs = example_kvs(true);
        kvs.extend(status_kvs(&ObservedState::default(), &[learned_vm()]));
        let (seen, errors) = SeenFabric::from_snapshot(kvs);
        assert!(errors.is_empty(), "{errors:?}");
        for to in ["02:00:00:00:03:99", "10.0.30.99"] {
            let r = trace(&seen, "vm4", to, &seen.topology());
            assert!(r.ok(), "vm4 -> {to}:\n{r}");
            assert_eq!(r.to, "learned 02:00:00:00:03:99 in vlan 30");
        }
        // From the learned host, routed to another VLAN.
        let r = trace(&seen, "10.0.30.99", "vm1", &seen.topology());
        assert!(r.ok(), "{r}");
        // Configured hosts are found by address too.
        assert_eq!(seen.find_host("10.0.10.11").unwrap().0, "vm1");
        assert_eq!(seen.find_host("02:00:00:00:01:01").unwrap().0, "vm1");
    }

    #[test]
    fn unknown_and_ambiguous_hosts_are_refused_with_a_reason() {
        let mut kvs = example_kvs(true);
        // The same MAC learned in two VLANs.
        let mut twin = learned_vm();
        twin.vlan = 10;
        twin.ips = vec!["10.0.10.99".parse().unwrap()];
        kvs.extend(status_kvs(&ObservedState::default(), &[learned_vm(), twin]));
        let (seen, _) = SeenFabric::from_snapshot(kvs);
        let e = seen.find_host("nosuchhost").unwrap_err().to_string();
        assert!(e.contains("not a configured host name"), "{e}");
        let e = seen.find_host("10.9.9.9").unwrap_err().to_string();
        assert!(e.contains("no configured or learned host"), "{e}");
        let e = seen.find_host("02:00:00:00:03:99").unwrap_err().to_string();
        assert!(e.contains("names 2 hosts"), "{e}");
        // Its IPs still tell them apart.
        assert!(seen.find_host("10.0.10.99").is_ok());
    }

    #[test]
    fn without_a_controller_the_configuration_alone_is_used() {
        let (seen, errors) = SeenFabric::from_snapshot(example_kvs(true));
        assert!(errors.is_empty());
        assert!(!seen.from_controller);
        let r = trace(&seen, "vm1", "vm4", &seen.topology());
        assert!(r.ok(), "{r}");
    }
}
