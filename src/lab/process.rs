//! `p4fabric run` as a separate process, for tests that kill a controller
//! the way an operator or a crash would (SIGKILL, SIGTERM), and read its
//! `/metrics` endpoint.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The `p4fabric` binary next to the running test executable
/// (`<target>/<profile>/p4fabric`; tests live in `<profile>/deps/`), or
/// `P4FABRIC_BIN`. It is (re)built with `cargo build --bin p4fabric` when
/// the test runs under cargo, so a test never runs a stale daemon.
pub fn binary() -> Result<PathBuf> {
    // Built (or found) once per test process.
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| find_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn find_or_build() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("P4FABRIC_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("own executable")?;
    let mut dir = exe.parent().context("executable directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("profile directory")?;
    }
    let bin = dir.join("p4fabric");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let target = dir.parent().context("target directory")?;
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "p4fabric", "--bin", "p4fabric"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().context("cargo build --bin p4fabric")?;
        if !out.status.success() {
            bail!(
                "cargo build --bin p4fabric failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --bin p4fabric` (or set P4FABRIC_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

/// One `p4fabric run --etcd ...` process with its metrics endpoint.
pub struct ControllerProcess {
    pub id: String,
    pub metrics_addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl ControllerProcess {
    /// Starts an instance against `endpoint` with leadership lease `ttl`;
    /// its output goes to `<log_dir>/<id>.log`. Waits until `/metrics`
    /// answers.
    pub fn start(endpoint: &str, id: &str, ttl: Duration, log_dir: &Path) -> Result<Self> {
        let ttl = ttl.as_secs().max(1).to_string();
        Self::start_with(endpoint, id, log_dir, &["--lease-ttl", &ttl])
    }

    /// Starts an instance with `p4fabric run`'s default options.
    pub fn start_default(endpoint: &str, id: &str, log_dir: &Path) -> Result<Self> {
        Self::start_with(endpoint, id, log_dir, &[])
    }

    /// Starts an instance with these extra `p4fabric run` options.
    pub fn start_with(endpoint: &str, id: &str, log_dir: &Path, extra: &[&str]) -> Result<Self> {
        let bin = binary()?;
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", super::free_port()?).parse()?;
        let log = log_dir.join(format!("{id}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&bin)
            .args(["run", "--etcd", endpoint, "--controller-id", id])
            .args(extra)
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .env(
                "RUST_LOG",
                std::env::var("P4FABRIC_TEST_LOG").unwrap_or_else(|_| "p4fabric=info".into()),
            )
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut p = ControllerProcess {
            id: id.to_string(),
            metrics_addr,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.metrics().is_err() {
            if let Some(c) = p.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("{id} exited with {status}:\n{}", p.log());
                }
            }
            if Instant::now() > deadline {
                bail!("{id}: no /metrics on {metrics_addr}:\n{}", p.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(p)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Reads `/metrics` once.
    pub fn metrics(&self) -> Result<Metrics> {
        let mut s = TcpStream::connect_timeout(&self.metrics_addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        let (head, body) = body.split_once("\r\n\r\n").context("no HTTP body")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("metrics: {}", head.lines().next().unwrap_or_default());
        }
        Ok(Metrics::parse(body))
    }

    /// Is this instance the leader (`p4fabric_leader 1`)?
    pub fn is_leader(&self) -> bool {
        self.metrics().is_ok_and(|m| m.sum("p4fabric_leader") > 0.0)
    }

    /// Updates written by this process so far (`p4fabric_writes_total`).
    pub fn writes(&self) -> Result<u64> {
        Ok(self.metrics()?.sum("p4fabric_writes_total") as u64)
    }

    /// kill -9: no resignation, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit (SIGKILL after).
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut c = self.child.take().context("not running")?;
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scrape of the Prometheus text format: series (name with labels) ->
/// value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.trim().rsplit_once(' ')?;
                    Some((series.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The sum over every series of metric `name` (any labels).
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(s, _)| s.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// The series of `name` by their `switch` label.
    pub fn per_switch(&self, name: &str) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|(s, v)| {
                let rest = s.strip_prefix(name)?.strip_prefix("{switch=\"")?;
                let (sw, _) = rest.split_once('"')?;
                Some((sw.to_string(), *v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_sum_and_per_switch() {
        let m = Metrics::parse(
            "# TYPE p4fabric_writes_total counter\n\
             p4fabric_writes_total{switch=\"leaf1\"} 3\n\
             p4fabric_writes_total{switch=\"leaf2\"} 4\n\
             p4fabric_writes_total_other 9\n\
             p4fabric_leader 1\n",
        );
        assert_eq!(m.sum("p4fabric_writes_total"), 7.0);
        assert_eq!(m.sum("p4fabric_leader"), 1.0);
        assert_eq!(m.per_switch("p4fabric_writes_total")["leaf2"], 4.0);
        assert_eq!(m.per_switch("p4fabric_writes_total").len(), 2);
    }
}
