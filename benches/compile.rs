//! The compiler at scale: 64 switches (4 spines, 60 leaves), 10,000 hosts,
//! 100,000 routes. Full compile; then single changes on a compiled fabric
//! (the incremental path, returning the write plans): a host moves, a new
//! host appears, a fabric link goes down (and comes back).
//!
//! `cargo bench --bench compile -- --quick`; figures in docs/performance.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use p4fabric::compile::sample::{host_move, large};
use p4fabric::compile::CompiledFabric;
use p4fabric::net::MacAddr;
use p4fabric::topo::{LinkId, ObservedState, Topology};

fn bench(c: &mut Criterion) {
    let (fabric, learned) = large(4, 60, 10_000, 100_000);
    let topo = Topology::build(&fabric, &ObservedState::default(), None);

    let mut g = c.benchmark_group("compile_64sw_10k_hosts_100k_routes");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("full_compile", |b| {
        // Dropping 140k entities is not part of compiling them.
        b.iter_with_large_drop(|| CompiledFabric::new(&fabric, &topo, &learned))
    });

    let mut compiled = CompiledFabric::new(&fabric, &topo, &learned);

    // A host moves between two ports of its leaf, back and forth.
    let (host, moved) = host_move(&learned).expect("a port-attached host");
    let mut flip = false;
    g.sample_size(100).measurement_time(Duration::from_secs(3));
    g.bench_function("host_move", |b| {
        b.iter(|| {
            flip = !flip;
            let h = if flip { moved.clone() } else { host.clone() };
            compiled.update_host(h.key(), Some(h))
        })
    });

    // A new host appears with an address, then ages out.
    let mut new = host.clone();
    new.mac = MacAddr([2, 0x99, 0, 0, 0, 1]);
    new.ips = vec!["10.0.200.200".parse().expect("ip")];
    let mut present = false;
    g.bench_function("host_learn_or_age_out", |b| {
        b.iter(|| {
            present = !present;
            compiled.update_host(new.key(), present.then(|| new.clone()))
        })
    });

    // A spine-leaf link in the flood tree goes down, then comes back.
    let link = topo.links()[0].id.clone();
    let mut obs = ObservedState::default();
    obs.discovered
        .insert(LinkId::new(link.0.clone(), link.1.clone()), false);
    g.bench_function("link_change_topology", |b| {
        b.iter(|| Topology::build(&fabric, &obs, Some(topo.flood_tree())))
    });
    let down = Topology::build(&fabric, &obs, Some(topo.flood_tree()));
    let up = Topology::build(&fabric, &ObservedState::default(), Some(down.flood_tree()));
    let mut is_down = false;
    g.bench_function("link_change_recompile", |b| {
        b.iter(|| {
            is_down = !is_down;
            compiled.update_topology(&fabric, if is_down { &down } else { &up })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
