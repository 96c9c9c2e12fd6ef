//! The typed configuration model: what the operator (or Neutron) asked the
//! fabric to do. One etcd key holds one of these values as JSON; the key
//! layout lives in `docs/etcd-api.md`.
//!
//! This module only describes; whole-config checks live in `validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::section::Section;
use crate::net::MacAddr;

/// A switch's P4Runtime port number (bmv2: the `-i N@veth` number).
pub type PortNum = u32;
/// A VLAN id, 1..=4094.
pub type VlanId = u16;
/// A virtual routing and forwarding instance; 0 is the default VRF.
pub type VrfId = u16;

/// The whole desired configuration of the fabric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fabric {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub switches: BTreeMap<String, Switch>,
    /// Configured fabric links by name (optional: discovery finds links).
    #[serde(default)]
    pub links: BTreeMap<String, Link>,
    /// Edge ports by `PortRef` ("leaf1/3").
    #[serde(default)]
    pub ports: BTreeMap<PortRef, EdgePort>,
    #[serde(default)]
    pub lags: BTreeMap<String, Lag>,
    #[serde(default)]
    pub vlans: BTreeMap<VlanId, Vlan>,
    /// Static routes by name (shared between versions: `Section`).
    #[serde(default)]
    pub routes: Section<String, Route>,
    /// Static hosts / port bindings by name (a Neutron port id, say;
    /// shared between versions: `Section`).
    #[serde(default)]
    pub hosts: Section<String, Host>,
    /// Maintenance requests by switch name (`p4fabric drain`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub maintenance: BTreeMap<String, Maintenance>,
    /// The fabric's pipeline, rolled out switch by switch (`upgrade`,
    /// `p4fabric upgrade`); none: the controller's `--pipeline-dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<Upgrade>,
}

/// `upgrade`: the pipeline the fabric should run, rolled out one switch at
/// a time (drain, load, verify, undrain; `controller::upgrade`,
/// `docs/operations.md`). The key stays after the roll-out: it names the
/// pipeline the switches run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    /// Directory of the compiled pipeline as the controller sees it (the
    /// layout of `p4/build/`: `<pipeline>.json`, `<pipeline>.p4info.txt`).
    pub pipeline_dir: String,
    /// A label for it (status, `p4fabric status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The pipeline the fabric ran before (the previous `upgrade`'s
    /// directory; none: the controller's `--pipeline-dir`). Switches found
    /// on either are adopted without a push; a switch that must be loaded
    /// afresh (restarted) gets this one until its turn comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// Drain spines even when one is the last in service (its traffic
    /// stops while it reloads). Leaves are always drained, single-homed
    /// hosts or not: their hosts lose service while the leaf reloads.
    #[serde(default)]
    pub force: bool,
}

/// `maintenance/<switch>`: take a switch out of service without losing
/// traffic (drain), or bring it back (the key removed, or `drain: false`).
/// What happens is `controller::maintenance`'s; `docs/operations.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Drain the switch (default `true`).
    #[serde(default = "default_true")]
    pub drain: bool,
    /// Drain even what cannot move: the last spine in service, or a leaf
    /// with hosts attached to it alone (their traffic stops when it goes).
    #[serde(default)]
    pub force: bool,
    /// Why (shown in status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Fabric-wide controller settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The anycast gateway MAC every leaf answers for (unless a VLAN names
    /// its own).
    pub gateway_mac: MacAddr,
    /// The LACP actor system id the whole fabric presents to servers, so a
    /// bond over two leaves sees one partner.
    pub lacp_system_id: MacAddr,
    pub lacp_system_priority: u16,
    /// Learned MAC entries age out after this many seconds without traffic.
    pub mac_aging_secs: u32,
    /// Interval between topology discovery probes on fabric ports.
    pub discovery_interval_ms: u32,
    /// A link unseen for this many intervals is declared down.
    pub discovery_miss_limit: u32,
    /// Punted packets per second the switch lets through to the controller.
    pub punt_rate_pps: u32,
    /// Port security: most MACs the fabric learns on one edge port or LAG
    /// (a port or LAG may override it); further sources are not learned
    /// until some age out. 0: no limit.
    pub max_learned_macs_per_port: u32,
    /// New MACs learned per second and edge port (learning digests and
    /// ARP/ND senders alike), so one port cannot use the whole learning
    /// budget; the rest are refused and learned on a later frame (> 0).
    pub learns_per_port_per_sec: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gateway_mac: MacAddr([0x02, 0x00, 0x00, 0xfa, 0xb0, 0x01]),
            lacp_system_id: MacAddr([0x02, 0x00, 0x00, 0xfa, 0xb0, 0x02]),
            lacp_system_priority: 32768,
            mac_aging_secs: 300,
            discovery_interval_ms: 1000,
            discovery_miss_limit: 3,
            punt_rate_pps: 1000,
            max_learned_macs_per_port: 1000,
            learns_per_port_per_sec: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leaf,
    Spine,
}

/// What kind of switch runs the pipeline (`src/target` holds what differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// bmv2 `simple_switch_grpc`.
    #[default]
    Bmv2,
    /// Tofino 1 (Intel SDE `bf_switchd` or Stratum `stratum_bfrt`).
    Tofino,
    /// Tofino 2.
    Tofino2,
}

/// How a switch's P4Runtime server takes the compiled pipeline (the
/// `p4_device_config` of SetForwardingPipelineConfig), named by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceConfigFormat {
    /// bmv2: the JSON p4c-bm2-ss wrote.
    Bmv2Json,
    /// `bf_switchd --p4rt-server` (PI): program name, tofino.bin and
    /// context.json, each after its length.
    BfSwitchd,
    /// `stratum_bfrt`: Stratum's `BfPipelineConfig` protobuf.
    StratumBfrt,
}

/// Where a configured port number is on the device: its device port and,
/// optionally, the switch's own name for it (the front panel's `1/0`, the
/// interface name gNMI reports). Written `7: 132` or
/// `7: {device_port: 132, name: "7/0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MappedPortRepr", into = "MappedPortRepr")]
pub struct MappedPort {
    pub device_port: PortNum,
    pub name: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MappedPortRepr {
    Number(PortNum),
    Full(FullMappedPort),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FullMappedPort {
    device_port: PortNum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl From<MappedPortRepr> for MappedPort {
    fn from(r: MappedPortRepr) -> Self {
        match r {
            MappedPortRepr::Number(device_port) => MappedPort {
                device_port,
                name: None,
            },
            MappedPortRepr::Full(FullMappedPort { device_port, name }) => {
                MappedPort { device_port, name }
            }
        }
    }
}

impl From<MappedPort> for MappedPortRepr {
    fn from(m: MappedPort) -> Self {
        match m.name {
            None => MappedPortRepr::Number(m.device_port),
            name => MappedPortRepr::Full(FullMappedPort {
                device_port: m.device_port,
                name,
            }),
        }
    }
}

/// One P4 switch of the fabric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    /// P4Runtime gRPC address, `host:port`.
    pub address: String,
    /// P4Runtime device id.
    pub device_id: u64,
    pub role: Role,
    /// The fabric (MPLS) label naming this switch, unique in the fabric,
    /// 16..=0xFFFFE and not ending in hex F (0..15 are reserved by MPLS;
    /// labels ending in hex F are flood labels, `net::is_flood_label`).
    pub label: u32,
    #[serde(default)]
    pub target: Target,
    /// Pipeline name (`fabric`): which compiled program under `p4/build/`.
    #[serde(default = "default_pipeline")]
    pub pipeline: String,
    /// Ports that connect to other switches (fabric ports). Discovery runs
    /// on these; every other port is an edge port if configured.
    #[serde(default)]
    pub fabric_ports: Vec<PortNum>,
    /// The router MAC of this switch on fabric links (source MAC of
    /// fabric-encapsulated frames). Derived from the label when absent.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Where the controller reads the switch's port status, so LAG
    /// members and fabric links leave service within a poll interval
    /// instead of a protocol timeout: `thrift://host:port`, bmv2's Thrift
    /// management service (simple_switch `--thrift-port`), or
    /// `gnmi://host:port`, a gNMI server (Stratum) streaming interface
    /// oper-status. Absent: LACP and discovery timeouts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_events: Option<String>,
    /// The device-config format the switch's P4Runtime server takes; the
    /// target's own when absent (bmv2: `bmv2_json`, Tofino: `bf_switchd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_config: Option<DeviceConfigFormat>,
    /// Tofino: the device port packets to and from the controller use
    /// (64, 192 or 320 on Tofino 1 by SKU). bmv2's is fixed (255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_port: Option<PortNum>,
    /// Tofino: configured port number (what `leaf1/7` says) -> device
    /// port. Empty: configured numbers are device ports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_map: BTreeMap<PortNum, MappedPort>,
}

impl Switch {
    /// Where this switch's port status is read, parsed (`None`: nowhere).
    /// Validation rejects a switch whose `port_events` does not parse.
    pub fn port_status_source(&self) -> Option<Result<PortStatusSource, BadPortStatusSource>> {
        self.port_events.as_deref().map(str::parse)
    }
}

/// Where a switch's port status is read (`Switch::port_events`, parsed);
/// `portstatus` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortStatusSource {
    /// bmv2's Thrift management service (simple_switch `--thrift-port`),
    /// written `thrift://host:port`; `address` is `host:port`.
    Thrift { address: String },
}

/// A `port_events` value that names no port-status source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not thrift://HOST:PORT (bmv2's --thrift-port)")]
pub struct BadPortStatusSource(pub String);

impl FromStr for PortStatusSource {
    type Err = BadPortStatusSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("thrift://") {
            Some(hp)
                if hp
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
            {
                Ok(PortStatusSource::Thrift {
                    address: hp.to_string(),
                })
            }
            _ => Err(BadPortStatusSource(s.to_string())),
        }
    }
}

impl fmt::Display for PortStatusSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortStatusSource::Thrift { address } => write!(f, "thrift://{address}"),
        }
    }
}

fn default_pipeline() -> String {
    "fabric".to_string()
}

/// A port of a switch, written `switch/port` ("leaf1/3").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRef {
    pub switch: String,
    pub port: PortNum,
}

impl PortRef {
    pub fn new(switch: impl Into<String>, port: PortNum) -> Self {
        PortRef {
            switch: switch.into(),
            port,
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.switch, self.port)
    }
}

/// Why a string is not a `switch/port` reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port reference {0:?}: expected SWITCH/PORT, e.g. leaf1/3")]
pub struct PortRefParseError(pub String);

impl FromStr for PortRef {
    type Err = PortRefParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PortRefParseError(s.to_string());
        let (switch, port) = s.rsplit_once('/').ok_or_else(err)?;
        if switch.is_empty() || switch.contains('/') {
            return Err(err());
        }
        let port = port.parse().map_err(|_| err())?;
        Ok(PortRef::new(switch, port))
    }
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A configured switch-to-switch link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub a: PortRef,
    pub b: PortRef,
}

/// How an edge port (or a LAG) carries VLANs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum VlanMode {
    /// Untagged frames belong to `vlan`; tagged frames are dropped.
    Access { vlan: VlanId },
    /// Frames tagged with one of `vlans` are accepted; untagged frames
    /// belong to `native` if set, else are dropped.
    Trunk {
        vlans: Vec<VlanId>,
        #[serde(default)]
        native: Option<VlanId>,
    },
}

impl VlanMode {
    /// Every VLAN this attachment is a member of.
    pub fn member_vlans(&self) -> Vec<VlanId> {
        match self {
            VlanMode::Access { vlan } => vec![*vlan],
            VlanMode::Trunk { vlans, native } => {
                let mut v = vlans.clone();
                if let Some(n) = native {
                    v.push(*n);
                }
                v.sort_unstable();
                v.dedup();
                v
            }
        }
    }

    /// Is `vlan` sent untagged on this attachment?
    pub fn is_untagged(&self, vlan: VlanId) -> bool {
        match self {
            VlanMode::Access { vlan: v } => *v == vlan,
            VlanMode::Trunk { native, .. } => *native == Some(vlan),
        }
    }
}

/// An edge port facing a server (not a LAG member: LAG members take their
/// VLAN settings from the LAG).
///
/// (`deny_unknown_fields` does not combine with `flatten`; the validator
/// reports unknown fields of ports and LAGs instead.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgePort {
    #[serde(flatten)]
    pub vlans: VlanMode,
    #[serde(default = "yes")]
    pub admin_up: bool,
    #[serde(default)]
    pub description: String,
    /// Port security: most MACs learned here; `None`:
    /// `settings.max_learned_macs_per_port`; 0: no limit.
    #[serde(default)]
    pub max_learned_macs: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LagMode {
    #[default]
    Lacp,
    Static,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LacpRate {
    /// LACPDUs every second, timeout after 3 s.
    Fast,
    /// LACPDUs every 30 s, timeout after 90 s.
    #[default]
    Slow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LacpSettings {
    pub rate: LacpRate,
    /// Actor key presented on this LAG's members.
    pub key: Option<u16>,
}

impl Default for LacpSettings {
    fn default() -> Self {
        LacpSettings {
            rate: LacpRate::Slow,
            key: None,
        }
    }
}

/// A link aggregation towards a server, on one leaf or split across two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// Fabric-wide LAG id, 1..=65535, the same on both leaves.
    pub id: u16,
    pub members: Vec<PortRef>,
    #[serde(default)]
    pub protocol: LagMode,
    #[serde(default)]
    pub lacp: LacpSettings,
    #[serde(flatten)]
    pub vlans: VlanMode,
    #[serde(default = "yes")]
    pub admin_up: bool,
    #[serde(default)]
    pub description: String,
    /// Port security for the whole LAG (all members together), as for
    /// `EdgePort::max_learned_macs`.
    #[serde(default)]
    pub max_learned_macs: Option<u32>,
}

impl Settings {
    /// The learned-MAC limit of an attachment whose own setting is
    /// `own` (`None`: unlimited).
    pub fn learned_mac_limit(&self, own: Option<u32>) -> Option<usize> {
        match own.unwrap_or(self.max_learned_macs_per_port) {
            0 => None,
            n => usize::try_from(n).ok(),
        }
    }
}

/// A VLAN network (a Neutron network + its subnets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vlan {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub vrf: VrfId,
    /// Gateway address with the subnet's prefix length, e.g. 10.0.1.1/24.
    #[serde(default)]
    pub ipv4_gateway: Option<Ipv4Net>,
    /// Gateway address with prefix length, e.g. 2001:db8:1::1/64.
    #[serde(default)]
    pub ipv6_gateway: Option<Ipv6Net>,
    /// Gateway MAC for this VLAN; `settings.gateway_mac` when absent.
    #[serde(default)]
    pub gateway_mac: Option<MacAddr>,
}

/// A static route: `prefix` via one or more next hops (ECMP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub vrf: VrfId,
    pub prefix: IpNet,
    pub next_hops: Vec<IpAddr>,
}

/// Where a host is attached: `{port: leaf1/3}` or `{lag: bond1}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "AttachmentRepr", into = "AttachmentRepr")]
pub enum Attachment {
    Port(PortRef),
    Lag(String),
}

/// The written form of `Attachment`: a map with exactly one of the keys.
/// (A plain externally tagged enum would need YAML `!tags` in serde_yaml.)
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<PortRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lag: Option<String>,
}

impl TryFrom<AttachmentRepr> for Attachment {
    type Error = String;

    fn try_from(r: AttachmentRepr) -> Result<Self, Self::Error> {
        match (r.port, r.lag) {
            (Some(p), None) => Ok(Attachment::Port(p)),
            (None, Some(l)) => Ok(Attachment::Lag(l)),
            _ => Err("attachment needs exactly one of `port` or `lag`".to_string()),
        }
    }
}

impl From<Attachment> for AttachmentRepr {
    fn from(a: Attachment) -> Self {
        match a {
            Attachment::Port(p) => AttachmentRepr {
                port: Some(p),
                lag: None,
            },
            Attachment::Lag(l) => AttachmentRepr {
                port: None,
                lag: Some(l),
            },
        }
    }
}

/// A static host / port binding (what Neutron writes for a VM port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub mac: MacAddr,
    pub vlan: VlanId,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    pub attachment: Attachment,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_status_sources_parse() {
        let thrift: PortStatusSource = "thrift://127.0.0.1:9090".parse().expect("ok");
        assert_eq!(
            thrift,
            PortStatusSource::Thrift {
                address: "127.0.0.1:9090".into()
            }
        );
        assert_eq!(thrift.to_string(), "thrift://127.0.0.1:9090");
        for bad in [
            "127.0.0.1:9090",
            "thrift://",
            "thrift://host",
            "thrift://:1",
            "ipc:///x",
        ] {
            assert!(bad.parse::<PortStatusSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ref_parses() {
        assert_eq!(
            "leaf1/3".parse::<PortRef>().unwrap(),
            PortRef::new("leaf1", 3)
        );
        for bad in ["leaf1", "/3", "leaf1/x", "a/b/3", ""] {
            assert!(bad.parse::<PortRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fabric_yaml_round_trip() {
        let yaml = r#"
switches:
  leaf1: {address: "127.0.0.1:50001", device_id: 1, role: leaf, label: 101, fabric_ports: [1, 2]}
  spine1: {address: "127.0.0.1:50002", device_id: 2, role: spine, label: 201}
ports:
  leaf1/3: {mode: access, vlan: 10}
  leaf1/4: {mode: trunk, vlans: [10, 20], native: 30}
lags:
  bond1: {id: 1, members: [leaf1/5, leaf2/5], protocol: lacp, lacp: {rate: fast}, mode: trunk, vlans: [10]}
vlans:
  10: {name: web, ipv4_gateway: 10.0.10.1/24}
hosts:
  vm1: {mac: "02:00:00:00:00:01", vlan: 10, ips: [10.0.10.5], attachment: {port: leaf1/3}}
  vm2: {mac: "02:00:00:00:00:02", vlan: 10, attachment: {lag: bond1}}
"#;
        let f: Fabric = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(f.switches["leaf1"].fabric_ports, vec![1, 2]);
        assert_eq!(
            f.ports[&PortRef::new("leaf1", 4)].vlans,
            VlanMode::Trunk {
                vlans: vec![10, 20],
                native: Some(30)
            }
        );
        assert_eq!(f.lags["bond1"].protocol, LagMode::Lacp);
        assert_eq!(f.lags["bond1"].lacp.rate, LacpRate::Fast);
        assert_eq!(f.hosts["vm2"].attachment, Attachment::Lag("bond1".into()));
        assert_eq!(f.switches["leaf1"].target, Target::Bmv2);
        let back: Fabric = serde_yaml::from_str(&serde_yaml::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn tofino_switch_round_trip() {
        let yaml = r#"
address: "10.0.0.1:9559"
device_id: 1
role: leaf
label: 101
target: tofino2
device_config: stratum_bfrt
cpu_port: 0
port_events: gnmi://10.0.0.1:9339
port_map: {1: 132, 2: {device_port: 140, name: "2/0"}}
"#;
        let s: Switch = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(s.target, Target::Tofino2);
        assert_eq!(s.device_config, Some(DeviceConfigFormat::StratumBfrt));
        assert_eq!(s.cpu_port, Some(0));
        assert_eq!(
            s.port_map[&1],
            MappedPort {
                device_port: 132,
                name: None
            }
        );
        assert_eq!(s.port_map[&2].name.as_deref(), Some("2/0"));
        let back: Switch = serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        for bad in [
            "port_map: {1: {device_port: 1, nmae: x}}",
            "port_map: {1: -1}",
            "device_config: tofino_bin",
            "target: tofino3",
        ] {
            // The valid switch with one key replaced by a bad value.
            let mut v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
            let m: serde_yaml::Mapping = serde_yaml::from_str(bad).unwrap();
            let (k, val) = m.into_iter().next().unwrap();
            v[k.as_str().unwrap()] = val;
            assert!(serde_yaml::from_value::<Switch>(v).is_err(), "{bad}");
        }
    }
}
