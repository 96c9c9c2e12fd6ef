//! The P4Runtime client's acceptance scenario on a real bmv2 switch: the
//! same scenario as the in-process target test, with real frames.

use std::time::Duration;

use anyhow::{bail, Result};
use bmv2_tests::{require_bmv2, Bmv2Switch, PortSocket, SwitchOptions};
use p4fabric::p4rt::conformance::{self, Wire};

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
