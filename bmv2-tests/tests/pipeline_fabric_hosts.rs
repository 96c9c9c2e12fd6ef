//! Fabric pipeline on bmv2, end to end (docs/pipeline.md test plan,
//! fixture C, cases 60 and 61): two leaves and a spine built by the lab
//! (`LabFabric`: veth links, hosts in network namespaces with real Linux IP
//! stacks), every switch programmed through the project's P4Runtime client
//! with what `p4fabric::compile` produces for the fabric below. No
//! controller runs: the test is the primary on every switch.
//!
//! ```text
//!              spine1 (201)
//!               1    2
//!               |    |
//!   (101) leaf1 1    1 leaf2 (102)
//!         2  3  4    4  2
//!         |  |   \  /   |
//!        h1 h3   lag7   h9        lag7: split LAG over leaf1/4 + leaf2/4
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bmv2_tests::packet::{self, hex};
use bmv2_tests::rig::{Primary, Punted};
use bmv2_tests::{require_bmv2, LabFabric, LabOptions, PortSocket};
use p4fabric::compile::{self, diff, Hosts};
use p4fabric::config::Fabric;
use p4fabric::p4rt::SwitchEntities;
use p4fabric::topo::{ObservedState, Topology};

/// Fixture C. Hosts: H1 (VLAN 10, leaf1/2), H3 (VLAN 20, leaf1/3), H9
/// (VLAN 10, leaf2/2); LAG 7 (access VLAN 10) over leaf1/4 and leaf2/4 with
/// no host configured, so the test sends and reads its members' far ends.
const FIXTURE_C: &str = r#"
settings:
  gateway_mac: "00:00:5e:00:01:01"
switches:
  leaf1: {address: "127.0.0.1:1", device_id: 1, role: leaf, label: 101, fabric_ports: [1]}
  leaf2: {address: "127.0.0.1:2", device_id: 2, role: leaf, label: 102, fabric_ports: [1]}
  spine1: {address: "127.0.0.1:3", device_id: 3, role: spine, label: 201, fabric_ports: [1, 2]}
links:
  leaf1-spine1: {a: leaf1/1, b: spine1/1}
  leaf2-spine1: {a: leaf2/1, b: spine1/2}
ports:
  leaf1/2: {mode: access, vlan: 10, description: H1}
  leaf1/3: {mode: access, vlan: 20, description: H3}
  leaf2/2: {mode: access, vlan: 10, description: H9}
lags:
  lag7: {id: 7, members: [leaf1/4, leaf2/4], protocol: static, mode: access, vlan: 10}
vlans:
  10: {ipv4_gateway: 10.0.10.1/24, ipv6_gateway: "2001:db8:10::1/64"}
  20: {ipv4_gateway: 10.0.20.1/24, ipv6_gateway: "2001:db8:20::1/64"}
hosts:
  h1: {mac: "00:00:00:00:00:01", vlan: 10, ips: [10.0.10.11, "2001:db8:10::11"], attachment: {port: leaf1/2}}
  h3: {mac: "00:00:00:00:00:03", vlan: 20, ips: [10.0.20.13, "2001:db8:20::13"], attachment: {port: leaf1/3}}
  h9: {mac: "00:00:00:00:00:09", vlan: 10, ips: [10.0.10.19, "2001:db8:10::19"], attachment: {port: leaf2/2}}
"#;

const H1: [u8; 6] = [0, 0, 0, 0, 0, 0x01];
const H4: [u8; 6] = [0, 0, 0, 0, 0, 0x04];
const H9: [u8; 6] = [0, 0, 0, 0, 0, 0x09];
const GW: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];
/// Switch MACs: `02:fa:b1` + the label (none configured).
const LEAF1: [u8; 6] = [0x02, 0xfa, 0xb1, 0, 0, 101];
const SPINE1: [u8; 6] = [0x02, 0xfa, 0xb1, 0, 0, 201];

fn fixture_c() -> Result<Fabric> {
    let f: Fabric = serde_yaml::from_str(FIXTURE_C).context("fixture C parses")?;
    let problems = p4fabric::config::validate::validate(&f);
    ensure!(problems.is_empty(), "fixture C is invalid: {problems:?}");
    Ok(f)
}

/// The lab of fixture C with every switch programmed as compiled (links
/// as configured, no learned hosts); the P4Runtime primaries by switch.
struct Programmed {
    lab: LabFabric,
    primaries: BTreeMap<String, Primary>,
}

impl Programmed {
    async fn start(fabric: &Fabric, ns_prefix: &str) -> Result<Programmed> {
        let lab = LabFabric::start(
            fabric,
            &LabOptions {
                free_ports: true,
                host_ns_prefix: format!("{ns_prefix}{}-", bmv2_tests::unique_tag()),
                json: None,
                ..LabOptions::default()
            },
        )?;
        let topo = Topology::build(fabric, &ObservedState::default(), None);
        // Fixture C's DF for VLAN 10 on lag7 is leaf1 (case 61 relies on it).
        let df = topo.lag("lag7").and_then(|g| g.designated_forwarder(10));
        ensure!(df == Some("leaf1"), "lag7's DF for VLAN 10 is {df:?}");
        let compiled = compile::compile(fabric, &topo, &Hosts::new());
        let mut primaries = BTreeMap::new();
        for (name, sw) in &fabric.switches {
            let bmv2 = lab.switch(name).context("lab switch")?;
            let p = Primary::connect(&bmv2.grpc_addr, sw.device_id)
                .await
                .with_context(|| format!("{name}: connecting"))?;
            let want = compiled.get(name).cloned().unwrap_or_default();
            p.write_plan(&diff(&want, &SwitchEntities::new()))
                .await
                .with_context(|| format!("{name}: writing the compiled entities"))?;
            primaries.insert(name.clone(), p);
        }
        Ok(Programmed { lab, primaries })
    }

    fn ns_name(&self, host: &str) -> Result<String> {
        Ok(self.lab.host_ns(host).context("host")?.name.clone())
    }

    /// Everything `switch` punted since the last call.
    fn punted(&mut self, switch: &str) -> Result<Vec<Punted>> {
        Ok(self
            .primaries
            .get_mut(switch)
            .context("switch")?
            .events()?
            .punted)
    }
}

/// The TTL (hop limit) of the echo reply `from` gets from `ip`; the first
/// echo may wait for ARP / ND, so up to 3 tries.
fn ping_ttl(ns: &str, ip: &str) -> Result<u8> {
    let mut last = String::new();
    for _ in 0..3 {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-c1", "-W2", ip])
            .output()
            .context("running ping")?;
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            let ttl = last
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ttl="))
                .and_then(|t| t.parse().ok());
            return ttl.with_context(|| format!("no ttl in ping output: {last}"));
        }
    }
    anyhow::bail!("{ns}: ping {ip} failed 3 times: {last}")
}

/// The neighbour entry `ns` has for `ip` on eth0 (`ip neigh show`).
fn neighbour(ns: &str, ip: &str) -> Result<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "neigh", "show", ip, "dev", "eth0"])
        .output()
        .context("ip neigh")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Does `p` carry, from `port` with `reason`, a frame from `src` of
/// `ethertype` whose bytes contain `needle`?
fn has_copy(
    p: &[Punted],
    port: u32,
    reason: u8,
    src: [u8; 6],
    ethertype: u16,
    needle: &[u8],
) -> bool {
    p.iter().any(|p| {
        p.ingress_port == port
            && p.reason == u32::from(reason)
            && p.payload.len() > 14
            && p.payload[6..12] == src
            && p.payload[12..14] == ethertype.to_be_bytes()
            && p.payload.windows(needle.len()).any(|w| w == needle)
    })
}

/// Case 60: pings between namespace hosts with real IP stacks: H1 <-> H9 in
/// VLAN 10, bridged across the fabric (MPLS label of the other leaf),
/// resolving each other by ARP / ND (copied to the CPU and flooded over
/// the fabric: no static neighbour entries between them); H3 (VLAN 20,
/// leaf1) <-> H9 routed through the anycast gateway on both leaves, each
/// direction routed once (TTL / hop limit 63 on arrival); IPv4 and IPv6.
async fn case_60(fx: &mut Programmed) -> Result<()> {
    let (h1, h3, h9) = (fx.ns_name("h1")?, fx.ns_name("h3")?, fx.ns_name("h9")?);
    // The lab gives hosts permanent neighbours for their VLAN peers: drop
    // them so H1 and H9 resolve each other through the fabric. The
    // gateway's entries stay (nothing answers for the gateway without a
    // controller).
    for (ns, peer) in [(&h1, "10.0.10.19"), (&h1, "2001:db8:10::19")]
        .into_iter()
        .chain([(&h9, "10.0.10.11"), (&h9, "2001:db8:10::11")])
    {
        bmv2_tests::netns::run("ip", &["-n", ns, "neigh", "del", peer, "dev", "eth0"])?;
    }
    fx.punted("leaf1")?;
    // What leaf1 sends up to the spine (read where spine1 receives it).
    let uplink = fx.lab.switch("spine1").context("spine1")?;
    let uplink = PortSocket::open(uplink.switch_ifname(1).context("spine1/1")?)?;
    uplink.drain()?;
    for (from, to, ttl, what) in [
        (&h1, "10.0.10.19", 64, "H1 -> H9 IPv4, bridged"),
        (&h1, "2001:db8:10::19", 64, "H1 -> H9 IPv6, bridged"),
        (&h9, "10.0.10.11", 64, "H9 -> H1 IPv4, bridged"),
        (&h9, "2001:db8:10::11", 64, "H9 -> H1 IPv6, bridged"),
        (&h3, "10.0.10.19", 63, "H3 -> H9 IPv4, routed"),
        (&h3, "2001:db8:10::19", 63, "H3 -> H9 IPv6, routed"),
        (&h9, "10.0.20.13", 63, "H9 -> H3 IPv4, routed"),
        (&h9, "2001:db8:20::13", 63, "H9 -> H3 IPv6, routed"),
    ] {
        let got = ping_ttl(from, to).with_context(|| format!("60 {what}"))?;
        ensure!(got == ttl, "60 {what}: reply with TTL {got}, want {ttl}");
    }
    // The echo requests crossed leaf1 -> spine1 encapsulated for leaf2:
    // outer MACs of the link, label 102, MPLS TTL 64, inner frame tagged
    // VLAN 10; bridged ones unchanged, routed ones rewritten (from the
    // gateway MAC, TTL 63).
    let mut up = Vec::new();
    while let Some(f) = uplink.recv(Duration::ZERO)? {
        up.push(f);
    }
    for (inner_src, v6, hop, what) in [
        (H1, false, 64, "H1 -> H9 IPv4"),
        (H1, true, 64, "H1 -> H9 IPv6"),
        (GW, false, 63, "H3 -> H9 IPv4"),
        (GW, true, 63, "H3 -> H9 IPv6"),
    ] {
        ensure!(
            up.iter().any(|f| echo_to_leaf2(f, inner_src, v6, hop)),
            "60 {what}: no echo request to H9 with label 102 on leaf1 -> spine1; saw {}",
            up.iter().map(|f| hex(f)).collect::<Vec<_>>().join("\n  ")
        );
    }
    // Resolved through the fabric, to the right MACs.
    for (ns, ip, mac) in [
        (&h1, "10.0.10.19", "00:00:00:00:00:09"),
        (&h1, "2001:db8:10::19", "00:00:00:00:00:09"),
        (&h9, "10.0.10.11", "00:00:00:00:00:01"),
        (&h9, "2001:db8:10::11", "00:00:00:00:00:01"),
    ] {
        let n = neighbour(ns, ip)?;
        ensure!(
            n.contains(&format!("lladdr {mac}")) && !n.contains("PERMANENT"),
            "60: {ns} resolved {ip} as {n:?}, want {mac} learned"
        );
    }
    // ... and leaf1 got copies of H1's ARP request for H9 and of its
    // neighbour solicitation (ACL copy_to_cpu), from H1's port.
    let punted = fx.punted("leaf1")?;
    let seen: Vec<_> = punted.iter().map(|p| (p.ingress_port, p.reason)).collect();
    for (reason, ethertype, target, what) in [
        (
            3,
            0x0806,
            &[10, 0, 10, 19][..],
            "ARP request for 10.0.10.19",
        ),
        (
            4,
            0x86dd,
            &packet::ip6("2001:db8:10::19")[..],
            "NS for 2001:db8:10::19",
        ),
    ] {
        ensure!(
            has_copy(&punted, 2, reason, H1, ethertype, target),
            "60: leaf1 sent no copy (port 2, reason {reason}) of H1's {what}; PacketIns {seen:?}"
        );
    }
    Ok(())
}

/// Is `f` an echo request to H9 from `inner_src` as leaf1 sends it to
/// spine1 (`Eth(S1, L1, 0x8847) MPLS(102, 64) Eth(H9, src, 0x8100) Q(10)`,
/// IPv4 TTL / IPv6 hop limit `hop`)?
fn echo_to_leaf2(f: &[u8], inner_src: [u8; 6], v6: bool, hop: u8) -> bool {
    let mpls = (102u32 << 12 | 1 << 8 | 64).to_be_bytes();
    let (ethertype, hop_at, proto_at, proto, icmp_at, echo) = if v6 {
        (0x86dd_u16, 36 + 7, 36 + 6, 58, 36 + 40, 128)
    } else {
        (0x0800, 36 + 8, 36 + 9, 1, 36 + 20, 8)
    };
    f.len() > icmp_at
        && f[0..6] == SPINE1
        && f[6..12] == LEAF1
        && f[12..14] == [0x88, 0x47]
        && f[14..18] == mpls
        && f[18..24] == H9
        && f[24..30] == inner_src
        && f[30..34] == [0x81, 0x00, 0x00, 10]
        && f[34..36] == ethertype.to_be_bytes()
        && f[hop_at] == hop
        && f[proto_at] == proto
        && f[icmp_at] == echo
}

/// Sends `frame` on `from`, then counts for 1.5 s how many copies of it
/// each of `socks` receives (a socket does not see what it sent itself).
fn send_and_count(from: &PortSocket, frame: &[u8], socks: &[&PortSocket]) -> Result<Vec<usize>> {
    for s in socks {
        s.drain()?;
    }
    from.send(frame)?;
    let mut n = vec![0; socks.len()];
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        for (i, s) in socks.iter().enumerate() {
            while let Some(f) = s.recv(Duration::from_millis(5))? {
                if f == frame {
                    n[i] += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Case 61: split LAG 7 over leaf1/4 and leaf2/4, leaf1 the designated
/// forwarder for VLAN 10: a broadcast from H9 (leaf2) reaches the LAG
/// exactly once, through leaf1; a broadcast from the LAG's host sent on
/// the leaf2 member reaches H1 (leaf1) and H9 (leaf2) once each and comes
/// back on neither member. Host kernels send their own multicast too:
/// only copies of the test's frames count.
async fn case_61(fx: &mut Programmed) -> Result<()> {
    let lab = &fx.lab;
    let member =
        |leaf: &str| -> Result<PortSocket> { lab.switch(leaf).context("leaf")?.port_socket(4) };
    let (m1, m2) = (member("leaf1")?, member("leaf2")?);
    let eth0 =
        |h: &str| -> Result<PortSocket> { lab.host_ns(h).context("host")?.packet_socket("eth0") };
    let (h1, h9) = (eth0("h1")?, eth0("h9")?);
    let watched = [&m1, &m2, &h1, &h9];
    let bcast = |src: [u8; 6], host: u8, port: u16| {
        packet::udp4_frame(
            [0xff; 6],
            src,
            [10, 0, 10, host],
            [10, 0, 10, 255],
            port,
            port,
            64,
        )
    };

    let from_h9 = bcast(H9, 19, 6101);
    let n = send_and_count(&h9, &from_h9, &watched)?;
    ensure!(
        n == [1, 0, 1, 0],
        "61 broadcast from H9: copies on leaf1/4, leaf2/4, H1, H9 = {n:?}, want [1, 0, 1, 0] ({})",
        hex(&from_h9)
    );
    let from_lag = bcast(H4, 14, 6102);
    let n = send_and_count(&m2, &from_lag, &watched)?;
    ensure!(
        n == [0, 0, 1, 1],
        "61 broadcast from the LAG on leaf2/4: copies on leaf1/4, leaf2/4, H1, H9 = {n:?}, want [0, 0, 1, 1] ({})",
        hex(&from_lag)
    );
    Ok(())
}

/// Fixture C, running and programmed; host namespaces `<prefix>NNN-<host>`.
async fn programmed(prefix: &str) -> Programmed {
    let fabric = fixture_c().expect("fixture C");
    Programmed::start(&fabric, prefix)
        .await
        .expect("fixture C lab, programmed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_ping_across_the_fabric_bridged_and_routed() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    case_60(&mut programmed("c60").await)
        .await
        .expect("case 60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_lag_floods_reach_it_once_and_never_return() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    case_61(&mut programmed("c61").await)
        .await
        .expect("case 61");
}
