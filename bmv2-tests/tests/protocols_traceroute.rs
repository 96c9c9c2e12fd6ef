//! traceroute between hosts on a bmv2 fabric shows exactly one routed hop
//! between VLANs, the anycast gateway (its time exceeded comes from the
//! controller, for TTL_EXPIRED punts), and none within a VLAN: the spines
//! and the fabric encapsulation are invisible.

use bmv2_tests::protocols::{exec, ip, ping_until, start};

/// The hop addresses `traceroute -n -q 1` printed, `*` for no answer.
fn hops(out: &str) -> Vec<String> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next()?.parse::<u32>().ok()?;
            Some(w.next()?.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceroute_shows_the_gateway_as_the_only_hop() {
    p4fabric::require_lab_run!();
    if p4fabric::testkit::lab::find_tool("traceroute").is_none() {
        p4fabric::testkit::lab::say_skipped(
            module_path!(),
            "traceroute not installed (apt-get install traceroute)",
        );
        return;
    }
    let fabric = bmv2_tests::protocols::fabric(|_| {});
    let (run, ctl) = start(&fabric, "p4f-pt-").await;
    // Resolve first, so no probe is lost to ARP / ND or a glean.
    for (from, to) in [
        ("a1", "10.0.20.12"),
        ("a1", "10.0.10.12"),
        ("b2", "10.0.10.11"),
    ] {
        assert!(
            ping_until(&run, from, ip(to), 5).is_some(),
            "{from} -> {to}"
        );
    }
    let trace = |from: &str, args: &[&str]| {
        let mut cmd = vec!["traceroute", "-n", "-q", "1", "-w", "2", "-m", "6"];
        cmd.extend_from_slice(args);
        let (ok, out) = exec(&run, from, &cmd);
        assert!(ok, "traceroute {args:?} from {from} failed: {out}");
        (hops(&out), out)
    };
    let cases: [(&str, &[&str], &[&str]); 5] = [
        // Routed, other leaf, both directions and families.
        ("a1", &["10.0.20.12"], &["10.0.10.1", "10.0.20.12"]),
        ("b2", &["10.0.10.11"], &["10.0.20.1", "10.0.10.11"]),
        (
            "a1",
            &["-6", "-s", "2001:db8:10::11", "2001:db8:20::12"],
            &["2001:db8:10::1", "2001:db8:20::12"],
        ),
        // Routed, same leaf.
        ("a1", &["10.0.20.11"], &["10.0.10.1", "10.0.20.11"]),
        // Bridged: no routed hop at all.
        ("a1", &["10.0.10.12"], &["10.0.10.12"]),
    ];
    for (from, args, want) in cases {
        let (got, out) = trace(from, args);
        assert_eq!(got, want, "traceroute {args:?} from {from}:\n{out}");
    }
    ctl.stop().await;
}
