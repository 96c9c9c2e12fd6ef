//! The P4Runtime client's acceptance scenario against the simulated switch
//! (the same scenario runs on real bmv2 in bmv2-tests).

use std::time::Duration;

use anyhow::{bail, Result};
use p4fabric::testkit::conformance::{self, test_program_registry, Wire};
use p4fabric::testkit::sim::SimSwitch;
use p4runtime_proto::v1 as p4;

/// The target has no data plane: a PacketOut "leaves" when the target got
/// it with the right egress_port, and an injected frame is punted as if
/// the ACL matched.
struct TargetWire<'a>(&'a SimSwitch);

impl Wire for TargetWire<'_> {
    async fn expect_out(&self, port: u32, frame: &[u8]) -> Result<()> {
        let reg = test_program_registry()?;
        let meta = reg.packet_metadata("packet_out")?;
        let id = meta
            .fields
            .iter()
            .find(|f| f.name == "egress_port")
            .map(|f| f.id);
        for _ in 0..100 {
            if let Some(p) = self.0.take_packet_outs().into_iter().next() {
                let egress = p.metadata.iter().find(|m| Some(m.metadata_id) == id);
                let egress = egress.map(|m| m.value.iter().fold(0u32, |a, b| (a << 8) | *b as u32));
                if p.payload == frame && egress == Some(port) {
                    return Ok(());
                }
                bail!("packet-out to {egress:?}, expected port {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("no packet-out reached the target")
    }

    async fn inject(&self, port: u32, frame: &[u8]) -> Result<()> {
        let reg = test_program_registry()?;
        let meta = reg.packet_metadata("packet_in")?;
        let metadata = meta
            .fields
            .iter()
            .map(|f| p4::PacketMetadata {
                metadata_id: f.id,
                value: vec![if f.name == "ingress_port" {
                    port as u8
                } else {
                    0
                }],
            })
            .collect();
        let pkt = p4::PacketIn {
            payload: frame.to_vec(),
            metadata,
        };
        if !self
            .0
            .send_to_primary(p4::stream_message_response::Update::Packet(pkt))
        {
            bail!("no primary to send the packet-in to");
        }
        Ok(())
    }
}

#[tokio::test]
async fn client_conformance_on_in_process_target() {
    let target = SimSwitch::start(1).await.expect("start target");
    let addr = target.addr().to_string();
    conformance::run(&addr, 1, &TargetWire(&target))
        .await
        .expect("conformance scenario");
    let stats = target.stats();
    assert!(
        stats.updates_failed >= 1,
        "the duplicate insert was refused by the target"
    );
}

#[tokio::test]
async fn higher_election_id_takes_over_and_old_primary_is_refused() {
    use p4fabric::p4rt::{Client, ClientOptions, Mastership};
    let target = SimSwitch::start(7).await.expect("start target");
    let addr = target.addr().to_string();
    let old = Client::connect(ClientOptions::new(&addr, 7, 100))
        .await
        .unwrap();
    let mut old_s = old.open_session().await.unwrap();
    old_s.wait_primary(Duration::from_secs(5)).await.unwrap();
    let mut old_watch = old_s.mastership_watch();

    let new = Client::connect(ClientOptions::new(&addr, 7, 200))
        .await
        .unwrap();
    let mut new_s = new.open_session().await.unwrap();
    new_s.wait_primary(Duration::from_secs(5)).await.unwrap();
    // The old primary is told it is now a backup, naming the new primary.
    let m = tokio::time::timeout(
        Duration::from_secs(5),
        old_watch.wait_for(|m| matches!(m, Mastership::Backup { .. })),
    )
    .await
    .expect("old primary notified")
    .map(|m| *m)
    .unwrap();
    assert_eq!(
        m,
        Mastership::Backup {
            primary_election_id: Some(200)
        }
    );
    assert_eq!(target.primary_election_id(), Some(200));
    // Writes from the deposed primary are refused.
    let reg = test_program_registry().unwrap();
    let err = old
        .set_pipeline(
            p4::set_forwarding_pipeline_config_request::Action::VerifyAndCommit,
            reg.p4info().clone(),
            vec![],
            1,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied));
    drop(new_s);
}

#[tokio::test]
async fn unreachable_switch_fails_fast() {
    use p4fabric::p4rt::{Client, ClientOptions};
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = ClientOptions::new(format!("127.0.0.1:{port}"), 1, 1);
    opts.connect_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    assert!(Client::connect(opts).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn mutual_tls_session() {
    use p4fabric::p4rt::client::TlsOptions;
    use p4fabric::p4rt::{Client, ClientOptions};
    use p4fabric::testkit::etcd::TlsFiles;
    use p4fabric::testkit::sim::SimTls;
    let dir = tempfile::tempdir().unwrap();
    let Some(files) = TlsFiles::generate(dir.path()) else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: mutual_tls_session: openssl not found"
        );
        return;
    };
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let target = SimSwitch::start_tls(
        3,
        SimTls {
            cert_pem: read(&files.cert),
            key_pem: read(&files.key),
            client_ca_pem: Some(read(&files.ca)),
        },
    )
    .await
    .unwrap();
    let addr = format!("127.0.0.1:{}", target.addr().port());
    let tls = TlsOptions {
        ca_pem: Some(read(&files.ca)),
        client_cert_pem: Some(read(&files.cert)),
        client_key_pem: Some(read(&files.key)),
        domain: Some("localhost".into()),
    };
    let mut opts = ClientOptions::new(&addr, 3, 1);
    opts.tls = Some(tls.clone());
    let client = Client::connect(opts).await.expect("mTLS connect");
    assert_eq!(client.capabilities().await.unwrap(), "1.3.0");
    let mut s = client.open_session().await.unwrap();
    s.wait_primary(Duration::from_secs(5)).await.unwrap();

    // Without a client certificate the server refuses the handshake.
    let mut no_cert = ClientOptions::new(&addr, 3, 2);
    no_cert.tls = Some(TlsOptions {
        client_cert_pem: None,
        client_key_pem: None,
        ..tls
    });
    let refused = match Client::connect(no_cert).await {
        Err(_) => true,
        Ok(c) => c.capabilities().await.is_err(),
    };
    assert!(refused, "a client without certificate was served");
    // Plain text against a TLS server fails too.
    let plain = Client::connect(ClientOptions::new(&addr, 3, 4)).await;
    assert!(plain.is_err() || plain.unwrap().capabilities().await.is_err());
}
