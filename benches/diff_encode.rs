//! The agent's hot paths: diffing a switch's desired state against what it
//! holds (full, and the incremental path between two snapshots of the
//! compiled fabric), and encoding/decoding P4Runtime entities.
//!
//! `cargo bench --bench diff_encode -- --quick`; figures in
//! docs/performance.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use p4fabric::bench::write::host_routes;
use p4fabric::compile::sample::{large, leaf_name};
use p4fabric::compile::{diff, CompiledFabric};
use p4fabric::net::MacAddr;
use p4fabric::p4rt::SwitchEntities;
use p4fabric::topo::{ObservedState, Topology};

fn bench(c: &mut Criterion) {
    let (fabric, learned) = large(4, 60, 10_000, 100_000);
    let topo = Topology::build(&fabric, &ObservedState::default(), None);
    let mut compiled = CompiledFabric::new(&fabric, &topo, &learned);
    let leaf = leaf_name(1);
    let desired = compiled.switch_entities(&leaf);
    let empty = SwitchEntities::new();

    let mut g = c.benchmark_group("diff_leaf_131k");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("full_against_empty_switch", |b| {
        b.iter(|| diff(&desired, &empty).len())
    });
    g.bench_function("full_against_equal_switch", |b| {
        b.iter(|| diff(&desired, &desired).len())
    });
    g.bench_function("view_against_equal_switch", |b| {
        b.iter(|| compiled.diff_switch(&leaf, &desired).len())
    });

    // The controller's path: snapshot, one learned host, snapshot; the
    // agent diffs only what changed between the two.
    let before = compiled.view().clone();
    let host = learned.values().next().expect("a host").clone();
    let mut new = host.clone();
    new.mac = MacAddr([2, 0x99, 0, 0, 0, 1]);
    new.ips = vec!["10.0.200.200".parse().expect("ip")];
    compiled.update_host(new.key(), Some(new));
    let after = compiled.view().clone();
    g.sample_size(100).measurement_time(Duration::from_secs(3));
    g.bench_function("snapshot_of_compiled_fabric", |b| {
        b.iter(|| compiled.view().clone())
    });
    g.bench_function("changed_keys_after_one_host", |b| {
        b.iter(|| after.changed_keys(&before, &leaf).len())
    });
    g.finish();

    let (pipeline, _) =
        p4fabric::compile::contract::simulation_pipeline(&p4fabric::p4rt::Pipeline::default_dir());
    let reg = &pipeline.registry;
    let entities = host_routes(1000);
    let encoded: Vec<_> = entities
        .iter()
        .map(|e| reg.encode_entity(e, false).expect("encodes"))
        .collect();
    let mut g = c.benchmark_group("codec_1000_host_routes");
    g.sample_size(50).measurement_time(Duration::from_secs(3));
    g.bench_function("encode", |b| {
        b.iter(|| {
            entities
                .iter()
                .filter_map(|e| reg.encode_entity(e, false).ok())
                .count()
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            encoded
                .iter()
                .filter_map(|e| reg.decode_entity(e).ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
