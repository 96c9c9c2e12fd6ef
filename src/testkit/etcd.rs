//! A throwaway etcd server: Debian's `etcd` binary on free 127.0.0.1 ports
//! with a temporary data directory, killed when dropped.
//!
//! ```no_run
//! # async fn t() {
//! let Some(etcd) = p4fabric::testkit::EtcdServer::start_or_skip().await else { return };
//! let opts = p4fabric::config::etcd::EtcdOptions::new([etcd.endpoint()]);
//! # }
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the tests look for etcd (override with `P4FABRIC_ETCD_BIN`).
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    bin: PathBuf,
    tls: Option<TlsFiles>,
}

/// PEM files for a TLS etcd: a CA, and a certificate for 127.0.0.1 signed
/// by it that serves as both the server's and the client's identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Generates the files in `dir` with the `openssl` command; `None` if
    /// it is not installed.
    pub fn generate(dir: &Path) -> Option<TlsFiles> {
        let f = |n: &str| dir.join(n);
        let ext = f("ext.cnf");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .ok()?;
        // Run in `dir` with relative names: no quoting of paths needed.
        const EC: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        let steps = [
            format!("req -x509 {EC} -keyout ca.key -out ca.crt -days 2 -subj /CN=p4fabric-test-ca"),
            format!("req {EC} -keyout etcd.key -out etcd.csr -subj /CN=127.0.0.1"),
            "x509 -req -in etcd.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out etcd.crt -days 2 -extfile ext.cnf".to_string(),
        ];
        for args in steps {
            let ok = Command::new("openssl")
                .current_dir(dir)
                .args(args.split_whitespace())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()?
                .success();
            if !ok {
                return None;
            }
        }
        Some(TlsFiles {
            ca: f("ca.crt"),
            cert: f("etcd.crt"),
            key: f("etcd.key"),
        })
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    /// The etcd binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        let bin = std::env::var_os("P4FABRIC_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN));
        bin.exists().then_some(bin)
    }

    /// Starts etcd, or prints the skip notice and returns `None` when the
    /// binary is missing. Panics if etcd is installed but does not start
    /// (a test failure, not a skip).
    pub async fn start_or_skip() -> Option<EtcdServer> {
        Self::start_tls_or_skip(None).await
    }

    /// Like `start_or_skip`; with `tls`, etcd serves https and requires a
    /// client certificate signed by the CA.
    pub async fn start_tls_or_skip(tls: Option<TlsFiles>) -> Option<EtcdServer> {
        let Some(bin) = Self::binary() else {
            println!("SKIPPED: etcd not found (apt-get install etcd-server)");
            return None;
        };
        let mut last = String::new();
        // A free port can be taken between probing and binding: retry.
        for _ in 0..3 {
            match Self::start_with(&bin, tls.clone()).await {
                Ok(s) => return Some(s),
                Err(e) => last = e,
            }
        }
        panic!("etcd did not start: {last}");
    }

    /// Starts etcd (for the demo): an error, not a panic, if it fails.
    pub async fn start() -> Result<EtcdServer, String> {
        let bin = Self::binary().ok_or("etcd not found (apt-get install etcd-server)")?;
        let mut last = String::new();
        for _ in 0..3 {
            match Self::start_with(&bin, None).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(format!("etcd did not start: {last}"))
    }

    async fn start_with(bin: &Path, tls: Option<TlsFiles>) -> Result<EtcdServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let client_port = free_port().map_err(|e| e.to_string())?;
        let peer_port = free_port().map_err(|e| e.to_string())?;
        let mut s = EtcdServer {
            child: None,
            dir,
            client_port,
            peer_port,
            bin: bin.to_path_buf(),
            tls,
        };
        s.spawn_and_wait().await?;
        Ok(s)
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log =
            std::fs::File::create(self.dir.path().join("etcd.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cert-file={}", t.cert.display()))
                .arg(format!("--key-file={}", t.key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name=default")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("etcd exited with {status}: {}", self.log_tail()));
                }
            }
            if self.ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("etcd not ready after 15 s: {}", self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) -> bool {
        let mut opts = crate::config::etcd::EtcdOptions::new([self.endpoint()]);
        opts.connect_timeout = Duration::from_millis(500);
        if let Some(t) = &self.tls {
            opts.ca_file = Some(t.ca.clone());
            opts.cert_file = Some(t.cert.clone());
            opts.key_file = Some(t.key.clone());
        }
        opts.connect().await.is_ok()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Stops etcd hard (SIGKILL); the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same ports and data directory.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn_and_wait().await
    }

    /// Starts etcd again with an empty data directory: a rebuilt cluster
    /// whose revisions start over.
    pub async fn restart_empty(&mut self) -> Result<(), String> {
        self.kill();
        std::fs::remove_dir_all(self.data_dir()).map_err(|e| e.to_string())?;
        self.spawn_and_wait().await
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
