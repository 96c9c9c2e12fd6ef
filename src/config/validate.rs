//! Whole-configuration checks. Every problem names the key it is blamed on
//! and the other keys involved, so the key-by-key state (`state`) can reject
//! just the change responsible and keep the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::keys::{valid_name, ConfigKey};
use super::model::*;
use crate::net::{is_flood_label, MacAddr, MAX_LABEL};

/// MPLS reserves labels 0..=15.
pub const MIN_SWITCH_LABEL: u32 = 16;
/// The largest switch label: the largest MPLS label, 0xFFFFF, ends in hex
/// F and so is a flood label.
pub const MAX_SWITCH_LABEL: u32 = MAX_LABEL - 1;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key the problem is reported on (the dependent one: the host
    /// rather than its missing VLAN, the later of two duplicates).
    pub key: ConfigKey,
    /// Other keys involved, any of which may be the change that broke it.
    pub related: Vec<ConfigKey>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Checks a whole configuration. An empty result means valid.
pub fn validate(f: &Fabric) -> Vec<Problem> {
    let mut v = Validator {
        f,
        scope: None,
        out: Vec::new(),
    };
    v.settings();
    v.switches();
    v.links();
    v.ports();
    v.lags();
    v.vlans();
    v.routes();
    v.hosts();
    v.maintenance();
    v.upgrade();
    v.out
}

/// Checks what changing only the `changed` keys can have broken in a
/// configuration that was valid before: the same problems `validate`
/// finds, at a cost that follows the change rather than the fabric.
///
/// Nothing in the configuration refers to a host or a route, so when only
/// hosts and routes changed, only they are checked (a host also against
/// every other host, for duplicate MACs and addresses). A Neutron binding
/// at 10k hosts and 100k routes is then a few milliseconds, not a
/// whole-fabric check. Any other change checks everything.
pub fn validate_changed(f: &Fabric, changed: &BTreeSet<ConfigKey>) -> Vec<Problem> {
    let local = changed
        .iter()
        .all(|k| matches!(k, ConfigKey::Host(_) | ConfigKey::Route(_)));
    if !local {
        return validate(f);
    }
    let mut v = Validator {
        f,
        scope: Some(changed),
        out: Vec::new(),
    };
    v.routes();
    v.hosts();
    v.out
}

struct Validator<'a> {
    f: &'a Fabric,
    /// Only these keys changed (`validate_changed`); `None`: check all.
    scope: Option<&'a BTreeSet<ConfigKey>>,
    out: Vec<Problem>,
}

impl<'a> Validator<'a> {
    fn in_scope(&self, k: &ConfigKey) -> bool {
        self.scope.is_none_or(|s| s.contains(k))
    }

    fn report(&mut self, key: ConfigKey, related: Vec<ConfigKey>, message: String) {
        self.out.push(Problem {
            key,
            related,
            message,
        });
    }

    /// A maintenance request names a configured switch. (Whether a drain
    /// can be done without loss depends on hosts the fabric learned too:
    /// `controller::maintenance` refuses it there, in status.)
    fn maintenance(&mut self) {
        for name in self.f.maintenance.keys() {
            if !self.f.switches.contains_key(name) {
                self.report(
                    ConfigKey::Maintenance(name.clone()),
                    vec![ConfigKey::Switch(name.clone())],
                    format!("unknown switch {name}"),
                );
            }
        }
    }

    /// An upgrade names a directory and plain labels. (Whether the
    /// pipeline there loads is the controller's to find out: it reports
    /// that in `status/upgrade` and changes nothing.)
    fn upgrade(&mut self) {
        let Some(u) = &self.f.upgrade else {
            return;
        };
        let label_ok = |l: &Option<String>| {
            l.as_ref().is_none_or(|l| {
                !l.is_empty() && l.len() <= 64 && l.chars().all(|c| c.is_ascii_graphic())
            })
        };
        let mut problems = Vec::new();
        if u.pipeline_dir.trim().is_empty() {
            problems.push("pipeline_dir must name a directory".to_string());
        }
        if u.from_dir.as_ref().is_some_and(|d| d.trim().is_empty()) {
            problems.push("from_dir, if given, must name a directory".to_string());
        }
        if !label_ok(&u.version) || !label_ok(&u.from_version) {
            problems
                .push("version labels are 1-64 printable characters without spaces".to_string());
        }
        for p in problems {
            self.report(ConfigKey::Upgrade, vec![], p);
        }
    }

    fn settings(&mut self) {
        let s = &self.f.settings;
        let k = ConfigKey::Settings;
        if s.gateway_mac.is_multicast() || s.gateway_mac == MacAddr::default() {
            self.report(
                k.clone(),
                vec![],
                "gateway_mac must be a unicast, non-zero MAC".into(),
            );
        }
        if s.lacp_system_id.is_multicast() || s.lacp_system_id == MacAddr::default() {
            self.report(
                k.clone(),
                vec![],
                "lacp_system_id must be a unicast, non-zero MAC".into(),
            );
        }
        if s.discovery_interval_ms == 0 || s.discovery_miss_limit == 0 {
            self.report(
                k.clone(),
                vec![],
                "discovery_interval_ms and discovery_miss_limit must be > 0".into(),
            );
        }
        if s.punt_rate_pps == 0 {
            self.report(k.clone(), vec![], "punt_rate_pps must be > 0".into());
        }
        if s.learns_per_port_per_sec == 0 {
            self.report(
                k,
                vec![],
                "learns_per_port_per_sec must be > 0 (to turn learning off on a port, use max_learned_macs)".into(),
            );
        }
    }

    fn switches(&mut self) {
        let mut ids: BTreeMap<u64, &str> = BTreeMap::new();
        let mut labels: BTreeMap<u32, &str> = BTreeMap::new();
        let mut addrs: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, s) in &self.f.switches {
            let k = ConfigKey::Switch(name.clone());
            if !valid_name(name) {
                self.report(k.clone(), vec![], format!("invalid switch name {name:?}"));
            }
            let label = s.label;
            // 0xFFFFF, the largest label, is reported as the flood label it is.
            if !(MIN_SWITCH_LABEL..=MAX_LABEL).contains(&label) {
                self.report(
                    k.clone(),
                    vec![],
                    format!(
                        "label {label} ({label:#x}) outside {MIN_SWITCH_LABEL}..={MAX_SWITCH_LABEL:#x} (0..15 are reserved by MPLS, MPLS labels have 20 bits)"
                    ),
                );
            } else if is_flood_label(label) {
                // Every switch takes such a label for a flood (mpls_in).
                self.report(
                    k.clone(),
                    vec![],
                    format!(
                        "label {label} ({label:#x}) ends in hex F: labels ending in hex F are flood labels ((source LAG id << 4) | 0xF), so no switch may use one"
                    ),
                );
            }
            // The target's settings (format, CPU port, port map,
            // port_events) are checked where they are used.
            if let Err(e) = crate::target::for_switch(name, s) {
                let message = match e {
                    crate::target::TargetError::Config { message, .. } => message,
                    e => e.to_string(),
                };
                self.report(k.clone(), vec![], message);
            }
            if s.address.trim().is_empty() || !s.address.contains(':') {
                self.report(
                    k.clone(),
                    vec![],
                    format!("address {:?} is not host:port", s.address),
                );
            }
            if let Some(mac) = s.mac {
                if mac.is_multicast() || mac == MacAddr::default() {
                    self.report(k.clone(), vec![], format!("mac {mac} is not a unicast MAC"));
                }
            }
            let mut seen = BTreeSet::new();
            for p in &s.fabric_ports {
                if !seen.insert(p) {
                    self.report(k.clone(), vec![], format!("fabric port {p} listed twice"));
                }
            }
            if let Some(other) = ids.insert(s.device_id, name) {
                self.dup(
                    &k,
                    ConfigKey::Switch(other.into()),
                    "device_id",
                    s.device_id,
                );
            }
            if let Some(other) = labels.insert(s.label, name) {
                self.dup(&k, ConfigKey::Switch(other.into()), "label", s.label);
            }
            if let Some(other) = addrs.insert(&s.address, name) {
                self.dup(&k, ConfigKey::Switch(other.into()), "address", &s.address);
            }
        }
    }

    fn dup(&mut self, k: &ConfigKey, other: ConfigKey, what: &str, value: impl fmt::Display) {
        self.report(
            k.clone(),
            vec![other.clone()],
            format!("{what} {value} is also used by {other}"),
        );
    }

    /// Checks that `p` is on a known switch; returns the switch.
    fn port_switch(&mut self, k: &ConfigKey, p: &PortRef, what: &str) -> Option<&'a Switch> {
        let f = self.f;
        match f.switches.get(&p.switch) {
            Some(s) => {
                if !s.port_map.is_empty() && !s.port_map.contains_key(&p.port) {
                    self.report(
                        k.clone(),
                        vec![ConfigKey::Switch(p.switch.clone())],
                        format!(
                            "{what} {p}: port {} is not in port_map of {}",
                            p.port, p.switch
                        ),
                    );
                }
                Some(s)
            }
            None => {
                self.report(
                    k.clone(),
                    vec![ConfigKey::Switch(p.switch.clone())],
                    format!("{what} {p} is on unknown switch {:?}", p.switch),
                );
                None
            }
        }
    }

    fn links(&mut self) {
        let mut ends: BTreeMap<&PortRef, &str> = BTreeMap::new();
        for (name, l) in &self.f.links {
            let k = ConfigKey::Link(name.clone());
            if l.a.switch == l.b.switch {
                self.report(k.clone(), vec![], "link connects a switch to itself".into());
            }
            for end in [&l.a, &l.b] {
                if let Some(s) = self.port_switch(&k, end, "link end") {
                    if !s.fabric_ports.contains(&end.port) {
                        self.report(
                            k.clone(),
                            vec![ConfigKey::Switch(end.switch.clone())],
                            format!("link end {end} is not in fabric_ports of {}", end.switch),
                        );
                    }
                }
                if let Some(other) = ends.insert(end, name) {
                    self.report(
                        k.clone(),
                        vec![ConfigKey::Link(other.into())],
                        format!("port {end} is also an end of links/{other}"),
                    );
                }
            }
        }
    }

    /// VLAN ids of an attachment: in range and configured.
    fn attachment_vlans(&mut self, k: &ConfigKey, mode: &VlanMode) {
        if let VlanMode::Trunk { vlans, native } = mode {
            if vlans.is_empty() && native.is_none() {
                self.report(k.clone(), vec![], "trunk carries no VLAN".into());
            }
        }
        for vlan in mode.member_vlans() {
            if !(1..=4094).contains(&vlan) {
                self.report(k.clone(), vec![], format!("VLAN id {vlan} outside 1..4094"));
            } else if !self.f.vlans.contains_key(&vlan) {
                self.report(
                    k.clone(),
                    vec![ConfigKey::Vlan(vlan)],
                    format!("VLAN {vlan} is not configured (no vlans/{vlan})"),
                );
            }
        }
    }

    fn ports(&mut self) {
        for (p, e) in &self.f.ports {
            let k = ConfigKey::Port(p.clone());
            if let Some(s) = self.port_switch(&k, p, "port") {
                let sk = ConfigKey::Switch(p.switch.clone());
                if s.role == Role::Spine {
                    self.report(
                        k.clone(),
                        vec![sk.clone()],
                        format!("{} is a spine: spines have no edge ports", p.switch),
                    );
                }
                if s.fabric_ports.contains(&p.port) {
                    self.report(
                        k.clone(),
                        vec![sk],
                        format!(
                            "port {p} is a fabric port of {}, not an edge port",
                            p.switch
                        ),
                    );
                }
            }
            self.attachment_vlans(&k, &e.vlans);
        }
    }

    fn lags(&mut self) {
        let mut ids: BTreeMap<u16, &str> = BTreeMap::new();
        let mut member_of: BTreeMap<&PortRef, &str> = BTreeMap::new();
        for (name, l) in &self.f.lags {
            let k = ConfigKey::Lag(name.clone());
            if !valid_name(name) {
                self.report(k.clone(), vec![], format!("invalid LAG name {name:?}"));
            }
            if l.id == 0 {
                self.report(k.clone(), vec![], "LAG id must be 1..=65535".into());
            } else if let Some(other) = ids.insert(l.id, name) {
                self.dup(&k, ConfigKey::Lag(other.into()), "LAG id", l.id);
            }
            if l.members.is_empty() {
                self.report(k.clone(), vec![], "a LAG needs at least one member".into());
            }
            let mut leaves = BTreeSet::new();
            for m in &l.members {
                if let Some(s) = self.port_switch(&k, m, "member") {
                    let sk = ConfigKey::Switch(m.switch.clone());
                    if s.role == Role::Spine {
                        self.report(
                            k.clone(),
                            vec![sk.clone()],
                            format!("member {m} is on a spine: LAGs live on leaves"),
                        );
                    }
                    if s.fabric_ports.contains(&m.port) {
                        self.report(k.clone(), vec![sk], format!("member {m} is a fabric port"));
                    }
                }
                leaves.insert(&m.switch);
                if self.f.ports.contains_key(m) {
                    self.report(
                        k.clone(),
                        vec![ConfigKey::Port(m.clone())],
                        format!("member {m} is also configured as an edge port (ports/{m})"),
                    );
                }
                match member_of.insert(m, name) {
                    Some(other) if other == name => {
                        self.report(k.clone(), vec![], format!("member {m} listed twice"))
                    }
                    Some(other) => self.report(
                        k.clone(),
                        vec![ConfigKey::Lag(other.into())],
                        format!("member {m} is also a member of lags/{other}"),
                    ),
                    None => {}
                }
            }
            if leaves.len() > 2 {
                self.report(
                    k.clone(),
                    vec![],
                    format!(
                        "members span {} switches; a LAG spans at most two leaves",
                        leaves.len()
                    ),
                );
            }
            self.attachment_vlans(&k, &l.vlans);
        }
    }

    fn vlans(&mut self) {
        // (vrf, subnet, vlan) of every gateway, for the overlap check.
        let mut subnets: Vec<(VrfId, IpNet, VlanId)> = Vec::new();
        for (id, v) in &self.f.vlans {
            let k = ConfigKey::Vlan(*id);
            if !(1..=4094).contains(id) {
                self.report(k.clone(), vec![], format!("VLAN id {id} outside 1..4094"));
            }
            if let Some(mac) = v.gateway_mac {
                if mac.is_multicast() || mac == MacAddr::default() {
                    self.report(
                        k.clone(),
                        vec![],
                        format!("gateway_mac {mac} is not unicast"),
                    );
                }
            }
            if let Some(gw) = v.ipv4_gateway {
                let net = gw.trunc();
                if gw.prefix_len() >= 31 {
                    self.report(
                        k.clone(),
                        vec![],
                        format!("ipv4_gateway {gw}: a /31 or /32 leaves no room for hosts"),
                    );
                } else if gw.addr() == net.network() || gw.addr() == gw.broadcast() {
                    self.report(
                        k.clone(),
                        vec![],
                        format!("ipv4_gateway {gw} is the network or broadcast address of {net}, not a host address"),
                    );
                }
                subnets.push((v.vrf, IpNet::V4(net), *id));
            }
            if let Some(gw) = v.ipv6_gateway {
                let net = gw.trunc();
                if gw.prefix_len() >= 127 {
                    self.report(
                        k.clone(),
                        vec![],
                        format!("ipv6_gateway {gw}: prefix too long for a subnet"),
                    );
                } else if gw.addr() == net.network() {
                    self.report(
                        k.clone(),
                        vec![],
                        format!("ipv6_gateway {gw} is the subnet-router anycast address of {net}"),
                    );
                }
                subnets.push((v.vrf, IpNet::V6(net), *id));
            }
        }
        // CIDR blocks either nest or are disjoint: sorted by (vrf, address,
        // length), a block overlaps an earlier one iff one on the stack of
        // enclosing blocks contains it.
        subnets.sort_by_key(|(vrf, net, _)| (*vrf, net.network(), net.prefix_len()));
        let mut stack: Vec<(VrfId, IpNet, VlanId)> = Vec::new();
        for (vrf, net, id) in subnets {
            while let Some((svrf, snet, _)) = stack.last() {
                if *svrf == vrf && snet.contains(&net) {
                    break;
                }
                stack.pop();
            }
            if let Some((_, snet, sid)) = stack.last() {
                self.report(
                    ConfigKey::Vlan(id),
                    vec![ConfigKey::Vlan(*sid)],
                    format!("subnet {net} overlaps {snet} of vlans/{sid} in VRF {vrf}"),
                );
            }
            stack.push((vrf, net, id));
        }
    }

    /// The VLAN (and its subnet) in `vrf` whose subnet holds `ip`.
    fn vlan_for(&self, vrf: VrfId, ip: IpAddr) -> Option<(VlanId, IpNet)> {
        self.f
            .vlans
            .iter()
            .filter(|(_, v)| v.vrf == vrf)
            .find_map(|(id, v)| {
                let nets = [
                    v.ipv4_gateway.map(|g| IpNet::V4(g.trunc())),
                    v.ipv6_gateway.map(|g| IpNet::V6(g.trunc())),
                ];
                nets.into_iter()
                    .flatten()
                    .find(|n| n.contains(&ip))
                    .map(|n| (*id, n))
            })
    }

    fn routes(&mut self) {
        for (name, r) in &self.f.routes {
            let k = ConfigKey::Route(name.clone());
            if !self.in_scope(&k) {
                continue;
            }
            if !valid_name(name) {
                self.report(k.clone(), vec![], format!("invalid route name {name:?}"));
            }
            if r.prefix.trunc() != r.prefix {
                self.report(
                    k.clone(),
                    vec![],
                    format!(
                        "prefix {} has host bits set (did you mean {}?)",
                        r.prefix,
                        r.prefix.trunc()
                    ),
                );
            }
            if r.next_hops.is_empty() {
                self.report(
                    k.clone(),
                    vec![],
                    "a route needs at least one next hop".into(),
                );
            }
            for nh in &r.next_hops {
                if nh.is_ipv4() != matches!(r.prefix, IpNet::V4(_)) {
                    self.report(
                        k.clone(),
                        vec![],
                        format!("next hop {nh} is not of the prefix's address family"),
                    );
                    continue;
                }
                if self.vlan_for(r.vrf, *nh).is_none() {
                    let related = self
                        .f
                        .vlans
                        .iter()
                        .filter(|(_, v)| v.vrf == r.vrf)
                        .map(|(id, _)| ConfigKey::Vlan(*id))
                        .collect();
                    self.report(
                        k.clone(),
                        related,
                        format!(
                            "next hop {nh} is not inside any VLAN subnet of VRF {}",
                            r.vrf
                        ),
                    );
                }
            }
        }
    }

    fn hosts(&mut self) {
        // Every host goes into the duplicate indexes, in name order, so a
        // scoped check blames the same (later) key as a whole one.
        let mut macs: BTreeMap<(VlanId, MacAddr), &str> = BTreeMap::new();
        let mut ips: BTreeMap<(VrfId, IpAddr), &str> = BTreeMap::new();
        for (name, h) in &self.f.hosts {
            let k = ConfigKey::Host(name.clone());
            let checked = self.in_scope(&k);
            if checked {
                self.host(name, &k, h);
            }
            // A host without its VLAN has that problem alone.
            let Some(vlan) = self.f.vlans.get(&h.vlan) else {
                continue;
            };
            if let Some(other) = macs.insert((h.vlan, h.mac), name) {
                let ok = ConfigKey::Host(other.into());
                if checked || self.in_scope(&ok) {
                    self.report(
                        k.clone(),
                        vec![ok],
                        format!("mac {} in VLAN {} is also hosts/{other}", h.mac, h.vlan),
                    );
                }
            }
            for ip in &h.ips {
                if let Some(other) = ips.insert((vlan.vrf, *ip), name) {
                    let ok = ConfigKey::Host(other.into());
                    if checked || self.in_scope(&ok) {
                        self.report(
                            k.clone(),
                            vec![ok],
                            format!("ip {ip} in VRF {} is also hosts/{other}", vlan.vrf),
                        );
                    }
                }
            }
        }
    }

    /// One host's own checks: name, MAC, VLAN, attachment, addresses.
    fn host(&mut self, name: &str, k: &ConfigKey, h: &Host) {
        if !valid_name(name) {
            self.report(k.clone(), vec![], format!("invalid host name {name:?}"));
        }
        if h.mac.is_multicast() || h.mac == MacAddr::default() {
            self.report(
                k.clone(),
                vec![],
                format!("mac {} is not a unicast MAC", h.mac),
            );
        }
        let vk = ConfigKey::Vlan(h.vlan);
        let Some(vlan) = self.f.vlans.get(&h.vlan) else {
            self.report(
                k.clone(),
                vec![vk],
                format!("VLAN {} is not configured", h.vlan),
            );
            return;
        };
        let (ak, mode) = match &h.attachment {
            Attachment::Port(p) => (
                ConfigKey::Port(p.clone()),
                self.f.ports.get(p).map(|e| &e.vlans),
            ),
            Attachment::Lag(l) => (
                ConfigKey::Lag(l.clone()),
                self.f.lags.get(l).map(|x| &x.vlans),
            ),
        };
        match mode {
            None => self.report(
                k.clone(),
                vec![ak.clone()],
                format!("attachment {ak} is not configured"),
            ),
            Some(m) if !m.member_vlans().contains(&h.vlan) => self.report(
                k.clone(),
                vec![ak.clone(), vk.clone()],
                format!("VLAN {} is not allowed on {ak}", h.vlan),
            ),
            Some(_) => {}
        }
        for ip in &h.ips {
            let in_subnet = [
                vlan.ipv4_gateway.map(IpNet::V4),
                vlan.ipv6_gateway.map(IpNet::V6),
            ]
            .into_iter()
            .flatten()
            .find(|gw| gw.trunc().contains(ip));
            match in_subnet {
                None => self.report(
                    k.clone(),
                    vec![vk.clone()],
                    format!("ip {ip} is not inside a subnet of VLAN {}", h.vlan),
                ),
                Some(gw) if gw.addr() == *ip => self.report(
                    k.clone(),
                    vec![vk.clone()],
                    format!("ip {ip} is the gateway address of VLAN {}", h.vlan),
                ),
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::{assemble, document_to_raw};

    const BASE: &str = r#"
switches:
  leaf1: {address: "127.0.0.1:50001", device_id: 1, role: leaf, label: 101, fabric_ports: [1]}
  leaf2: {address: "127.0.0.1:50002", device_id: 2, role: leaf, label: 102, fabric_ports: [1]}
  spine1: {address: "127.0.0.1:50003", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}
links:
  l1: {a: leaf1/1, b: spine1/1}
  l2: {a: leaf2/1, b: spine1/2}
ports:
  leaf1/3: {mode: access, vlan: 10}
lags:
  bond1: {id: 1, members: [leaf1/5, leaf2/5], mode: trunk, vlans: [10, 20]}
vlans:
  10: {ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {ipv4_gateway: 10.0.20.1/24}
routes:
  default: {prefix: 0.0.0.0/0, next_hops: [10.0.20.254]}
hosts:
  vm1: {mac: "02:00:00:00:00:01", vlan: 10, ips: [10.0.10.5, "2001:db8:10::5"], attachment: {port: leaf1/3}}
  srv1: {mac: "02:00:00:00:00:02", vlan: 20, ips: [10.0.20.5], attachment: {lag: bond1}}
"#;

    /// The problems of `BASE` with the entries of the YAML `patch` added or
    /// replaced, as "key: message" strings.
    fn problems(patch: &str) -> Vec<String> {
        let mut raw = document_to_raw(BASE).unwrap();
        raw.extend(document_to_raw(patch).unwrap());
        let items: Vec<_> = raw
            .iter()
            .map(|(k, v)| {
                let k = ConfigKey::parse(k).unwrap();
                let item = k.decode(v).unwrap();
                (k, item)
            })
            .collect();
        let f = assemble(items.iter().map(|(k, v)| (k, v)));
        validate(&f).iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn base_is_valid() {
        assert_eq!(problems(""), Vec::<String>::new());
        // The same subnet in another VRF is fine.
        assert_eq!(
            problems("vlans: {30: {vrf: 1, ipv4_gateway: 10.0.20.1/24}}"),
            Vec::<String>::new()
        );
    }

    /// Switch labels: 16..=0xFFFFE, never ending in hex F (flood labels).
    /// The old flood range 0xF0000.. is fine now where it does not.
    #[test]
    fn switch_labels_stay_off_flood_labels() {
        let leaf1 = |label: u32| {
            problems(&format!(
                "switches: {{leaf1: {{address: '127.0.0.1:50001', device_id: 1, role: leaf, label: {label}, fabric_ports: [1]}}}}"
            ))
        };
        for ok in [16, 0x6E, 0x70, 0xEFFFE, 0xF0000, 0xF0001, 0xFFFF0, 0xFFFFE] {
            assert_eq!(leaf1(ok), Vec::<String>::new(), "{ok:#x}");
        }
        for flood in [0x1F, 0x6F, 0xEFFFF, 0xF000F, 0xFFFFF] {
            let p = leaf1(flood);
            assert!(
                p.len() == 1
                    && p[0].starts_with(&format!(
                        "switches/leaf1: label {flood} ({flood:#x}) ends in hex F"
                    ))
                    && p[0].contains("flood labels"),
                "{flood:#x}: {p:#?}"
            );
        }
        for outside in [0, 15, 0x10_0000, u32::MAX] {
            let p = leaf1(outside);
            assert!(
                p.len() == 1 && p[0].contains("outside 16..=0xffffe"),
                "{outside:#x}: {p:#?}"
            );
        }
    }

    /// A Tofino leaf with a port map beside the bmv2 base.
    const TOFINO: &str =
        "switches: {leaf3: {address: '127.0.0.1:50009', device_id: 9, role: leaf, label: 109, \
        target: tofino, cpu_port: 320, fabric_ports: [1], port_events: 'gnmi://127.0.0.1:9339', \
        port_map: {1: 132, 3: {device_port: 140, name: '3/0'}, 5: 148}}}";

    #[test]
    fn tofino_switches_and_port_maps() {
        assert_eq!(problems(TOFINO), Vec::<String>::new());
        let with = |extra: &str| problems(&format!("{TOFINO}\n{extra}"));
        assert_eq!(
            with("ports: {leaf3/3: {mode: access, vlan: 10}}\nlags: {bond2: {id: 2, members: [leaf3/5], mode: access, vlan: 10}}"),
            Vec::<String>::new()
        );
        let cases = [
            (
                "ports: {leaf3/4: {mode: access, vlan: 10}}",
                "ports/leaf3/4",
                "port leaf3/4: port 4 is not in port_map of leaf3",
            ),
            (
                "lags: {bond2: {id: 2, members: [leaf3/6], mode: access, vlan: 10}}",
                "lags/bond2",
                "member leaf3/6: port 6 is not in port_map",
            ),
            (
                "links: {l3: {a: leaf3/2, b: spine1/3}}",
                "links/l3",
                "link end leaf3/2: port 2 is not in port_map",
            ),
        ];
        for (patch, key, needle) in cases {
            let p = with(patch);
            assert!(
                p.iter()
                    .any(|s| s.starts_with(&format!("{key}: ")) && s.contains(needle)),
                "{patch}\nexpected `{key}: ...{needle}...` in {p:#?}"
            );
        }
        let switch = |fields: &str| {
            problems(&format!(
                "switches: {{leaf3: {{address: '127.0.0.1:50009', device_id: 9, role: leaf, label: 109, {fields}}}}}"
            ))
        };
        for (fields, needle) in [
            ("target: tofino", "needs cpu_port"),
            (
                "target: tofino2, cpu_port: 0, port_map: {1: 4, 2: 4}",
                "both map to device port 4",
            ),
            (
                "target: tofino, cpu_port: 320, port_events: 'thrift://127.0.0.1:9090'",
                "no bmv2 Thrift",
            ),
            (
                "target: tofino, cpu_port: 320, device_config: bmv2_json",
                "bmv2_json is for bmv2",
            ),
            ("device_config: stratum_bfrt", "bmv2 takes"),
            ("port_map: {1: 4}", "for Tofino"),
            ("port_events: 'gnmi://nohost'", "gnmi://HOST:PORT"),
        ] {
            let p = switch(fields);
            assert!(
                p.iter()
                    .any(|s| s.starts_with("switches/leaf3: ") && s.contains(needle)),
                "{fields}\nexpected `switches/leaf3: ...{needle}...` in {p:#?}"
            );
        }
    }

    #[test]
    fn each_problem_is_reported_on_its_key() {
        let leaf = |name: &str, id: u32, label: u32, addr: u32| {
            format!("switches: {{{name}: {{address: '127.0.0.1:{addr}', device_id: {id}, role: leaf, label: {label}, fabric_ports: [1]}}}}")
        };
        let cases: Vec<(String, &str, &str)> = vec![
            (leaf("leaf2", 1, 102, 50002), "switches/leaf2", "device_id 1"),
            (leaf("leaf2", 2, 101, 50002), "switches/leaf2", "label 101"),
            (leaf("leaf2", 2, 102, 50001), "switches/leaf2", "address"),
            (leaf("leaf1", 1, 15, 50001), "switches/leaf1", "label 15"),
            (leaf("leaf1", 1, 0x6F, 50001), "switches/leaf1", "label 111 (0x6f) ends in hex F"),
            (leaf("leaf1", 1, 0xFFFFF, 50001), "switches/leaf1", "are flood labels"),
            (leaf("leaf1", 1, 0x10_0000, 50001), "switches/leaf1", "label 1048576 (0x100000) outside 16..=0xffffe"),
            ("ports: {leaf9/3: {mode: access, vlan: 10}}".into(), "ports/leaf9/3", "unknown switch"),
            ("ports: {leaf1/1: {mode: access, vlan: 10}}".into(), "ports/leaf1/1", "fabric port"),
            ("ports: {spine1/7: {mode: access, vlan: 10}}".into(), "ports/spine1/7", "spine"),
            ("ports: {leaf1/3: {mode: access, vlan: 4095}}".into(), "ports/leaf1/3", "outside 1..4094"),
            ("ports: {leaf1/3: {mode: access, vlan: 30}}".into(), "ports/leaf1/3", "VLAN 30 is not configured"),
            ("ports: {leaf1/3: {mode: trunk, vlans: []}}".into(), "ports/leaf1/3", "no VLAN"),
            ("links: {l1: {a: leaf1/1, b: spine9/1}}".into(), "links/l1", "unknown switch"),
            ("links: {l1: {a: leaf1/1, b: spine1/4}}".into(), "links/l1", "not in fabric_ports"),
            ("links: {l2: {a: leaf2/1, b: spine1/1}}".into(), "links/l2", "also an end of links/l1"),
            ("lags: {bond1: {id: 0, members: [leaf1/5], mode: access, vlan: 10}}".into(), "lags/bond1", "1..=65535"),
            ("lags: {bond2: {id: 1, members: [leaf1/6], mode: access, vlan: 10}}".into(), "lags/bond2", "LAG id 1"),
            ("lags: {bond2: {id: 2, members: [leaf1/5], mode: access, vlan: 10}}".into(), "lags/bond2", "also a member of lags/bond1"),
            ("lags: {bond2: {id: 2, members: [leaf1/3], mode: access, vlan: 10}}".into(), "lags/bond2", "edge port"),
            ("lags: {bond2: {id: 2, members: [spine1/9], mode: access, vlan: 10}}".into(), "lags/bond2", "spine"),
            ("lags: {bond2: {id: 2, members: [leaf1/1], mode: access, vlan: 10}}".into(), "lags/bond2", "fabric port"),
            (
                format!("{}\nlags: {{bond1: {{id: 1, members: [leaf1/5, leaf2/5, leaf3/5], mode: access, vlan: 10}}}}", leaf("leaf3", 9, 109, 50009)),
                "lags/bond1",
                "at most two leaves",
            ),
            ("vlans: {10: {ipv4_gateway: 10.0.10.0/24}}".into(), "vlans/10", "network or broadcast"),
            ("vlans: {10: {ipv4_gateway: 10.0.10.255/24}}".into(), "vlans/10", "network or broadcast"),
            ("vlans: {10: {ipv4_gateway: 10.0.10.1/31}}".into(), "vlans/10", "no room"),
            ("vlans: {10: {ipv6_gateway: '2001:db8::/64'}}".into(), "vlans/10", "anycast"),
            ("vlans: {20: {ipv4_gateway: 10.0.0.1/16}}".into(), "vlans/10", "overlaps 10.0.0.0/16 of vlans/20"),
            ("vlans: {0: {}}".into(), "vlans/0", "outside"),
            ("vlans: {30: {gateway_mac: '01:00:5e:00:00:01'}}".into(), "vlans/30", "not unicast"),
            ("routes: {default: {prefix: 0.0.0.0/0, next_hops: [192.168.1.1]}}".into(), "routes/default", "not inside any VLAN subnet"),
            ("routes: {default: {prefix: 10.1.0.1/16, next_hops: [10.0.20.254]}}".into(), "routes/default", "host bits"),
            ("routes: {default: {prefix: 0.0.0.0/0, next_hops: ['2001:db8:10::9']}}".into(), "routes/default", "address family"),
            ("routes: {default: {prefix: 0.0.0.0/0, next_hops: []}}".into(), "routes/default", "at least one"),
            ("hosts: {vm1: {mac: '02:00:00:00:00:01', vlan: 30, attachment: {port: leaf1/3}}}".into(), "hosts/vm1", "VLAN 30 is not configured"),
            ("hosts: {vm1: {mac: '02:00:00:00:00:01', vlan: 20, attachment: {port: leaf1/3}}}".into(), "hosts/vm1", "not allowed on ports/leaf1/3"),
            ("hosts: {vm1: {mac: '02:00:00:00:00:01', vlan: 10, attachment: {lag: bond9}}}".into(), "hosts/vm1", "lags/bond9 is not configured"),
            ("hosts: {vm1: {mac: '02:00:00:00:00:01', vlan: 10, attachment: {port: leaf1/4}}}".into(), "hosts/vm1", "ports/leaf1/4 is not configured"),
            ("hosts: {vm1: {mac: '02:00:00:00:00:01', vlan: 10, ips: [10.0.20.9], attachment: {port: leaf1/3}}}".into(), "hosts/vm1", "not inside a subnet"),
            ("hosts: {vm1: {mac: '02:00:00:00:00:01', vlan: 10, ips: [10.0.10.1], attachment: {port: leaf1/3}}}".into(), "hosts/vm1", "gateway address"),
            ("hosts: {vm1: {mac: 'ff:ff:ff:ff:ff:ff', vlan: 10, attachment: {port: leaf1/3}}}".into(), "hosts/vm1", "unicast"),
            ("hosts: {vm2: {mac: '02:00:00:00:00:01', vlan: 10, attachment: {port: leaf1/3}}}".into(), "hosts/vm2", "also hosts/vm1"),
            ("hosts: {vm2: {mac: '02:00:00:00:00:09', vlan: 10, ips: [10.0.10.5], attachment: {port: leaf1/3}}}".into(), "hosts/vm2", "ip 10.0.10.5 in VRF 0 is also hosts/vm1"),
            ("settings: {gateway_mac: '00:00:00:00:00:00'}".into(), "settings", "gateway_mac"),
            ("settings: {discovery_interval_ms: 0}".into(), "settings", "discovery_interval_ms"),
            ("settings: {learns_per_port_per_sec: 0}".into(), "settings", "learns_per_port_per_sec"),
        ];
        for (patch, key, needle) in cases {
            let p = problems(&patch);
            assert!(
                p.iter()
                    .any(|s| s.starts_with(&format!("{key}: ")) && s.contains(needle)),
                "{patch}\nexpected `{key}: ...{needle}...` in {p:#?}"
            );
        }
    }
}
