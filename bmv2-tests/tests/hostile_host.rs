//! A hostile host on an access port (issue #21). Fabric: 2 spines, 2
//! leaves, two VRFs (VLANs 10 and 20 in VRF 0, VLAN 30 in VRF 1), a
//! configured host on each of six ports and the attacker `x` on leaf1/6
//! (VLAN 10). While pings run every 10 ms between every pair of the other
//! hosts, `x` sends in turn: forged discovery probes naming spine ports,
//! malformed and forged LACPDUs, truncated and bogus-length ARP, ND
//! solicitations with garbage options, junk under common ethertypes, then
//! a MAC flood: 5,000 ARP requests in ~9 s, each from a new random unicast
//! MAC claiming a random address of 10.0.10.0/24.
//!
//! Asserted: no fabric link changes state (`status/observed`,
//! `status/links/...`) during the attack or the 60 s after; no bystander
//! flow loses more than 300 ms in that time (every flow's worst gap is
//! printed); the controller is alive (discovery counters move) and every
//! pair answers afterwards; exactly `LIMIT` hosts were learned on the
//! attacker's port (its `max_learned_macs`) and
//! `status/port-security/ports/leaf1/6` says why; the flood's hosts age
//! out (`mac_aging_secs: 15`) and the key goes with them.
//!
//! `a_probe_flood_then_a_mac_flood` (ignored, see there) adds a flood of
//! forged probes before the MAC flood.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bmv2_tests::packet::{arp_frame, ethernet, lacp_frame, mac};
use bmv2_tests::protocols::{assert_reachable, start};
use p4fabric::config::{Attachment, Fabric, PortRef};
use p4fabric::controller::observations::learned_hosts;
use p4fabric::net::MacAddr;
use p4fabric::protocols::discovery::Probe as LinkProbe;
use p4fabric::protocols::frames::{build_eth, icmpv6_packet, solicited_node};
use p4fabric::testkit::lab::reach::{self, Probe};
use p4fabric::testkit::lab::run::{observations, LabRun};

const FABRIC_YAML: &str = r#"
settings:
  gateway_mac: "02:00:00:fa:b0:01"
  lacp_system_id: "02:00:00:fa:b0:02"
  mac_aging_secs: 15
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
  leaf1/5: {mode: access, vlan: 30}
  leaf1/6: {mode: access, vlan: 10, max_learned_macs: 200}
  leaf2/3: {mode: access, vlan: 10}
  leaf2/4: {mode: access, vlan: 20}
  leaf2/5: {mode: access, vlan: 30}
vlans:
  10: {name: web, ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {name: db, ipv4_gateway: 10.0.20.1/24}
  30: {name: other-tenant, vrf: 1, ipv4_gateway: 10.0.30.1/24}
hosts:
  a1: {mac: "02:00:00:00:10:01", vlan: 10, ips: [10.0.10.11], attachment: {port: leaf1/3}}
  a2: {mac: "02:00:00:00:10:02", vlan: 10, ips: [10.0.10.12], attachment: {port: leaf2/3}}
  b1: {mac: "02:00:00:00:20:01", vlan: 20, ips: [10.0.20.11], attachment: {port: leaf1/4}}
  b2: {mac: "02:00:00:00:20:02", vlan: 20, ips: [10.0.20.12], attachment: {port: leaf2/4}}
  c1: {mac: "02:00:00:00:30:01", vlan: 30, ips: [10.0.30.11], attachment: {port: leaf1/5}}
  c2: {mac: "02:00:00:00:30:02", vlan: 30, ips: [10.0.30.12], attachment: {port: leaf2/5}}
  x: {mac: "02:00:00:00:10:66", vlan: 10, ips: [10.0.10.66, "2001:db8:10::66"], attachment: {port: leaf1/6}}
"#;

/// The attacker's port and its learned-MAC limit (as configured above).
const ATTACK_PORT: &str = "leaf1/6";
const LIMIT: usize = 200;
/// In the example fabric the attacker goes on a free port of leaf3.
const EXAMPLE_ATTACK_PORT: &str = "leaf3/4";
const X_MAC: &str = "02:00:00:00:10:66";
const INTERVAL: Duration = Duration::from_millis(10);
const MAX_GAP: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_secs(60);
const FLOOD_FRAMES: u32 = 5000;
const FLOOD_TIME: Duration = Duration::from_secs(9);
/// Forged probes at 3,000 a second, three times the punt meter's rate.
const PROBE_FLOOD_FRAMES: u32 = 15_000;
const PROBE_FLOOD_TIME: Duration = Duration::from_secs(5);

/// xorshift64*: enough randomness for junk, with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The attack before the flood, phase by phase: (name, frames).
fn attack_phases(rng: &mut Rng) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let x = mac(X_MAC);
    let mut phases = Vec::new();
    // Forged probes naming spine ports (and a leaf's), as discovery
    // encodes them.
    let lldp = (0..40)
        .map(|i| {
            let (switch, port) = [("spine1", 1), ("spine2", 2), ("leaf2", 1)][i % 3];
            LinkProbe {
                switch: switch.into(),
                port,
                ttl_secs: 120,
            }
            .frame(MacAddr(x))
        })
        .collect();
    phases.push(("forged discovery probes", lldp));
    // LACPDUs: zero partner (no TLV headers), truncated, bogus TLV
    // lengths, version 0, a well-formed one claiming a partner.
    let mut lacp = Vec::new();
    for i in 0..40u16 {
        let mut f = lacp_frame(x, i);
        match i % 5 {
            0 => {}
            1 => f.truncate(14 + (usize::from(i) % 40)),
            2 => f[14 + 3] = 0xff,
            3 => f[14 + 1] = 0,
            _ => {
                f[14 + 22] = 2;
                f[14 + 23] = 20;
                f[14 + 42] = 3;
                f[14 + 43] = 16;
            }
        }
        lacp.push(f);
    }
    phases.push(("malformed LACPDUs", lacp));
    // ARP: truncated anywhere in the header, and bogus lengths / types.
    let mut arp = Vec::new();
    for i in 0..60usize {
        let mut f = arp_frame([0xff; 6], x, 1, [10, 0, 10, 66], [10, 0, 10, 1]);
        if i % 2 == 0 {
            f.truncate(14 + i % 28);
        } else {
            f[14 + 4] = rng.next() as u8;
            f[14 + 5] = rng.next() as u8;
            f[14..16].copy_from_slice(&(rng.next() as u16).to_be_bytes());
        }
        arp.push(f);
    }
    phases.push(("truncated / bogus-length ARP", arp));
    // ND solicitations (valid header and checksum) with garbage options.
    let src: std::net::Ipv6Addr = "2001:db8:10::66".parse().expect("v6");
    let nd = (0..60)
        .map(|i| {
            let target: std::net::Ipv6Addr = if i % 2 == 0 {
                "2001:db8:10::1".parse().expect("v6")
            } else {
                "2001:db8:10::12".parse().expect("v6")
            };
            let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&target.octets());
            let n = rng.below(48) as usize;
            let mut opts = rng.bytes(n);
            if i % 3 == 0 && opts.len() >= 2 {
                opts[1] = 0; // a zero-length option
            }
            icmp.extend(opts);
            let dst = solicited_node(&target);
            let o = dst.octets();
            let dmac = MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]);
            build_eth(
                dmac,
                MacAddr(x),
                None,
                0x86dd,
                &icmpv6_packet(src, dst, 255, icmp),
            )
        })
        .collect();
    phases.push(("ND solicitations with garbage options", nd));
    // Junk under common ethertypes, broadcast and to the gateway.
    let types = [
        0x0800u16, 0x86dd, 0x0806, 0x88cc, 0x8809, 0x8100, 0x88a8, 0x8847, 0x0000, 0xffff,
    ];
    let junk = (0..200)
        .map(|i| {
            let dst = if i % 2 == 0 {
                [0xff; 6]
            } else {
                mac("02:00:00:fa:b0:01")
            };
            let mut f = ethernet(dst, x, types[i % types.len()]);
            let n = rng.below(200) as usize;
            f.extend(rng.bytes(n));
            f
        })
        .collect();
    phases.push(("junk under common ethertypes", junk));
    phases
}

/// One flood frame: an ARP request from a new random unicast MAC claiming
/// a random address of 10.0.10.0/24 — but not a configured host's: the
/// fabric floods ARP requests in the VLAN, and the bystanders' own kernels
/// take a request claiming their peer's address as an update of their
/// neighbour cache (ARP spoofing of the hosts, not of the fabric: the
/// fabric never binds a configured address to another MAC, see
/// `protocols::tests::learning`). Stopping that takes ARP inspection in
/// the data plane (docs/protocols.md, "Port security"), not yet there.
fn flood_frame(rng: &mut Rng) -> Vec<u8> {
    let mut src = [0u8; 6];
    src.copy_from_slice(&rng.bytes(6));
    src[0] = (src[0] & 0xfc) | 0x02; // unicast, locally administered
    let host = loop {
        let h = 2 + rng.below(250) as u8;
        if !CONFIGURED_V10.contains(&h) {
            break h;
        }
    };
    arp_frame([0xff; 6], src, 1, [10, 0, 10, host], [10, 0, 10, 1])
}

/// The last octets of the configured addresses in 10.0.10.0/24 (both
/// fabrics).
const CONFIGURED_V10: [u8; 5] = [11, 12, 21, 51, 66];

/// What the fabric links look like in status: (link ids seen and lost,
/// each fabric port's `status/links` state).
fn link_states(status: &BTreeMap<String, serde_json::Value>) -> BTreeMap<String, String> {
    let (observed, _, _) = observations(status);
    let mut out: BTreeMap<String, String> = observed
        .discovered
        .iter()
        .map(|(l, up)| (format!("observed {} - {}", l.0, l.1), up.to_string()))
        .collect();
    for (k, v) in status {
        if k.starts_with("links/") {
            let state = v.get("state").and_then(|s| s.as_str()).unwrap_or("?");
            out.insert(k.clone(), state.to_string());
        }
    }
    out
}

/// Learned hosts on the attacker's port, per status.
fn learned_on_port(status: &BTreeMap<String, serde_json::Value>, port: &PortRef) -> usize {
    learned_hosts(status)
        .iter()
        .filter(|h| h.attachment == Attachment::Port(port.clone()))
        .count()
}

/// Watches the links every 300 ms until `until`: every change from
/// `baseline`, with when.
async fn watch_links(
    run: &LabRun,
    baseline: &BTreeMap<String, String>,
    until: Instant,
    changes: &mut Vec<String>,
    t0: Instant,
) {
    while Instant::now() < until {
        if let Ok(status) = run.status().await {
            let now = link_states(&status);
            for (k, v) in baseline {
                let got = now.get(k).map(String::as_str).unwrap_or("absent");
                if got != v {
                    changes.push(format!(
                        "{:.1} s: {k}: {v} -> {got}",
                        t0.elapsed().as_secs_f64()
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Where the attack runs: the fabric (with the attacker `x` configured),
/// the attacker's port and its limit, and how often bystanders ping.
struct Setup {
    fabric: Fabric,
    port: PortRef,
    limit: usize,
    interval: Duration,
    prefix: &'static str,
}

/// The small fabric above: 10 ms pings.
fn small() -> Setup {
    Setup {
        fabric: serde_yaml::from_str(FABRIC_YAML).expect("fabric"),
        port: ATTACK_PORT.parse().expect("port"),
        limit: LIMIT,
        interval: INTERVAL,
        prefix: "p4f-hh-",
    }
}

/// `examples/fabric.yaml` (2 spines, 4 leaves, the LACP server srv1 on
/// leaf1 + leaf2, the upstream router, VLANs 10/20/30) with the attacker
/// on leaf3/4 (access VLAN 10, the same limit) and learned hosts aging out
/// after 15 s instead of 300 (so the test sees the flood go). Bystanders
/// ping every 50 ms: 42 flows over 6 bmv2 switches are what this 2-core
/// machine carries (as in the maintenance test).
fn example() -> Setup {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fabric.yaml");
    let text = std::fs::read_to_string(path).expect("examples/fabric.yaml");
    let mut fabric: Fabric = serde_yaml::from_str(&text).expect("example fabric");
    fabric.settings.mac_aging_secs = 15;
    let port: PortRef = EXAMPLE_ATTACK_PORT.parse().expect("port");
    let extra: Fabric = serde_yaml::from_str(&format!(
        r#"
ports:
  {port}: {{mode: access, vlan: 10, max_learned_macs: {LIMIT}}}
hosts:
  x: {{mac: "{X_MAC}", vlan: 10, ips: [10.0.10.66, "2001:db8:10::66"], attachment: {{port: {port}}}}}
"#
    ))
    .expect("attacker");
    fabric.ports.extend(extra.ports);
    fabric.hosts.extend(extra.hosts);
    Setup {
        fabric,
        port,
        limit: LIMIT,
        interval: Duration::from_millis(50),
        prefix: "p4f-hx-",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_host_hurts_neither_links_nor_bystanders() {
    attack(small(), false).await;
}

/// The same attack on the example fabric (issue #21's "done when"): every
/// link stays up and every configured pair reachable. Before the data
/// plane dropped unknown sources at the limit (`learning.locked_sources`)
/// this failed: the flood's broadcasts, still bridged after the limit and
/// replicated by all six bmv2 switches, cost bystanders 350-750 ms and
/// flapped a link once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_on_the_example_fabric() {
    attack(example(), false).await;
}

/// The same with a flood of forged probes (3,000 a second for 5 s, three
/// times the punt meter's rate) before the MAC flood. Before the data
/// plane dropped unknown sources at the limit, 3 runs on a loaded 2-core
/// machine each declared one fabric link down during the MAC flood (up
/// again ~100 ms later). With the drop, one release run on 2026-12-05
/// passed with no bystander gap at all; one run is not enough for CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavier than the issue's attack; passed once with the data-plane drop at the limit (2026-12-05), not yet proven stable enough for CI"]
async fn a_probe_flood_then_a_mac_flood() {
    attack(small(), true).await;
}

/// One attack at a time: two fabrics of bmv2 switches under floods at
/// once are more than a 2-core machine carries.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn attack(setup: Setup, probe_flood: bool) {
    p4fabric::require_lab_run!();
    let _turn = ONE_AT_A_TIME.lock().await;
    let Setup {
        fabric,
        port,
        limit,
        interval,
        prefix,
    } = setup;
    let links = fabric.links.len();
    let (run, ctl) = start(&fabric, prefix).await;
    let probes: Vec<Probe> = reach::probes(&fabric)
        .into_iter()
        .filter(|p| p.from != "x" && p.to != "x")
        .collect();
    assert!(probes.len() >= 14, "{} probes", probes.len());
    assert_reachable(&run, &probes, 10, "before the attack");
    let baseline = link_states(&run.status().await.expect("status"));
    assert!(
        baseline.values().filter(|v| *v == "true").count() == links
            && baseline.values().filter(|v| *v == "up").count() == 2 * links,
        "not every link up before the attack: {baseline:#?}"
    );
    let before = ctl.protocol_counters();

    let traffic = run.traffic(&probes, interval).expect("traffic");
    // Let every flow get going before the attack.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    let sock = run
        .lab
        .host_ns("x")
        .expect("x")
        .packet_socket("eth0")
        .expect("raw socket in x");
    let attacker = std::thread::spawn(move || {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut log = Vec::new();
        for (name, frames) in attack_phases(&mut rng) {
            let n = frames.len();
            let sent = frames
                .iter()
                .filter(|f| {
                    std::thread::sleep(Duration::from_millis(5));
                    sock.send(f).is_ok()
                })
                .count();
            log.push(format!("{name}: {sent}/{n} sent"));
        }
        // A flood of forged probes: the switch's punt meter must not let
        // them crowd out the leaf's real ones.
        let frames = if probe_flood { PROBE_FLOOD_FRAMES } else { 0 };
        let probe = LinkProbe {
            switch: "spine1".into(),
            port: 1,
            ttl_secs: 120,
        }
        .frame(MacAddr(mac(X_MAC)));
        let started = Instant::now();
        let mut sent = 0u32;
        for i in 0..frames {
            let due = PROBE_FLOOD_TIME.mul_f64(f64::from(i) / f64::from(PROBE_FLOOD_FRAMES));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            if sock.send(&probe).is_ok() {
                sent += 1;
            }
        }
        log.push(format!(
            "forged probe flood: {sent}/{frames} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        let started = Instant::now();
        let mut sent = 0u32;
        for i in 0..FLOOD_FRAMES {
            let due = FLOOD_TIME.mul_f64(f64::from(i) / f64::from(FLOOD_FRAMES));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            if sock.send(&flood_frame(&mut rng)).is_ok() {
                sent += 1;
            }
        }
        log.push(format!(
            "MAC flood: {sent}/{FLOOD_FRAMES} ARP requests from new MACs in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        log
    });

    let mut changes = Vec::new();
    // During the attack.
    while !attacker.is_finished() {
        watch_links(
            &run,
            &baseline,
            Instant::now() + Duration::from_secs(1),
            &mut changes,
            t0,
        )
        .await;
    }
    let log = attacker.join().expect("attacker");
    let attack_secs = t0.elapsed().as_secs_f64();
    for l in &log {
        eprintln!("attack: {l}");
    }
    // Right after the flood: the port is at its limit, not above, and
    // status says why.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = run.status().await.expect("status");
    let learned = learned_on_port(&status, &port);
    let key = format!("port-security/ports/{port}");
    let security = status.get(&key).cloned();
    eprintln!("after the flood: {learned} hosts learned on {port}; {key}: {security:?}");
    let after_flood = ctl.protocol_counters();
    eprintln!(
        "controller: {} learns refused at the limit, {} over the learning rate, {} host frames over the punt limit",
        after_flood.learns_refused - before.learns_refused,
        after_flood.learns_rate_limited - before.learns_rate_limited,
        after_flood.rate_limited - before.rate_limited
    );

    // The 60 s after the attack, pings still running; the flood's hosts
    // age out meanwhile.
    watch_links(&run, &baseline, Instant::now() + AFTER, &mut changes, t0).await;
    let reports = traffic.stop();
    let aged = run.status().await.expect("status");
    let after = ctl.protocol_counters();

    let mut problems = Vec::new();
    eprintln!(
        "per-flow worst gap over the attack ({attack_secs:.1} s) and {} s after, pings every {} ms:",
        AFTER.as_secs(),
        interval.as_millis()
    );
    for r in &reports {
        eprintln!("  {r}");
        if r.received == 0 || r.longest_outage > MAX_GAP {
            problems.push(format!("bystander gap over {MAX_GAP:?}: {r}"));
        }
    }
    if !changes.is_empty() {
        problems.push(format!("fabric links changed state: {changes:#?}"));
    }
    if learned != limit {
        problems.push(format!(
            "{learned} hosts learned on {port}, its limit is {limit}"
        ));
    }
    match &security {
        Some(v)
            if v.get("state").and_then(|s| s.as_str()) == Some("limited")
                && v.get("limit").and_then(|s| s.as_u64()) == Some(limit as u64)
                && v.get("learned").and_then(|s| s.as_u64()) == Some(limit as u64)
                && v.get("refused").and_then(|s| s.as_u64()).unwrap_or(0) > 0
                && v.get("reason")
                    .and_then(|s| s.as_str())
                    .is_some_and(|r| r.contains("limit")) => {}
        other => problems.push(format!("{key} does not say the port is limited: {other:?}")),
    }
    if after.probes <= after_flood.probes {
        problems.push("the controller stopped hearing probes after the attack".into());
    }
    let left = learned_on_port(&aged, &port);
    if left != 0 || aged.contains_key(&key) {
        problems.push(format!(
            "{left} flood hosts still learned {} s after the attack (mac_aging_secs 15); {key}: {:?}",
            AFTER.as_secs(),
            aged.get(&key)
        ));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_reachable(&run, &probes, 5, "after the attack");
    ctl.stop().await;
}
