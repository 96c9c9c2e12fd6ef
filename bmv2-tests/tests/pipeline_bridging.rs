//! Fabric pipeline on bmv2: known unicast to a port / a remote leaf, fdb
//! drop, unknown unicast and broadcast flooding with source pruning, no
//! hairpin (docs/pipeline.md test plan cases 37, 39-42, 46, 47).

use std::collections::BTreeSet;

use anyhow::{ensure, Result};
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::{Flow, Rig};

async fn cases(rig: &mut Rig) -> Result<()> {
    // 37. to_port both ways: access -> trunk (tag pushed), trunk -> access
    // (tag popped).
    rig.insert(&[fdb(10, H2, to_port(2)), fdb(10, H1, to_port(1))])
        .await?;
    let f = ucast_udp(H2, H1, 1000);
    rig.check("37 to_port", 1, &f, &[(2, push_vlan(&f, 10))], &[])
        .await?;
    let back = ucast_udp(H1, H2, 1001);
    rig.check(
        "37b reverse",
        2,
        &push_vlan(&back, 10),
        &[(1, back.clone())],
        &[],
    )
    .await?;

    // 39. to_leaf: pushed onto the fabric with the remote leaf's label,
    // towards S1 or S2; 64 flows use both uplinks.
    rig.insert(&[fdb(10, H9, to_leaf(LABEL_L2))]).await?;
    let flows: Vec<Flow> = (2000..2064u16)
        .map(|sport| {
            let f = ucast_udp(H9, H1, sport);
            Flow {
                port: 1,
                out: vec![
                    (6, leaf_fabric_out(6, 10, &f, LABEL_L2, 64)),
                    (7, leaf_fabric_out(7, 10, &f, LABEL_L2, 64)),
                ],
                frame: f,
            }
        })
        .collect();
    let ports = rig.spread("39 to_leaf", &flows).await?;
    let used: BTreeSet<u32> = ports.iter().copied().collect();
    ensure!(used.len() == 2, "39: 64 flows used only uplink(s) {used:?}");
    ensure!(
        rig.spread("39 again", &flows).await? == ports,
        "39: a flow changed uplink"
    );

    // 40. fdb drop().
    let x = [0, 0, 0, 0, 0, 0x40];
    rig.insert(&[fdb(10, x, act(A_FDB_DROP, &[]))]).await?;
    rig.check("40 fdb drop", 1, &ucast_udp(x, H1, 1), &[], &[])
        .await?;

    // 41. Unknown unicast floods like a broadcast.
    let unknown = ucast_udp([0, 0, 0, 0, 0x77, 0x77], H1, 1002);
    rig.check(
        "41 unknown unicast",
        1,
        &unknown,
        &leaf_flood(&unknown, 10, 1, 0, 64),
        &[],
    )
    .await?;

    // 42. No hairpin: a known destination behind the ingress port or the
    // ingress LAG is not sent back.
    rig.check("42 to the ingress port", 1, &ucast_udp(H1, H2, 1), &[], &[])
        .await?;
    rig.insert(&[fdb(10, H4, to_lag(LEAF_LAG))]).await?;
    for sport in 1..9u16 {
        let hair = ucast_udp(H4, [0, 0, 0, 0, 0, 0x14], sport);
        rig.check("42b to the ingress LAG", 4, &hair, &[], &[])
            .await?;
    }

    // 46. Broadcast from a LAG member: not back to any member of the LAG;
    // the fabric copy carries the LAG in the flood label.
    let b4 = bcast_udp(H4, [10, 0, 10, 14]);
    let want = leaf_flood(&b4, 10, 4, LEAF_LAG, 64);
    ensure!(want.len() == 4, "fixture: 1, 2, 3, 6");
    ensure!(
        want.contains(&(6, leaf_fabric_out(6, 10, &b4, 0x0007F, 64))),
        "fixture: flood label 0x0007F"
    );
    rig.check("46 broadcast from a LAG", 4, &b4, &want, &[])
        .await?;
    // Source pruning needs port_lag: a group listing both members sends
    // nothing to the other member.
    rig.modify(&[mcast(10, &[1, 2, 3, 4, 5, 6])]).await?;
    rig.check("46b both members in the group", 5, &b4, &want, &[])
        .await?;
    rig.modify(&[mcast(10, &[1, 2, 3, 4, 6])]).await?;
    // 46c. A LAG id using all 16 bits fills the label's top 16 bits:
    // (id << 4) | 0xF.
    let wide = [
        port_edge(4, WIDE_LAG),
        port_lag(4, WIDE_LAG),
        port_lag(5, WIDE_LAG),
    ];
    rig.modify(&wide).await?;
    let want_wide: Vec<(u32, Vec<u8>)> = want
        .iter()
        .map(|(p, f)| match p {
            6 => (6, leaf_fabric_out(6, 10, &b4, 0xA5C3F, 64)),
            _ => (*p, f.clone()),
        })
        .collect();
    rig.check("46c 16-bit LAG id in the label", 4, &b4, &want_wide, &[])
        .await?;
    let back = [
        port_edge(4, LEAF_LAG),
        port_lag(4, LEAF_LAG),
        port_lag(5, LEAF_LAG),
    ];
    rig.modify(&back).await?;

    // 47. vlan_flood miss: VLAN 20 without a flood entry drops floods.
    let b20 = push_vlan(&bcast_udp(H2, [10, 0, 20, 12]), 20);
    rig.check(
        "47 flood before",
        2,
        &b20,
        &leaf_flood(&pop_vlan(&b20), 20, 2, 0, 64),
        &[],
    )
    .await?;
    rig.delete(&[vlan_flood(20, 20)]).await?;
    rig.check("47 vlan_flood miss", 2, &b20, &[], &[]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridging_and_flooding() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    cases(&mut rig).await.expect("bridging cases");
}
