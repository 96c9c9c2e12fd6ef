//! The lab's wiring, on real bmv2 processes but without a pipeline (so no
//! switch forwards anything): links join the right ports and can be cut,
//! hosts sit on the right ports with the right tags, the user-space bond
//! spreads a dual-homed server over both leaves, and everything is gone
//! after drop. Frames are sent and read on the switch-side interfaces
//! (where bmv2 reads).

use std::path::Path;
use std::time::Duration;

use bmv2_tests::packet::{self, mac};
use bmv2_tests::{require_bmv2, LabFabric, LabOptions, PortSocket};
use p4fabric::config::Fabric;

fn example() -> Fabric {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fabric.yaml");
    let text = std::fs::read_to_string(path).expect("example");
    let mut f: Fabric = serde_yaml::from_str(&text).expect("example parses");
    // No controller here: a LACP bond would wait for a partner forever
    // (protocols_lacp tests the LACP bond).
    for lag in f.lags.values_mut() {
        lag.protocol = p4fabric::config::LagMode::Static;
    }
    f
}

fn switch_side(lab: &LabFabric, sw: &str, port: u32) -> PortSocket {
    let s = lab.switch(sw).expect("switch");
    let ifname = s.switch_ifname(port).expect("port");
    let sock = PortSocket::open(ifname).expect("socket");
    sock.drain().expect("drain");
    sock
}

/// A frame from `src` that nobody else sends (unique UDP port).
fn frame(dst: &str, src: &str, port: u16) -> Vec<u8> {
    packet::udp4_frame(
        mac(dst),
        mac(src),
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        port,
        port,
        64,
    )
}

/// Waits for a frame containing `needle` (other traffic, like IPv6 from a
/// host kernel, is skipped).
fn expect(sock: &PortSocket, needle: &[u8], what: &str) -> Vec<u8> {
    for _ in 0..50 {
        match sock.recv(Duration::from_millis(200)).expect("recv") {
            Some(f) if f.windows(needle.len()).any(|w| w == needle) => return f,
            Some(_) => continue,
            None => break,
        }
    }
    panic!("{what}: frame did not arrive");
}

fn expect_none(sock: &PortSocket, needle: &[u8], what: &str) {
    while let Some(f) = sock.recv(Duration::from_millis(500)).expect("recv") {
        assert!(
            !f.windows(needle.len()).any(|w| w == needle),
            "{what}: frame arrived"
        );
    }
}

#[test]
fn lab_fabric_wires_links_hosts_and_bonds_and_cleans_up() {
    require_bmv2!();
    let fabric = example();
    let prefix = format!("lab{}-", bmv2_tests::unique_tag());
    let opts = LabOptions {
        free_ports: true,
        host_ns_prefix: prefix.clone(),
        json: None,
        ..LabOptions::default()
    };
    {
        let lab = LabFabric::start(&fabric, &opts).expect("lab starts");
        assert_eq!(lab.addresses().len(), 6);

        // leaf1/1 <-> spine1/1, both ways; cut and restored.
        let l1 = switch_side(&lab, "leaf1", 1);
        let s1 = switch_side(&lab, "spine1", 1);
        let f = frame("02:00:00:00:00:02", "02:00:00:00:00:01", 4001);
        l1.send(&f).expect("send");
        expect(&s1, &f[..], "leaf1/1 -> spine1/1");
        let f = frame("02:00:00:00:00:01", "02:00:00:00:00:02", 4002);
        s1.send(&f).expect("send");
        expect(&l1, &f[..], "spine1/1 -> leaf1/1");
        lab.cut_link("leaf1-spine1").expect("cut");
        let f = frame("02:00:00:00:00:02", "02:00:00:00:00:01", 4003);
        let _ = l1.send(&f);
        expect_none(&s1, &f[..], "over a cut link");
        lab.restore_link("leaf1-spine1").expect("restore");
        std::thread::sleep(Duration::from_millis(200));
        let f = frame("02:00:00:00:00:02", "02:00:00:00:00:01", 4004);
        l1.send(&f).expect("send");
        expect(&s1, &f[..], "restored link");

        // vm1 is on leaf1/3, untagged, with its MAC.
        let vm1 = lab
            .host_ns("vm1")
            .expect("vm1")
            .packet_socket("eth0")
            .expect("vm1 socket");
        let l1p3 = switch_side(&lab, "leaf1", 3);
        let f = frame("02:00:00:00:00:99", "02:00:00:00:01:01", 4005);
        vm1.send(&f).expect("send");
        let got = expect(&l1p3, &f[12..], "vm1 -> leaf1/3");
        assert_eq!(&got[..14], &f[..14], "untagged, addresses kept");
        let f = frame("02:00:00:00:01:01", "02:00:00:00:00:99", 4006);
        l1p3.send(&f).expect("send");
        expect(&vm1, &f[12..], "leaf1/3 -> vm1");

        // srv1 (VLAN 20, tagged on bond1) leaves tagged on leaf1/4 or leaf2/4,
        // and different flows use both legs.
        let srv1 = lab
            .host_ns("srv1")
            .expect("srv1")
            .packet_socket("eth0")
            .expect("srv1 socket");
        let legs = [switch_side(&lab, "leaf1", 4), switch_side(&lab, "leaf2", 4)];
        let mut used = [false, false];
        for i in 0..16u8 {
            let f = frame(
                &format!("02:00:00:00:10:{i:02x}"),
                "02:00:00:00:02:01",
                4100 + u16::from(i),
            );
            srv1.send(&f).expect("send");
            let mut seen = false;
            for _ in 0..10 {
                for (n, leg) in legs.iter().enumerate() {
                    if let Some(got) = leg.recv(Duration::from_millis(100)).expect("recv") {
                        if got.len() >= 18 && got[..12] == f[..12] {
                            assert_eq!(&got[12..16], &[0x81, 0x00, 0x00, 20], "tagged 20");
                            assert_eq!(&got[16..], &f[12..], "payload");
                            used[n] = true;
                            seen = true;
                        }
                    }
                }
                if seen {
                    break;
                }
            }
            assert!(seen, "srv1 frame {i} left on no leg");
        }
        assert_eq!(used, [true, true], "the flow hash uses both legs");

        // A frame tagged 10 for srv1-web arriving on leaf2/4 reaches
        // srv1-web untagged, and not srv1.
        let web = lab
            .host_ns("srv1-web")
            .expect("srv1-web")
            .packet_socket("eth0")
            .expect("socket");
        let inner = frame("02:00:00:00:02:02", "02:00:00:00:00:77", 4200);
        let tagged = bmv2_tests::bond::push_tag(&inner, 10);
        legs[1].send(&tagged).expect("send");
        let got = expect(&web, &inner[12..], "leaf2/4 -> srv1-web");
        assert_eq!(got, inner, "delivered untagged");
        expect_none(&srv1, &inner[12..], "srv1 (VLAN 20) must not get VLAN 10");
    }
    // Everything is gone.
    let nss = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    let nss = String::from_utf8_lossy(&nss.stdout);
    assert!(!nss.contains(&prefix), "host namespaces left: {nss}");
}

#[test]
fn lab_fabric_refuses_a_busy_address() {
    require_bmv2!();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let fabric: Fabric = serde_yaml::from_str(&format!(
        "switches:\n  leaf1: {{address: \"{addr}\", device_id: 1, role: leaf, label: 101}}\n"
    ))
    .expect("fabric");
    let opts = LabOptions {
        host_ns_prefix: format!("lab{}-", bmv2_tests::unique_tag()),
        ..LabOptions::default()
    };
    let err = LabFabric::start(&fabric, &opts)
        .err()
        .expect("a busy address is refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("busy") && msg.contains(&addr), "{msg}");
}
