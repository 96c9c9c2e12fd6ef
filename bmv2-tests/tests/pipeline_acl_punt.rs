//! Fabric pipeline on bmv2: ACL punt / copy / drop / permit, the punt of
//! discovery, LACP, ARP and ND with their packet_in metadata, and the punt
//! meter (docs/pipeline.md test plan cases 12-21).

use anyhow::{ensure, Result};
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::{Punted, Rig};

async fn acl_cases(rig: &mut Rig) -> Result<()> {
    rig.insert(&[learn_digest_config()]).await?;

    // 12. Discovery probe on a fabric port: punted (reason 1), nothing out.
    let probe = discovery_frame(S1, b"probe from S1");
    rig.check(
        "12 discovery on a fabric port",
        6,
        &probe,
        &[],
        &[Punted::new(6, reason::DISCOVERY, &probe)],
    )
    .await?;
    // ... and on an edge port (not flooded).
    rig.check(
        "12b discovery on an edge port",
        1,
        &discovery_frame(H1, b"probe"),
        &[],
        &[Punted::new(
            1,
            reason::DISCOVERY,
            &discovery_frame(H1, b"probe"),
        )],
    )
    .await?;

    // 13. LACP on a LAG member: punted with the physical port, not
    // flooded, not learned.
    let lacp = lacp_frame(H4, 1);
    let obs = rig
        .check(
            "13 LACP on a LAG member",
            4,
            &lacp,
            &[],
            &[Punted::new(4, reason::LACP, &lacp)],
        )
        .await?;
    ensure!(obs.digests.is_empty(), "13: a punted frame was learned");
    let lacp5 = lacp_frame(H4, 2);
    rig.check(
        "13b LACP on the other member",
        5,
        &lacp5,
        &[],
        &[Punted::new(5, reason::LACP, &lacp5)],
    )
    .await?;

    // 14. punt wins over the VLAN check: untagged LACP on a trunk without
    // native VLAN.
    let lacp2 = lacp_frame(H2, 3);
    rig.check(
        "14 LACP on a trunk",
        2,
        &lacp2,
        &[],
        &[Punted::new(2, reason::LACP, &lacp2)],
    )
    .await?;

    // 15. ARP: copied to the CPU and flooded.
    let arp = arp_frame(BCAST, H1, 1, IP_H1, IP_H2);
    rig.check(
        "15 ARP copy",
        1,
        &arp,
        &leaf_flood(&arp, 10, 1, 0, 64),
        &[Punted::new(1, reason::ARP, &arp)],
    )
    .await?;
    // Tagged ARP on the trunk: the CPU gets it as received (tagged).
    let arp2 = push_vlan(&arp_frame(BCAST, H2, 1, [10, 0, 20, 12], IP_H3), 20);
    rig.check(
        "15b tagged ARP copy",
        2,
        &arp2,
        &leaf_flood(&pop_vlan(&arp2), 20, 2, 0, 64),
        &[Punted::new(2, reason::ARP, &arp2)],
    )
    .await?;

    // 16. No copy of a frame the VLAN check refused.
    let arp_untagged = arp_frame(BCAST, H2, 1, IP_H2, IP_H1);
    rig.check("16 ARP refused by VLAN", 2, &arp_untagged, &[], &[])
        .await?;

    // 17. Neighbour solicitation: copied (reason 4) and flooded.
    let ns = nd_solicit_frame(H1, ip6("fe80::11"), ip6("2001:db8:10::12"));
    ensure!(
        ns[..6] == [0x33, 0x33, 0xff, 0x00, 0x00, 0x12],
        "NS dst MAC"
    );
    rig.check(
        "17 ND copy",
        1,
        &ns,
        &leaf_flood(&ns, 10, 1, 0, 64),
        &[Punted::new(1, reason::ND, &ns)],
    )
    .await?;
    // Other ICMPv6 (an echo request) is not copied.
    let mut echo6 = ns.clone();
    echo6[54] = 128;
    rig.check(
        "17b ICMPv6 echo not copied",
        1,
        &echo6,
        &leaf_flood(&echo6, 10, 1, 0, 64),
        &[],
    )
    .await?;

    // 18. drop(): unicast to H2 dropped by destination address.
    rig.insert(&[fdb(10, H2, to_port(2))]).await?;
    let to_h2 = ucast_udp(H2, H1, 1000);
    let h2_out = vec![(2, push_vlan(&to_h2, 10))];
    rig.check("18 before the drop", 1, &to_h2, &h2_out, &[])
        .await?;
    let deny = acl(
        200,
        &[(F_IPV4_DST, v4(IP_H2), 0xffff_ffff)],
        act(A_DROP_ACL, &[]),
    );
    rig.insert(std::slice::from_ref(&deny)).await?;
    rig.check("18 ACL drop", 1, &to_h2, &[], &[]).await?;
    // 25 (part): an ACL-dropped frame from a source never seen before is
    // not learned.
    let fresh = ucast_udp(H2, [0, 0, 0, 0, 0, 0x18], 1000);
    let obs = rig
        .check("18b ACL drop, new source", 1, &fresh, &[], &[])
        .await?;
    ensure!(obs.digests.is_empty(), "18: a dropped frame was learned");

    // 19. permit() at a higher priority overrides the drop.
    let allow = acl(
        300,
        &[(F_IPV4_SRC, v4(IP_H1), 0xffff_ffff)],
        act(A_ACL_PERMIT, &[]),
    );
    rig.insert(std::slice::from_ref(&allow)).await?;
    rig.check("19 ACL permit", 1, &to_h2, &h2_out, &[]).await?;
    rig.delete(&[deny, allow]).await?;

    // 20. Operator punt(6) on the L4 destination port; copy_to_cpu(6) on
    // the L4 source port.
    let op_punt = acl(
        250,
        &[(F_L4_DST_PORT, 2000, 0xffff)],
        act(A_PUNT, &[(P_REASON, reason::ACL.into())]),
    );
    rig.insert(std::slice::from_ref(&op_punt)).await?;
    rig.check(
        "20 operator punt",
        1,
        &to_h2,
        &[],
        &[Punted::new(1, reason::ACL, &to_h2)],
    )
    .await?;
    rig.delete(&[op_punt]).await?;
    let op_copy = acl(
        250,
        &[(F_L4_SRC_PORT, 1000, 0xffff)],
        act(A_COPY_TO_CPU, &[(P_REASON, reason::ACL.into())]),
    );
    rig.insert(std::slice::from_ref(&op_copy)).await?;
    rig.check(
        "20b operator copy",
        1,
        &to_h2,
        &h2_out,
        &[Punted::new(1, reason::ACL, &to_h2)],
    )
    .await?;
    rig.delete(&[op_copy]).await?;
    rig.check("20c entries gone", 1, &to_h2, &h2_out, &[])
        .await?;
    Ok(())
}

/// Case 21: The punt meter: ARP copies (cell 3) limited to 5 pps with bursts of
/// 5, while the frames themselves are all flooded and an LACP burst (cell 2
/// unconfigured) is not limited.
async fn meter_case(rig: &mut Rig) -> Result<()> {
    // Meter cells always exist: P4Runtime configures them with MODIFY.
    rig.modify(&[punt_meter(reason::ARP, 5, 5)]).await?;
    rig.quiesce().await?;
    let n = 100u16;
    let arps: Vec<Vec<u8>> = (0..n)
        .map(|i| arp_frame(BCAST, H1, 1, IP_H1, [10, 0, 10, (i % 200) as u8 + 20]))
        .collect();
    let lacps: Vec<Vec<u8>> = (0..20u16).map(|i| lacp_frame(H4, 100 + i)).collect();
    for (i, a) in arps.iter().enumerate() {
        rig.send(1, a)?;
        if i % 5 == 0 {
            rig.send(4, &lacps[i / 5])?;
        }
    }
    let obs = rig
        .collect(
            4 * usize::from(n),
            20 + 5,
            std::time::Duration::from_millis(800),
        )
        .await?;
    let arp_punts = obs
        .punted
        .iter()
        .filter(|p| p.reason == u32::from(reason::ARP))
        .count();
    let lacp_punts = obs
        .punted
        .iter()
        .filter(|p| p.reason == u32::from(reason::LACP))
        .count();
    println!(
        "punt meter: {} frames out, {arp_punts} ARP PacketIns of {n}, {lacp_punts} LACP of 20",
        obs.frames.len()
    );
    for port in [2u32, 3, 4, 6] {
        ensure!(
            obs.on(port).len() == usize::from(n),
            "21: port {port} got {} of {n} flooded ARPs",
            obs.on(port).len()
        );
    }
    ensure!(
        obs.frames.len() == 4 * usize::from(n),
        "21: {} frames out, expected {}",
        obs.frames.len(),
        4 * n
    );
    ensure!(
        (5..=15).contains(&arp_punts),
        "21: {arp_punts} ARP PacketIns passed a 5 pps / burst 5 meter"
    );
    ensure!(lacp_punts == 20, "21: LACP limited too: {lacp_punts} of 20");
    for p in &obs.punted {
        if p.reason == u32::from(reason::ARP) {
            ensure!(
                p.ingress_port == 1 && arps.contains(&p.payload),
                "21: odd ARP PacketIn {p:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_punts_copies_drops_and_permits() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    acl_cases(&mut rig).await.expect("ACL cases");
    meter_case(&mut rig).await.expect("punt meter");
}
