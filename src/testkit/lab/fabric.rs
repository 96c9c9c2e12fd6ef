//! A whole fabric of bmv2 switches built from a configuration: the demo's
//! and the end-to-end tests' lab.
//!
//! - one `Bmv2Switch` per configured switch, on the configured gRPC address
//!   and device id (or free ports), with a veth pair per port it uses;
//! - every configured link joins the far ends of its two ports inside a
//!   "wires" namespace with a tc mirred redirect each way, so a link is cut
//!   by taking the far ends down: bmv2 sees carrier loss on that port only
//!   (docs/lab.md: never admin-down the end bmv2 reads);
//! - one namespace per configured host: the far end of its edge port becomes
//!   its `eth0` (static MAC, addresses with the VLAN prefix, default routes
//!   via the VLAN gateways, static neighbours, IPv6 DAD off). Hosts on a
//!   LAG or on a VLAN their port carries tagged go through a user-space
//!   bond/tagger (`bond`), since the kernel has neither driver.
//!
//! Dropping a `LabFabric` removes all of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::bond::{HostLeg, UserBond};
use super::lacp_partner::{LacpPartner, PartnerConfig};
use super::netns::offloads_off;
use super::reach::{Probe, ProbeResult};
use super::{unique_tag, Bmv2Switch, Netns, SwitchOptions};
pub use crate::compile::reach::{attachment_ports, host_tagged};
use crate::config::{Attachment, Fabric, Host, LacpRate, LagMode, PortNum, PortRef};
use crate::net::MacAddr;

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Start every switch on a free port instead of its configured address
    /// (then read the addresses back with `addresses`).
    pub free_ports: bool,
    /// Host namespaces are named `<prefix><host>`.
    pub host_ns_prefix: String,
    /// A bmv2 JSON to start with; `None`: the controller pushes it.
    pub json: Option<PathBuf>,
    /// Hosts resolve the gateway and each other with real ARP / ND
    /// (the fabric's responder); `false`: permanent neighbour entries, so
    /// only forwarding is exercised.
    pub resolve_neighbors: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            free_ports: false,
            host_ns_prefix: "p4f-".into(),
            json: None,
            resolve_neighbors: false,
        }
    }
}

pub struct LabFabric {
    // Drop order matters: forwarders close their sockets first, then host
    // namespaces go, then the switches (process + veths), then the wires.
    bonds: Vec<UserBond>,
    hosts: BTreeMap<String, Netns>,
    /// Hosts added with `add_host`: their ports' interfaces, in order.
    extra_hosts: BTreeMap<String, (Host, Vec<String>)>,
    opts: LabOptions,
    switches: BTreeMap<String, Bmv2Switch>,
    wires: Netns,
    /// Link name -> the two far ends (in `wires`).
    links: BTreeMap<String, [String; 2]>,
}

/// Every port of `switch` the lab must create: fabric ports, link ends,
/// edge ports and LAG members.
pub fn switch_ports(fabric: &Fabric, switch: &str) -> Vec<PortNum> {
    let mut ports: BTreeSet<PortNum> = BTreeSet::new();
    if let Some(sw) = fabric.switches.get(switch) {
        ports.extend(&sw.fabric_ports);
    }
    let mine = |p: &PortRef| (p.switch == switch).then_some(p.port);
    ports.extend(
        fabric
            .links
            .values()
            .flat_map(|l| [&l.a, &l.b])
            .filter_map(mine),
    );
    ports.extend(fabric.ports.keys().filter_map(mine));
    ports.extend(
        fabric
            .lags
            .values()
            .flat_map(|l| &l.members)
            .filter_map(mine),
    );
    ports.into_iter().collect()
}

impl LabFabric {
    pub fn start(fabric: &Fabric, opts: &LabOptions) -> Result<LabFabric> {
        let tag = unique_tag();
        let wires = Netns::create(&format!("p4w{tag}"))?;
        // Interfaces moved in take the namespace defaults: keep the kernel
        // from sending router solicitations and DAD probes into switches.
        wires.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        let mut lab = LabFabric {
            bonds: Vec::new(),
            hosts: BTreeMap::new(),
            extra_hosts: BTreeMap::new(),
            opts: opts.clone(),
            switches: BTreeMap::new(),
            wires,
            links: BTreeMap::new(),
        };
        for (name, sw) in &fabric.switches {
            let s = Bmv2Switch::start_at(
                SwitchOptions {
                    device_id: sw.device_id,
                    ports: switch_ports(fabric, name),
                    json: opts.json.clone(),
                },
                (!opts.free_ports).then(|| sw.address.clone()),
            )
            .with_context(|| format!("starting bmv2 for {name} on {}", sw.address))?;
            lab.switches.insert(name.clone(), s);
        }
        for (name, link) in &fabric.links {
            let a = lab.move_to_wires(&link.a)?;
            let b = lab.move_to_wires(&link.b)?;
            for (from, to) in [(&a, &b), (&b, &a)] {
                let w = &lab.wires;
                w.exec("tc", &["qdisc", "add", "dev", from, "ingress"])?;
                // u32 "match anything": the lab kernel has no matchall.
                w.exec(
                    "tc",
                    &[
                        "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
                        "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
                        to,
                    ],
                )
                .with_context(|| format!("wiring link {name}"))?;
            }
            lab.links.insert(name.clone(), [a, b]);
        }
        lab.start_hosts(fabric, &tag)?;
        Ok(lab)
    }

    /// Moves the far end of `port` into the wires namespace, up.
    fn move_to_wires(&self, port: &PortRef) -> Result<String> {
        let (sw, far) = self.far_end(port)?;
        sw.hosts
            .ip(&["link", "set", &far, "netns", &self.wires.name])?;
        offloads_off(&self.wires, &far);
        self.wires.ip(&["link", "set", &far, "mtu", "9000", "up"])?;
        Ok(far)
    }

    fn far_end(&self, port: &PortRef) -> Result<(&Bmv2Switch, String)> {
        let sw = self
            .switches
            .get(&port.switch)
            .with_context(|| format!("{port}: no switch {}", port.switch))?;
        let far = sw
            .far_ifname(port.port)
            .with_context(|| format!("{port}: port not created"))?
            .to_string();
        Ok((sw, far))
    }

    fn start_hosts(&mut self, fabric: &Fabric, tag: &str) -> Result<()> {
        let opts = self.opts.clone();
        // Hosts sharing an attachment, or tagged on it, need the forwarder.
        let mut per_attachment: BTreeMap<&Attachment, Vec<&str>> = BTreeMap::new();
        for (name, h) in &fabric.hosts {
            per_attachment.entry(&h.attachment).or_default().push(name);
        }
        let mut uplinks_moved: BTreeSet<PortRef> = BTreeSet::new();
        for (i, (att, names)) in per_attachment.iter().enumerate() {
            let direct = matches!(att, Attachment::Port(_))
                && names.len() == 1
                && !host_tagged(fabric, &fabric.hosts[names[0]]);
            let mut legs = Vec::new();
            for name in names {
                let h = &fabric.hosts[*name];
                let ns = self.host_netns(name)?;
                if let (true, Attachment::Port(p)) = (direct, att) {
                    let (sw, far) = self.far_end(p)?;
                    sw.hosts.ip(&["link", "set", &far, "netns", &ns.name])?;
                    ns.ip(&["link", "set", &far, "name", "eth0"])?;
                } else {
                    let leg = format!("b{tag}{i}{}", legs.len());
                    self.wires.ip(&[
                        "link", "add", &leg, "type", "veth", "peer", "name", "eth0", "netns",
                        &ns.name,
                    ])?;
                    offloads_off(&self.wires, &leg);
                    self.wires.ip(&["link", "set", &leg, "up"])?;
                    legs.push(HostLeg {
                        socket: self.wires.packet_socket(&leg)?,
                        mac: h.mac,
                        vlan: h.vlan,
                        tagged: host_tagged(fabric, h),
                    });
                }
                configure_host(&ns, "eth0", fabric, h, !opts.resolve_neighbors)
                    .with_context(|| format!("host {name}"))?;
                self.hosts.insert(name.to_string(), ns);
            }
            if !direct {
                let (ports, _) = attachment_ports(fabric, &fabric.hosts[names[0]]);
                let mut uplinks = Vec::new();
                for p in ports {
                    if !uplinks_moved.insert(p.clone()) {
                        bail!("{p} serves two attachments");
                    }
                    let far = self.move_to_wires(&p)?;
                    uplinks.push(self.wires.packet_socket(&far)?);
                }
                let (label, lacp) = match att {
                    Attachment::Port(p) => (p.to_string(), None),
                    Attachment::Lag(l) => (l.clone(), fabric.lags.get(l).and_then(lacp_partner)),
                };
                self.bonds
                    .push(UserBond::start(&label, uplinks, legs, lacp));
            }
        }
        Ok(())
    }

    /// A new host namespace `<prefix><name>`, DAD and router solicitations
    /// off.
    fn host_netns(&self, name: &str) -> Result<Netns> {
        let ns_name = format!("{}{name}", self.opts.host_ns_prefix);
        let ns = Netns::create(&ns_name).with_context(|| {
            format!("namespace {ns_name} for host {name} (left over from an earlier run? ip netns del {ns_name})")
        })?;
        ns.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.default.router_solicitations=0",
            ],
        )?;
        Ok(ns)
    }

    /// Adds a host the configuration does not list (the fabric has to
    /// learn it): a namespace `<prefix><name>` owning the far ends of
    /// `ports` (untagged edge ports no configured host uses) as `p0`,
    /// `p1`, ... It starts on `ports[0]`; `move_host` moves it. Its
    /// neighbours are always resolved with real ARP / ND.
    pub fn add_host(
        &mut self,
        fabric: &Fabric,
        name: &str,
        host: &Host,
        ports: &[PortRef],
    ) -> Result<()> {
        if self.hosts.contains_key(name) {
            bail!("host {name} exists");
        }
        let ns = self.host_netns(name)?;
        let mut ifaces = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let (sw, far) = self.far_end(p)?;
            let ifname = format!("p{i}");
            sw.hosts.ip(&["link", "set", &far, "netns", &ns.name])?;
            ns.ip(&["link", "set", &far, "name", &ifname])?;
            offloads_off(&ns, &ifname);
            ifaces.push(ifname);
        }
        let first = ifaces.first().context("a host needs a port")?.clone();
        configure_host(&ns, &first, fabric, host, false).with_context(|| format!("host {name}"))?;
        self.hosts.insert(name.to_string(), ns);
        self.extra_hosts
            .insert(name.to_string(), (host.clone(), ifaces));
        Ok(())
    }

    /// Moves an `add_host` host to its `to`-th port, like a VM migrating:
    /// the old port loses carrier (its far end goes down), the host's MAC,
    /// addresses and routes come up on the new one. Nothing is announced:
    /// the fabric finds the host at its first packet (Linux keeps
    /// neighbours per interface, so that is usually an ARP request or NS).
    pub fn move_host(&self, fabric: &Fabric, name: &str, to: usize) -> Result<()> {
        let (Some(ns), Some((host, ifaces))) = (self.hosts.get(name), self.extra_hosts.get(name))
        else {
            bail!("no added host {name}");
        };
        let target = ifaces
            .get(to)
            .with_context(|| format!("{name} has no port {to}"))?;
        for i in ifaces.iter().filter(|i| *i != target) {
            ns.ip(&["addr", "flush", "dev", i])?;
            ns.ip(&["link", "set", i, "down"])?;
        }
        configure_host(ns, target, fabric, host, false)
    }

    /// The user-space bond serving LAG `lag` (or port `leaf/port`).
    pub fn bond(&self, name: &str) -> Option<&UserBond> {
        self.bonds.iter().find(|b| b.name == name)
    }

    /// The namespace of host `name` (`ip netns exec <name> ...`).
    pub fn host_ns(&self, name: &str) -> Option<&Netns> {
        self.hosts.get(name)
    }

    pub fn switch(&self, name: &str) -> Option<&Bmv2Switch> {
        self.switches.get(name)
    }

    /// For kill / restart_same_address.
    pub fn switch_mut(&mut self, name: &str) -> Option<&mut Bmv2Switch> {
        self.switches.get_mut(name)
    }

    /// Switch name -> the gRPC address it really listens on.
    pub fn addresses(&self) -> BTreeMap<String, String> {
        self.switches
            .iter()
            .map(|(n, s)| (n.clone(), s.grpc_addr.clone()))
            .collect()
    }

    /// Points `fabric`'s switches at the lab's: the gRPC address each
    /// really listens on and its port-event socket.
    pub fn wire_config(&self, fabric: &mut Fabric) {
        for (name, s) in &self.switches {
            if let Some(sw) = fabric.switches.get_mut(name) {
                sw.address = s.grpc_addr.clone();
                sw.port_events = Some(s.port_events());
            }
        }
    }

    /// Cuts a configured link: both ends lose carrier.
    pub fn cut_link(&self, name: &str) -> Result<()> {
        self.set_link(name, false)
    }

    pub fn restore_link(&self, name: &str) -> Result<()> {
        self.set_link(name, true)
    }

    fn set_link(&self, name: &str, up: bool) -> Result<()> {
        let ends = self
            .links
            .get(name)
            .with_context(|| format!("no link {name}"))?;
        for e in ends {
            self.wires
                .ip(&["link", "set", e, if up { "up" } else { "down" }])?;
        }
        Ok(())
    }

    /// Carrier loss (or back) on an edge port: its far end goes down,
    /// wherever it lives (the wires namespace for bond uplinks, the
    /// switch's far-end namespace for unused ports). Not for ports a host
    /// namespace owns (`move_host` does that).
    pub fn set_edge_carrier(&self, port: &PortRef, up: bool) -> Result<()> {
        let (sw, far) = self.far_end(port)?;
        let state = if up { "up" } else { "down" };
        self.wires
            .ip(&["link", "set", &far, state])
            .or_else(|_| sw.hosts.ip(&["link", "set", &far, state]))
            .with_context(|| format!("{port}: far end {far} not in the wires or switch namespace"))
    }

    /// One `ping -c1 -W1` from host `from` to `ip`.
    pub fn ping(&self, from: &str, ip: IpAddr) -> Result<bool> {
        let ns = self
            .hosts
            .get(from)
            .with_context(|| format!("no host {from}"))?;
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "ping", "-c1", "-W1", "-q"])
            .arg(ip.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running ping")?;
        Ok(out.success())
    }

    /// Carrier loss (or back) on an edge port or LAG member whose far end
    /// the lab moved into the wires namespace (a bond uplink): the host
    /// side sees the leg down, bmv2 sees carrier loss.
    pub fn set_edge_link(&self, port: &PortRef, up: bool) -> Result<()> {
        let (_, far) = self.far_end(port)?;
        self.wires
            .ip(&["link", "set", &far, if up { "up" } else { "down" }])
    }

    /// A server "reboot": host `name`'s `eth0` goes down for `down_for`,
    /// comes back and is configured again (addresses, routes, neighbours
    /// the kernel dropped with the link). For a host cabled straight to a
    /// switch port, that port sees carrier loss meanwhile.
    pub fn reboot_host(&self, fabric: &Fabric, name: &str, down_for: Duration) -> Result<()> {
        let ns = self
            .hosts
            .get(name)
            .with_context(|| format!("no host {name}"))?;
        let h = fabric
            .hosts
            .get(name)
            .with_context(|| format!("host {name} not configured"))?;
        ns.ip(&["link", "set", "eth0", "down"])?;
        std::thread::sleep(down_for);
        configure_host(ns, "eth0", fabric, h, !self.opts.resolve_neighbors)
    }
}

impl LabFabric {
    /// Runs every probe as a real ping (16 at a time; a failed one is
    /// retried once, so a cold first packet does not count as an outage).
    pub fn ping_all(&self, probes: &[Probe]) -> Vec<ProbeResult> {
        let mut out = Vec::new();
        for chunk in probes.chunks(16) {
            std::thread::scope(|s| {
                let running: Vec<_> = chunk
                    .iter()
                    .map(|p| {
                        s.spawn(move || match self.ping(&p.from, p.ip) {
                            Ok(false) => self.ping(&p.from, p.ip),
                            r => r,
                        })
                    })
                    .collect();
                for (p, h) in chunk.iter().zip(running) {
                    let r = match h.join() {
                        Ok(Ok(true)) => Ok(()),
                        Ok(Ok(false)) => Err("no reply (ping -c1 -W1, twice)".to_string()),
                        Ok(Err(e)) => Err(format!("{e:#}")),
                        Err(_) => Err("ping thread panicked".to_string()),
                    };
                    out.push((p.clone(), r));
                }
            });
        }
        out
    }
}

impl Drop for LabFabric {
    fn drop(&mut self) {
        self.bonds.clear();
        self.hosts.clear();
        self.switches.clear();
        // `wires` drops last, with whatever far ends remain in it.
    }
}

/// The LACP partner a lab bond runs for an LACP LAG (`None`: static).
fn lacp_partner(lag: &crate::config::Lag) -> Option<LacpPartner> {
    if lag.protocol != LagMode::Lacp {
        return None;
    }
    let [hi, lo] = lag.id.to_be_bytes();
    let cfg = PartnerConfig {
        system: MacAddr([0x02, 0x1a, 0xc9, 0, hi, lo]),
        system_priority: 65535,
        key: 1,
        fast: lag.lacp.rate == LacpRate::Fast,
    };
    let macs: Vec<MacAddr> = (0..lag.members.len())
        .map(|i| MacAddr([0x02, 0x1a, 0xc9, (i + 1) as u8, hi, lo]))
        .collect();
    Some(LacpPartner::new(cfg, &macs, std::time::Instant::now()))
}

/// Addresses, routes and (with `static_neighbors`) permanent neighbours
/// of a host's interface `dev`.
fn configure_host(
    ns: &Netns,
    dev: &str,
    fabric: &Fabric,
    h: &Host,
    static_neighbors: bool,
) -> Result<()> {
    let mac = h.mac.to_string();
    ns.ip(&["link", "set", dev, "address", &mac])?;
    offloads_off(ns, dev);
    ns.exec(
        "sysctl",
        &[
            "-qw",
            &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
            &format!("net.ipv6.conf.{dev}.accept_dad=0"),
            // Lab hosts have static routes; router solicitations (repeated
            // with backoff for minutes) would re-teach an aged-out host.
            &format!("net.ipv6.conf.{dev}.router_solicitations=0"),
        ],
    )?;
    ns.ip(&["link", "set", dev, "mtu", "1500", "up"])?;
    let vlan = fabric.vlans.get(&h.vlan);
    let v4 = vlan.and_then(|v| v.ipv4_gateway);
    let v6 = vlan.and_then(|v| v.ipv6_gateway);
    let gw_mac = vlan
        .and_then(|v| v.gateway_mac)
        .unwrap_or(fabric.settings.gateway_mac)
        .to_string();
    for ip in &h.ips {
        let (len, extra) = match ip {
            IpAddr::V4(_) => (v4.map_or(32, |n| n.prefix_len()), None),
            IpAddr::V6(_) => (v6.map_or(128, |n| n.prefix_len()), Some("nodad")),
        };
        let addr = format!("{ip}/{len}");
        let mut args = vec!["addr", "replace", addr.as_str(), "dev", dev];
        args.extend(extra);
        ns.ip(&args)?;
    }
    // Static neighbours for the gateway and the VLAN's other hosts keep
    // the demo about forwarding, not about address resolution.
    let mut neigh: Vec<(String, String)> = Vec::new();
    if let Some(g) = v4.filter(|_| h.ips.iter().any(|i| i.is_ipv4())) {
        ns.ip(&["route", "replace", "default", "via", &g.addr().to_string()])?;
        neigh.push((g.addr().to_string(), gw_mac.clone()));
    }
    if let Some(g) = v6.filter(|_| h.ips.iter().any(|i| i.is_ipv6())) {
        ns.ip(&[
            "-6",
            "route",
            "replace",
            "default",
            "via",
            &g.addr().to_string(),
        ])?;
        neigh.push((g.addr().to_string(), gw_mac.clone()));
    }
    if !static_neighbors {
        return Ok(());
    }
    for other in fabric.hosts.values() {
        if other.vlan == h.vlan && other.mac != h.mac {
            for ip in &other.ips {
                neigh.push((ip.to_string(), other.mac.to_string()));
            }
        }
    }
    for (ip, mac) in neigh {
        ns.ip(&[
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "nud",
            "permanent",
            "dev",
            dev,
        ])?;
    }
    Ok(())
}
