//! Fabric pipeline on bmv2: port classification and VLANs in and out
//! (docs/pipeline.md test plan cases 1-9, 46b).

use anyhow::Result;
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::Rig;

async fn cases(rig: &mut Rig) -> Result<()> {
    // The fixture reads back as written.
    let all: Vec<_> = leaf_fixture().concat();
    rig.expect_installed(&all).await?;

    let b1 = bcast_udp(H1, IP_H1);

    // 1. Unconfigured port: nothing forwarded, nothing punted (not even the
    // ARP the ACL copies on configured ports).
    let arp = arp_frame(BCAST, H1, 1, IP_H1, IP_H2);
    rig.check("1 unconfigured port", 8, &arp, &[], &[]).await?;
    // ... and the same with an explicit ports `drop` entry.
    rig.insert(&[exact(
        T_PORTS,
        &[(F_INGRESS_PORT, 8)],
        act(A_PORT_DROP, &[]),
    )])
    .await?;
    rig.check("1 ports drop()", 8, &arp, &[], &[]).await?;

    // 2. Access port, untagged: tagged on the trunk, untagged on the native
    // and LAG ports, encapsulated with the flood label on the fabric.
    let want = leaf_flood(&b1, 10, 1, 0, 64);
    assert_eq!(want.len(), 4, "fixture: flood of VLAN 10 from port 1");
    rig.check("2 access in", 1, &b1, &want, &[]).await?;

    // 3. Access port, tagged frame: not admitted.
    rig.check("3 access, tagged", 1, &push_vlan(&b1, 10), &[], &[])
        .await?;

    // 4. Trunk, allowed VLAN 20: out on port 3 (tagged) and the fabric.
    let b2 = bcast_udp(H2, [10, 0, 20, 12]);
    let want = leaf_flood(&b2, 20, 2, 0, 64);
    assert_eq!(want.len(), 2);
    rig.check("4 trunk VLAN 20", 2, &push_vlan(&b2, 20), &want, &[])
        .await?;
    // Trunk VLAN 10 out of the native port 3 untagged, access port 1
    // untagged, LAG untagged.
    let want = leaf_flood(&b2, 10, 2, 0, 64);
    rig.check(
        "4b trunk VLAN 10 to native",
        2,
        &push_vlan(&b2, 10),
        &want,
        &[],
    )
    .await?;

    // 5. Trunk, VLAN not allowed.
    rig.check("5 trunk VLAN 30", 2, &push_vlan(&b2, 30), &[], &[])
        .await?;
    // Priority-tagged (VID 0) is not admitted without a (p, 1, 0) entry.
    rig.check("5b priority tag", 2, &push_vlan(&b2, 0), &[], &[])
        .await?;

    // 6. Trunk without native VLAN, untagged.
    rig.check("6 trunk untagged", 2, &b2, &[], &[]).await?;

    // 7. Native VLAN in: untagged on port 3 is VLAN 10.
    let b3 = bcast_udp(H3, [10, 0, 10, 13]);
    let want = leaf_flood(&b3, 10, 3, 0, 64);
    rig.check("7 native in", 3, &b3, &want, &[]).await?;

    // vlans `drop()` entry: an explicit refusal of VLAN 20 on port 3.
    let v320 = vlan_in(3, true, 20, 20, 0);
    let refuse = exact(
        T_VLANS,
        &[(F_INGRESS_PORT, 3), (F_VLAN_VALID, 1), (F_VLAN_ID, 20)],
        act(A_PORT_DROP, &[]),
    );
    rig.modify(std::slice::from_ref(&refuse)).await?;
    rig.check("vlans drop()", 3, &push_vlan(&b3, 20), &[], &[])
        .await?;
    rig.modify(&[v320]).await?;
    let want = leaf_flood(&b3, 20, 3, 0, 64);
    rig.check("vlans set_vlan again", 3, &push_vlan(&b3, 20), &want, &[])
        .await?;

    // 8. Fabric port, neither MPLS nor a control frame.
    let plain = udp4_frame(L1, S1, IP_H9, IP_H1, 1000, 2000, 64);
    rig.check("8 fabric port, plain frame", 6, &plain, &[], &[])
        .await?;

    // 9. MPLS on an edge port.
    let inner = push_vlan(&ucast_udp(H2, H1, 1000), 10);
    let mpls = mpls_encap(&inner, L1, H1, LABEL_L1, 64);
    rig.check("9 MPLS on an edge port", 1, &mpls, &[], &[])
        .await?;

    // 46b. Egress `vlans` miss drops: without (2, 10) the flood of case 2
    // skips port 2; an explicit `drop()` entry does the same.
    let full = leaf_flood(&b1, 10, 1, 0, 64);
    let without_2: Vec<_> = full.iter().filter(|(p, _)| *p != 2).cloned().collect();
    rig.delete(&[vlan_out(2, 10, true)]).await?;
    rig.check("46b egress vlans miss", 1, &b1, &without_2, &[])
        .await?;
    rig.insert(&[exact(
        T_VLAN_OUT,
        &[(F_EGRESS_PORT, 2), (F_VLAN_ID, 10)],
        act(A_VLAN_OUT_DROP, &[]),
    )])
    .await?;
    rig.check("egress vlans drop()", 1, &b1, &without_2, &[])
        .await?;
    rig.modify(&[vlan_out(2, 10, true)]).await?;
    rig.check("egress vlans push again", 1, &b1, &full, &[])
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_and_vlan_classification() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    cases(&mut rig).await.expect("port/VLAN cases");
}
