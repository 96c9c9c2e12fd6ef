//! Reachability: which host must reach which address in a fabric
//! (`probes`), and whether a data plane delivers it (`check_probe`: the
//! forwarding checker walks the probe's frame from every port the source
//! may send on). The lab's ping matrix, `p4fabric check`, the simulated
//! demo and the rolling upgrade's verify step all ask the same question.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::check::{Checker, DataPlane, Frame, Outcome};
use crate::config::{Attachment, Fabric, Host, PortRef, VlanMode};
use crate::topo::Topology;

/// "from should reach ip (an address of host to)".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub ip: IpAddr,
}

/// The result of one probe: `Ok` or why not.
pub type ProbeResult = (Probe, Result<(), String>);

fn gateway_of(fabric: &Fabric, h: &Host, v6: bool) -> bool {
    fabric.vlans.get(&h.vlan).is_some_and(|v| {
        if v6 {
            v.ipv6_gateway.is_some()
        } else {
            v.ipv4_gateway.is_some()
        }
    })
}

/// The ports a host is reached through and how its attachment carries
/// VLANs (`None`: an unconfigured port, treated as untagged).
pub fn attachment_ports(fabric: &Fabric, host: &Host) -> (Vec<PortRef>, Option<VlanMode>) {
    match &host.attachment {
        Attachment::Port(p) => (
            vec![p.clone()],
            fabric.ports.get(p).map(|e| e.vlans.clone()),
        ),
        Attachment::Lag(l) => match fabric.lags.get(l) {
            Some(lag) => (lag.members.clone(), Some(lag.vlans.clone())),
            None => (Vec::new(), None),
        },
    }
}

/// Does `host`'s VLAN travel tagged on its attachment?
pub fn host_tagged(fabric: &Fabric, host: &Host) -> bool {
    attachment_ports(fabric, host)
        .1
        .is_some_and(|m| !m.is_untagged(host.vlan))
}

/// Every probe that must succeed: between hosts with an address of the
/// same family, in the same VLAN, or routed between VLANs of one VRF whose
/// subnets both have a gateway of that family.
pub fn probes(fabric: &Fabric) -> Vec<Probe> {
    let mut out = Vec::new();
    for (an, a) in &fabric.hosts {
        for (bn, b) in &fabric.hosts {
            if an == bn {
                continue;
            }
            for ip in &b.ips {
                let v6 = ip.is_ipv6();
                if !a.ips.iter().any(|i| i.is_ipv6() == v6) {
                    continue;
                }
                let ok = if a.vlan == b.vlan {
                    true
                } else {
                    let vrf = |h: &Host| fabric.vlans.get(&h.vlan).map(|v| v.vrf);
                    vrf(a).is_some()
                        && vrf(a) == vrf(b)
                        && gateway_of(fabric, a, v6)
                        && gateway_of(fabric, b, v6)
                };
                if ok {
                    out.push(Probe {
                        from: an.clone(),
                        to: bn.clone(),
                        ip: *ip,
                    });
                }
            }
        }
    }
    out
}

/// Walks the probe's frame through `dp` from every port the source host
/// may send on (every LAG member): each alternative must end at the
/// destination host, addressed to it, tagged as its attachment expects.
pub fn check_probe<D: DataPlane>(
    checker: &Checker<'_, D>,
    fabric: &Fabric,
    p: &Probe,
) -> Result<(), String> {
    let (a_ports, frame) = probe_frame(fabric, p)?;
    let Some(b) = fabric.hosts.get(&p.to) else {
        return Err("unknown host".into());
    };
    let (b_ports, _) = attachment_ports(fabric, b);
    let want_tag = host_tagged(fabric, b).then_some(b.vlan);
    for src in &a_ports {
        let t = checker.trace(src, frame.clone());
        if t.outcomes.is_empty() {
            return Err(format!("from {src}: nothing happened"));
        }
        for o in &t.outcomes {
            match o {
                Outcome::Delivered { port, frame }
                    if b_ports.contains(port) && frame.dst == b.mac && frame.vlan == want_tag => {}
                other => return Err(format!("from {src}: {}", describe(other))),
            }
        }
    }
    Ok(())
}

/// The ports the probe's source host sends on, and its frame.
fn probe_frame(fabric: &Fabric, p: &Probe) -> Result<(Vec<PortRef>, Frame), String> {
    let (Some(a), Some(b)) = (fabric.hosts.get(&p.from), fabric.hosts.get(&p.to)) else {
        return Err("unknown host".into());
    };
    let (a_ports, _) = attachment_ports(fabric, a);
    if a_ports.is_empty() {
        return Err(format!("{} has no port", p.from));
    }
    let frame = Frame {
        dst: super::check::first_hop_mac(fabric, a, b),
        src: a.mac,
        vlan: host_tagged(fabric, a).then_some(a.vlan),
        eth_type: if p.ip.is_ipv6() { 0x86dd } else { 0x0800 },
        ip_dst: Some(p.ip),
        ttl: 64,
    };
    Ok((a_ports, frame))
}

/// The switches the probe's frame is sent to over a fabric link, on any
/// of its alternatives (every source port, every selector member): a
/// switch out of service must be none of them.
pub fn switches_entered<D: DataPlane>(
    checker: &Checker<'_, D>,
    fabric: &Fabric,
    p: &Probe,
) -> BTreeSet<String> {
    let Ok((ports, frame)) = probe_frame(fabric, p) else {
        return BTreeSet::new();
    };
    ports
        .iter()
        .flat_map(|src| checker.trace(src, frame.clone()).hops)
        .map(|h| h.to.switch)
        .collect()
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Delivered { port, frame } => {
            format!(
                "delivered at {port} to {} (vlan {:?})",
                frame.dst, frame.vlan
            )
        }
        Outcome::Punted { switch, reason } => format!("punted at {switch} (reason {reason})"),
        Outcome::Dropped { switch, reason } => format!("dropped at {switch}: {reason}"),
        Outcome::Loop { switch } => format!("looping at {switch}"),
    }
}

/// The checker over every probe (simulated matrix).
pub fn check_all<D: DataPlane>(
    dp: &D,
    topo: &Topology,
    fabric: &Fabric,
    probes: &[Probe],
) -> Vec<ProbeResult> {
    let c = Checker::new(dp, topo);
    probes
        .iter()
        .map(|p| (p.clone(), check_probe(&c, fabric, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Fabric {
        let text = include_str!("../../examples/fabric.yaml");
        serde_yaml::from_str(text).expect("example parses")
    }

    #[test]
    fn example_probes_cover_every_host_pair_of_a_family() {
        let f = example();
        let p = probes(&f);
        // 7 hosts with IPv4 (one address each): 7 * 6 pairs; 3 with IPv6.
        assert_eq!(p.iter().filter(|p| p.ip.is_ipv4()).count(), 42);
        assert_eq!(p.iter().filter(|p| p.ip.is_ipv6()).count(), 6);
        assert!(!p.iter().any(|p| p.from == p.to));
    }
}
