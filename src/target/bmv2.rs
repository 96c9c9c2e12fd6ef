//! bmv2 `simple_switch_grpc`: the JSON p4c-bm2-ss wrote is the device
//! config, ports are the `-i N@veth` numbers, the CPU port is 255 (the
//! lab's `--cpu-port`), port status from the Thrift service.

use std::path::Path;

use super::{p4info_path, Artifact, Artifacts, PortStatusSource, SwitchTarget, TargetError};
use crate::config::{DeviceConfigFormat, PortNum, Switch};

/// bmv2's CPU port: `--cpu-port` in `lab`, `CPU_PORT` in
/// p4/include/constants.p4.
pub const CPU_PORT: PortNum = 255;

#[derive(Debug, Clone)]
pub struct Bmv2 {
    port_status: Option<PortStatusSource>,
}

impl Bmv2 {
    pub fn new(name: &str, sw: &Switch) -> Result<Bmv2, TargetError> {
        let err = |message: String| TargetError::Config {
            switch: name.to_string(),
            message,
        };
        if sw
            .device_config
            .is_some_and(|f| f != DeviceConfigFormat::Bmv2Json)
        {
            return Err(err("bmv2 takes device_config bmv2_json".into()));
        }
        if sw.cpu_port.is_some() || !sw.port_map.is_empty() {
            return Err(err(format!(
                "cpu_port and port_map are for Tofino; bmv2's CPU port is {CPU_PORT}"
            )));
        }
        let port_status = match sw.port_events.as_deref() {
            None => None,
            Some(a) if a.starts_with("gnmi://") => Some(PortStatusSource::Gnmi {
                address: crate::portstatus::gnmi::parse_address(a)
                    .map_err(|e| err(format!("port_events: {e}")))?,
                names: Default::default(),
            }),
            Some(a) => match a.parse::<crate::config::PortStatusSource>() {
                Ok(crate::config::PortStatusSource::Thrift { address }) => {
                    Some(PortStatusSource::Thrift { address })
                }
                Err(e) => return Err(err(format!("port_events: {e}"))),
            },
        };
        Ok(Bmv2 { port_status })
    }
}

impl SwitchTarget for Bmv2 {
    fn name(&self) -> &'static str {
        "bmv2"
    }

    fn arch(&self) -> &'static str {
        "v1model"
    }

    /// `<dir>/<name>.p4info.{bin,txt}` and `<dir>/<name>.json`.
    fn artifacts(&self, build_dir: &Path, pipeline: &str) -> Artifacts {
        Artifacts {
            p4info: p4info_path(build_dir, &format!("{pipeline}.")),
            files: vec![Artifact {
                path: build_dir.join(format!("{pipeline}.json")),
                required: false,
            }],
        }
    }

    fn device_config(&self, _pipeline: &str, files: &[Vec<u8>]) -> Result<Vec<u8>, TargetError> {
        Ok(files.first().cloned().unwrap_or_default())
    }

    fn cpu_port(&self) -> PortNum {
        CPU_PORT
    }

    fn port_status(&self) -> Option<PortStatusSource> {
        self.port_status.clone()
    }
}
