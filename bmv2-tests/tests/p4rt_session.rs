//! P4Runtime session basics on a real bmv2 that has no pipeline yet: the
//! server's version, arbitration (primary, backup with a lower election
//! id, takeover by a higher one) and "no pipeline" reported as such.

use std::time::Duration;

use bmv2_tests::{require_bmv2, Bmv2Switch, SwitchOptions};
use p4fabric::p4rt::{Client, ClientOptions, Mastership};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitration_and_empty_switch_on_bmv2() {
    require_bmv2!();
    let sw = Bmv2Switch::start(SwitchOptions {
        device_id: 7,
        ports: vec![1, 2],
        json: None,
    })
    .expect("start bmv2");
    let a = Client::connect(ClientOptions::new(&sw.grpc_addr, 7, 10))
        .await
        .expect("connect");
    let version = a.capabilities().await.expect("capabilities");
    assert!(version.starts_with("1."), "P4Runtime version {version}");
    println!("bmv2 P4Runtime API version {version}");
    let mut sa = a.open_session().await.unwrap();
    sa.wait_primary(Duration::from_secs(5))
        .await
        .expect("first client becomes primary");
    // A switch started with --no-p4 has no pipeline.
    assert_eq!(a.pipeline_cookie().await.expect("get pipeline"), None);

    // Lower election id: backup, told who the primary is.
    let b = Client::connect(ClientOptions::new(&sw.grpc_addr, 7, 5))
        .await
        .unwrap();
    let mut sb = b.open_session().await.unwrap();
    match sb.wait_arbitration(Duration::from_secs(5)).await.unwrap() {
        Mastership::Backup {
            primary_election_id,
        } => {
            assert!(
                primary_election_id.is_none_or(|id| id == 10),
                "{primary_election_id:?}"
            )
        }
        m => panic!("lower election id became {m:?}"),
    }
    // Higher election id: takes over; the old primary hears it.
    let mut old = sa.mastership_watch();
    let c = Client::connect(ClientOptions::new(&sw.grpc_addr, 7, 20))
        .await
        .unwrap();
    let mut sc = c.open_session().await.unwrap();
    sc.wait_primary(Duration::from_secs(5))
        .await
        .expect("higher id becomes primary");
    let m = tokio::time::timeout(
        Duration::from_secs(5),
        old.wait_for(|m| matches!(m, Mastership::Backup { .. })),
    )
    .await
    .expect("old primary told")
    .map(|m| *m)
    .unwrap();
    assert!(matches!(m, Mastership::Backup { .. }));
    // The deposed primary may no longer push a pipeline.
    let reg = p4fabric::testkit::conformance::test_program_registry().unwrap();
    let err = a
        .set_pipeline(
            p4runtime_proto::v1::set_forwarding_pipeline_config_request::Action::VerifyAndCommit,
            reg.p4info().clone(),
            b"{}".to_vec(),
            1,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    drop((sb, sc));
}
