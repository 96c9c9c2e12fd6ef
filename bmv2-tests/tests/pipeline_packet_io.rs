//! Fabric pipeline on bmv2: PacketOut straight to a port and through the
//! pipeline (docs/pipeline.md test plan cases 10, 11; no learning from
//! the controller's frames, case 25).

use anyhow::{ensure, Result};
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::Rig;

async fn cases(rig: &mut Rig) -> Result<()> {
    rig.insert(&[learn_digest_config()]).await?;

    // 11. do_forwarding = 0: exactly the payload on the port, on an edge
    // port and on a fabric port (no encapsulation, no tag handling).
    let probe = discovery_frame(L1, b"p4fabric probe from L1 port 2");
    for port in [2u32, 6] {
        rig.quiesce().await?;
        rig.packet_out(&probe, &[("egress_port", port.into())])
            .await?;
        rig.expect(
            &format!("11 direct to {port}"),
            &[(port, probe.clone())],
            &[],
        )
        .await?;
    }
    // A 60-byte IPv4 frame sent direct to port 1 keeps its bytes too (the
    // egress VLAN table would otherwise drop VLAN-less output).
    let raw = ucast_udp(H1, GW, 4242);
    rig.quiesce().await?;
    rig.packet_out(&raw, &[("egress_port", 1)]).await?;
    rig.expect("11 direct to 1", &[(1, raw.clone())], &[])
        .await?;

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
