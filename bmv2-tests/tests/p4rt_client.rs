//! The P4Runtime client's acceptance scenario on a real bmv2 switch: the
//! same scenario as the simulated switch test, with real frames.

use std::time::Duration;

use anyhow::{bail, Result};
use bmv2_tests::{require_bmv2, Bmv2Switch, PortSocket, SwitchOptions};
use p4fabric::testkit::conformance::{self, Wire};

struct Bmv2Wire {
    ports: Vec<(u32, PortSocket)>,
}

impl Wire for Bmv2Wire {
    async fn expect_out(&self, port: u32, frame: &[u8]) -> Result<()> {
        for (p, s) in &self.ports {
            if *p == port {
                match s.recv(Duration::from_secs(3))? {
                    Some(f) if f == frame => {}
                    Some(f) => bail!("port {port} got {} instead", bmv2_tests::packet::hex(&f)),
                    None => bail!("nothing arrived on port {port}"),
                }
            }
        }
        for (p, s) in &self.ports {
            if *p != port {
                s.expect_silence(Duration::from_millis(200))?;
            }
        }
        Ok(())
    }

    async fn inject(&self, port: u32, frame: &[u8]) -> Result<()> {
        match self.ports.iter().find(|(p, _)| *p == port) {
            Some((_, s)) => s.send(frame),
            None => bail!("no port {port}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_conformance_on_bmv2() {
    require_bmv2!();
    if conformance::test_program_device_config().is_empty() {
        bmv2_tests::say_skipped(
            "client_conformance_on_bmv2",
            "p4/testing/build/p4rt_test.json not compiled (p4c-bm2-ss missing): run p4/compile.sh where p4c exists",
        );
        return;
    }
    let sw = Bmv2Switch::start(SwitchOptions {
        device_id: 1,
        ports: vec![1, 2, 3],
        json: None,
    })
    .expect("start bmv2");
    let ports = [1, 2, 3]
        .iter()
        .map(|p| (*p, sw.port_socket(*p).expect("socket")))
        .collect();
    let wire = Bmv2Wire { ports };
    for (_, s) in &wire.ports {
        s.drain().unwrap();
    }
    conformance::run(&sw.grpc_addr, 1, &wire)
        .await
        .expect("conformance scenario on bmv2");
}

/// A Write of 2,000 updates of which half fail on bmv2: every update gets
/// its own result (the errors come back in one large trailer) and the
/// session carries on. The agent writes batches of this size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_partly_failing_batch_reports_every_update_on_bmv2() {
    use p4fabric::p4rt::switch::{write_ops, DEFAULT_BATCH};
    use p4fabric::p4rt::UpdateKind;

    require_bmv2!();
    let sw = Bmv2Switch::start(SwitchOptions {
        device_id: 1,
        ports: vec![1, 2],
        json: None,
    })
    .expect("start bmv2");
    let p = bmv2_tests::rig::Primary::connect(&sw.grpc_addr, 1)
        .await
        .expect("primary with the fabric pipeline");
    let routes = p4fabric::bench::write::host_routes(DEFAULT_BATCH);
    let first: Vec<_> = routes[..DEFAULT_BATCH / 2]
        .iter()
        .map(|e| (UpdateKind::Insert, e))
        .collect();
    let r = write_ops(&p.client, &p.reg, &first, DEFAULT_BATCH).await;
    assert!(
        r.iter().all(|r| r.is_ok()),
        "{:?}",
        r.iter().find(|r| r.is_err())
    );
    // All of them again in one Write: the first half exists already.
    let all: Vec<_> = routes.iter().map(|e| (UpdateKind::Insert, e)).collect();
    let r = write_ops(&p.client, &p.reg, &all, DEFAULT_BATCH).await;
    assert_eq!(r.len(), DEFAULT_BATCH);
    for (i, r) in r.iter().enumerate() {
        if i < DEFAULT_BATCH / 2 {
            assert_eq!(
                r.as_ref().err().and_then(|e| e.code()),
                Some(tonic::Code::AlreadyExists),
                "update {i}: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "update {i}: {r:?}");
        }
    }
    let read = p4fabric::p4rt::read_all(&p.client, &p.reg)
        .await
        .expect("read back");
    assert_eq!(read.len(), DEFAULT_BATCH);
}
