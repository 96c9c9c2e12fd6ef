//! Fabric pipeline on bmv2: LAG member hashing, member failover by watch
//! port, a LAG whose member is a remote leaf, LAG miss, membership changes
//! as the controller's diff writes them (docs/pipeline.md test plan cases
//! 38, 43-45b).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::{Flow, Rig};
use p4fabric::p4rt::{Entity, SwitchEntities};

/// 64 flows from H1 (port 1) to `dst`; `out(frame)` lists where each may go.
fn flows(dst: [u8; 6], out: impl Fn(&[u8]) -> Vec<(u32, Vec<u8>)>) -> Vec<Flow> {
    (3000..3064u16)
        .map(|sport| {
            let f = ucast_udp(dst, H1, sport);
            Flow {
                port: 1,
                out: out(&f),
                frame: f,
            }
        })
        .collect()
}

fn count(ports: &[u32]) -> BTreeMap<u32, usize> {
    let mut c = BTreeMap::new();
    for p in ports {
        *c.entry(*p).or_insert(0) += 1;
    }
    c
}

async fn cases(rig: &mut Rig) -> Result<()> {
    // 38. to_lag: each flow out of member 4 or 5 (untagged), both used.
    rig.insert(&[fdb(10, H4, to_lag(LEAF_LAG))]).await?;
    let to_h4 = flows(H4, |f| vec![(4, f.to_vec()), (5, f.to_vec())]);
    let before = rig.spread("38 to_lag", &to_h4).await?;
    println!("LAG, 64 flows: {:?}", count(&before));
    ensure!(
        count(&before).len() == 2,
        "38: one member only: {:?}",
        count(&before)
    );

    // 43. Member 5 loses carrier (far end down): after the watch port
    // reacts, every flow leaves through 4; back up, both are used again.
    rig.sw.set_link(5, false)?;
    rig.spread_until(
        "43 member 5 down",
        &to_h4,
        Duration::from_secs(5),
        |ports| ports.iter().all(|p| *p == 4),
    )
    .await?;
    rig.sw.set_link(5, true)?;
    rig.spread_until("43 member 5 up", &to_h4, Duration::from_secs(5), |ports| {
        ports == before.as_slice()
    })
    .await?;

    // 44. A LAG whose only member is a remote leaf (MLAG fallback): the
    // frame goes onto the fabric with that leaf's label.
    let h4b = [0, 0, 0, 0, 0, 0x4b];
    rig.insert(&[member(
        P_LAG,
        3,
        act(A_LAG_TO_LEAF, &[(P_LABEL, LABEL_L2.into())]),
    )])
    .await?;
    rig.insert(&[group(P_LAG, 8, &[(3, None)])]).await?;
    rig.insert(&[
        exact_group(T_LAG_MEMBERS, &[(F_LAG_ID, 8)], 8),
        fdb(10, h4b, to_lag(8)),
    ])
    .await?;
    let remote = flows(h4b, |f| {
        vec![
            (6, leaf_fabric_out(6, 10, f, LABEL_L2, 64)),
            (7, leaf_fabric_out(7, 10, f, LABEL_L2, 64)),
        ]
    });
    rig.spread("44 LAG to_leaf", &remote[..8]).await?;

    // 45b. Membership changes written the way the controller writes them
    // (compile::diff): {4, 5} -> {5} -> {4} -> {4, 5}. A plain MODIFY that
    // drops a member with a watch port makes PI throw ("Unexpected error
    // in RPC handling") and leaves the group half-updated; the diff clears
    // the watch port first and never empties the group. Every step writes
    // without error and reads back exact; the flows follow.
    let lag = |m: &[(u32, Option<u32>)]| group(P_LAG, 7, m);
    let steps = [
        (
            lag(&[(1, Some(4)), (2, Some(5))]),
            lag(&[(2, Some(5))]),
            vec![5],
        ),
        (lag(&[(2, Some(5))]), lag(&[(1, Some(4))]), vec![4]),
        (
            lag(&[(1, Some(4))]),
            lag(&[(1, Some(4)), (2, Some(5))]),
            vec![4, 5],
        ),
    ];
    for (i, (from, to, ports)) in steps.iter().enumerate() {
        let installed: SwitchEntities = [(from.key(), from.clone())].into();
        let desired: SwitchEntities = [(to.key(), to.clone())].into();
        for stage in p4fabric::compile::diff(&desired, &installed).stages {
            let ops: Vec<Entity> = stage.into_iter().map(|op| op.entity).collect();
            rig.modify(&ops).await?;
        }
        rig.expect_installed(std::slice::from_ref(to)).await?;
        rig.spread_until(
            &format!("45b step {i}"),
            &to_h4,
            Duration::from_secs(5),
            |used| used.iter().all(|p| ports.contains(p)) && count(used).len() == ports.len(),
        )
        .await?;
    }

    // 45. A LAG without a members entry: dropped.
    let x = [0, 0, 0, 0, 0, 0x45];
    rig.insert(&[fdb(10, x, to_lag(99))]).await?;
    rig.check("45 members miss", 1, &ucast_udp(x, H1, 1), &[], &[])
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_hashing_and_member_failover() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    let r = cases(&mut rig).await;
    // Leave the link up whatever happened (the switch is dropped anyway).
    let _ = rig.sw.set_link(5, true);
    r.expect("LAG cases");
}
