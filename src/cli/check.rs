//! `p4fabric check --etcd URL --from A --to B`: does the configuration in
//! etcd work? Loads every configuration key, runs the controller against
//! that etcd on in-process (SIMULATED) P4Runtime switches listening at the
//! configured switch addresses, waits until every switch holds what the
//! configuration compiles to, then reports the keys the controller
//! rejected (`status/config/...`) and walks a frame from host A to host B
//! through the entities read back from the switches (the forwarding
//! checker: no packet is sent). Exit status non-zero if any key is
//! rejected, the fabric does not converge, or B is unreachable from A.
//!
//! Written for writers other than `apply` (the Neutron driver's tests):
//! their keys go through exactly the controller's acceptance path.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::demo::SIMULATED;
use super::EtcdArgs;
use crate::compile::reach::{check_probe, Probe};
use crate::config::keys::STATUS_DIR;
use crate::config::{ConfigState, Fabric, LagMode, DEFAULT_PREFIX};
use crate::p4rt::Pipeline;
use crate::testkit::lab::readback;
use crate::testkit::lab::run::{read_status, wait_converged_with_status, LabController};
use crate::testkit::sim::SimSwitch;
use crate::topo::{ObservedState, Topology};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Source host (a `hosts/` name).
    #[arg(long)]
    pub from: String,
    /// Destination host (a `hosts/` name).
    #[arg(long)]
    pub to: String,
    /// Probe the destination's IPv6 address instead of its IPv4 one.
    #[arg(long)]
    pub ipv6: bool,
    /// Seconds to wait for every switch to converge.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Directory of compiled pipelines (default: the checked-in p4/build).
    #[arg(long, env = "P4FABRIC_PIPELINE_DIR")]
    pub pipeline_dir: Option<PathBuf>,
}

/// What a check found.
#[derive(Debug)]
pub struct CheckReport {
    /// `status/config/<key>` entries: key and the controller's reason.
    pub rejected: Vec<(String, String)>,
    /// Switches not holding their desired state, and why.
    pub pending: Vec<(String, String)>,
    /// `Ok` or why B is not reachable from A.
    pub reach: Result<(), String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.rejected.is_empty() && self.pending.is_empty() && self.reach.is_ok()
    }
}

pub async fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let r = check(args).await?;
    for (k, why) in &r.rejected {
        println!("REJECTED {k}: {why}");
    }
    for (sw, why) in &r.pending {
        println!("[{SIMULATED}] NOT converged: {sw}: {why}");
    }
    match &r.reach {
        Ok(()) => println!("[{SIMULATED}] {} -> {}: reachable", args.from, args.to),
        Err(e) => println!(
            "[{SIMULATED}] {} -> {}: NOT reachable: {e}",
            args.from, args.to
        ),
    }
    println!(
        "check: {} rejected key(s), {} switch(es) not converged, {} -> {} {}",
        r.rejected.len(),
        r.pending.len(),
        args.from,
        args.to,
        if r.reach.is_ok() { "ok" } else { "FAILED" }
    );
    if !r.ok() {
        bail!("check failed");
    }
    Ok(())
}

/// Runs the check (see the module comment) and returns what it found.
pub async fn check(args: &CheckArgs) -> anyhow::Result<CheckReport> {
    // The lab helpers read status from one endpoint under the default
    // prefix; say so rather than check the wrong keys.
    if args.etcd.prefix != DEFAULT_PREFIX {
        bail!("check reads the default prefix {DEFAULT_PREFIX} only");
    }
    let endpoint = args
        .etcd
        .endpoints
        .first()
        .context("no etcd endpoint")?
        .clone();
    let fabric = load(&args.etcd).await?;
    let (Some(from), Some(to)) = (fabric.hosts.get(&args.from), fabric.hosts.get(&args.to)) else {
        bail!(
            "hosts/{} or hosts/{} is not in force (missing or rejected)",
            args.from,
            args.to
        );
    };
    let ip = pick_ip(&to.ips, args.ipv6).with_context(|| {
        format!(
            "{} has no {} address to probe",
            args.to,
            if args.ipv6 { "IPv6" } else { "IPv4" }
        )
    })?;
    if pick_ip(&from.ips, args.ipv6).is_none() && from.vlan != to.vlan {
        bail!("{} has no address of that family to route from", args.from);
    }
    for (name, lag) in &fabric.lags {
        if lag.protocol == LagMode::Lacp {
            println!("note: LAG {name} runs LACP: simulated switches pass no frames, so its members never come up (use protocol static to check it)");
        }
    }

    let pipeline_dir = args
        .pipeline_dir
        .clone()
        .unwrap_or_else(Pipeline::default_dir);
    let pipelines = readback::load_pipelines(&pipeline_dir, &fabric)?;
    let mut targets = Vec::new();
    for (name, sw) in &fabric.switches {
        let addr = sw
            .address
            .parse()
            .with_context(|| format!("{name}: address {} is not IP:PORT", sw.address))?;
        let t = SimSwitch::start_on(sw.device_id, addr)
            .await
            .with_context(|| format!("{name}: cannot listen on {addr} (busy?)"))?;
        targets.push(t);
    }
    println!(
        "[{SIMULATED}] {} in-process P4Runtime switches started",
        targets.len()
    );
    let ctl = LabController::start(&endpoint, "check").await?;
    let conv = wait_converged_with_status(
        &fabric,
        &pipelines,
        &endpoint,
        Duration::from_secs(args.timeout),
    )
    .await;
    let status = read_status(&endpoint).await;
    ctl.stop().await;
    drop(targets);

    let rejected = status?
        .into_iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("config/")?.to_string();
            let why = v
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("(no reason given)")
                .to_string();
            Some((key, why))
        })
        .collect();
    let topo = Topology::build(&fabric, &ObservedState::default(), None);
    let checker = crate::compile::check::Checker::new(&conv.installed, &topo);
    let probe = Probe {
        from: args.from.clone(),
        to: args.to.clone(),
        ip,
    };
    Ok(CheckReport {
        rejected,
        pending: conv.pending.clone().into_iter().collect(),
        reach: check_probe(&checker, &fabric, &probe),
    })
}

/// The configuration in force from etcd: every configuration key through
/// the controller's key-by-key acceptance (rejected keys left out).
async fn load(etcd: &EtcdArgs) -> anyhow::Result<Fabric> {
    let store = etcd.connect().await?;
    let mut snap = store.get_dir("").await?;
    snap.kvs.retain(|k, _| !k.starts_with(STATUS_DIR));
    let (fabric, _) = ConfigState::new().reset(snap.kvs);
    Ok(fabric)
}

fn pick_ip(ips: &[IpAddr], v6: bool) -> Option<IpAddr> {
    ips.iter().copied().find(|ip| ip.is_ipv6() == v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::encode;
    use crate::config::store::ConfigStore;
    use crate::testkit::EtcdServer;

    /// A leaf pair and a spine on free ports; hosts `a` (leaf1/3) and `b`
    /// (leaf2/3) in VLAN 10, `c` on VLAN 20 whose port is missing.
    fn fabric(ports: &[u16]) -> Fabric {
        let yaml = format!(
            r#"
switches:
  leaf1: {{address: "127.0.0.1:{}", device_id: 1, role: leaf, label: 101, fabric_ports: [1]}}
  leaf2: {{address: "127.0.0.1:{}", device_id: 2, role: leaf, label: 102, fabric_ports: [1]}}
  spine1: {{address: "127.0.0.1:{}", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}}
links:
  l1: {{a: leaf1/1, b: spine1/1}}
  l2: {{a: leaf2/1, b: spine1/2}}
ports:
  leaf1/3: {{mode: access, vlan: 10}}
  leaf2/3: {{mode: trunk, vlans: [10]}}
vlans:
  10: {{ipv4_gateway: 10.0.10.1/24}}
hosts:
  a: {{mac: "02:00:00:00:00:0a", vlan: 10, ips: [10.0.10.11], attachment: {{port: leaf1/3}}}}
  b: {{mac: "02:00:00:00:00:0b", vlan: 10, ips: [10.0.10.12], attachment: {{port: leaf2/3}}}}
"#,
            ports[0], ports[1], ports[2]
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn args(endpoint: &str, from: &str, to: &str) -> CheckArgs {
        CheckArgs {
            from: from.into(),
            to: to.into(),
            ipv6: false,
            timeout: 30,
            etcd: super::super::EtcdArgs::plain(endpoint),
            pipeline_dir: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_reachability_and_rejected_keys() {
        let Some(_) = EtcdServer::binary() else {
            eprintln!("SKIPPED: etcd not installed");
            return;
        };
        let etcd = EtcdServer::start().await.unwrap();
        let store = crate::config::etcd::EtcdOptions::new([etcd.endpoint()])
            .connect()
            .await
            .unwrap();
        let f = fabric(&[free_port(), free_port(), free_port()]);
        let mut raw = encode(&f);
        // A binding Neutron might write for a VLAN nobody configured.
        raw.insert(
            "hosts/c".into(),
            br#"{"mac":"02:00:00:00:00:0c","vlan":20,"ips":["10.0.20.5"],"attachment":{"port":"leaf1/3"},"owner":"neutron"}"#.to_vec(),
        );
        store
            .commit_if_unchanged_since(raw.into_iter().collect(), vec![], 0)
            .await
            .unwrap();

        let r = check(&args(&etcd.endpoint(), "a", "b")).await.unwrap();
        assert!(r.pending.is_empty(), "{:?}", r.pending);
        assert_eq!(r.reach, Ok(()));
        assert_eq!(r.rejected.len(), 1, "{:?}", r.rejected);
        assert_eq!(r.rejected[0].0, "hosts/c");
        assert!(r.rejected[0].1.contains("VLAN 20"), "{:?}", r.rejected);
        assert!(!r.ok());

        // Without the bad key: all good. Unknown hosts are an error, not a
        // pass.
        let rev = store.load().await.unwrap().revision;
        store
            .commit_if_unchanged_since(vec![], vec!["hosts/c".into()], rev)
            .await
            .unwrap();
        let r = check(&args(&etcd.endpoint(), "b", "a")).await.unwrap();
        assert!(r.ok(), "{r:?}");
        assert!(check(&args(&etcd.endpoint(), "a", "nobody")).await.is_err());
    }
}
