//! The lab: real bmv2 `simple_switch_grpc` switches on this machine, for
//! the bmv2 tests and the demo.
//!
//! A `Bmv2Switch` is one bmv2 process on a free 127.0.0.1 gRPC port. Each of
//! its ports is a veth pair: the switch end stays in the root namespace
//! (where bmv2 reads it), the far end lives in a network namespace the
//! harness creates, where tests send and receive raw frames (AF_PACKET).
//! Everything is removed on drop. Read docs/lab.md ("Facts about this
//! machine"): links are cut by taking down the *far* end, never the one
//! bmv2 reads.
//!
//! May use: the production modules (config, compile, controller, the
//! P4Runtime client) and the rest of the test kit.

pub mod bond;
pub mod fabric;
pub mod lacp_partner;
pub mod netns;
pub mod packet;
pub mod process;
pub mod reach;
pub mod readback;
pub mod run;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use fabric::{LabFabric, LabOptions};
pub use netns::{Netns, PortSocket};

/// bmv2's CPU port in every p4fabric test (`--cpu-port`).
pub const CPU_PORT: u32 = crate::target::bmv2::CPU_PORT;

/// Where a tool is: on PATH, or in /opt/p4/bin (where a hand build goes).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = Path::new("/opt/p4/bin").join(name);
    p.is_file().then_some(p)
}

/// Why bmv2 tests cannot run here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
    if find_tool("simple_switch_grpc").is_none() {
        return Some("simple_switch_grpc not found (looked on PATH and in /opt/p4/bin)".into());
    }
    if find_tool("ip").is_none() {
        return Some("ip (iproute2) not found".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: veth pairs and namespaces need CAP_NET_ADMIN".into());
    }
    None
}

/// Prints a SKIPPED line that the test runner's output capture does not
/// swallow (it only captures the print macros, not direct writes).
pub fn say_skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
}

/// Returns early from a test, loudly, where bmv2 cannot run.
#[macro_export]
macro_rules! require_bmv2 {
    () => {
        if let Some(why) = $crate::testkit::lab::missing_prerequisite() {
            $crate::testkit::lab::say_skipped(module_path!(), &why);
            return;
        }
    };
}

/// A free TCP port on 127.0.0.1 (bound then released; the small race is
/// acceptable for tests).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Fails with a clear message if something already listens on `addr`
/// (bmv2 would otherwise start and then fail to serve, or a stale switch
/// would answer in its place).
pub fn ensure_free(addr: &str) -> Result<()> {
    let sa: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("gRPC address {addr:?} is not IP:PORT"))?;
    std::net::TcpListener::bind(sa)
        .map(drop)
        .with_context(|| format!("gRPC address {addr} is busy (another switch or process?)"))
}

/// A short unique tag for interface and namespace names (15-char limit).
pub fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}", std::process::id() % 0xffff, n)
}

/// Options for one switch.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    pub device_id: u64,
    /// Port numbers to create (each a veth pair).
    pub ports: Vec<u32>,
    /// A bmv2 JSON to load at start; `None` = `--no-p4` (push over P4Runtime).
    pub json: Option<PathBuf>,
}

/// One running bmv2 switch with its ports.
pub struct Bmv2Switch {
    pub device_id: u64,
    pub grpc_addr: String,
    thrift_port: u16,
    tag: String,
    /// Host-side namespace holding the far ends of the port veths.
    pub hosts: Netns,
    ports: Vec<(u32, String, String)>,
    child: Option<Child>,
    log: PathBuf,
    json: Option<PathBuf>,
    fixed_addr: Option<String>,
}

impl Bmv2Switch {
    /// Creates the ports and starts the switch; waits until gRPC answers.
    pub fn start(opts: SwitchOptions) -> Result<Bmv2Switch> {
        Self::start_at(opts, None)
    }

    /// Like `start`, on a fixed gRPC address (a fabric config's `address`;
    /// an error if it is busy); `None` = a free 127.0.0.1 port.
    pub fn start_at(opts: SwitchOptions, grpc_addr: Option<String>) -> Result<Bmv2Switch> {
        let tag = unique_tag();
        let hosts = Netns::create(&format!("p4t{tag}"))?;
        let mut ports = Vec::new();
        for p in &opts.ports {
            let sw = format!("s{tag}p{p}");
            let far = format!("h{tag}p{p}");
            netns::create_veth(&sw, &far, &hosts)?;
            ports.push((*p, sw, far));
        }
        let log = std::env::temp_dir().join(format!("bmv2-{tag}.log"));
        let mut s = Bmv2Switch {
            device_id: opts.device_id,
            grpc_addr: String::new(),
            thrift_port: 0,
            tag,
            hosts,
            ports,
            child: None,
            log,
            json: opts.json,
            fixed_addr: grpc_addr,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = find_tool("simple_switch_grpc").context("simple_switch_grpc not found")?;
        self.grpc_addr = match &self.fixed_addr {
            Some(a) => {
                ensure_free(a)?;
                a.clone()
            }
            None => format!("127.0.0.1:{}", free_port()?),
        };
        self.thrift_port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.arg("--device-id").arg(self.device_id.to_string());
        cmd.arg("--thrift-port").arg(self.thrift_port.to_string());
        for (p, sw, _) in &self.ports {
            cmd.arg("-i").arg(format!("{p}@{sw}"));
        }
        if std::env::var_os("P4FABRIC_BMV2_LOG").is_some() {
            cmd.arg("--log-file").arg(&self.log).arg("--log-flush");
        }
        match &self.json {
            Some(j) => cmd.arg(j),
            None => cmd.arg("--no-p4"),
        };
        cmd.arg("--")
            .arg("--grpc-server-addr")
            .arg(&self.grpc_addr)
            .arg("--cpu-port")
            .arg(CPU_PORT.to_string());
        let out = std::fs::File::create(self.log.with_extension("out"))?;
        cmd.stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        let child = cmd.spawn().context("starting simple_switch_grpc")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    let out =
                        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default();
                    bail!("simple_switch_grpc exited with {status}:\n{out}");
                }
            }
            if TcpStream::connect_timeout(
                &self.grpc_addr.parse().context("grpc address")?,
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "simple_switch_grpc did not listen on {} in time",
                    self.grpc_addr
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where the switch reports its ports' status: bmv2's Thrift
    /// management service (a config's `port_events`).
    pub fn port_events(&self) -> String {
        format!("thrift://127.0.0.1:{}", self.thrift_port)
    }

    /// kill -9, like a crash. Ports stay.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the switch process again on the same ports (new gRPC port:
    /// read `grpc_addr` again), empty and without a pipeline.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// Same as `restart`, but keeps the gRPC address (a switch rebooting).
    pub fn restart_same_address(&mut self) -> Result<()> {
        self.kill();
        let addr = self.grpc_addr.clone();
        let bin = find_tool("simple_switch_grpc").context("simple_switch_grpc not found")?;
        let mut cmd = Command::new(bin);
        cmd.arg("--device-id").arg(self.device_id.to_string());
        cmd.arg("--thrift-port").arg(self.thrift_port.to_string());
        for (p, sw, _) in &self.ports {
            cmd.arg("-i").arg(format!("{p}@{sw}"));
        }
        cmd.arg("--no-p4")
            .arg("--")
            .arg("--grpc-server-addr")
            .arg(&addr);
        cmd.arg("--cpu-port").arg(CPU_PORT.to_string());
        let out = std::fs::File::create(self.log.with_extension("out"))?;
        cmd.stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        self.child = Some(cmd.spawn()?);
        self.wait_ready(Duration::from_secs(20))
    }

    /// The switch-side interface of `port` (what bmv2 reads).
    pub fn switch_ifname(&self, port: u32) -> Option<&str> {
        self.ports
            .iter()
            .find(|(p, _, _)| *p == port)
            .map(|(_, s, _)| s.as_str())
    }

    /// Frames the switch sent and received on `ports` (all its ports when
    /// empty) so far, from the kernel's counters of its interfaces: what a
    /// switch's port counters would say.
    pub fn port_frames(&self, ports: &[u32]) -> u64 {
        let read = |ifname: &str, what: &str| -> u64 {
            std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{what}"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        self.ports
            .iter()
            .filter(|(p, _, _)| ports.is_empty() || ports.contains(p))
            .map(|(_, ifname, _)| read(ifname, "rx_packets") + read(ifname, "tx_packets"))
            .sum()
    }

    /// The far-end interface of `port` (inside `hosts`).
    pub fn far_ifname(&self, port: u32) -> Option<&str> {
        self.ports
            .iter()
            .find(|(p, _, _)| *p == port)
            .map(|(_, _, f)| f.as_str())
    }

    /// A raw socket on the far end of `port`: what a host cabled there sees.
    pub fn port_socket(&self, port: u32) -> Result<PortSocket> {
        let far = self
            .far_ifname(port)
            .with_context(|| format!("no port {port}"))?;
        self.hosts.packet_socket(far)
    }

    /// Carrier loss on `port`, done by taking down the far end (bmv2 keeps
    /// reading its own end; see docs/lab.md).
    pub fn set_link(&self, port: u32, up: bool) -> Result<()> {
        let far = self
            .far_ifname(port)
            .with_context(|| format!("no port {port}"))?;
        self.hosts
            .ip(&["link", "set", far, if up { "up" } else { "down" }])
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for Bmv2Switch {
    fn drop(&mut self) {
        self.kill();
        for (_, sw, _) in &self.ports {
            let _ = Command::new("ip")
                .args(["link", "del", sw])
                .stderr(Stdio::null())
                .status();
        }
        // `hosts` drops after this and removes the namespace.
    }
}

/// Test logging: with `P4FABRIC_TEST_LOG` set (an `EnvFilter`, e.g.
/// `p4fabric=info`), the controller's logs go to the test's output.
pub fn init_test_logging() {
    if let Ok(filter) = std::env::var("P4FABRIC_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Why the real demo cannot run here, with where the missing piece comes
/// from; `None` when it can.
pub fn bmv2_missing(pipeline_dir: &Path, fabric: &crate::config::Fabric) -> Option<String> {
    if let Some(why) = missing_prerequisite() {
        let origin = if why.contains("simple_switch_grpc") {
            "\n  bmv2 comes from p4lang/behavioral-model built with P4Runtime support \
             (p4lang/PI, ./configure --with-pi); it is not packaged in Debian: build it by \
             hand and put simple_switch_grpc on PATH or in /opt/p4/bin"
        } else if why.contains("root") {
            "\n  run the demo as root (sudo bash .ci/demo.sh)"
        } else {
            ""
        };
        return Some(format!("{why}{origin}"));
    }
    for sw in fabric.switches.values() {
        let json = pipeline_dir.join(format!("{}.json", sw.pipeline));
        if !json.exists() {
            return Some(format!(
                "{} missing: the bmv2 JSON of the pipeline comes from p4/compile.sh \
                 (p4c's p4c-bm2-ss, p4lang/p4c)",
                json.display()
            ));
        }
    }
    None
}
