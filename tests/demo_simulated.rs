//! The simulated demo (`p4fabric demo` where bmv2 is missing), end to end:
//! the example fabric on in-process P4Runtime targets at free ports, the
//! real controller converging them (etcd when installed, else the file
//! store), and the forwarding checker over the entities read back — every
//! probe of the matrix must pass.

use std::path::Path;

use p4fabric::cli::demo::{demo, DemoArgs};
use p4fabric::p4rt::Pipeline;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_demo_forwarding_matrix_is_complete() {
    // P4FABRIC_PIPELINE_DIR points at another compiled pipeline, as for
    // `p4fabric run`.
    let dir = std::env::var_os("P4FABRIC_PIPELINE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(Pipeline::default_dir);
    // Without the compiled pipeline the simulated switches check writes
    // against the contract P4Info (src/compile/contract.rs).
    let mut args =
        DemoArgs::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fabric.yaml"));
    args.once = true;
    args.simulate = true;
    args.free_ports = true;
    args.timeout = 60;
    args.pipeline_dir = Some(dir);
    let report = demo(&args, std::future::pending())
        .await
        .expect("demo runs");
    assert!(report.simulated);
    assert!(report.converged, "not converged: {:?}", report.pending);
    let failed = p4fabric::testkit::lab::reach::failures(&report.results);
    assert!(
        failed.is_empty(),
        "forwarding failures:\n{}",
        failed.join("\n")
    );
    // Every host with an address reaches some other host: the matrix is
    // not vacuous.
    assert!(
        report.results.len() >= 40,
        "only {} probes",
        report.results.len()
    );
}
