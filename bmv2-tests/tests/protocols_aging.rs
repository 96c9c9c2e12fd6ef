//! MAC aging on bmv2: with `settings.mac_aging_secs` small, a learned host
//! that goes quiet ages out of the switch it was learned on (the
//! `src_mac` idle timeout), and the controller removes it everywhere: its
//! bridging entries on every leaf and its host routes. Checked by reading
//! the switches back, and with the controller's status; the host is
//! learned again when it speaks.

use std::time::Duration;

use bmv2_tests::protocols::{
    entities_mentioning, ip, learned_host, ping_until, start, unlisted_host, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_learned_host_ages_out_everywhere() {
    p4fabric::require_lab_run!();
    let fabric = bmv2_tests::protocols::fabric(|f| f.settings.mac_aging_secs = 3);
    let (mut run, ctl) = start(&fabric, "p4f-pg-").await;
    let host = unlisted_host(&mut run, "m", &["leaf1/6"]);
    let mac_hex = format!("0x{:x}", host.mac.as_u64());
    let ip_hex = "0xa000a63"; // 10.0.10.99

    assert!(
        ping_until(&run, "m", ip("10.0.10.12"), 5).is_some(),
        "m -> a2"
    );
    assert!(
        ping_until(&run, "m", ip("10.0.20.12"), 5).is_some(),
        "m -> b2"
    );
    let learned = wait_for(Duration::from_secs(5), || async {
        let h = learned_host(&run, host.vlan, host.mac).await?;
        h.ips.contains(&ip("10.0.10.99")).then_some(h)
    })
    .await;
    assert!(learned.is_some(), "m was not learned");
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "{:?}", c.pending);
    let present = entities_mentioning(&c, &mac_hex);
    for sw in ["leaf1", "leaf2"] {
        assert!(
            present.iter().any(|e| e.starts_with(sw)),
            "no entry for m on {sw}: {present:?}"
        );
    }
    assert!(
        !entities_mentioning(&c, ip_hex).is_empty(),
        "no host route for 10.0.10.99"
    );

    // Quiet from now on: gone from status within aging + margin...
    let gone = wait_for(Duration::from_secs(15), || async {
        learned_host(&run, host.vlan, host.mac)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "m never aged out");
    // ...and from every switch.
    let c = run.wait_converged(Duration::from_secs(10)).await;
    assert!(c.converged(), "after aging: {:?}", c.pending);
    let left: Vec<String> = entities_mentioning(&c, &mac_hex)
        .into_iter()
        .chain(entities_mentioning(&c, ip_hex))
        .collect();
    assert!(left.is_empty(), "entries left after aging: {left:?}");

    // It speaks again: learned again.
    assert!(
        ping_until(&run, "m", ip("10.0.10.12"), 5).is_some(),
        "m -> a2 again"
    );
    let again = wait_for(Duration::from_secs(5), || async {
        learned_host(&run, host.vlan, host.mac).await
    })
    .await;
    assert!(again.is_some(), "m not learned again");
    ctl.stop().await;
}
