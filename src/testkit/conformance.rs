//! The P4Runtime client's acceptance scenario, run against any server: the
//! simulated switch in `cargo test`, and real bmv2 in `bmv2-tests`. It uses
//! the small test program `p4/testing/p4rt_test.p4`.
//!
//! What differs between servers is only how frames meet the data plane,
//! abstracted by `Wire`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use p4runtime_proto::v1::set_forwarding_pipeline_config_request::Action as PipelineAction;
use tonic::Code;

use crate::p4rt::client::{
    Client, ClientError, ClientOptions, Mastership, StreamEvent, WriteError,
};
use crate::p4rt::entity::*;
use crate::p4rt::p4info::P4InfoRegistry;
use crate::p4rt::switch::{read_all, write_ops, OpError, UpdateKind};

/// How the scenario touches the data plane of the switch under test.
pub trait Wire {
    /// Asserts `frame` leaves the switch on `port` (and nowhere else).
    fn expect_out(&self, port: u32, frame: &[u8]) -> impl std::future::Future<Output = Result<()>>;
    /// Makes `frame` enter the switch on `port`.
    fn inject(&self, port: u32, frame: &[u8]) -> impl std::future::Future<Output = Result<()>>;
}

/// Paths of the test program's compiled outputs.
pub fn test_program_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("p4/testing/build")
}

pub fn test_program_registry() -> Result<P4InfoRegistry> {
    let path = test_program_dir().join("p4rt_test.p4info.txt");
    P4InfoRegistry::load(&path).with_context(|| format!("loading {}", path.display()))
}

/// The bmv2 JSON of the test program (empty where it was not compiled;
/// the simulated switch ignores it).
pub fn test_program_device_config() -> Vec<u8> {
    std::fs::read(test_program_dir().join("p4rt_test.json")).unwrap_or_default()
}

const ACL: &str = "TestIngress.acl";
const DMAC: &str = "TestIngress.dmac";
const SMAC: &str = "TestIngress.smac";
const LPM: &str = "TestIngress.ipv4_lpm";
const NEXTHOP: &str = "TestIngress.nexthop";
const ECMP: &str = "TestIngress.ecmp";
const COOKIE: u64 = 0x7e57_0001;

fn dmac_entry(mac: u64, port: u32) -> Entity {
    Entity::Table(TableEntry {
        key: TableKey::new(DMAC).exact("hdr.ethernet.dst_addr", mac),
        action: TableAction::Direct(ActionCall::new("TestIngress.forward").param("port", port)),
        idle_timeout_ns: 0,
    })
}

fn route_member(id: u32, port: u32, dmac: u64) -> Entity {
    Entity::Member(ActionProfileMember {
        profile: ECMP,
        member_id: id,
        action: ActionCall::new("TestIngress.route")
            .param("port", port)
            .param("dmac", dmac)
            .param("smac", 0x0200_0000_00feu64),
    })
}

/// The entities of step 2: one per kind the client must handle.
fn first_batch() -> Vec<Entity> {
    vec![
        dmac_entry(0x0200_0000_0001, 1),
        Entity::Table(TableEntry {
            key: TableKey::new(SMAC).exact("hdr.ethernet.src_addr", 0x0200_0000_0001u64),
            action: TableAction::Direct(ActionCall::new("TestIngress.nop")),
            idle_timeout_ns: 10_000_000_000,
        }),
        Entity::Table(TableEntry {
            key: TableKey::new(ACL)
                .with(
                    "hdr.ethernet.ether_type",
                    Match::Ternary {
                        value: 0x88cc,
                        mask: 0xffff,
                    },
                )
                .priority(10),
            action: TableAction::Direct(ActionCall::new("TestIngress.punt")),
            idle_timeout_ns: 0,
        }),
        Entity::Table(TableEntry {
            key: TableKey::new(ACL)
                .with(
                    "hdr.ipv4.dst_addr",
                    Match::Ternary {
                        value: 0x0a00_0000,
                        mask: 0xff00_0000,
                    },
                )
                .priority(5),
            action: TableAction::Direct(ActionCall::new("TestIngress.drop")),
            idle_timeout_ns: 0,
        }),
        route_member(1, 1, 0x0200_0000_0011),
        route_member(2, 2, 0x0200_0000_0012),
        Entity::Group(ActionProfileGroup {
            profile: ECMP,
            group_id: 1,
            members: vec![
                GroupMember {
                    member_id: 1,
                    weight: 1,
                    watch_port: Some(1),
                },
                GroupMember {
                    member_id: 2,
                    weight: 1,
                    watch_port: Some(2),
                },
            ],
            max_size: 8,
        }),
        Entity::Table(TableEntry {
            key: TableKey::new(NEXTHOP).exact("meta.nexthop_id", 7u32),
            action: TableAction::Group(1),
            idle_timeout_ns: 0,
        }),
        Entity::Table(TableEntry {
            key: TableKey::new(LPM).with(
                "hdr.ipv4.dst_addr",
                Match::Lpm {
                    value: 0xc0a8_0100,
                    prefix_len: 24,
                },
            ),
            action: TableAction::Direct(
                ActionCall::new("TestIngress.set_nexthop").param("id", 7u32),
            ),
            idle_timeout_ns: 0,
        }),
        Entity::Multicast(MulticastGroup {
            group_id: 1,
            replicas: vec![
                Replica {
                    port: 1,
                    instance: 0,
                },
                Replica {
                    port: 2,
                    instance: 0,
                },
                Replica {
                    port: 3,
                    instance: 0,
                },
            ],
        }),
    ]
}

async fn write_all(
    client: &Client,
    reg: &P4InfoRegistry,
    kind: UpdateKind,
    es: &[Entity],
) -> Result<()> {
    let ops: Vec<_> = es.iter().map(|e| (kind, e)).collect();
    for (r, e) in write_ops(client, reg, &ops, 100).await.into_iter().zip(es) {
        r.with_context(|| format!("{kind:?} {}", e.key()))?;
    }
    Ok(())
}

fn expect_same(read: &SwitchEntities, want: &[Entity]) -> Result<()> {
    let want: SwitchEntities = want.iter().map(|e| (e.key(), e.clone())).collect();
    for (k, w) in &want {
        match read.get(k) {
            // Watch ports excepted: bmv2's PI reads them back wrong (see
            // `Entity::same_on_switch`).
            Some(r) if r.same_on_switch(w) => {}
            Some(r) => bail!("{k} reads back different:\n wrote {w:?}\n read  {r:?}"),
            None => bail!("{k} missing after write"),
        }
    }
    for k in read.keys() {
        ensure!(want.contains_key(k), "unexpected entity read back: {k}");
    }
    Ok(())
}

fn lldp_frame() -> Vec<u8> {
    let mut f = vec![
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x02, 0, 0, 0, 0, 0x42, 0x88, 0xcc,
    ];
    f.extend_from_slice(b"p4fabric conformance probe");
    f.resize(64, 0);
    f
}

/// Runs the whole scenario against the server at `address`. The switch
/// must be fresh (no pipeline) and have ports 1..=3.
pub async fn run(address: &str, device_id: u64, wire: &impl Wire) -> Result<()> {
    let reg = test_program_registry()?;
    let primary = Client::connect(ClientOptions::new(address, device_id, 10)).await?;
    let version = primary.capabilities().await?;
    ensure!(
        version.starts_with("1."),
        "unexpected P4Runtime version {version}"
    );
    let mut session = primary.open_session().await?;
    session
        .wait_primary(Duration::from_secs(5))
        .await
        .context("becoming primary")?;

    // 1. Pipeline: none yet; push it; the cookie reads back.
    ensure!(
        primary.pipeline_cookie().await?.is_none(),
        "fresh switch reports a pipeline"
    );
    primary
        .set_pipeline(
            PipelineAction::VerifyAndCommit,
            reg.p4info().clone(),
            test_program_device_config(),
            COOKIE,
        )
        .await?;
    ensure!(
        primary.pipeline_cookie().await? == Some(COOKIE),
        "cookie did not read back"
    );

    // 2. Exact, LPM and ternary entries, members, a group, a multicast
    // group: all read back exactly as written.
    let mut installed = first_batch();
    write_all(&primary, &reg, UpdateKind::Insert, &installed).await?;
    expect_same(&read_all(&primary, &reg).await?, &installed)?;

    // 3. A batch with a bad update in the middle: the others apply, and the
    // error names the bad one.
    let batch = [
        dmac_entry(0x0200_0000_0002, 2),
        dmac_entry(0x0200_0000_0001, 3), // already exists
        dmac_entry(0x0200_0000_0003, 3),
    ];
    let ops: Vec<_> = batch.iter().map(|e| (UpdateKind::Insert, e)).collect();
    let results = write_ops(&primary, &reg, &ops, 100).await;
    ensure!(
        results[0].is_ok() && results[2].is_ok(),
        "good updates failed: {results:?}"
    );
    match &results[1] {
        Err(e) if e.code() == Some(Code::AlreadyExists) => {}
        other => bail!("duplicate insert should fail with ALREADY_EXISTS, got {other:?}"),
    }
    installed.push(batch[0].clone());
    installed.push(batch[2].clone());
    expect_same(&read_all(&primary, &reg).await?, &installed)?;

    // A value too wide for its field never reaches the switch.
    let too_wide = dmac_entry(0x0200_0000_0009, 512);
    let r = write_ops(&primary, &reg, &[(UpdateKind::Insert, &too_wide)], 100).await;
    ensure!(
        matches!(r[0], Err(OpError::Encode(_))),
        "9-bit port 512 accepted: {r:?}"
    );

    // 4. Modify and delete.
    let moved = dmac_entry(0x0200_0000_0002, 3);
    write_all(
        &primary,
        &reg,
        UpdateKind::Modify,
        std::slice::from_ref(&moved),
    )
    .await?;
    write_all(
        &primary,
        &reg,
        UpdateKind::Delete,
        std::slice::from_ref(&batch[2]),
    )
    .await?;
    installed.retain(|e| e.key() != batch[2].key() && e.key() != moved.key());
    installed.push(moved);
    expect_same(&read_all(&primary, &reg).await?, &installed)?;

    // 5. PacketOut leaves on the requested port.
    let frame = lldp_frame();
    session
        .send_packet(reg.packet_out(frame.clone(), &[("egress_port", 2)])?)
        .await?;
    wire.expect_out(2, &frame)
        .await
        .context("packet-out on port 2")?;

    // 6. A punted frame arrives as PacketIn with its ingress port.
    wire.inject(1, &frame).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, session.events.recv())
            .await
            .context("waiting for packet-in")?;
        match ev {
            Some(StreamEvent::PacketIn(p)) => {
                let p = reg.decode_packet_in(&p)?;
                ensure!(
                    p.get("ingress_port") == Some(1),
                    "packet-in metadata {:?}",
                    p.metadata
                );
                ensure!(p.payload.starts_with(&frame), "packet-in payload differs");
                break;
            }
            Some(StreamEvent::Closed(_)) | Some(StreamEvent::Error(_)) | None => {
                bail!("stream ended while waiting for packet-in: {ev:?}")
            }
            _ => continue,
        }
    }

    // 7. A second controller with a lower election id is a backup and its
    // writes are refused.
    let backup = Client::connect(ClientOptions::new(address, device_id, 5)).await?;
    let mut backup_session = backup.open_session().await?;
    match backup_session
        .wait_arbitration(Duration::from_secs(5))
        .await?
    {
        Mastership::Backup {
            primary_election_id,
        } => ensure!(
            primary_election_id.is_none_or(|id| id == 10),
            "backup told primary is {primary_election_id:?}"
        ),
        m => bail!("lower election id became {m:?}"),
    }
    let extra = dmac_entry(0x0200_0000_0004, 1);
    let ops = [(UpdateKind::Insert, &extra)];
    match backup.write(vec![]).await {
        Ok(()) => {}
        Err(e) => bail!("empty write failed: {e}"),
    }
    let refused = write_ops(&backup, &reg, &ops, 100).await;
    ensure!(
        matches!(&refused[0], Err(OpError::Call(_))),
        "backup write was not refused: {refused:?}"
    );
    match backup
        .write(vec![p4runtime_proto::v1::Update {
            r#type: p4runtime_proto::v1::update::Type::Insert as i32,
            entity: Some(reg.encode_entity(&extra, false)?),
        }])
        .await
    {
        Err(WriteError::Call(ClientError::Rpc { status, .. }))
            if status.code() == Code::PermissionDenied => {}
        other => bail!("backup write should be PERMISSION_DENIED, got {other:?}"),
    }
    expect_same(&read_all(&primary, &reg).await?, &installed)?;
    drop(backup_session);
    drop(session);
    Ok(())
}
