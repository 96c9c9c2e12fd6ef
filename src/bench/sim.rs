//! `p4fabric sim-switches`: a process of simulated P4Runtime switches, so a
//! benchmark measures the controller's CPU and memory without the
//! simulated switches' own.

use std::io::{BufRead, Write};

use anyhow::Context;

use crate::testkit::sim::SimSwitch;

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Device ids to serve, one simulated switch each (comma separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub device_ids: Vec<u64>,
}

/// Starts the switches, prints `<device_id> <address>` per switch and then
/// `ready`, and serves until standard input closes.
pub async fn run(args: &SimArgs) -> anyhow::Result<()> {
    let mut switches = Vec::with_capacity(args.device_ids.len());
    let mut out = std::io::stdout().lock();
    for id in &args.device_ids {
        let t = SimSwitch::start(*id)
            .await
            .context("starting a simulated switch")?;
        writeln!(out, "{id} {}", t.addr())?;
        switches.push(t);
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
    })
    .await?;
    drop(switches);
    Ok(())
}

/// A child process running simulated switches; killed on drop.
pub struct SimSwitches {
    child: std::process::Child,
    /// device id -> address
    pub addresses: std::collections::BTreeMap<u64, String>,
}

impl SimSwitches {
    pub fn spawn(device_ids: &[u64]) -> anyhow::Result<SimSwitches> {
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().context("own executable")?;
        let ids: Vec<String> = device_ids.iter().map(u64::to_string).collect();
        let mut child = Command::new(exe)
            .arg("sim-switches")
            .arg("--device-ids")
            .arg(ids.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // A profiler preloaded into the benchmark (heaptrack) profiles
            // the controller only, not the simulated switches.
            .env_remove("LD_PRELOAD")
            .env_remove("DUMP_HEAPTRACK_OUTPUT")
            .spawn()
            .context("spawning sim-switches")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut addresses = std::collections::BTreeMap::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line?;
            if line == "ready" {
                return Ok(SimSwitches { child, addresses });
            }
            if let Some((id, addr)) = line.split_once(' ') {
                addresses.insert(id.parse()?, addr.to_string());
            }
        }
        anyhow::bail!("sim-switches ended before it was ready")
    }
}

impl Drop for SimSwitches {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
