//! The harness itself: namespaces, veth pairs and raw sockets work and are
//! cleaned up (needs root, not bmv2).

use std::time::Duration;

use bmv2_tests::netns::{create_veth, Netns, PortSocket};
use bmv2_tests::packet;

#[test]
fn veth_pair_carries_raw_frames_and_is_removed() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: not root");
        return;
    }
    let tag = bmv2_tests::unique_tag();
    let sw = format!("s{tag}x");
    let far = format!("h{tag}x");
    {
        let ns = Netns::create(&format!("p4t{tag}")).unwrap();
        create_veth(&sw, &far, &ns).unwrap();
        let root_side = PortSocket::open(&sw).unwrap();
        let ns_side = ns.packet_socket(&far).unwrap();
        root_side.drain().unwrap();
        let frame = packet::udp4_frame(
            packet::mac("02:00:00:00:00:02"),
            packet::mac("02:00:00:00:00:01"),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1000,
            2000,
            64,
        );
        ns_side.send(&frame).unwrap();
        let got = root_side
            .recv(Duration::from_secs(2))
            .unwrap()
            .expect("frame arrives");
        assert_eq!(got, frame);
        // Our own transmission is not echoed back to the sender.
        ns_side.expect_silence(Duration::from_millis(100)).unwrap();
        std::process::Command::new("ip")
            .args(["link", "del", &sw])
            .status()
            .unwrap();
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&sw));
    let nss = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&nss.stdout).contains(&format!("p4t{tag}")));
}

#[test]
fn bmv2_test_without_bmv2_says_skipped() {
    // The prerequisite check names what is missing rather than passing
    // silently; with bmv2 installed it returns None.
    match bmv2_tests::missing_prerequisite() {
        Some(why) => assert!(!why.is_empty()),
        None => assert!(bmv2_tests::find_tool("simple_switch_grpc").is_some()),
    }
}
