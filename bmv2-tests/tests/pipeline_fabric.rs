//! Fabric pipeline on bmv2: the leaf side of the fabric (egress-leaf pop
//! and delivery, floods from the fabric, never back to the fabric) and the
//! spine (label forwarding with ECMP, flood transit, punts)
//! (docs/pipeline.md test plan cases 48-59).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::{Flow, Punted, Rig};

/// A fabric frame: `inner` (untagged) tagged with `vlan`, encapsulated.
fn fab(dst: [u8; 6], src: [u8; 6], label: u32, ttl: u8, vlan: u16, inner: &[u8]) -> Vec<u8> {
    mpls_encap(&push_vlan(inner, vlan), dst, src, label, ttl)
}

async fn leaf_cases(rig: &mut Rig) -> Result<()> {
    let b9 = bcast_udp(H9, IP_H9);

    // 48. flood_pop: a broadcast from the fabric is delivered to the local
    // ports of the VLAN, not back to the fabric.
    let flood0 = fab(L1, S1, FLOOD_NO_LAG, 63, 10, &b9);
    let want = leaf_flood(&b9, 10, 6, 0, 62);
    ensure!(want.len() == 4, "fixture: 1, 2, 3, 4");
    rig.check("48 flood from the fabric", 6, &flood0, &want, &[])
        .await?;

    // 49. The source LAG in the flood label prunes that LAG's members.
    let flood7 = fab(L1, S1, FLOOD_LEAF_LAG, 63, 10, &b9);
    let want7 = leaf_flood(&b9, 10, 6, LEAF_LAG, 62);
    ensure!(want7.len() == 3, "fixture: 1, 2, 3");
    rig.check("49 source LAG pruned", 6, &flood7, &want7, &[])
        .await?;
    // 49b. A LAG id using all 16 bits is taken from the label's top 16
    // bits: the LAG's members pruned, and no longer for LAG 7's label.
    rig.modify(&[port_lag(4, WIDE_LAG), port_lag(5, WIDE_LAG)])
        .await?;
    let wide = fab(L1, S1, flood_label(WIDE_LAG as u16), 63, 10, &b9);
    rig.check("49b 16-bit source LAG pruned", 6, &wide, &want7, &[])
        .await?;
    let want0 = leaf_flood(&b9, 10, 6, 0, 62);
    rig.check("49c another LAG's label", 6, &flood7, &want0, &[])
        .await?;
    rig.modify(&[port_lag(4, LEAF_LAG), port_lag(5, LEAF_LAG)])
        .await?;

    // 50. Interior node of the flood tree: port 7 in the group gets the
    // flood with its label kept and the MPLS TTL decremented; not with
    // TTL 1 (the edge copies still go).
    rig.modify(&[mcast(10, &[1, 2, 3, 4, 6, 7])]).await?;
    let mut want = leaf_flood(&b9, 10, 6, 0, 62);
    want.push((7, leaf_fabric_out(7, 10, &b9, FLOOD_NO_LAG, 62)));
    rig.check("50 flood tree interior", 6, &flood0, &want, &[])
        .await?;
    let mut want = leaf_flood(&b9, 10, 6, LEAF_LAG, 62);
    want.push((7, leaf_fabric_out(7, 10, &b9, FLOOD_LEAF_LAG, 62)));
    rig.check("50b interior, LAG label", 6, &flood7, &want, &[])
        .await?;
    let ttl1 = fab(L1, S1, FLOOD_NO_LAG, 1, 10, &b9);
    rig.check(
        "50c MPLS TTL 1",
        6,
        &ttl1,
        &leaf_flood(&b9, 10, 6, 0, 62),
        &[],
    )
    .await?;

    // 51. pop_to_bridge: own label popped, the inner frame bridged to a
    // local port (untagged on access, tagged on trunk) or a LAG member.
    rig.insert(&[
        fdb(10, H1, to_port(1)),
        fdb(10, H2, to_port(2)),
        fdb(10, H4, to_lag(LEAF_LAG)),
        fdb(10, H9, to_leaf(LABEL_L2)),
    ])
    .await?;
    let to_h1 = ucast_udp(H1, H9, 4000);
    rig.check(
        "51 pop to an access port",
        6,
        &fab(L1, S1, LABEL_L1, 63, 10, &to_h1),
        &[(1, to_h1.clone())],
        &[],
    )
    .await?;
    let to_h2 = ucast_udp(H2, H9, 4001);
    rig.check(
        "51b pop to a trunk",
        7,
        &fab(L1, S2, LABEL_L1, 63, 10, &to_h2),
        &[(2, push_vlan(&to_h2, 10))],
        &[],
    )
    .await?;
    let to_h4 = ucast_udp(H4, H9, 4002);
    rig.spread(
        "51c pop to a LAG",
        &[Flow {
            port: 6,
            frame: fab(L1, S1, LABEL_L1, 63, 10, &to_h4),
            out: vec![(4, to_h4.clone()), (5, to_h4.clone())],
        }],
    )
    .await?;

    // 52. A popped unicast never goes back to the fabric: not to a remote
    // host, and an unknown destination floods to local ports only (port 7
    // is still in the flood group).
    let to_h9 = ucast_udp(H9, [0, 0, 0, 0, 0, 0x52], 4003);
    rig.check(
        "52 popped unicast for a remote host",
        6,
        &fab(L1, S1, LABEL_L1, 63, 10, &to_h9),
        &[],
        &[],
    )
    .await?;
    let unknown = ucast_udp([0, 0, 0, 0, 0x77, 0x77], H9, 4004);
    rig.check(
        "52b popped unknown unicast",
        6,
        &fab(L1, S1, LABEL_L1, 63, 10, &unknown),
        &leaf_flood(&unknown, 10, 6, 0, 62),
        &[],
    )
    .await?;
    rig.modify(&[mcast(10, &[1, 2, 3, 4, 6])]).await?;

    // 53. mpls_in: default drop (unknown label), an explicit drop() entry,
    // a popped frame without an inner tag, a label stack.
    rig.check(
        "53 unknown label",
        6,
        &fab(L1, S1, 555, 63, 10, &to_h1),
        &[],
        &[],
    )
    .await?;
    rig.insert(&[mpls_in(LABEL_L1, LABEL_MASK, 30, act(A_MPLS_DROP, &[]))])
        .await?;
    rig.check(
        "53b mpls_in drop()",
        6,
        &fab(L1, S1, LABEL_L1, 63, 10, &to_h1),
        &[],
        &[],
    )
    .await?;
    rig.delete(&[mpls_in(LABEL_L1, LABEL_MASK, 30, act(A_MPLS_DROP, &[]))])
        .await?;
    rig.check(
        "53c untagged inner frame",
        6,
        &mpls_encap(&to_h1, L1, S1, LABEL_L1, 63),
        &[],
        &[],
    )
    .await?;
    let mut stack = fab(L1, S1, 999, 63, 10, &to_h1);
    stack[16] &= !1; // not bottom of stack ...
    let bos = mpls_encap(&[], [0; 6], [0; 6], LABEL_L1, 63);
    stack.splice(18..18, bos[14..18].iter().copied()); // ... followed by 101
    rig.check("53d label stack", 6, &stack, &[], &[]).await?;
    // Still delivering after all that.
    rig.check(
        "53e pop again",
        6,
        &fab(L1, S1, LABEL_L1, 63, 10, &to_h1),
        &[(1, to_h1.clone())],
        &[],
    )
    .await?;
    Ok(())
}

async fn spine_cases(rig: &mut Rig) -> Result<()> {
    let inner = ucast_udp(H1, H9, 5000);

    // 54. transit: label 101 -> port 1 (to L1), outer MACs of that link,
    // MPLS TTL decremented, inner frame untouched.
    rig.check(
        "54 transit",
        4,
        &fab(S1, L3, LABEL_L1, 64, 10, &inner),
        &[(1, fab(L1, S1, LABEL_L1, 63, 10, &inner))],
        &[],
    )
    .await?;

    // 55. ECMP on the inner 5-tuple over the two links to L2.
    let flows: Vec<Flow> = (6000..6064u16)
        .map(|sport| {
            let f = ucast_udp(H9, H1, sport);
            Flow {
                port: 1,
                frame: fab(S1, L1, LABEL_L2, 64, 10, &f),
                out: vec![
                    (2, fab(L2, S1, LABEL_L2, 63, 10, &f)),
                    (3, fab(L2, S1, LABEL_L2, 63, 10, &f)),
                ],
            }
        })
        .collect();
    let ports = rig.spread("55 spine ECMP", &flows).await?;
    let used: BTreeSet<u32> = ports.iter().copied().collect();
    ensure!(used.len() == 2, "55: 64 flows used only {used:?}");
    ensure!(
        rig.spread("55 again", &flows).await? == ports,
        "55: a flow changed link"
    );
    // Port 3 loses carrier: everything on 2.
    rig.sw.set_link(3, false)?;
    rig.spread_until("55 link 3 down", &flows, Duration::from_secs(5), |p| {
        p.iter().all(|p| *p == 2)
    })
    .await?;
    rig.sw.set_link(3, true)?;
    rig.spread_until("55 link 3 up", &flows, Duration::from_secs(5), |p| {
        p == ports.as_slice()
    })
    .await?;

    // 56. label_fwd miss; MPLS TTL running out.
    rig.check(
        "56 label_fwd miss",
        4,
        &fab(S1, L3, LABEL_L3, 64, 10, &inner),
        &[],
        &[],
    )
    .await?;
    rig.check(
        "56b MPLS TTL 1",
        4,
        &fab(S1, L3, LABEL_L1, 1, 10, &inner),
        &[],
        &[],
    )
    .await?;

    // 57. Never back out of the ingress port.
    rig.check(
        "57 not back to the ingress port",
        1,
        &fab(S1, L1, LABEL_L1, 64, 10, &inner),
        &[],
        &[],
    )
    .await?;

    // 58. flood_transit: replicated to the spine's flood-tree ports except
    // the ingress, label kept, TTL decremented.
    let b = bcast_udp(H1, IP_H1);
    let label = FLOOD_LEAF_LAG;
    rig.check(
        "58 flood transit",
        1,
        &fab(S1, L1, label, 63, 10, &b),
        &[
            (2, fab(L2, S1, label, 62, 10, &b)),
            (4, fab(L3, S1, label, 62, 10, &b)),
        ],
        &[],
    )
    .await?;

    // 59. Discovery probes are punted with the port they came in on.
    let probe = discovery_frame(L2, b"probe from L2 port 1");
    rig.check(
        "59 discovery punt",
        3,
        &probe,
        &[],
        &[Punted::new(3, reason::DISCOVERY, &probe)],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_pops_delivers_and_floods_from_the_fabric() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    leaf_cases(&mut rig).await.expect("leaf fabric cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spine_forwards_on_labels_with_ecmp() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::spine().await.expect("spine with fixture B");
    let r = spine_cases(&mut rig).await;
    let _ = rig.sw.set_link(3, true);
    r.expect("spine cases");
}

/// The one frame `rig` emits (after something was sent into it).
async fn the_output(rig: &mut Rig, what: &str) -> Result<(u32, Vec<u8>)> {
    let obs = rig.collect(1, 0, bmv2_tests::rig::SETTLE).await?;
    ensure!(
        obs.frames.len() == 1 && obs.punted.is_empty(),
        "{what}: want one frame, got {:?} and {} PacketIns",
        obs.frames
            .iter()
            .map(|(p, f)| format!("{p}: {}", hex(f)))
            .collect::<Vec<_>>(),
        obs.punted.len()
    );
    Ok(obs.frames[0].clone())
}

/// Leaf and spine fed with each other's real output (the test carries the
/// frames across): H1 -> L1 -> S1 -> towards L2; from L3 -> S1 -> L1 ->
/// H1; a broadcast from H1 through L1 and S1.
async fn chain_cases(l1: &mut Rig, s1: &mut Rig) -> Result<()> {
    l1.insert(&[fdb(10, H9, to_leaf(LABEL_L2)), fdb(10, H1, to_port(1))])
        .await?;

    let f = ucast_udp(H9, H1, 7000);
    l1.quiesce().await?;
    l1.send(1, &f)?;
    let (up, pushed) = the_output(l1, "chain: L1 pushes").await?;
    ensure!(up == 6 || up == 7, "chain: L1 sent H9's frame to port {up}");
    let to_l2 = fab(L2, S1, LABEL_L2, 63, 10, &f);
    s1.quiesce().await?;
    s1.send(1, &pushed)?;
    let (p, out) = the_output(s1, "chain: S1 forwards").await?;
    ensure!(
        (p == 2 || p == 3) && out == to_l2,
        "chain: S1 sent {} on {p}, want {} on 2 or 3",
        hex(&out),
        hex(&to_l2)
    );

    let g = ucast_udp(H1, H9, 7001);
    s1.quiesce().await?;
    s1.send(4, &fab(S1, L3, LABEL_L1, 64, 10, &g))?;
    let (p, down) = the_output(s1, "chain: S1 towards L1").await?;
    ensure!(p == 1, "chain: S1 sent L1's frame to port {p}");
    l1.check("chain: L1 pops and delivers", 6, &down, &[(1, g)], &[])
        .await?;

    let b = bcast_udp(H1, IP_H1);
    l1.quiesce().await?;
    l1.send(1, &b)?;
    let obs = l1.collect(4, 0, bmv2_tests::rig::SETTLE).await?;
    let copies = obs.on(6);
    ensure!(
        copies.len() == 1,
        "chain: {} flood copies on port 6",
        copies.len()
    );
    let label = FLOOD_NO_LAG;
    s1.check(
        "chain: S1 floods L1's broadcast",
        1,
        copies[0],
        &[
            (2, fab(L2, S1, label, 63, 10, &b)),
            (4, fab(L3, S1, label, 63, 10, &b)),
        ],
        &[],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_and_spine_take_each_others_frames() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut l1 = Rig::leaf().await.expect("leaf with fixture A");
    let mut s1 = Rig::spine().await.expect("spine with fixture B");
    chain_cases(&mut l1, &mut s1)
        .await
        .expect("leaf-spine chain");
}
