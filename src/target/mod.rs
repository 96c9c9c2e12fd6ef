//! What differs per switch target, behind one small trait: where the
//! compiled pipeline is and how its device config is encoded, the CPU and
//! reserved ports, the port map, and where port status comes from. bmv2
//! and Tofino (1 and 2) implement it; `for_switch` picks one by the
//! switch's `target`. The P4Runtime client and everything above it are
//! shared.

pub mod bmv2;
pub mod device_config;
pub mod ports;
pub mod tofino;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{PortNum, Switch, Target};
use crate::portstatus::gnmi::PortNames;

pub use device_config::DeviceConfigError;

/// What a target cannot do with a switch's settings or files.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("port {port} is not in the port_map of {switch}")]
    UnknownPort { switch: String, port: PortNum },
    #[error("device port {device_port} is not in the port_map")]
    UnknownDevicePort { device_port: PortNum },
    #[error("{field}: {what} cannot be mapped to a device port")]
    NotAPort { field: &'static str, what: String },
    #[error("{switch}: {message}")]
    Config { switch: String, message: String },
    #[error(transparent)]
    DeviceConfig(#[from] DeviceConfigError),
}

/// One compiled file a pipeline needs on a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    /// Absent and not required: read as empty (bmv2's JSON, which the
    /// in-process test target does without).
    pub required: bool,
}

/// The compiled outputs of one pipeline for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    pub p4info: PathBuf,
    /// The device-config inputs, in the order `device_config` takes them.
    pub files: Vec<Artifact>,
}

/// The P4Info in `dir`: `<prefix>p4info.bin` if it exists, else
/// `<prefix>p4info.txt` (bmv2: prefix `fabric.`; bf-p4c: none).
pub(crate) fn p4info_path(dir: &Path, prefix: &str) -> PathBuf {
    let bin = dir.join(format!("{prefix}p4info.bin"));
    if bin.exists() {
        bin
    } else {
        dir.join(format!("{prefix}p4info.txt"))
    }
}

/// Where a switch's port status comes from (its `port_events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortStatusSource {
    /// bmv2's Thrift service, polled (`thrift://host:port`).
    Thrift { address: String },
    /// A gNMI server streaming oper-status (`gnmi://host:port`).
    Gnmi { address: String, names: PortNames },
}

/// What differs between targets. One value per switch.
pub trait SwitchTarget: fmt::Debug + Send + Sync {
    /// The target's name in the configuration (`bmv2`, `tofino`,
    /// `tofino2`).
    fn name(&self) -> &'static str;

    /// The P4 architecture the pipeline is compiled for, as P4Info's
    /// `pkg_info.arch` names it (`v1model`, `tna`, `t2na`).
    fn arch(&self) -> &'static str;

    /// The compiled files of pipeline `pipeline` under `build_dir` (the
    /// checked-in `p4/build/`) this target loads.
    fn artifacts(&self, build_dir: &Path, pipeline: &str) -> Artifacts;

    /// The `p4_device_config` of SetForwardingPipelineConfig, from the
    /// contents of `artifacts().files` in their order.
    fn device_config(&self, pipeline: &str, files: &[Vec<u8>]) -> Result<Vec<u8>, TargetError>;

    /// The device port packets to and from the controller use.
    fn cpu_port(&self) -> PortNum;

    /// Width of a port in the P4Info (match fields, action parameters):
    /// the all-ones ternary mask of a port match. Default: v1model's 9.
    fn port_bits(&self) -> u32 {
        9
    }

    /// The clone (mirror) session that copies punts to the CPU. Default:
    /// the pipeline's 511.
    fn cpu_clone_session(&self) -> u32 {
        crate::compile::names::CPU_CLONE_SESSION
    }

    /// Device ports the configuration may not use (CPU, recirculation).
    /// Default: the CPU port.
    fn reserved_ports(&self) -> Vec<PortNum> {
        vec![self.cpu_port()]
    }

    /// Whether the entities a switch holds differ from the configured ones
    /// (`ports::to_device`): configured port numbers are not device ports
    /// (a non-empty `port_map`), or the learning tables key hosts behind a
    /// LAG on a port other than 0 (`lag_key_port`). Without either the
    /// agents and the controller's packet I/O skip the mapping (no
    /// per-entity copy). Default: no.
    fn maps_entities(&self) -> bool {
        false
    }

    /// The `ingress_port` the learning tables (`src_mac`, `locked_sources`)
    /// key a host behind a LAG on, beside its LAG id: the pipeline's
    /// `NO_PORT`. The compiler writes 0 there; the port mapping puts this
    /// value on the switch. Default: v1model's 0.
    fn lag_key_port(&self) -> PortNum {
        0
    }

    /// The device port of a configured port number. Default: the same
    /// number (bmv2's `-i N@veth` numbers are its device ports).
    fn device_port(&self, port: PortNum) -> Result<PortNum, TargetError> {
        Ok(port)
    }

    /// The configured port number of a device port (packet-in ingress
    /// port); `None` for a port outside the configuration. Default: the
    /// same number.
    fn config_port(&self, device_port: PortNum) -> Option<PortNum> {
        Some(device_port)
    }

    /// Where port status comes from; `None`: the switch publishes none
    /// (LACP and discovery timeouts only). Default: none.
    fn port_status(&self) -> Option<PortStatusSource> {
        None
    }
}

/// The target of one configured switch. Fails on settings validation
/// rejects (a Tofino switch without `cpu_port`, a format of the other
/// target), so an unvalidated config gets a clear error, not a guess.
pub fn for_switch(name: &str, sw: &Switch) -> Result<Box<dyn SwitchTarget>, TargetError> {
    match sw.target {
        Target::Bmv2 => Ok(Box::new(bmv2::Bmv2::new(name, sw)?)),
        Target::Tofino | Target::Tofino2 => Ok(Box::new(tofino::Tofino::new(name, sw)?)),
    }
}

/// Port values outside a switch's port map found by a read-back: how
/// many, and the first device port.
pub type Strays = (usize, Option<PortNum>);

/// Everything p4fabric writes, read from the switch on configured port
/// numbers: through `t`'s port map where it has one (`ports::ReadBackMap`:
/// device ports outside the map come back as strays, counted), as read
/// otherwise. The agent's read-backs and `p4fabric trace` read this way.
pub async fn read_configured(
    client: &crate::p4rt::Client,
    reg: &crate::p4rt::P4InfoRegistry,
    t: Option<&dyn SwitchTarget>,
) -> Result<(crate::p4rt::intern::SharedEntities, Strays), crate::p4rt::switch::ReadError> {
    use crate::p4rt::switch::read_all_shared;
    let Some(t) = t.filter(|t| t.maps_entities()) else {
        return Ok((read_all_shared(client, reg, None).await?, (0, None)));
    };
    let mut to_config = ports::ReadBackMap::new(t);
    let mut map = |e| to_config.entity(e);
    let read = read_all_shared(client, reg, Some(&mut map)).await?;
    Ok((read, to_config.strays()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(yaml: &str) -> Switch {
        serde_yaml::from_str(&format!(
            "{{address: 'h:1', device_id: 1, role: leaf, label: 101, {yaml}}}"
        ))
        .expect("switch")
    }

    #[test]
    fn picks_the_target_by_the_switch() {
        let b = for_switch("s", &switch("port_events: 'thrift://h:9090'")).expect("bmv2");
        assert_eq!((b.name(), b.cpu_port()), ("bmv2", 255));
        assert_eq!(
            b.port_status(),
            Some(PortStatusSource::Thrift {
                address: "h:9090".into()
            })
        );
        let t = for_switch(
            "s",
            &switch("target: tofino, cpu_port: 320, port_map: {1: 132}"),
        )
        .expect("tofino");
        assert_eq!((t.name(), t.cpu_port()), ("tofino", 320));
        assert_eq!(t.device_port(1).expect("mapped"), 132);
        assert_eq!(t.port_status(), None);
        let t2 = for_switch("s", &switch("target: tofino2, cpu_port: 0")).expect("tofino2");
        assert_eq!(t2.name(), "tofino2");
        for bad in [
            "target: tofino",
            "target: tofino, cpu_port: 64, device_config: bmv2_json",
            "target: tofino, cpu_port: 64, port_events: 'thrift://h:1'",
            "cpu_port: 64",
            "device_config: stratum_bfrt",
        ] {
            let e = for_switch("s", &switch(bad)).expect_err(bad);
            assert!(e.to_string().starts_with("s: "), "{bad}: {e}");
        }
    }
}
