//! Compiles the benchmark fabric once and prints sizes, timings and the
//! peak RSS (VmHWM): `cargo run --release --example compile_rss`.
//! Arguments: spines leaves hosts routes (default 4 60 10000 100000).

use std::time::{Duration, Instant};

use p4fabric::compile::sample::{host_move, large};
use p4fabric::compile::CompiledFabric;
use p4fabric::topo::{LinkId, ObservedState, Topology};

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of this process so far: on a shared machine
/// the wall clock measures the neighbours too.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime are fields 14 and 15 of stat: indexes 11, 12 after ')'.
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (spines, leaves, hosts, routes) = (arg(0, 4), arg(1, 60), arg(2, 10_000), arg(3, 100_000));
    let (fabric, learned) = large(spines, leaves, hosts, routes);
    println!(
        "input: {spines} spines, {leaves} leaves, {} hosts, {} routes",
        learned.len(),
        fabric.routes.len()
    );
    println!(
        "peak RSS after building the input: {} MiB",
        vm_hwm_kib().unwrap_or(0) / 1024
    );

    let t = Instant::now();
    let topo = Topology::build(&fabric, &ObservedState::default(), None);
    println!("topology: {:?}", t.elapsed());

    let (t, cpu) = (Instant::now(), cpu_time());
    let mut c = CompiledFabric::new(&fabric, &topo, &learned);
    let full = t.elapsed();
    let full_cpu = cpu_time().saturating_sub(cpu);
    let total: usize = c.switch_names().map(|s| c.switch_len(s)).sum();
    let max = c.switch_names().map(|s| c.switch_len(s)).max().unwrap_or(0);
    println!(
        "full compile: {full:?} wall, {full_cpu:?} CPU; {total} entities on all switches, up to {max} on one"
    );
    println!(
        "peak RSS after the full compile: {} MiB",
        vm_hwm_kib().unwrap_or(0) / 1024
    );

    // One host moves to another port of its leaf.
    let (h, moved) = host_move(&learned).expect("a port-attached host");
    let t = Instant::now();
    let plans = c.update_host(h.key(), Some(moved));
    let dt = t.elapsed();
    let ops: usize = plans.values().map(|p| p.len()).sum();
    println!("host move: {dt:?}; {ops} ops on {} switches", plans.len());

    // A new host is learned.
    let mut new = h.clone();
    new.mac = p4fabric::net::MacAddr([2, 0x99, 0, 0, 0, 1]);
    new.ips = vec!["10.99.99.99".parse().expect("ip")];
    let t = Instant::now();
    let plans = c.update_host(new.key(), Some(new.clone()));
    let dt = t.elapsed();
    let ops: usize = plans.values().map(|p| p.len()).sum();
    println!("new host: {dt:?}; {ops} ops on {} switches", plans.len());

    // A next-hop host of ~3000 static routes ages out, then comes back.
    let router = learned.values().next().cloned().expect("a host");
    let t = Instant::now();
    let plans = c.update_host(router.key(), None);
    let dt = t.elapsed();
    let ops: usize = plans.values().map(|p| p.len()).sum();
    println!(
        "next-hop host ages out: {dt:?}; {ops} ops on {} switches",
        plans.len()
    );
    let t = Instant::now();
    let plans = c.update_host(router.key(), Some(router));
    let dt = t.elapsed();
    let ops: usize = plans.values().map(|p| p.len()).sum();
    println!(
        "next-hop host comes back: {dt:?}; {ops} ops on {} switches",
        plans.len()
    );

    // One spine-leaf link goes down.
    let link = topo.links()[0].id.clone();
    let mut obs = ObservedState::default();
    obs.discovered
        .insert(LinkId::new(link.0.clone(), link.1.clone()), false);
    let t = Instant::now();
    let topo2 = Topology::build(&fabric, &obs, Some(topo.flood_tree()));
    let dt_topo = t.elapsed();
    let t = Instant::now();
    let plans = c.update_topology(&fabric, &topo2);
    let dt = t.elapsed();
    let ops: usize = plans.values().map(|p| p.len()).sum();
    println!(
        "link down: topology {dt_topo:?} + recompile {dt:?}; {ops} ops on {} switches",
        plans.len()
    );

    let t = Instant::now();
    let installed = p4fabric::p4rt::entity::SwitchEntities::new();
    let resync = c.diff_switch("leaf01", &installed);
    println!(
        "resync plan of leaf01 against an empty switch: {:?} ({} ops)",
        t.elapsed(),
        resync.len()
    );
    drop(resync);

    let t = Instant::now();
    let one = c.switch_entities("leaf01");
    println!(
        "materialize leaf01: {:?} ({} entities)",
        t.elapsed(),
        one.len()
    );
    drop(one);
    println!("peak RSS (VmHWM): {} MiB", vm_hwm_kib().unwrap_or(0) / 1024);
}
