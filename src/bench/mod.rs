//! Load commands that print figures (`p4fabric bench ...`). Benchmarks,
//! not tests: they measure and report, with the exact setup printed.
//! Behind the `testkit` feature.
//!
//! May use: the production modules and the test kit (simulated switches,
//! the lab, etcd). Used by `cli::bench` and the benches.

pub mod converge;
pub mod learn_flood;
pub mod scale;
pub mod sim;
pub mod write;

use std::time::Duration;

use anyhow::Context;

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU time this process has used.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// p50/p99/max of a sample, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99), at(1.0))
}

/// The 1/5/15-minute load averages (`/proc/loadavg`), printed with every
/// figure: the machine is shared.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A copy of the fabric pipeline in `dir` whose table and action-profile
/// sizes (P4Info `size`, bmv2 JSON `max_size`) are `scale` times larger, in
/// a temporary directory.
pub fn scaled_pipeline(dir: &std::path::Path, scale: u64) -> anyhow::Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    let txt = std::fs::read_to_string(dir.join("fabric.p4info.txt"))
        .context("fabric.p4info.txt (p4/compile.sh)")?;
    // Tables and action profiles only (meter and counter cells stay).
    let mut block = "";
    let scaled: Vec<String> = txt
        .lines()
        .map(|l| {
            if let Some(b) = l.strip_suffix(" {").filter(|b| !b.starts_with(' ')) {
                block = b;
            }
            let sized = matches!(block, "tables" | "action_profiles");
            match l.strip_prefix("  size: ").map(str::parse::<u64>) {
                Some(Ok(n)) if sized => format!("  size: {}", n * scale),
                _ => l.to_string(),
            }
        })
        .collect();
    std::fs::write(tmp.path().join("fabric.p4info.txt"), scaled.join("\n"))?;
    if let Ok(json) = std::fs::read_to_string(dir.join("fabric.json")) {
        let mut out = String::with_capacity(json.len());
        let mut rest = json.as_str();
        while let Some(at) = rest.find("\"max_size\"") {
            let (head, tail) = rest.split_at(at);
            out.push_str(head);
            let colon = tail.find(':').map_or(tail.len(), |c| c + 1);
            out.push_str(&tail[..colon]);
            let value = &tail[colon..];
            let digits_at = value.len() - value.trim_start().len();
            let digits = value[digits_at..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(value.len() - digits_at, |e| e);
            match value[digits_at..digits_at + digits].parse::<u64>() {
                Ok(n) => out.push_str(&format!(" {}", n * scale)),
                Err(_) => out.push_str(&value[..digits_at + digits]),
            }
            rest = &value[digits_at + digits..];
        }
        out.push_str(rest);
        std::fs::write(tmp.path().join("fabric.json"), out)?;
    }
    Ok(tmp)
}

/// A short description of the machine, printed with every result.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cpus} cpus ({model})")
}
