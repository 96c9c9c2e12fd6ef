//! Encoding between name-level entities (`entity`) and P4Runtime messages,
//! with P4Runtime's canonical bytestrings: big-endian, no leading zero bytes
//! (at least one byte), and never wider than the field's bit width.

use p4runtime_proto::v1 as p4;

use super::entity::*;
use super::p4info::{FieldInfo, P4InfoError, P4InfoRegistry};

/// Why an entity cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    P4Info(#[from] P4InfoError),
    #[error("{what}: value {value:#x} does not fit in {bitwidth} bits")]
    TooWide {
        what: String,
        value: u128,
        bitwidth: u32,
    },
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
}

fn invalid(what: impl Into<String>, why: impl Into<String>) -> CodecError {
    CodecError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}

/// Encodes `value` as a canonical bytestring of a `bitwidth`-bit field.
pub fn encode_value(what: &str, value: u128, bitwidth: u32) -> Result<Vec<u8>, CodecError> {
    if bitwidth < 128 && value >> bitwidth != 0 {
        return Err(CodecError::TooWide {
            what: what.to_string(),
            value,
            bitwidth,
        });
    }
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(15);
    Ok(bytes[first..].to_vec())
}

/// Decodes a bytestring of a `bitwidth`-bit field, canonical or padded.
///
/// `what` is formatted only for an error: callers pass `format_args!`, so
/// decoding a field allocates no name (the simulated switches decode
/// millions of them).
pub fn decode_value(
    what: impl std::fmt::Display,
    bytes: &[u8],
    bitwidth: u32,
) -> Result<u128, CodecError> {
    let significant = &bytes[bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len())..];
    if significant.len() > 16 {
        return Err(invalid(
            what.to_string(),
            format!("{} bytes exceed 128 bits", bytes.len()),
        ));
    }
    let value = significant
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    if bitwidth < 128 && value >> bitwidth != 0 {
        return Err(CodecError::TooWide {
            what: what.to_string(),
            value,
            bitwidth,
        });
    }
    Ok(value)
}

/// A mask of the top `prefix_len` bits of a `bitwidth`-bit field.
pub fn prefix_mask(prefix_len: u32, bitwidth: u32) -> u128 {
    if prefix_len == 0 {
        return 0;
    }
    let ones = if prefix_len >= 128 {
        u128::MAX
    } else {
        (1u128 << prefix_len) - 1
    };
    ones << (bitwidth.saturating_sub(prefix_len))
}

/// Ports travel as canonical bytestrings (P4Runtime `watch_port`, replica
/// `port`); the width here is that of the port type, 32 bits at most.
pub fn encode_port(port: u32) -> Vec<u8> {
    let bytes = port.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    bytes[first..].to_vec()
}

fn decode_port(what: &str, bytes: &[u8]) -> Result<u32, CodecError> {
    Ok(decode_value(what, bytes, 32)? as u32)
}

fn encode_params(
    what: &str,
    params: &[FieldInfo],
    values: &[(&'static str, Value)],
) -> Result<Vec<p4::action::Param>, CodecError> {
    if values.len() != params.len() {
        return Err(invalid(
            what,
            format!("needs {} parameters, got {}", params.len(), values.len()),
        ));
    }
    params
        .iter()
        .map(|p| {
            let value = values
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|(_, v)| *v)
                .ok_or_else(|| invalid(what, format!("parameter {} missing", p.name)))?;
            let w = format!("{what} param {}", p.name);
            Ok(p4::action::Param {
                param_id: p.id,
                value: encode_value(&w, value, p.bitwidth)?,
            })
        })
        .collect()
}

impl P4InfoRegistry {
    pub fn encode_action(&self, call: &ActionCall) -> Result<p4::Action, CodecError> {
        let info = self.action(call.name)?;
        let params = encode_params(call.name, &info.params, &call.params)?;
        Ok(p4::Action {
            action_id: info.id,
            params,
        })
    }

    pub fn decode_action(&self, a: &p4::Action) -> Result<ActionCall, CodecError> {
        let info = self.action_by_id(a.action_id)?;
        let mut params = Vec::with_capacity(a.params.len());
        for p in &a.params {
            let pi =
                info.params
                    .iter()
                    .find(|x| x.id == p.param_id)
                    .ok_or(P4InfoError::UnknownId {
                        kind: "action parameter",
                        id: p.param_id,
                    })?;
            params.push((
                pi.name,
                decode_value(
                    format_args!("{} param {}", info.name, pi.name),
                    &p.value,
                    pi.bitwidth,
                )?,
            ));
        }
        // Parameters in P4Info order so decoded actions compare equal to
        // the compiler's (which also follows the declaration order).
        params.sort_by_key(|(n, _)| info.params.iter().position(|p| p.name == *n));
        Ok(ActionCall {
            name: info.name,
            params,
        })
    }

    /// Encodes a table key and (unless `key_only`) its action.
    pub fn encode_table_entry(
        &self,
        e: &TableEntry,
        key_only: bool,
    ) -> Result<p4::TableEntry, CodecError> {
        let table = self.table(e.key.table)?;
        let what = |f: &str| format!("{}.{f}", table.name);
        use p4runtime_proto::config::v1::match_field::MatchType as MT;
        use p4runtime_proto::v1::field_match::FieldMatchType as FM;
        let mut matches = Vec::with_capacity(e.key.matches.len());
        for (name, m) in &e.key.matches {
            let f = table.field(name)?;
            let w = f.bitwidth;
            let fm = match (f.match_type, m) {
                (MT::Exact, Match::Exact(v)) => FM::Exact(p4::field_match::Exact {
                    value: encode_value(&what(name), *v, w)?,
                }),
                (MT::Lpm, Match::Lpm { value, prefix_len }) => {
                    if *prefix_len == 0 || *prefix_len > w {
                        return Err(invalid(what(name), format!("prefix length {prefix_len}")));
                    }
                    if value & !prefix_mask(*prefix_len, w) != 0 {
                        return Err(invalid(what(name), "bits set beyond the prefix length"));
                    }
                    FM::Lpm(p4::field_match::Lpm {
                        value: encode_value(&what(name), *value, w)?,
                        prefix_len: *prefix_len as i32,
                    })
                }
                (MT::Ternary, Match::Ternary { value, mask }) => {
                    if *mask == 0 {
                        return Err(invalid(what(name), "all-zero mask: leave the field out"));
                    }
                    if value & !mask != 0 {
                        return Err(invalid(what(name), "value has bits outside the mask"));
                    }
                    FM::Ternary(p4::field_match::Ternary {
                        value: encode_value(&what(name), *value, w)?,
                        mask: encode_value(&what(name), *mask, w)?,
                    })
                }
                (MT::Optional, Match::Optional(v)) => FM::Optional(p4::field_match::Optional {
                    value: encode_value(&what(name), *v, w)?,
                }),
                (MT::Range, Match::Range { low, high }) => {
                    if low > high {
                        return Err(invalid(what(name), "range low > high"));
                    }
                    FM::Range(p4::field_match::Range {
                        low: encode_value(&what(name), *low, w)?,
                        high: encode_value(&what(name), *high, w)?,
                    })
                }
                (mt, m) => {
                    return Err(invalid(
                        what(name),
                        format!("{m:?} given for a {mt:?} field"),
                    ))
                }
            };
            matches.push(p4::FieldMatch {
                field_id: f.id,
                field_match_type: Some(fm),
            });
        }
        for f in &table.match_fields {
            if f.match_type == MT::Exact && !e.key.matches.iter().any(|(n, _)| *n == f.name) {
                return Err(invalid(what(f.name), "exact match field missing"));
            }
        }
        if table.needs_priority != (e.key.priority != 0) {
            return Err(invalid(
                table.name,
                if table.needs_priority {
                    "ternary/range/optional table needs a priority > 0"
                } else {
                    "priority given for a table without ternary/range/optional fields"
                },
            ));
        }
        let action = if key_only {
            None
        } else {
            let ta = match &e.action {
                TableAction::Direct(call) => {
                    let a = self.encode_action(call)?;
                    if !table.entry_actions.contains(&a.action_id) {
                        return Err(invalid(
                            table.name,
                            format!("action {} not allowed in this table", call.name),
                        ));
                    }
                    p4::table_action::Type::Action(a)
                }
                TableAction::Member(id) => p4::table_action::Type::ActionProfileMemberId(*id),
                TableAction::Group(id) => p4::table_action::Type::ActionProfileGroupId(*id),
            };
            if table.implementation_id == 0 && !matches!(ta, p4::table_action::Type::Action(_)) {
                return Err(invalid(table.name, "table has no action profile"));
            }
            Some(p4::TableAction { r#type: Some(ta) })
        };
        if e.idle_timeout_ns != 0 && !table.supports_idle_timeout {
            return Err(invalid(table.name, "table does not support idle timeout"));
        }
        Ok(p4::TableEntry {
            table_id: table.id,
            r#match: matches,
            action,
            priority: e.key.priority,
            idle_timeout_ns: e.idle_timeout_ns,
            ..Default::default()
        })
    }

    pub fn decode_table_entry(&self, t: &p4::TableEntry) -> Result<TableEntry, CodecError> {
        let key = self.decode_table_key(t)?;
        let action = match t.action.as_ref().and_then(|a| a.r#type.as_ref()) {
            Some(p4::table_action::Type::Action(a)) => TableAction::Direct(self.decode_action(a)?),
            Some(p4::table_action::Type::ActionProfileMemberId(id)) => TableAction::Member(*id),
            Some(p4::table_action::Type::ActionProfileGroupId(id)) => TableAction::Group(*id),
            _ => return Err(invalid(key.table, "entry without a supported action")),
        };
        Ok(TableEntry {
            key,
            action,
            idle_timeout_ns: t.idle_timeout_ns,
        })
    }

    /// The identity of a table entry (what a DELETE carries).
    pub fn decode_table_key(&self, t: &p4::TableEntry) -> Result<TableKey, CodecError> {
        let table = self.table_by_id(t.table_id)?;
        let mut key = TableKey::new(table.name).priority(t.priority);
        use p4runtime_proto::v1::field_match::FieldMatchType as FM;
        for m in &t.r#match {
            let f = table.field_by_id(m.field_id)?;
            let w = f.bitwidth;
            // The field's name, built only for an error message.
            let what = || format!("{}.{}", table.name, f.name);
            let dv =
                |bytes: &[u8]| decode_value(format_args!("{}.{}", table.name, f.name), bytes, w);
            let dm = match &m.field_match_type {
                Some(FM::Exact(x)) => Match::Exact(dv(&x.value)?),
                Some(FM::Lpm(x)) => Match::Lpm {
                    value: dv(&x.value)?,
                    prefix_len: x.prefix_len.max(0) as u32,
                },
                Some(FM::Ternary(x)) => Match::Ternary {
                    value: dv(&x.value)?,
                    mask: dv(&x.mask)?,
                },
                Some(FM::Optional(x)) => Match::Optional(dv(&x.value)?),
                Some(FM::Range(x)) => Match::Range {
                    low: dv(&x.low)?,
                    high: dv(&x.high)?,
                },
                Some(FM::Other(_)) | None => {
                    return Err(invalid(what(), "unsupported match kind"));
                }
            };
            if key.matches.iter().any(|(n, _)| *n == f.name) {
                return Err(invalid(what(), "field given twice"));
            }
            key = key.with(f.name, dm);
        }
        Ok(key)
    }

    /// The key of any entity, without needing its contents (for DELETE).
    pub fn decode_entity_key(&self, e: &p4::Entity) -> Result<EntityKey, CodecError> {
        use p4::entity::Entity as E;
        use p4::packet_replication_engine_entry::Type;
        Ok(match &e.entity {
            Some(E::TableEntry(t)) => EntityKey::Table(self.decode_table_key(t)?),
            Some(E::ActionProfileMember(m)) => EntityKey::Member {
                profile: self.action_profile_by_id(m.action_profile_id)?.name,
                member_id: m.member_id,
            },
            Some(E::ActionProfileGroup(g)) => EntityKey::Group {
                profile: self.action_profile_by_id(g.action_profile_id)?.name,
                group_id: g.group_id,
            },
            Some(E::PacketReplicationEngineEntry(p)) => match &p.r#type {
                Some(Type::MulticastGroupEntry(m)) => EntityKey::Multicast(m.multicast_group_id),
                Some(Type::CloneSessionEntry(c)) => EntityKey::Clone(c.session_id),
                None => return Err(invalid("PRE entry", "empty")),
            },
            Some(E::DigestEntry(d)) => EntityKey::Digest(self.digest_by_id(d.digest_id)?.name),
            Some(E::MeterEntry(m)) => EntityKey::Meter {
                meter: self.meter_by_id(m.meter_id)?.name,
                index: m.index.as_ref().map(|i| i.index).unwrap_or(0),
            },
            _ => return Err(invalid("entity", "kind not used by p4fabric")),
        })
    }

    /// Encodes any entity (`key_only`: what a DELETE needs).
    pub fn encode_entity(&self, e: &Entity, key_only: bool) -> Result<p4::Entity, CodecError> {
        use p4::entity::Entity as E;
        let entity = match e {
            Entity::Table(t) => E::TableEntry(self.encode_table_entry(t, key_only)?),
            Entity::Member(m) => {
                let prof = self.action_profile(m.profile)?;
                E::ActionProfileMember(p4::ActionProfileMember {
                    action_profile_id: prof.id,
                    member_id: m.member_id,
                    action: if key_only {
                        None
                    } else {
                        Some(self.encode_action(&m.action)?)
                    },
                })
            }
            Entity::Group(g) => {
                let prof = self.action_profile(g.profile)?;
                if !prof.with_selector {
                    return Err(invalid(prof.name, "groups need an action selector"));
                }
                let members = if key_only {
                    Vec::new()
                } else {
                    g.members
                        .iter()
                        .map(|m| p4::action_profile_group::Member {
                            member_id: m.member_id,
                            weight: m.weight,
                            watch_kind: m.watch_port.map(|p| {
                                p4::action_profile_group::member::WatchKind::WatchPort(encode_port(
                                    p,
                                ))
                            }),
                        })
                        .collect()
                };
                E::ActionProfileGroup(p4::ActionProfileGroup {
                    action_profile_id: prof.id,
                    group_id: g.group_id,
                    members,
                    max_size: g.max_size,
                })
            }
            Entity::Multicast(m) => {
                E::PacketReplicationEngineEntry(p4::PacketReplicationEngineEntry {
                    r#type: Some(
                        p4::packet_replication_engine_entry::Type::MulticastGroupEntry(
                            p4::MulticastGroupEntry {
                                multicast_group_id: m.group_id,
                                replicas: if key_only {
                                    Vec::new()
                                } else {
                                    encode_replicas(&m.replicas)
                                },
                                metadata: Vec::new(),
                            },
                        ),
                    ),
                })
            }
            Entity::Clone(c) => E::PacketReplicationEngineEntry(p4::PacketReplicationEngineEntry {
                r#type: Some(
                    p4::packet_replication_engine_entry::Type::CloneSessionEntry(
                        p4::CloneSessionEntry {
                            session_id: c.session_id,
                            replicas: if key_only {
                                Vec::new()
                            } else {
                                encode_replicas(&c.replicas)
                            },
                            class_of_service: c.class_of_service,
                            packet_length_bytes: c.packet_length_bytes,
                        },
                    ),
                ),
            }),
            Entity::Digest(d) => {
                let info = self.digest(d.digest)?;
                E::DigestEntry(p4::DigestEntry {
                    digest_id: info.id,
                    config: (!key_only).then_some(p4::digest_entry::Config {
                        max_timeout_ns: d.max_timeout_ns,
                        max_list_size: d.max_list_size,
                        ack_timeout_ns: d.ack_timeout_ns,
                    }),
                })
            }
            Entity::Meter(m) => {
                let info = self.meter(m.meter)?;
                if m.index < 0 || m.index >= info.size {
                    return Err(invalid(
                        info.name,
                        format!("index {} out of range", m.index),
                    ));
                }
                E::MeterEntry(p4::MeterEntry {
                    meter_id: info.id,
                    index: Some(p4::Index { index: m.index }),
                    config: (!key_only).then_some(p4::MeterConfig {
                        cir: m.cir,
                        cburst: m.cburst,
                        pir: m.pir,
                        pburst: m.pburst,
                        eburst: 0,
                    }),
                    counter_data: None,
                })
            }
        };
        Ok(p4::Entity {
            entity: Some(entity),
        })
    }

    pub fn decode_entity(&self, e: &p4::Entity) -> Result<Entity, CodecError> {
        use p4::entity::Entity as E;
        Ok(match &e.entity {
            Some(E::TableEntry(t)) => Entity::Table(self.decode_table_entry(t)?),
            Some(E::ActionProfileMember(m)) => {
                let prof = self.action_profile_by_id(m.action_profile_id)?;
                let action = m
                    .action
                    .as_ref()
                    .ok_or_else(|| invalid(prof.name, "member without action"))?;
                Entity::Member(ActionProfileMember {
                    profile: prof.name,
                    member_id: m.member_id,
                    action: self.decode_action(action)?,
                })
            }
            Some(E::ActionProfileGroup(g)) => {
                let prof = self.action_profile_by_id(g.action_profile_id)?;
                let mut members = Vec::with_capacity(g.members.len());
                for m in &g.members {
                    use p4::action_profile_group::member::WatchKind;
                    #[allow(deprecated)]
                    let watch_port = match &m.watch_kind {
                        Some(WatchKind::WatchPort(p)) => Some(decode_port("watch_port", p)?),
                        Some(WatchKind::Watch(p)) => Some(*p as u32),
                        None => None,
                    };
                    // A weight of 0 means 1 on the wire (proto3 default).
                    members.push(GroupMember {
                        member_id: m.member_id,
                        weight: m.weight.max(1),
                        watch_port,
                    });
                }
                members.sort();
                Entity::Group(ActionProfileGroup {
                    profile: prof.name,
                    group_id: g.group_id,
                    members,
                    max_size: g.max_size,
                })
            }
            Some(E::PacketReplicationEngineEntry(p)) => {
                use p4::packet_replication_engine_entry::Type;
                match &p.r#type {
                    Some(Type::MulticastGroupEntry(m)) => Entity::Multicast(MulticastGroup {
                        group_id: m.multicast_group_id,
                        replicas: decode_replicas(&m.replicas)?,
                    }),
                    Some(Type::CloneSessionEntry(c)) => Entity::Clone(CloneSession {
                        session_id: c.session_id,
                        replicas: decode_replicas(&c.replicas)?,
                        class_of_service: c.class_of_service,
                        packet_length_bytes: c.packet_length_bytes,
                    }),
                    None => return Err(invalid("PRE entry", "empty")),
                }
            }
            Some(E::DigestEntry(d)) => {
                let info = self.digest_by_id(d.digest_id)?;
                let c = d.config.unwrap_or_default();
                Entity::Digest(DigestConfig {
                    digest: info.name,
                    max_timeout_ns: c.max_timeout_ns,
                    max_list_size: c.max_list_size,
                    ack_timeout_ns: c.ack_timeout_ns,
                })
            }
            Some(E::MeterEntry(m)) => {
                let info = self.meter_by_id(m.meter_id)?;
                let c = m.config.unwrap_or_default();
                Entity::Meter(MeterConfig {
                    meter: info.name,
                    index: m.index.as_ref().map(|i| i.index).unwrap_or(0),
                    cir: c.cir,
                    cburst: c.cburst,
                    pir: c.pir,
                    pburst: c.pburst,
                })
            }
            _ => return Err(invalid("entity", "kind not used by p4fabric")),
        })
    }
}

/// Replicas go out with the `egress_port` field: bmv2's P4Runtime server
/// (API 1.3) does not know the newer `port` bytes field.
fn encode_replicas(replicas: &[Replica]) -> Vec<p4::Replica> {
    #[allow(deprecated)]
    replicas
        .iter()
        .map(|r| p4::Replica {
            port_kind: Some(p4::replica::PortKind::EgressPort(r.port)),
            instance: r.instance,
            backup_replicas: Vec::new(),
        })
        .collect()
}

fn decode_replicas(replicas: &[p4::Replica]) -> Result<Vec<Replica>, CodecError> {
    let mut out = Vec::with_capacity(replicas.len());
    for r in replicas {
        #[allow(deprecated)]
        let port = match &r.port_kind {
            Some(p4::replica::PortKind::EgressPort(p)) => *p,
            Some(p4::replica::PortKind::Port(b)) => decode_port("replica port", b)?,
            None => return Err(invalid("replica", "no port")),
        };
        out.push(Replica {
            port,
            instance: r.instance,
        });
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_values() {
        assert_eq!(encode_value("x", 0, 9).unwrap(), vec![0]);
        assert_eq!(encode_value("x", 1, 9).unwrap(), vec![1]);
        assert_eq!(encode_value("x", 0x1ff, 9).unwrap(), vec![1, 0xff]);
        assert!(matches!(
            encode_value("x", 0x200, 9),
            Err(CodecError::TooWide { .. })
        ));
        assert_eq!(encode_value("x", u128::MAX, 128).unwrap(), vec![0xff; 16]);
        assert_eq!(decode_value("x", &[0, 0, 1, 0xff], 9).unwrap(), 0x1ff);
        assert!(decode_value("x", &[2, 0], 9).is_err());
        assert_eq!(decode_value("x", &[], 9).unwrap(), 0);
    }

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_mask(24, 32), 0xffff_ff00);
        assert_eq!(prefix_mask(32, 32), 0xffff_ffff);
        assert_eq!(prefix_mask(0, 32), 0);
        assert_eq!(prefix_mask(128, 128), u128::MAX);
        assert_eq!(prefix_mask(64, 128), u128::MAX << 64);
    }

    proptest::proptest! {
        #[test]
        fn value_round_trip(v: u128, w in 1u32..=128) {
            let v = if w == 128 { v } else { v & ((1u128 << w) - 1) };
            let bytes = encode_value("x", v, w).unwrap();
            proptest::prop_assert!(bytes.len() <= w.div_ceil(8) as usize);
            proptest::prop_assert!(bytes.len() == 1 || bytes[0] != 0);
            proptest::prop_assert_eq!(decode_value("x", &bytes, w).unwrap(), v);
        }
    }
}
