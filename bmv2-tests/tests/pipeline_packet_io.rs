//! Fabric pipeline on bmv2: PacketOut straight to a port and through the
//! pipeline (docs/pipeline.md test plan cases 10, 11; no learning from
//! the controller's frames, case 25), and ports above 255 in both
//! controller headers (their ninth bit sits in the byte before the port's
//! last byte since the ports were aligned for Tofino).

use anyhow::{ensure, Result};
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::{Punted, Rig};

/// packet_out with do_forwarding = 0 to `port`: exactly `frame` comes out
/// of `port`, nothing else.
async fn direct(rig: &mut Rig, what: &str, frame: &[u8], port: u32) -> Result<()> {
    rig.quiesce().await?;
    rig.packet_out(frame, &[("egress_port", port.into())])
        .await?;
    rig.expect(what, &[(port, frame.to_vec())], &[]).await?;
    Ok(())
}

async fn cases(rig: &mut Rig) -> Result<()> {
    rig.insert(&[learn_digest_config()]).await?;

    // 11. do_forwarding = 0: exactly the payload on the port, on an edge
    // port and on a fabric port (no encapsulation, no tag handling).
    let probe = discovery_frame(L1, b"p4fabric probe from L1 port 2");
    for port in [2u32, 6] {
        direct(rig, &format!("11 direct to {port}"), &probe, port).await?;
    }
    // A 60-byte IPv4 frame sent direct to port 1 keeps its bytes too (the
    // egress VLAN table would otherwise drop VLAN-less output).
    direct(rig, "11 direct to 1", &ucast_udp(H1, GW, 4242), 1).await?;

    // 10. do_forwarding = 1 from the CPU port: a tagged ARP request of the
    // gateway is flooded in VLAN 10 like any frame of the VLAN; it is not
    // copied back to the controller (the ACL copies ARP) and not learned.
    let arp = arp_frame(BCAST, GW, 1, IP_GW10, [10, 0, 10, 99]);
    let want = leaf_flood(&arp, 10, CPU_PORT, 0, 64);
    assert_eq!(want.len(), 5, "every member of group 10");
    rig.quiesce().await?;
    rig.packet_out(
        &push_vlan(&arp, 10),
        &[("do_forwarding", 1), ("ingress_port", CPU_PORT.into())],
    )
    .await?;
    let obs = rig.expect("10 through the pipeline", &want, &[]).await?;
    ensure!(
        obs.digests.is_empty(),
        "25: a frame from the controller was learned: {:?}",
        obs.digest_rows()
    );

    // Through the pipeline to a known host: bridged by the fdb.
    rig.insert(&[fdb(20, H3, to_port(3))]).await?;
    let u = udp4_frame(H3, GW, [10, 0, 20, 1], IP_H3, 5000, 6000, 64);
    rig.quiesce().await?;
    rig.packet_out(
        &push_vlan(&u, 20),
        &[("do_forwarding", 1), ("ingress_port", CPU_PORT.into())],
    )
    .await?;
    rig.expect(
        "10b through the pipeline, known unicast",
        &[(3, push_vlan(&u, 20))],
        &[],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_out_direct_and_through_the_pipeline() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    cases(&mut rig).await.expect("packet-out cases");
}

/// Ports 257 and 300 (the 9-bit port's top bit set) through the CPU port:
/// a punted frame's packet_in names 300; packet_out sends straight out of
/// 300, and through the pipeline as if from 300 (bridged to 257).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_above_255_cross_the_cpu_port_intact() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::start(11, &[257, 300])
        .await
        .expect("bmv2 with ports 257, 300");
    high_ports(&mut rig).await.expect("high-port cases");
}

async fn high_ports(rig: &mut Rig) -> Result<()> {
    let mut setup = vec![
        cpu_clone_session(),
        port_cpu(),
        port_edge(257, 0),
        port_edge(300, 0),
        vlan_in(257, false, 0, 10, 1),
        vlan_in(300, false, 0, 10, 1),
        vlan_out(257, 10, false),
        vlan_out(300, 10, false),
        fdb(10, H3, to_port(257)),
    ];
    setup.extend(control_acls());
    rig.insert(&setup).await?;

    // packet_in: a discovery probe on port 300 is punted naming port 300.
    let probe = discovery_frame(L1, b"probe into port 300");
    rig.check(
        "punt from port 300",
        300,
        &probe,
        &[],
        &[Punted::new(300, reason::DISCOVERY, &probe)],
    )
    .await?;

    // packet_out, do_forwarding = 0: out of port 300 exactly.
    direct(rig, "direct to 300", &ucast_udp(H1, H3, 4243), 300).await?;

    // packet_out, do_forwarding = 1 as if from port 300: VLAN 10 (300's
    // access VLAN), bridged to H3 on port 257, untagged.
    let u = ucast_udp(H3, H1, 4244);
    rig.quiesce().await?;
    rig.packet_out(&u, &[("do_forwarding", 1), ("ingress_port", 300)])
        .await?;
    rig.expect("through the pipeline from 300", &[(257, u.clone())], &[])
        .await?;
    Ok(())
}
