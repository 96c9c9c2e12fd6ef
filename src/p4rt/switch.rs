//! A switch as the controller sees it: a P4Runtime client plus the P4Info
//! registry of its pipeline, speaking name-level entities. Batches writes,
//! reads everything back, and encodes packet I/O and digests by name.

use std::borrow::Cow;

use p4runtime_proto::v1 as p4;
use tonic::Code;

use super::client::{Client, ClientError, UpdateError, WriteError};
use super::codec::{decode_value, encode_value, CodecError};
use super::entity::{Entity, SwitchEntities, Value};
use super::intern::{intern, SharedEntities};
use super::p4info::P4InfoRegistry;

/// Updates per WriteRequest: large enough to amortise the RPC, small enough
/// to keep one request well under gRPC message limits (~200 KB) and latency
/// low. bmv2 takes 2,000-update batches faster than 1,000 (`p4fabric bench
/// write`; the figures are in docs/performance.md, "Write throughput on
/// bmv2"); a partly failing batch of this size reports every update
/// (`a_large_partly_failing_batch_reports_every_update_on_bmv2`).
pub const DEFAULT_BATCH: usize = 2000;

pub use super::entity::UpdateKind;

impl UpdateKind {
    fn wire(self) -> p4::update::Type {
        match self {
            UpdateKind::Insert => p4::update::Type::Insert,
            UpdateKind::Modify => p4::update::Type::Modify,
            UpdateKind::Delete => p4::update::Type::Delete,
        }
    }
}

/// Why one operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The switch's port map has no device port for it (the typed error
    /// is the target's, `target::TargetError`).
    #[error("cannot map to the switch's ports: {0}")]
    Ports(std::sync::Arc<dyn std::error::Error + Send + Sync>),
    #[error("switch refused: {0}")]
    Refused(UpdateError),
    /// The whole Write call failed (every update of the batch gets it).
    #[error("write call failed: {0}")]
    Call(#[source] std::sync::Arc<ClientError>),
}

impl OpError {
    /// The gRPC code of a refusal (ALREADY_EXISTS, NOT_FOUND, ...).
    pub fn code(&self) -> Option<Code> {
        match self {
            OpError::Refused(e) => Some(e.code),
            _ => None,
        }
    }
}

/// Writes `ops` in batches of `batch` updates; the result for `ops[i]` is
/// `results[i]`. The caller orders ops by dependency and puts dependent
/// stages in separate calls.
pub async fn write_ops(
    client: &Client,
    reg: &P4InfoRegistry,
    ops: &[(UpdateKind, &Entity)],
    batch: usize,
) -> Vec<Result<(), OpError>> {
    let mut results: Vec<Result<(), OpError>> = Vec::with_capacity(ops.len());
    write_ops_with(client, reg, ops, batch, None, |_, r| {
        results.push(r);
        true
    })
    .await;
    results
}

/// Rewrites one op's entity for the switch just before it is encoded
/// (an agent's port map: `target::ports::op_to_device`); an error fails
/// that op alone.
pub type ToDevice<'m> =
    &'m (dyn for<'e> Fn(UpdateKind, &'e Entity) -> Result<Cow<'e, Entity>, OpError> + Sync);

/// Like `write_ops`, but hands each op's result to `on_result(index,
/// result)` in order (no result vector; `false` stops after the current
/// batch), and writes each entity through `to_device` where given. The
/// next batch is encoded (and mapped) while the current one is on the
/// wire, so encoding costs no switch time.
pub async fn write_ops_with(
    client: &Client,
    reg: &P4InfoRegistry,
    ops: &[(UpdateKind, &Entity)],
    batch: usize,
    to_device: Option<ToDevice<'_>>,
    mut on_result: impl FnMut(usize, Result<(), OpError>) -> bool,
) {
    let batch = batch.max(1);
    // One batch: its updates and, per op, the encode failure if any.
    let encode = |chunk: &[(UpdateKind, &Entity)]| {
        let mut updates = Vec::with_capacity(chunk.len());
        let mut failed: Vec<Option<OpError>> = Vec::with_capacity(chunk.len());
        for (kind, entity) in chunk {
            tracing::trace!(?kind, key = %entity.key(), ?entity, "write");
            let entity = match to_device.map(|m| m(*kind, entity)) {
                None => Cow::Borrowed(*entity),
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    failed.push(Some(e));
                    continue;
                }
            };
            match reg.encode_entity(&entity, *kind == UpdateKind::Delete) {
                Ok(e) => {
                    updates.push(p4::Update {
                        r#type: kind.wire() as i32,
                        entity: Some(e),
                    });
                    failed.push(None);
                }
                Err(e) => failed.push(Some(OpError::Encode(e.to_string()))),
            }
        }
        (updates, failed)
    };
    let mut chunks = ops.chunks(batch);
    let mut next = chunks.next().map(encode);
    let mut base = 0usize;
    while let Some((updates, failed)) = next.take() {
        let upcoming = chunks.next();
        let (written, encoded) =
            tokio::join!(client.write(updates), async { upcoming.map(encode) });
        next = encoded;
        // Per written update (in order), its error.
        let mut per_update: Box<dyn Iterator<Item = Result<(), OpError>>> = match written {
            Ok(()) => Box::new(std::iter::repeat_with(|| Ok(()))),
            Err(WriteError::Partial(rs)) => Box::new(
                rs.into_iter()
                    .map(|r| r.map_err(OpError::Refused))
                    .chain(std::iter::repeat_with(|| Ok(()))),
            ),
            Err(WriteError::Call(e)) => {
                let e = std::sync::Arc::new(e);
                Box::new(std::iter::repeat_with(move || {
                    Err(OpError::Call(e.clone()))
                }))
            }
        };
        let mut go_on = true;
        for (i, f) in failed.into_iter().enumerate() {
            let r = match f {
                Some(e) => Err(e),
                None => per_update.next().unwrap_or(Ok(())),
            };
            go_on &= on_result(base + i, r);
        }
        base += batch;
        if !go_on {
            return;
        }
    }
}

/// Wildcard read requests for everything p4fabric writes: every table, every
/// action profile's members and groups, multicast groups, clone sessions,
/// digests and meters. One request per object kind because some servers
/// (bmv2) stop a read at the first error.
fn read_all_requests(reg: &P4InfoRegistry) -> Vec<p4::Entity> {
    use p4::entity::Entity as E;
    let mut reqs = Vec::new();
    for t in reg.tables() {
        reqs.push(E::TableEntry(p4::TableEntry {
            table_id: t.id,
            ..Default::default()
        }));
    }
    for p in reg.action_profiles() {
        reqs.push(E::ActionProfileMember(p4::ActionProfileMember {
            action_profile_id: p.id,
            ..Default::default()
        }));
        if p.with_selector {
            reqs.push(E::ActionProfileGroup(p4::ActionProfileGroup {
                action_profile_id: p.id,
                ..Default::default()
            }));
        }
    }
    use p4::packet_replication_engine_entry::Type as Pre;
    reqs.push(E::PacketReplicationEngineEntry(
        p4::PacketReplicationEngineEntry {
            r#type: Some(Pre::MulticastGroupEntry(p4::MulticastGroupEntry::default())),
        },
    ));
    reqs.push(E::PacketReplicationEngineEntry(
        p4::PacketReplicationEngineEntry {
            r#type: Some(Pre::CloneSessionEntry(p4::CloneSessionEntry::default())),
        },
    ));
    for d in reg.digests() {
        reqs.push(E::DigestEntry(p4::DigestEntry {
            digest_id: d.id,
            config: None,
        }));
    }
    for m in &reg.p4info().meters {
        let id = m.preamble.as_ref().map(|p| p.id).unwrap_or(0);
        reqs.push(E::MeterEntry(p4::MeterEntry {
            meter_id: id,
            ..Default::default()
        }));
    }
    reqs.into_iter()
        .map(|e| p4::Entity { entity: Some(e) })
        .collect()
}

/// A read back from the switch failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot decode an entity the switch holds: {0}")]
    Decode(#[from] CodecError),
}

/// Reads back everything the switch holds, as name-level entities.
///
/// Meter cells the controller never configured read back with an all-zero
/// config; they are left out so "installed" means "written by someone".
/// Digests read back only when configured.
pub async fn read_all(client: &Client, reg: &P4InfoRegistry) -> Result<SwitchEntities, ReadError> {
    let mut out = SwitchEntities::new();
    read_all_with(client, reg, |e| {
        out.insert(e.key(), e);
    })
    .await?;
    Ok(out)
}

/// `read_all` into entities shared with the rest of the process (an agent's
/// read-back: hundreds of switches holding mostly equal entries), each
/// through `map` first where given (an agent's port map:
/// `target::ports::ReadBackMap`).
pub async fn read_all_shared(
    client: &Client,
    reg: &P4InfoRegistry,
    mut map: Option<&mut (dyn FnMut(Entity) -> Entity + Send)>,
) -> Result<SharedEntities, ReadError> {
    let mut out = SharedEntities::new();
    read_all_with(client, reg, |e| {
        let e = match map.as_mut() {
            Some(m) => m(e),
            None => e,
        };
        let (k, e) = intern(e.key(), e);
        out.insert(k, e);
    })
    .await?;
    Ok(out)
}

/// Every entity p4fabric writes, as read from the switch, in turn.
async fn read_all_with(
    client: &Client,
    reg: &P4InfoRegistry,
    mut each: impl FnMut(Entity),
) -> Result<(), ReadError> {
    for req in read_all_requests(reg) {
        let entities = match client.read(vec![req]).await {
            Ok(e) => e,
            // Unconfigured digests and empty PRE tables answer NOT_FOUND on
            // some servers rather than returning nothing.
            Err(e) if e.code() == Some(Code::NotFound) => continue,
            Err(e) => return Err(e.into()),
        };
        for e in &entities {
            let decoded = reg.decode_entity(e)?;
            if let Entity::Meter(m) = &decoded {
                if m.cir == 0 && m.pir == 0 && m.cburst == 0 && m.pburst == 0 {
                    continue;
                }
            }
            each(decoded);
        }
    }
    Ok(())
}

/// One digest message: the digest struct's fields by name, in order.
pub type DigestRow = Vec<(&'static str, Value)>;

/// A packet from the switch with its `packet_in` metadata decoded by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    pub payload: Vec<u8>,
    pub metadata: Vec<(&'static str, Value)>,
}

impl PacketIn {
    pub fn get(&self, name: &str) -> Option<Value> {
        self.metadata
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

impl P4InfoRegistry {
    /// Builds a PacketOut with `packet_out` header fields set by name;
    /// fields not given are 0.
    pub fn packet_out(
        &self,
        payload: Vec<u8>,
        fields: &[(&str, Value)],
    ) -> Result<p4::PacketOut, CodecError> {
        let info = self.packet_metadata("packet_out")?;
        for (name, _) in fields {
            if !info.fields.iter().any(|f| f.name == *name) {
                return Err(CodecError::Invalid {
                    what: "packet_out".into(),
                    why: format!("no field {name}"),
                });
            }
        }
        let metadata = info
            .fields
            .iter()
            .map(|f| {
                let v = fields
                    .iter()
                    .find(|(n, _)| *n == f.name)
                    .map(|(_, v)| *v)
                    .unwrap_or(0);
                Ok(p4::PacketMetadata {
                    metadata_id: f.id,
                    value: encode_value(&format!("packet_out.{}", f.name), v, f.bitwidth)?,
                })
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(p4::PacketOut { payload, metadata })
    }

    pub fn decode_packet_in(&self, p: &p4::PacketIn) -> Result<PacketIn, CodecError> {
        let info = self.packet_metadata("packet_in")?;
        let mut metadata = Vec::with_capacity(p.metadata.len());
        for m in &p.metadata {
            let f = info
                .fields
                .iter()
                .find(|f| f.id == m.metadata_id)
                .ok_or_else(|| CodecError::Invalid {
                    what: "packet_in".into(),
                    why: format!("unknown metadata id {}", m.metadata_id),
                })?;
            metadata.push((
                f.name,
                decode_value(format_args!("packet_in.{}", f.name), &m.value, f.bitwidth)?,
            ));
        }
        Ok(PacketIn {
            payload: p.payload.clone(),
            metadata,
        })
    }

    /// Decodes a digest list into one name -> value list per digest message.
    pub fn decode_digest(
        &self,
        d: &p4::DigestList,
    ) -> Result<(&'static str, Vec<DigestRow>), CodecError> {
        let info = self.digest_by_id(d.digest_id)?;
        let mut out = Vec::with_capacity(d.data.len());
        for data in &d.data {
            let members = match &data.data {
                Some(p4runtime_proto::v1::p4_data::Data::Struct(s)) => &s.members,
                _ => {
                    return Err(CodecError::Invalid {
                        what: info.name.into(),
                        why: "digest data is not a struct".into(),
                    })
                }
            };
            if members.len() != info.fields.len() {
                return Err(CodecError::Invalid {
                    what: info.name.into(),
                    why: format!("{} members, expected {}", members.len(), info.fields.len()),
                });
            }
            let mut row = Vec::with_capacity(members.len());
            for (f, m) in info.fields.iter().zip(members) {
                let bytes = match &m.data {
                    Some(p4runtime_proto::v1::p4_data::Data::Bitstring(b)) => b,
                    _ => {
                        return Err(CodecError::Invalid {
                            what: format!("{}.{}", info.name, f.name),
                            why: "not a bitstring".into(),
                        })
                    }
                };
                row.push((f.name, decode_value(f.name, bytes, f.bitwidth)?));
            }
            out.push(row);
        }
        Ok((info.name, out))
    }
}
