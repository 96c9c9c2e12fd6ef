//! Tofino 1 and 2 (Intel SDE `bf_switchd --p4rt-server`, or Stratum
//! `stratum_bfrt`): bf-p4c's outputs under `p4/build/<target>/`, packed
//! in the format the switch's P4Runtime server takes; device ports from
//! the switch's `port_map`; the CPU port from the configuration (it
//! depends on the SKU); port status from gNMI (there is no bmv2 Thrift
//! service).

use std::collections::BTreeMap;
use std::path::Path;

use super::device_config::{self, TofinoFiles};
use super::{p4info_path, Artifact, Artifacts, PortStatusSource, SwitchTarget, TargetError};
use crate::config::{DeviceConfigFormat, PortNum, Switch, Target};
use crate::portstatus::gnmi::PortNames;

/// The pipeline `p4/compile.sh` builds into `p4/build/<target>/` itself.
pub const DEFAULT_PIPELINE: &str = "fabric";

/// The SDN port id Stratum reserves for the CPU port (`kSdnCpuPortId`);
/// its P4Runtime translation maps it to the SDK's CPU port.
pub const STRATUM_SDN_CPU_PORT: PortNum = 0xFFFF_FFFD;

/// Which Tofino.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chip {
    Tofino1,
    Tofino2,
}

impl Chip {
    /// The directory under `p4/build/` and the target's config name.
    pub fn name(self) -> &'static str {
        match self {
            Chip::Tofino1 => "tofino",
            Chip::Tofino2 => "tofino2",
        }
    }

    /// Both chips.
    pub const ALL: [Chip; 2] = [Chip::Tofino1, Chip::Tofino2];

    /// Where `p4/compile.sh tna|t2na` puts bf-p4c's outputs for `pipeline`
    /// under `build_dir`: `<build_dir>/<chip>/` for the fabric pipeline,
    /// `<build_dir>/<chip>/<pipeline>/` for any other.
    pub fn out_dir(self, build_dir: &Path, pipeline: &str) -> std::path::PathBuf {
        let out = build_dir.join(self.name());
        if pipeline == DEFAULT_PIPELINE {
            out
        } else {
            out.join(pipeline)
        }
    }

    /// The P4 architecture its pipeline is written for.
    pub fn arch(self) -> &'static str {
        match self {
            Chip::Tofino1 => "tna",
            Chip::Tofino2 => "t2na",
        }
    }

    /// bf-p4c's name for the binary under `pipe/`.
    pub fn binary(self) -> &'static str {
        match self {
            Chip::Tofino1 => "tofino.bin",
            Chip::Tofino2 => "tofino2.bin",
        }
    }

    /// The recirculation ports of every pipe (up to four): Tofino 1 has
    /// 68..=71 in each pipe's 128-port block, Tofino 2 has 6..=7.
    pub fn recirculation_ports(self) -> Vec<PortNum> {
        let per_pipe = match self {
            Chip::Tofino1 => 68..=71,
            Chip::Tofino2 => 6..=7,
        };
        (0..4)
            .flat_map(|pipe| per_pipe.clone().map(move |p| pipe * 128 + p))
            .collect()
    }
}

/// bf-p4c's P4Info of the fabric pipeline for architecture `arch` (`tna`,
/// `t2na`) in build directory `dir`, where it has been compiled.
pub fn compiled_p4info(dir: &Path, arch: &str) -> Option<std::path::PathBuf> {
    let chip = Chip::ALL.into_iter().find(|c| c.arch() == arch)?;
    let path = p4info_path(&chip.out_dir(dir, DEFAULT_PIPELINE), "");
    path.exists().then_some(path)
}

/// The P4Runtime server's device-config format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BfSwitchd,
    StratumBfrt,
}

#[derive(Debug, Clone)]
pub struct Tofino {
    switch: String,
    chip: Chip,
    format: Format,
    cpu_port: PortNum,
    /// Configured port -> device port; empty: the same numbers.
    to_device: BTreeMap<PortNum, PortNum>,
    to_config: BTreeMap<PortNum, PortNum>,
    port_status: Option<PortStatusSource>,
}

impl Tofino {
    /// Checks the switch's Tofino settings (everything validation says
    /// about them comes from here).
    pub fn new(name: &str, sw: &Switch) -> Result<Tofino, TargetError> {
        let err = |message: String| TargetError::Config {
            switch: name.to_string(),
            message,
        };
        let chip = match sw.target {
            Target::Tofino2 => Chip::Tofino2,
            _ => Chip::Tofino1,
        };
        let format =
            match sw.device_config {
                None | Some(DeviceConfigFormat::BfSwitchd) => Format::BfSwitchd,
                Some(DeviceConfigFormat::StratumBfrt) => Format::StratumBfrt,
                Some(DeviceConfigFormat::Bmv2Json) => return Err(err(
                    "device_config bmv2_json is for bmv2; Tofino takes bf_switchd or stratum_bfrt"
                        .into(),
                )),
            };
        // Stratum translates ports (the TNA P4Info's `tna/PortId_t`): its
        // CPU port is the SDN id it reserves. bf_switchd's depends on the SKU.
        let cpu_port = match (sw.cpu_port, format) {
            (Some(p), _) => p,
            (None, Format::StratumBfrt) => STRATUM_SDN_CPU_PORT,
            (None, Format::BfSwitchd) => {
                return Err(err(
                    "a Tofino switch on bf_switchd needs cpu_port, its CPU port (Tofino 1: 64, 192 or 320 by SKU)"
                        .into(),
                ))
            }
        };
        // Recirculation ports are not rejected here: with the TNA P4Info's
        // port translation, configured device ports are the server's SDN
        // port ids, which may take any number (docs/targets.md).
        let mut to_config = BTreeMap::new();
        let mut names: BTreeMap<&str, PortNum> = BTreeMap::new();
        if sw.port_map.contains_key(&cpu_port) {
            // The CPU port passes into entities untranslated.
            return Err(err(format!(
                "port_map: configured port {cpu_port} has the CPU port's number; number it otherwise"
            )));
        }
        if sw.port_map.contains_key(&super::ports::STRAY_PORT) {
            // What a read-back makes of a device port outside the map.
            return Err(err(format!(
                "port_map: configured port {} is reserved",
                super::ports::STRAY_PORT
            )));
        }
        for (port, m) in &sw.port_map {
            let dev = m.device_port;
            if dev == cpu_port {
                return Err(err(format!(
                    "port_map: port {port} maps to device port {dev}, the CPU port"
                )));
            }
            if let Some(other) = to_config.insert(dev, *port) {
                return Err(err(format!(
                    "port_map: ports {other} and {port} both map to device port {dev}"
                )));
            }
            if let Some(n) = m.name.as_deref() {
                if n.trim().is_empty() {
                    return Err(err(format!("port_map: port {port} has an empty name")));
                }
                if let Some(other) = names.insert(n, *port) {
                    return Err(err(format!(
                        "port_map: ports {other} and {port} are both named {n:?}"
                    )));
                }
            }
        }
        let to_device: BTreeMap<PortNum, PortNum> = sw
            .port_map
            .iter()
            .map(|(p, m)| (*p, m.device_port))
            .collect();
        for p in &sw.fabric_ports {
            if !to_device.is_empty() && !to_device.contains_key(p) {
                return Err(err(format!("fabric port {p} is not in port_map")));
            }
        }
        let port_status = match sw.port_events.as_deref() {
            None => None,
            Some(a) => Some(PortStatusSource::Gnmi {
                address: crate::portstatus::gnmi::parse_address(a).map_err(|e| {
                    err(format!(
                        "port_events: {e}; a Tofino switch has no bmv2 Thrift service"
                    ))
                })?,
                names: PortNames::of(sw),
            }),
        };
        Ok(Tofino {
            switch: name.to_string(),
            chip,
            format,
            cpu_port,
            to_device,
            to_config,
            port_status,
        })
    }

    pub fn chip(&self) -> Chip {
        self.chip
    }

    pub fn format(&self) -> Format {
        self.format
    }
}

impl SwitchTarget for Tofino {
    fn name(&self) -> &'static str {
        self.chip.name()
    }

    /// Ports are `@p4runtime_translation`'d SDN ports on TNA/T2NA.
    fn port_bits(&self) -> u32 {
        crate::compile::contract::SDN_PORT_WIDTH.unsigned_abs()
    }

    fn arch(&self) -> &'static str {
        self.chip.arch()
    }

    /// bf-p4c's output directory as `p4/compile.sh tna|t2na` writes it:
    /// `<dir>/<target>/` for the fabric pipeline (`<dir>/<target>/<name>/`
    /// for any other) with `p4info.{bin,txt}`, `pipe/tofino.bin` (Tofino 2:
    /// `pipe/tofino2.bin`), `pipe/context.json`, and for Stratum
    /// `bfrt.json`.
    fn artifacts(&self, build_dir: &Path, pipeline: &str) -> Artifacts {
        let out = self.chip.out_dir(build_dir, pipeline);
        let required = |path| Artifact {
            path,
            required: true,
        };
        let mut files = vec![
            required(out.join("pipe").join(self.chip.binary())),
            required(out.join("pipe/context.json")),
        ];
        if self.format == Format::StratumBfrt {
            files.push(required(out.join("bfrt.json")));
        }
        Artifacts {
            p4info: p4info_path(&out, ""),
            files,
        }
    }

    fn device_config(&self, pipeline: &str, files: &[Vec<u8>]) -> Result<Vec<u8>, TargetError> {
        let file = |i: usize| files.get(i).map(Vec::as_slice).unwrap_or_default();
        // The driver knows the program by the name bf-p4c gave it (the
        // source file's: `fabric_tna`), not by our pipeline name.
        let f = TofinoFiles {
            program: device_config::compiled_program_name(file(1)).unwrap_or(pipeline),
            binary: file(0),
            context: file(1),
            bfrt: file(2),
        };
        Ok(match self.format {
            Format::BfSwitchd => device_config::bf_switchd(&f)?,
            Format::StratumBfrt => device_config::stratum_bfrt(&f),
        })
    }

    fn cpu_port(&self) -> PortNum {
        self.cpu_port
    }

    /// Tofino 2's mirror session ids are 8 bits: 255 (docs/pipeline.md).
    fn cpu_clone_session(&self) -> u32 {
        match self.chip {
            Chip::Tofino1 => crate::compile::names::CPU_CLONE_SESSION,
            Chip::Tofino2 => 255,
        }
    }

    fn reserved_ports(&self) -> Vec<PortNum> {
        let mut v = self.chip.recirculation_ports();
        v.push(self.cpu_port);
        v
    }

    fn maps_entities(&self) -> bool {
        !self.to_device.is_empty() || self.lag_key_port() != 0
    }

    /// The CPU port: the TNA build's `NO_PORT` (p4/tna/arch_tna.p4). Under
    /// P4Runtime port translation 0 is no SDN port a server maps, while the
    /// CPU port's id always is; no host frame comes in on it.
    fn lag_key_port(&self) -> PortNum {
        self.cpu_port
    }

    fn device_port(&self, port: PortNum) -> Result<PortNum, TargetError> {
        if self.to_device.is_empty() {
            return Ok(port);
        }
        self.to_device
            .get(&port)
            .copied()
            .ok_or_else(|| TargetError::UnknownPort {
                switch: self.switch.clone(),
                port,
            })
    }

    fn config_port(&self, device_port: PortNum) -> Option<PortNum> {
        if self.to_config.is_empty() {
            return Some(device_port);
        }
        self.to_config.get(&device_port).copied()
    }

    fn port_status(&self) -> Option<PortStatusSource> {
        self.port_status.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tofino(yaml: &str) -> Result<Tofino, TargetError> {
        let sw: Switch = serde_yaml::from_str(&format!(
            "{{address: 'h:1', device_id: 1, role: leaf, label: 101, {yaml}}}"
        ))
        .expect("switch");
        Tofino::new("leaf1", &sw)
    }

    #[test]
    fn ports_through_the_map() {
        let t = tofino(
            "target: tofino, cpu_port: 320, fabric_ports: [1], \
             port_map: {1: 132, 2: {device_port: 140, name: '2/0'}}",
        )
        .expect("valid");
        assert_eq!(t.device_port(2).expect("mapped"), 140);
        assert_eq!(t.config_port(132), Some(1));
        assert_eq!(t.config_port(133), None);
        assert!(t.maps_entities());
        let e = t.device_port(3).expect_err("unmapped");
        assert_eq!(e.to_string(), "port 3 is not in the port_map of leaf1");
        assert!(t.reserved_ports().contains(&68) && t.reserved_ports().contains(&320));
        // No map: device ports are configured as they are; entities are
        // still mapped for the LAG key port (the CPU port, not 0)...
        let t = tofino("target: tofino, cpu_port: 64").expect("valid");
        assert!(t.maps_entities());
        assert_eq!(t.lag_key_port(), 64);
        // ...unless the CPU port is 0 (Tofino 2 on bf_switchd).
        let t2 = tofino("target: tofino2, cpu_port: 0").expect("valid");
        assert!(!t2.maps_entities());
        assert_eq!(
            (t.device_port(9).expect("same"), t.config_port(9)),
            (9, Some(9))
        );
    }

    #[test]
    fn bad_settings_are_named() {
        for (yaml, needle) in [
            ("target: tofino", "needs cpu_port"),
            ("target: tofino2, device_config: bf_switchd", "needs cpu_port"),
            ("target: tofino, cpu_port: 64, port_map: {1: 64}", "the CPU port"),
            ("target: tofino, cpu_port: 64, port_map: {64: 4}", "the CPU port's number"),
            ("target: tofino, cpu_port: 64, port_map: {1: 4, 2: 4}", "both map to device port 4"),
            ("target: tofino, cpu_port: 64, port_map: {4294967295: 4}", "4294967295 is reserved"),
            ("target: tofino, cpu_port: 64, port_map: {1: {device_port: 4, name: a}, 2: {device_port: 5, name: a}}", "both named"),
            ("target: tofino, cpu_port: 64, port_map: {1: {device_port: 4, name: ' '}}", "empty name"),
            ("target: tofino, cpu_port: 64, fabric_ports: [2], port_map: {1: 4}", "fabric port 2"),
            ("target: tofino, cpu_port: 64, port_events: 'thrift://h:1'", "no bmv2 Thrift"),
            ("target: tofino, cpu_port: 64, device_config: bmv2_json", "bmv2_json is for bmv2"),
        ] {
            match tofino(yaml) {
                Ok(_) => panic!("{yaml} accepted"),
                Err(e) => assert!(e.to_string().contains(needle), "{yaml}: {e}"),
            }
        }
    }

    #[test]
    fn artifacts_and_device_config_by_format() {
        let dir = Path::new("/b");
        let t = tofino("target: tofino2, cpu_port: 0").expect("valid");
        let a = t.artifacts(dir, "fabric");
        assert_eq!(a.p4info, Path::new("/b/tofino2/p4info.txt"));
        let paths: Vec<_> = a.files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/b/tofino2/pipe/tofino2.bin"),
                Path::new("/b/tofino2/pipe/context.json")
            ]
        );
        let other = t.artifacts(dir, "lab");
        assert_eq!(other.p4info, Path::new("/b/tofino2/lab/p4info.txt"));
        let files = [b"\xab".to_vec(), b"{}".to_vec()];
        assert_eq!(
            t.device_config("fabric", &files).expect("pack"),
            b"\x06\x00\x00\x00fabric\x01\x00\x00\x00\xab\x02\x00\x00\x00{}"
        );
        let s = tofino("target: tofino, device_config: stratum_bfrt").expect("valid");
        assert_eq!(
            s.cpu_port(),
            STRATUM_SDN_CPU_PORT,
            "Stratum's CPU port by default"
        );
        let a = s.artifacts(dir, "fabric");
        assert_eq!(a.files.len(), 3);
        assert_eq!(a.files[2].path, Path::new("/b/tofino/bfrt.json"));
        let files = [b"\xab".to_vec(), b"{}".to_vec(), b"{\"t\":1}".to_vec()];
        let want = device_config::stratum_bfrt(&TofinoFiles {
            program: "fabric",
            binary: b"\xab",
            context: b"{}",
            bfrt: b"{\"t\":1}",
        });
        assert_eq!(s.device_config("fabric", &files).expect("encode"), want);
    }

    /// Both device-config encodings from the checked-in bf-p4c builds
    /// (p4/build/tofino*/), byte for byte: the PI packing is the program
    /// name bf-p4c gave, the binary and context.json, each after its
    /// length; Stratum's config decodes back to the same files.
    #[test]
    fn device_configs_from_the_checked_in_builds() {
        use prost::Message;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("p4/build");
        for (yaml, chip) in [
            ("target: tofino, cpu_port: 320", Chip::Tofino1),
            ("target: tofino2, cpu_port: 0", Chip::Tofino2),
        ] {
            let out = chip.out_dir(&dir, "fabric");
            if !out.join("pipe/context.json").exists() {
                println!(
                    "SKIPPED: {} not compiled (p4/compile.sh {})",
                    out.display(),
                    chip.arch()
                );
                continue;
            }
            let read = |p: &str| std::fs::read(out.join(p)).expect("checked-in file");
            let binary = read(&format!("pipe/{}", chip.binary()));
            let context = read("pipe/context.json");
            let bfrt = read("bfrt.json");
            let t = tofino(yaml).expect("valid");
            let pi = t
                .device_config("fabric", &[binary.clone(), context.clone()])
                .expect("pack");
            let mut want = Vec::new();
            for part in [b"fabric_tna".as_slice(), &binary, &context] {
                want.extend_from_slice(&u32::try_from(part.len()).expect("len").to_le_bytes());
                want.extend_from_slice(part);
            }
            assert!(pi == want, "{}: PI packing differs", chip.name());
            let stratum = format!("target: {}, device_config: stratum_bfrt", chip.name());
            let s = tofino(&stratum).expect("valid");
            let cfg = s
                .device_config("fabric", &[binary.clone(), context.clone(), bfrt.clone()])
                .expect("encode");
            let back =
                p4runtime_proto::stratum::hal::barefoot::BfPipelineConfig::decode(cfg.as_slice())
                    .expect("decode");
            assert_eq!(back.p4_name, "fabric_tna");
            assert!(back.bfruntime_info == bfrt);
            assert_eq!(back.profiles.len(), 1);
            assert_eq!(back.profiles[0].profile_name, device_config::PROFILE_NAME);
            assert!(back.profiles[0].context == context && back.profiles[0].binary == binary);
        }
    }
}
