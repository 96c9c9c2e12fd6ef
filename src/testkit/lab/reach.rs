//! The reachability matrix: the probes of `compile::reach` answered either
//! by real pings (bmv2 lab) or by the forwarding checker walking the
//! entities read back from the switches (simulated: no packet is sent, and
//! everything that prints it says so), and rendered as a table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

pub use crate::compile::reach::{
    check_all, check_probe, probes, switches_entered, Probe, ProbeResult,
};

/// A matrix per address family: rows are sources, columns destinations;
/// `ok`, `FAIL`, or `-` where no probe applies (no address of that family,
/// or not expected to be reachable).
pub fn render(results: &[ProbeResult], v6: bool) -> String {
    let rows: Vec<&ProbeResult> = results
        .iter()
        .filter(|(p, _)| p.ip.is_ipv6() == v6)
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let names: BTreeSet<&str> = rows
        .iter()
        .flat_map(|(p, _)| [p.from.as_str(), p.to.as_str()])
        .collect();
    // A destination with several addresses of a family: FAIL if any fails.
    let mut cell: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for (p, r) in &rows {
        let e = cell.entry((p.from.as_str(), p.to.as_str())).or_insert(true);
        *e &= r.is_ok();
    }
    let w = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
    let mut s = format!("{:w$}", if v6 { "IPv6" } else { "IPv4" });
    for n in &names {
        let _ = write!(s, " {n:>w$}");
    }
    s.push('\n');
    for from in &names {
        let _ = write!(s, "{from:w$}");
        for to in &names {
            let c = match cell.get(&(*from, *to)) {
                Some(true) => "ok",
                Some(false) => "FAIL",
                None => "-",
            };
            let _ = write!(s, " {c:>w$}");
        }
        s.push('\n');
    }
    s
}

/// The failed probes, one line each.
pub fn failures(results: &[ProbeResult]) -> Vec<String> {
    results
        .iter()
        .filter_map(|(p, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{} -> {} ({}): {e}", p.from, p.to, p.ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_marks_failures_and_gaps() {
        let ok = |from: &str, to: &str, ip: &str, r: Result<(), String>| {
            (
                Probe {
                    from: from.into(),
                    to: to.into(),
                    ip: ip.parse().expect("ip"),
                },
                r,
            )
        };
        let results = vec![
            ok("a", "b", "10.0.0.2", Ok(())),
            ok("b", "a", "10.0.0.1", Err("dropped".into())),
        ];
        let m = render(&results, false);
        assert_eq!(m, "IPv4    a    b\na       -   ok\nb    FAIL    -\n");
        assert_eq!(failures(&results), ["b -> a (10.0.0.1): dropped"]);
        assert_eq!(render(&results, true), "");
    }
}
