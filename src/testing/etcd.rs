//! A throwaway etcd server: Debian's `etcd` binary on free 127.0.0.1 ports
//! with a temporary data directory, killed when dropped.
//!
//! ```no_run
//! # async fn t() {
//! let Some(etcd) = p4fabric::testing::EtcdServer::start_or_skip().await else { return };
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
        let Some(bin) = Self::binary() else {
            println!("SKIPPED: etcd not found (apt-get install etcd-server)");
            return None;
        };
        let mut last = String::new();
        // A free port can be taken between probing and binding: retry.
        for _ in 0..3 {
            match Self::start_with(&bin).await {
                Ok(s) => return Some(s),
                Err(e) => last = e,
            }
        }
        panic!("etcd did not start: {last}");
    }

    async fn start_with(bin: &Path) -> Result<EtcdServer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let client_port = free_port().map_err(|e| e.to_string())?;
        let peer_port = free_port().map_err(|e| e.to_string())?;
        let mut s = EtcdServer {
            child: None,
            dir,
            client_port,
            peer_port,
            bin: bin.to_path_buf(),
        };
        s.spawn_and_wait().await?;
        Ok(s)
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log =
            std::fs::File::create(self.dir.path().join("etcd.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
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
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_millis(500));
        let Ok(mut c) = etcd_client::Client::connect([self.endpoint()], Some(opts)).await else {
            return false;
        };
        c.get("/", None).await.is_ok()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
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
