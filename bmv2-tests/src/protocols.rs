//! Shared pieces of the control-protocol scenario tests
//! (`tests/protocols_*.rs`): a 2-spine, 2-leaf fabric whose hosts resolve
//! the gateway and each other with real ARP / ND, a started controller,
//! and small polling helpers.

use std::future::Future;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use p4fabric::config::{Fabric, PortRef};
use p4fabric::testkit::lab::reach::Probe;
use p4fabric::testkit::lab::run::{FlowReport, LabController, LabRun};
use p4fabric::testkit::lab::LabOptions;

/// Two spines, two leaves (ports 1 and 2 up to the spines); on each leaf
/// port 3 is VLAN 10 and port 4 VLAN 20, each with a configured host;
/// ports 6 (VLAN 10) have no host (for hosts the fabric has to learn);
/// ports 5 are free for a LAG (`LAG_YAML`).
pub const FABRIC_YAML: &str = r#"
settings:
  gateway_mac: "02:00:00:fa:b0:01"
  lacp_system_id: "02:00:00:fa:b0:02"
  mac_aging_secs: 300
  discovery_interval_ms: 1000
  discovery_miss_limit: 3
  punt_rate_pps: 1000
switches:
  leaf1: {address: "127.0.0.1:1", device_id: 1, role: leaf, label: 101, fabric_ports: [1, 2]}
  leaf2: {address: "127.0.0.1:2", device_id: 2, role: leaf, label: 102, fabric_ports: [1, 2]}
  spine1: {address: "127.0.0.1:3", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}
  spine2: {address: "127.0.0.1:4", device_id: 4, role: spine, label: 202, fabric_ports: [1, 2]}
links:
  leaf1-spine1: {a: leaf1/1, b: spine1/1}
  leaf1-spine2: {a: leaf1/2, b: spine2/1}
  leaf2-spine1: {a: leaf2/1, b: spine1/2}
  leaf2-spine2: {a: leaf2/2, b: spine2/2}
ports:
  leaf1/3: {mode: access, vlan: 10}
  leaf1/4: {mode: access, vlan: 20}
  leaf1/6: {mode: access, vlan: 10}
  leaf2/3: {mode: access, vlan: 10}
  leaf2/4: {mode: access, vlan: 20}
  leaf2/6: {mode: access, vlan: 10}
vlans:
  10: {name: web, ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {name: db, ipv4_gateway: 10.0.20.1/24, ipv6_gateway: "2001:db8:20::1/64"}
hosts:
  a1: {mac: "02:00:00:00:10:01", vlan: 10, ips: [10.0.10.11, "2001:db8:10::11"], attachment: {port: leaf1/3}}
  a2: {mac: "02:00:00:00:10:02", vlan: 10, ips: [10.0.10.12, "2001:db8:10::12"], attachment: {port: leaf2/3}}
  b1: {mac: "02:00:00:00:20:01", vlan: 20, ips: [10.0.20.11, "2001:db8:20::11"], attachment: {port: leaf1/4}}
  b2: {mac: "02:00:00:00:20:02", vlan: 20, ips: [10.0.20.12, "2001:db8:20::12"], attachment: {port: leaf2/4}}
"#;

/// A server bonded to both leaves over ports 5 with LACP (fast), in
/// VLAN 20, to merge into `FABRIC_YAML`.
pub const LAG_YAML: &str = r#"
lags:
  bond1: {id: 1, members: [leaf1/5, leaf2/5], protocol: lacp, lacp: {rate: fast}, mode: access, vlan: 20}
hosts:
  srv: {mac: "02:00:00:00:30:01", vlan: 20, ips: [10.0.20.30, "2001:db8:20::30"], attachment: {lag: bond1}}
"#;

/// The base fabric, edited by `edit`.
pub fn fabric(edit: impl FnOnce(&mut Fabric)) -> Fabric {
    let mut f: Fabric = serde_yaml::from_str(FABRIC_YAML).expect("protocol test fabric");
    edit(&mut f);
    f
}

/// The base fabric with the LACP server of `LAG_YAML`.
pub fn fabric_with_lag() -> Fabric {
    let extra: Fabric = serde_yaml::from_str(LAG_YAML).expect("lag yaml");
    fabric(|f| {
        f.lags.extend(extra.lags);
        f.hosts.extend(extra.hosts);
    })
}

/// Starts the lab (hosts resolve neighbours for real), etcd and a
/// controller; waits until discovery saw every link and the switches read
/// back converged.
pub async fn start(fabric: &Fabric, ns_prefix: &str) -> (LabRun, LabController) {
    p4fabric::testkit::lab::init_test_logging();
    let opts = LabOptions {
        host_ns_prefix: ns_prefix.to_string(),
        resolve_neighbors: true,
        ..LabOptions::default()
    };
    let run = LabRun::start_with(fabric, opts).await.expect("lab");
    let ctl = run
        .start_controller(ns_prefix.trim_end_matches('-'))
        .await
        .expect("controller");
    run.wait_settled(Duration::from_secs(30))
        .await
        .expect("settled");
    (run, ctl)
}

/// Runs a command in host `host`'s namespace; (success, stdout).
pub fn exec(run: &LabRun, host: &str, cmd: &[&str]) -> (bool, String) {
    let Some(ns) = run.lab.host_ns(host) else {
        return (false, format!("no host {host}"));
    };
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(cmd)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Pings `ip` from `host` until one echo is answered (1 s per try), at most
/// `tries` times; how many tries it took.
pub fn ping_until(run: &LabRun, host: &str, ip: IpAddr, tries: u32) -> Option<u32> {
    let ip = ip.to_string();
    (1..=tries).find(|_| exec(run, host, &["ping", "-n", "-c1", "-W1", &ip]).0)
}

/// `count` pings 100 ms apart from `host` to `ip` (from source address
/// `src` if given): how many were answered.
pub fn ping_count(run: &LabRun, host: &str, ip: IpAddr, src: Option<&str>, count: u32) -> u32 {
    let (count, ip) = (count.to_string(), ip.to_string());
    let mut cmd = vec!["ping", "-n", "-q", "-i", "0.1", "-W", "1", "-c", &count];
    if let Some(s) = src {
        cmd.extend(["-I", s]);
    }
    cmd.push(&ip);
    let (_, out) = exec(run, host, &cmd);
    out.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(" packets transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Polls `f` every 200 ms until it returns `Some`, or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status value at `path` (relative to `status/`), if any.
pub async fn status_at(run: &LabRun, path: &str) -> Option<serde_json::Value> {
    run.status().await.ok()?.remove(path)
}

/// `status/lags/<lag>/<port>`'s `usable` flag.
pub async fn lag_member_usable(run: &LabRun, lag: &str, port: &PortRef) -> Option<bool> {
    status_at(run, &format!("lags/{lag}/{port}"))
        .await?
        .get("usable")?
        .as_bool()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The learned host (VLAN, MAC) as the controller reports it.
pub async fn learned_host(
    run: &LabRun,
    vlan: p4fabric::config::VlanId,
    mac: p4fabric::net::MacAddr,
) -> Option<p4fabric::config::status::HostStatus> {
    let v = status_at(run, &p4fabric::config::status::paths::host(vlan, mac)).await?;
    serde_json::from_value(v).ok()
}

/// A host the configuration does not list, for the fabric to learn: MAC
/// `02:00:00:00:10:99`, 10.0.10.99 and 2001:db8:10::99 in VLAN 10, on the
/// ports given (the first is where it starts).
pub fn unlisted_host(run: &mut LabRun, name: &str, ports: &[&str]) -> p4fabric::config::Host {
    let host: p4fabric::config::Host = serde_yaml::from_str(
        r#"{mac: "02:00:00:00:10:99", vlan: 10, ips: [10.0.10.99, "2001:db8:10::99"], attachment: {port: leaf1/6}}"#,
    )
    .expect("host");
    let ports: Vec<PortRef> = ports.iter().map(|p| p.parse().expect("port")).collect();
    let fabric = run.fabric().clone();
    run.lab
        .add_host(&fabric, name, &host, &ports)
        .expect("unlisted host");
    host
}

/// Entities on any switch whose key mentions `needle` (e.g. a MAC as
/// `0x20000001099`), from the last read-back.
pub fn entities_mentioning(
    c: &p4fabric::testkit::lab::readback::Convergence,
    needle: &str,
) -> Vec<String> {
    c.installed
        .iter()
        .flat_map(|(sw, ents)| {
            ents.keys()
                .map(move |k| format!("{sw}: {k}"))
                .filter(|s| s.contains(needle))
        })
        .collect()
}

/// Waits until `status/lags/<lag>/<port>` says `usable`; false on timeout.
pub async fn wait_member(run: &LabRun, lag: &str, port: &PortRef, usable: bool) -> bool {
    wait_for(Duration::from_secs(8), || async {
        (lag_member_usable(run, lag, port).await? == usable).then_some(())
    })
    .await
    .is_some()
}

/// Every probe answers within `tries` one-second pings.
pub fn assert_reachable(run: &LabRun, probes: &[Probe], tries: u32, what: &str) {
    for p in probes {
        assert!(
            ping_until(run, &p.from, p.ip, tries).is_some(),
            "{what}: {} -> {} ({}) unanswered",
            p.from,
            p.to,
            p.ip
        );
    }
}

/// Prints the flows and asserts each got answers and no outage longer
/// than `bound`.
pub fn assert_outages(reports: &[FlowReport], bound: Duration, what: &str) {
    for r in reports {
        eprintln!("{what}: {r}");
        assert!(
            r.received > 0 && r.longest_outage <= bound,
            "{what}: outage over {} ms or nothing received: {r}",
            bound.as_millis()
        );
    }
}
