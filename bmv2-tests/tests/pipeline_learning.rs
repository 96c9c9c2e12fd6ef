//! Fabric pipeline on bmv2: MAC learning digests, idle timeouts of
//! learned sources and port security's locked sources (docs/pipeline.md
//! test plan cases 22-27).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use bmv2_tests::packet::*;
use bmv2_tests::pipeline::*;
use bmv2_tests::require_bmv2;
use bmv2_tests::rig::{DigestList, Rig};
use p4fabric::p4rt::switch::DigestRow;

const H5: [u8; 6] = [0, 0, 0, 0, 0, 0x05];
const H6: [u8; 6] = [0, 0, 0, 0, 0, 0x06];

fn row(vlan: u16, mac: [u8; 6], port: u32, lag: u32) -> DigestRow {
    vec![
        ("vlan_id", vlan.into()),
        ("eth_src", m(mac)),
        ("ingress_port", port.into()),
        ("lag_id", lag.into()),
    ]
}

/// Sends `frame` on `port`, expects `out` and exactly one digest list with
/// exactly `want`; acknowledges it.
async fn learns(
    rig: &mut Rig,
    what: &str,
    port: u32,
    frame: &[u8],
    out: &[(u32, Vec<u8>)],
    want: DigestRow,
) -> Result<()> {
    let mut obs = rig.check(what, port, frame, out, &[]).await?;
    if obs.digests.is_empty() {
        obs = rig
            .watch(Duration::from_secs(2), |o| !o.digests.is_empty())
            .await?;
    }
    let lists: Vec<DigestList> = obs.digests;
    ensure!(
        lists.len() == 1 && lists[0].rows == vec![want.clone()],
        "{what}: digests {lists:?}, want one with {want:?}"
    );
    rig.ack(&lists[0]).await
}

/// Sends `frame` on `port`, expects `out` and no digest within 500 ms.
async fn learns_nothing(
    rig: &mut Rig,
    what: &str,
    port: u32,
    frame: &[u8],
    out: &[(u32, Vec<u8>)],
) -> Result<()> {
    let obs = rig.check(what, port, frame, out, &[]).await?;
    let later = rig
        .watch(Duration::from_millis(200), |o| !o.digests.is_empty())
        .await?;
    if !obs.digests.is_empty() || !later.digests.is_empty() {
        bail!(
            "{what}: unexpected digest {:?}",
            [obs.digest_rows(), later.digest_rows()].concat()
        );
    }
    Ok(())
}

async fn digest_cases(rig: &mut Rig) -> Result<()> {
    rig.insert(&[
        learn_digest_config(),
        fdb(10, H2, to_port(2)),
        fdb(10, H1, to_port(1)),
    ])
    .await?;

    // 22. Unknown source on a plain edge port -> digest (10, H1, 1, 0).
    let f = ucast_udp(H2, H1, 1000);
    let out = vec![(2, push_vlan(&f, 10))];
    learns(rig, "22 digest on miss", 1, &f, &out, row(10, H1, 1, 0)).await?;

    // 23. Known source: no digest; an unknown one still is.
    rig.insert(&[src_mac(10, H1, 1, 0, 0)]).await?;
    learns_nothing(rig, "23 known source", 1, &f, &out).await?;
    let f5 = ucast_udp(H2, H5, 1001);
    let out5 = vec![(2, push_vlan(&f5, 10))];
    learns(rig, "23b another source", 1, &f5, &out5, row(10, H5, 1, 0)).await?;
    // A known source on another port is a move: learned again.
    let f1on3 = ucast_udp(H2, H1, 1002);
    learns(
        rig,
        "23c known MAC, other port",
        3,
        &f1on3,
        &[(2, push_vlan(&f1on3, 10))],
        row(10, H1, 3, 0),
    )
    .await?;

    // 24. A LAG member: the digest carries the physical port and the LAG;
    // the entry (vlan, mac, 0, LAG) covers every member.
    let f4 = ucast_udp(H1, H4, 1003);
    learns(
        rig,
        "24 digest from a LAG member",
        5,
        &f4,
        &[(1, f4.clone())],
        row(10, H4, 5, LEAF_LAG),
    )
    .await?;
    rig.insert(&[src_mac(10, H4, 0, LEAF_LAG, 0)]).await?;
    learns_nothing(rig, "24b known on member 4", 4, &f4, &[(1, f4.clone())]).await?;
    learns_nothing(rig, "24c known on member 5", 5, &f4, &[(1, f4.clone())]).await?;
    let f6 = ucast_udp(H1, H6, 1004);
    learns(
        rig,
        "24d another source on the LAG",
        4,
        &f6,
        &[(1, f6.clone())],
        row(10, H6, 4, LEAF_LAG),
    )
    .await?;

    // 25. Not learned: frames from the fabric, multicast sources.
    let inner = push_vlan(&ucast_udp(H1, [0, 0, 0, 0, 0, 0x77], 1005), 10);
    let from_fabric = mpls_encap(&inner, L1, S1, LABEL_L1, 63);
    learns_nothing(
        rig,
        "25 fabric frame",
        6,
        &from_fabric,
        &[(1, pop_vlan(&inner))],
    )
    .await?;
    let mcast_src = ucast_udp(H2, [0x01, 0, 0, 0, 0, 0x01], 1006);
    learns_nothing(
        rig,
        "25b multicast source",
        1,
        &mcast_src,
        &[(2, push_vlan(&mcast_src, 10))],
    )
    .await?;
    Ok(())
}

/// Case 27: port security. A locked port (`locked_sources` hit) drops
/// frames from unknown sources without a digest and forwards known ones;
/// a locked LAG likewise on every member; other ports still learn.
async fn locked_cases(rig: &mut Rig) -> Result<()> {
    const KNOWN: [u8; 6] = [0, 0, 0, 0, 0, 0x0c];
    const NEW: [u8; 6] = [0, 0, 0, 0, 0, 0x0d];
    const NEW2: [u8; 6] = [0, 0, 0, 0, 0, 0x0e];
    rig.insert(&[
        learn_digest_config(),
        fdb(10, H2, to_port(2)),
        fdb(10, H1, to_port(1)),
        src_mac(10, KNOWN, 1, 0, 0),
        src_mac(10, KNOWN, 0, LEAF_LAG, 0),
        locked_source(1, 0),
    ])
    .await?;
    let known = ucast_udp(H2, KNOWN, 2000);
    learns_nothing(
        rig,
        "27 known source on a locked port",
        1,
        &known,
        &[(2, push_vlan(&known, 10))],
    )
    .await?;
    let new = ucast_udp(H2, NEW, 2001);
    learns_nothing(
        rig,
        "27b unknown source on a locked port: dropped",
        1,
        &new,
        &[],
    )
    .await?;
    // Another port is not locked: it learns.
    let on3 = ucast_udp(H2, NEW, 2002);
    learns(
        rig,
        "27c unknown source on an open port",
        3,
        &on3,
        &[(2, push_vlan(&on3, 10))],
        row(10, NEW, 3, 0),
    )
    .await?;
    // The LAG locked: both members drop unknown sources, pass known ones.
    rig.insert(&[locked_source(0, LEAF_LAG)]).await?;
    let k4 = ucast_udp(H1, KNOWN, 2003);
    learns_nothing(
        rig,
        "27d known source on a locked LAG",
        4,
        &k4,
        &[(1, k4.clone())],
    )
    .await?;
    let n5 = ucast_udp(H1, NEW2, 2004);
    learns_nothing(
        rig,
        "27e unknown source on a locked LAG member",
        5,
        &n5,
        &[],
    )
    .await?;
    let n4 = ucast_udp(H1, NEW2, 2005);
    learns_nothing(rig, "27f ... and on the other member", 4, &n4, &[]).await?;
    // Unlocked again: the port learns again.
    rig.delete(&[locked_source(1, 0)]).await?;
    learns(
        rig,
        "27g unlocked port learns again",
        1,
        &new,
        &[(2, push_vlan(&new, 10))],
        row(10, NEW, 1, 0),
    )
    .await?;
    Ok(())
}

/// Case 26: Idle timeout: an entry that sees no traffic for its timeout is
/// reported; one refreshed every 500 ms is not.
async fn idle_case(rig: &mut Rig) -> Result<()> {
    const QUIET: [u8; 6] = [0, 0, 0, 0, 0, 0x0a];
    const BUSY: [u8; 6] = [0, 0, 0, 0, 0, 0x0b];
    let timeout_ns = 2_000_000_000;
    rig.insert(&[
        fdb(10, H2, to_port(2)),
        src_mac(10, QUIET, 1, 0, timeout_ns),
        src_mac(10, BUSY, 1, 0, timeout_ns),
    ])
    .await?;
    let quiet_key = src_mac_key(10, QUIET, 1, 0);
    let busy_key = src_mac_key(10, BUSY, 1, 0);
    rig.quiesce().await?;
    let start = Instant::now();
    rig.send(1, &ucast_udp(H2, QUIET, 1))?;
    let mut quiet_at = None;
    let mut i = 0u16;
    while start.elapsed() < Duration::from_secs(7) {
        rig.send(1, &ucast_udp(H2, BUSY, 2 + i))?;
        i += 1;
        let obs = rig.watch(Duration::from_millis(500), |_| false).await?;
        for k in &obs.idle {
            if *k == busy_key {
                bail!(
                    "26: idle timeout for a source seen every 500 ms (after {:?})",
                    start.elapsed()
                );
            }
            if *k == quiet_key && quiet_at.is_none() {
                quiet_at = Some(start.elapsed());
            }
        }
        if quiet_at.is_some() && start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let Some(at) = quiet_at else {
        bail!("26: no idle timeout for the quiet source within 7 s");
    };
    println!("idle timeout of a 2 s entry reported after {at:?}");
    ensure!(
        at >= Duration::from_millis(1900),
        "26: idle timeout reported after {at:?}, before the 2 s timeout"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_digests() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    digest_cases(&mut rig).await.expect("learning cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_notifications() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    idle_case(&mut rig).await.expect("idle timeout case");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_sources_drop_unknown_sources() {
    require_bmv2!();
    bmv2_tests::require_fabric_pipeline!();
    let mut rig = Rig::leaf().await.expect("leaf with fixture A");
    locked_cases(&mut rig).await.expect("port security cases");
}
