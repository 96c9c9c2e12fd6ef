//! Configured port numbers <-> device ports, through a target's port
//! map: in entities (`to_device` / `op_to_device` for what the agent
//! writes, `ReadBackMap` for what it reads back, `to_config` strictly) and
//! single ports (`port_to_device` / `port_to_config`: packet I/O). The one
//! place that knows which fields carry ports (the `ingress_port` /
//! `egress_port` match fields, the `port` action parameter, group members'
//! watch ports, multicast and clone replicas). The CPU port is a device
//! port already and passes as it is. The learning tables' `ingress_port`
//! beside a non-zero `lag_id` is no port (the LAG stands for its ports
//! there): configured 0, on the switch the target's `lag_key_port`. Only
//! switches that need any of it (`SwitchTarget::maps_entities`) get it:
//! the agents skip it for the others.

use std::borrow::Cow;

use crate::compile::names::{F_EGRESS_PORT, F_INGRESS_PORT, F_LAG_ID, P_PORT};
use crate::config::PortNum;
use crate::p4rt::entity::{
    ActionCall, Entity, EntityKey, Match, Replica, SwitchEntities, TableAction, TableKey,
    UpdateKind, Value,
};

use super::{SwitchTarget, TargetError};

/// A device port outside the map, read back from a switch, in a match
/// field or action parameter: `STRAY | device port`. Above every port
/// number (ports are 32 bits), so the entity differs from anything desired
/// and its key from every desired key; `to_device` gives the device port
/// back (deleting a stray table entry takes its key as read).
pub const STRAY: Value = 1 << 64;

/// The same in a replica or watch port (32 bits): not reversible, and
/// needs not be: an entity with one is rewritten whole or deleted by its
/// key, which holds no port. (Validation keeps it out of port maps.)
pub const STRAY_PORT: PortNum = PortNum::MAX;

/// Which way ports are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    ToDevice,
    ToConfig,
    /// To configured numbers; a device port outside the map becomes a
    /// stray (`STRAY`) instead of an error.
    ReadBack,
}

/// Maps the ports of entities one way, counting strays.
struct Mapper<'t> {
    t: &'t dyn SwitchTarget,
    way: Way,
    strays: usize,
    first_stray: Option<PortNum>,
}

impl<'t> Mapper<'t> {
    fn new(t: &'t dyn SwitchTarget, way: Way) -> Self {
        Mapper {
            t,
            way,
            strays: 0,
            first_stray: None,
        }
    }

    /// Maps one port value (the CPU port passes).
    fn value(&mut self, v: Value) -> Result<Value, TargetError> {
        if self.way == Way::ToDevice && v >> 64 == 1 {
            return Ok(v & Value::from(PortNum::MAX));
        }
        // A port value wider than 32 bits maps to nothing: report it as such.
        let port = PortNum::try_from(v).unwrap_or(PortNum::MAX);
        if port == self.t.cpu_port() {
            return Ok(v);
        }
        match self.way {
            Way::ToDevice => self.t.device_port(port).map(Value::from),
            Way::ToConfig => self
                .t
                .config_port(port)
                .map(Value::from)
                .ok_or(TargetError::UnknownDevicePort { device_port: port }),
            Way::ReadBack => Ok(match self.t.config_port(port) {
                Some(p) => Value::from(p),
                None => {
                    self.strays += 1;
                    self.first_stray.get_or_insert(port);
                    STRAY | Value::from(port)
                }
            }),
        }
    }

    /// Maps a 32-bit port (replicas, watch ports).
    fn port(&mut self, p: PortNum) -> Result<PortNum, TargetError> {
        Ok(PortNum::try_from(self.value(p.into())?).unwrap_or(STRAY_PORT))
    }

    fn action(&mut self, a: &mut ActionCall) -> Result<(), TargetError> {
        for (name, v) in a.params.iter_mut() {
            if *name == P_PORT {
                *v = self.value(*v)?;
            }
        }
        Ok(())
    }

    fn replicas(&mut self, r: &mut [Replica]) -> Result<(), TargetError> {
        for r in r.iter_mut() {
            r.port = self.port(r.port)?;
        }
        r.sort_unstable(); // replicas are kept sorted
        Ok(())
    }

    /// The port match fields of a table key.
    fn key(&mut self, key: &mut TableKey) -> Result<(), TargetError> {
        let on_lag = key
            .matches
            .iter()
            .any(|(f, m)| *f == F_LAG_ID && *m != Match::Exact(0));
        let exact_mask = (1u128 << self.t.port_bits().min(64)) - 1;
        let lag_port = Value::from(self.t.lag_key_port());
        for (field, m) in key.matches.iter_mut() {
            if on_lag && *field == F_INGRESS_PORT {
                // Not a port but the pipeline's NO_PORT: configured 0, the
                // target's `lag_key_port` on the switch.
                match (self.way, *m) {
                    (Way::ToDevice, Match::Exact(0)) => *m = Match::Exact(lag_port),
                    (Way::ToConfig | Way::ReadBack, Match::Exact(v)) if v == lag_port => {
                        *m = Match::Exact(0)
                    }
                    _ => {}
                }
                continue;
            }
            if *field == F_INGRESS_PORT || *field == F_EGRESS_PORT {
                *m = match *m {
                    Match::Exact(v) => Match::Exact(self.value(v)?),
                    Match::Optional(v) => Match::Optional(self.value(v)?),
                    // A ternary on one whole port (the ACL's punts).
                    Match::Ternary { value, mask } if mask == exact_mask => Match::Ternary {
                        value: self.value(value)?,
                        mask,
                    },
                    // The compiler matches ports exactly; a ternary or
                    // range over configured numbers has no device form.
                    other => {
                        return Err(TargetError::NotAPort {
                            field,
                            what: format!("{other:?}"),
                        })
                    }
                };
            }
        }
        Ok(())
    }

    fn entity(&mut self, e: &Entity) -> Result<Entity, TargetError> {
        let mut e = e.clone();
        match &mut e {
            Entity::Table(te) => {
                self.key(&mut te.key)?;
                if let TableAction::Direct(a) = &mut te.action {
                    self.action(a)?;
                }
            }
            Entity::Member(m) => self.action(&mut m.action)?,
            Entity::Group(g) => {
                for m in g.members.iter_mut() {
                    if let Some(p) = m.watch_port {
                        m.watch_port = Some(self.port(p)?);
                    }
                }
            }
            Entity::Multicast(g) => self.replicas(&mut g.replicas)?,
            Entity::Clone(c) => self.replicas(&mut c.replicas)?,
            Entity::Digest(_) | Entity::Meter(_) => {}
        }
        Ok(e)
    }

    fn all(&mut self, es: &SwitchEntities) -> Result<SwitchEntities, TargetError> {
        es.values()
            .map(|e| {
                let d = self.entity(e)?;
                Ok::<(EntityKey, Entity), TargetError>((d.key(), d))
            })
            .collect()
    }
}

/// One entity with its ports on the device.
pub fn entity_to_device(t: &dyn SwitchTarget, e: &Entity) -> Result<Entity, TargetError> {
    Mapper::new(t, Way::ToDevice).entity(e)
}

/// One entity as read from the device, with configured port numbers; a
/// device port outside the map is an error.
pub fn entity_to_config(t: &dyn SwitchTarget, e: &Entity) -> Result<Entity, TargetError> {
    Mapper::new(t, Way::ToConfig).entity(e)
}

/// What one update writes, on the device. A delete goes by its key alone
/// (`encode_entity`'s `key_only`): only a table entry's key is mapped, and
/// other entities' keys hold no port (so an installed entity with a stray
/// port is deleted as read).
pub fn op_to_device<'e>(
    t: &dyn SwitchTarget,
    kind: UpdateKind,
    e: &'e Entity,
) -> Result<Cow<'e, Entity>, TargetError> {
    match (kind, e) {
        (UpdateKind::Delete, Entity::Table(te)) => {
            let mut te = te.clone();
            Mapper::new(t, Way::ToDevice).key(&mut te.key)?;
            Ok(Cow::Owned(Entity::Table(te)))
        }
        (UpdateKind::Delete, _) => Ok(Cow::Borrowed(e)),
        _ => entity_to_device(t, e).map(Cow::Owned),
    }
}

/// A switch's entities with their ports on the device (keys change with
/// the ports in table matches).
pub fn to_device(t: &dyn SwitchTarget, es: &SwitchEntities) -> Result<SwitchEntities, TargetError> {
    Mapper::new(t, Way::ToDevice).all(es)
}

/// A switch's entities as read back, with configured port numbers; a
/// device port outside the map is an error.
pub fn to_config(t: &dyn SwitchTarget, es: &SwitchEntities) -> Result<SwitchEntities, TargetError> {
    Mapper::new(t, Way::ToConfig).all(es)
}

/// Maps what an agent reads back to configured port numbers. Never fails:
/// a device port outside the map (entries of an earlier map, or written by
/// someone else) becomes a stray (`STRAY`, `STRAY_PORT`) that no desired
/// entity has, so the agent's diff rewrites or deletes it; `strays` says
/// how many there were.
pub struct ReadBackMap<'t>(Mapper<'t>);

impl<'t> ReadBackMap<'t> {
    pub fn new(t: &'t dyn SwitchTarget) -> Self {
        ReadBackMap(Mapper::new(t, Way::ReadBack))
    }

    pub fn entity(&mut self, e: Entity) -> Entity {
        // Read-back values never fail to map; a shape `to_device` refuses
        // (a ternary over ports) is kept as read.
        self.0.entity(&e).unwrap_or(e)
    }

    /// Port values outside the map so far, and the first of them.
    pub fn strays(&self) -> (usize, Option<PortNum>) {
        (self.0.strays, self.0.first_stray)
    }
}

/// A configured port's device port (packet-out); the CPU port passes.
pub fn port_to_device(t: &dyn SwitchTarget, port: PortNum) -> Result<PortNum, TargetError> {
    if port == t.cpu_port() {
        return Ok(port);
    }
    t.device_port(port)
}

/// A device port's configured number (packet-in, digests); the CPU port
/// passes; `None`: outside the map.
pub fn port_to_config(t: &dyn SwitchTarget, device_port: PortNum) -> Option<PortNum> {
    if device_port == t.cpu_port() {
        return Some(device_port);
    }
    t.config_port(device_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::sample;
    use crate::config::{MappedPort, Target};
    use crate::target::for_switch;
    use crate::topo::Topology;

    /// A benchmark fabric's leaf (edge ports, LAGs, fabric links, hosts)
    /// as a Tofino whose ports are all moved by 1000 (CPU port 320):
    /// every port-carrying field moves, nothing else.
    #[test]
    fn every_port_field_moves_to_the_device() {
        let (mut fabric, hosts) = sample::large(2, 2, 40, 4);
        let name = sample::leaf_name(1);
        let mut sw = fabric.switches[&name].clone();
        sw.target = Target::Tofino;
        sw.cpu_port = Some(320);
        // The sample's ports (24 edge ports, fabric ports) and bmv2's CPU port.
        let ports: Vec<u32> = (0..=64).chain([255]).collect();
        sw.port_map = ports
            .iter()
            .map(|p| {
                (
                    *p,
                    MappedPort {
                        device_port: p + 1000,
                        name: None,
                    },
                )
            })
            .collect();
        // Compiled as a Tofino (its port width in the ACL's port masks).
        fabric.switches.insert(name.clone(), sw.clone());
        let topo = Topology::build(&fabric, &Default::default(), None);
        let compiled = crate::compile::compile(&fabric, &topo, &hosts);
        let leaf = &compiled[&name];
        let t = for_switch(&name, &sw).expect("tofino");
        let dev = to_device(t.as_ref(), leaf).expect("all ports mapped");
        assert_eq!(dev.len(), leaf.len());
        // Read back: the configured numbers again, so only ports moved.
        let text = |es: &SwitchEntities| format!("{:?}", es.values().collect::<Vec<_>>());
        assert_ne!(text(&dev), text(leaf));
        assert_eq!(to_config(t.as_ref(), &dev).expect("back"), *leaf);
        // A device port outside the map read back is an error naming it.
        let mut stray = dev.clone();
        let odd = Entity::Clone(crate::p4rt::entity::CloneSession {
            session_id: 9,
            replicas: vec![Replica {
                port: 77,
                instance: 0,
            }],
            class_of_service: 0,
            packet_length_bytes: 0,
        });
        stray.insert(odd.key(), odd);
        let e = to_config(t.as_ref(), &stray).expect_err("77 unmapped");
        assert_eq!(e.to_string(), "device port 77 is not in the port_map");
        // An unmapped port is an error naming it.
        sw.port_map.remove(&1);
        let t = for_switch(&name, &sw).expect("tofino");
        let e = to_device(t.as_ref(), leaf).expect_err("port 1 unmapped");
        assert_eq!(
            e.to_string(),
            format!("port 1 is not in the port_map of {name}")
        );
    }

    /// The learning tables' key of a host behind a LAG: configured port 0
    /// is the target's `lag_key_port` on the switch (a Tofino's CPU port,
    /// with or without a port map) and back; a plain port's key is mapped
    /// as a port; bmv2 keeps 0.
    #[test]
    fn lag_hosts_are_keyed_on_the_targets_no_port() {
        use crate::compile::names::{F_ETH_SRC, F_VLAN_ID, T_LOCKED_SOURCES, T_SRC_MAC};
        let key = |table: &'static str, port: Value, lag: Value| {
            let mut k = TableKey::new(table);
            if table == T_SRC_MAC {
                k = k
                    .exact(F_VLAN_ID, 10u16)
                    .exact(F_ETH_SRC, 0x0200_0000_0001u64);
            }
            Entity::Table(crate::p4rt::entity::TableEntry {
                key: k.exact(F_INGRESS_PORT, port).exact(F_LAG_ID, lag),
                action: TableAction::Direct(ActionCall::new("a")),
                idle_timeout_ns: 0,
            })
        };
        let no_map: crate::config::Switch = serde_yaml::from_str(
            "{address: 'h:1', device_id: 1, role: leaf, label: 101, target: tofino2, \
             device_config: stratum_bfrt}",
        )
        .expect("switch");
        let stratum = for_switch("leaf2", &no_map).expect("tofino2");
        for t in [leaf(), stratum] {
            let no_port = Value::from(t.lag_key_port());
            assert_eq!(no_port, Value::from(t.cpu_port()));
            assert!(t.maps_entities());
            for table in [T_SRC_MAC, T_LOCKED_SOURCES] {
                let dev = entity_to_device(t.as_ref(), &key(table, 0, 7)).expect("mapped");
                assert_eq!(dev, key(table, no_port, 7), "{table}");
                assert_eq!(
                    entity_to_config(t.as_ref(), &dev).expect("back"),
                    key(table, 0, 7)
                );
                let mut read = ReadBackMap::new(t.as_ref());
                assert_eq!(read.entity(dev), key(table, 0, 7));
                assert_eq!(read.strays(), (0, None));
            }
        }
        // A plain port (LAG id 0) is a port: mapped through the map.
        let t = leaf();
        assert_eq!(
            entity_to_device(t.as_ref(), &key(T_SRC_MAC, 2, 0)).expect("mapped"),
            key(T_SRC_MAC, 140, 0)
        );
        // bmv2: 0 stays 0.
        let bmv2: crate::config::Switch =
            serde_yaml::from_str("{address: 'h:1', device_id: 1, role: leaf, label: 101}")
                .expect("switch");
        let b = for_switch("leaf3", &bmv2).expect("bmv2");
        assert_eq!(b.lag_key_port(), 0);
        assert!(!b.maps_entities());
        assert_eq!(
            entity_to_device(b.as_ref(), &key(T_SRC_MAC, 0, 7)).expect("same"),
            key(T_SRC_MAC, 0, 7)
        );
    }

    /// A Tofino leaf: configured 1 -> 132, 2 -> 140; CPU port 320.
    fn leaf() -> Box<dyn SwitchTarget> {
        let sw: crate::config::Switch = serde_yaml::from_str(
            "{address: 'h:1', device_id: 1, role: leaf, label: 101, target: tofino, \
             cpu_port: 320, port_map: {1: 132, 2: 140}}",
        )
        .expect("switch");
        for_switch("leaf1", &sw).expect("tofino")
    }

    fn entry(port: Value, to: Value) -> Entity {
        use crate::compile::names::{A_TO_PORT, T_PORTS};
        Entity::Table(crate::p4rt::entity::TableEntry {
            key: TableKey::new(T_PORTS).exact(F_INGRESS_PORT, port),
            action: TableAction::Direct(ActionCall::new(A_TO_PORT).param(P_PORT, to)),
            idle_timeout_ns: 0,
        })
    }

    fn multicast(ports: &[PortNum]) -> Entity {
        Entity::Multicast(crate::p4rt::entity::MulticastGroup {
            group_id: 7,
            replicas: ports
                .iter()
                .map(|p| Replica {
                    port: *p,
                    instance: 0,
                })
                .collect(),
        })
    }

    /// What the agent writes: an insert or modify on device ports, an
    /// unmapped port an error naming switch and port; a delete by its key
    /// alone (the rest of a table entry as it is, other entities as they
    /// are: their keys hold no port).
    #[test]
    fn writes_go_to_device_ports_and_deletes_by_key() {
        let t = leaf();
        for kind in [UpdateKind::Insert, UpdateKind::Modify] {
            let e = entry(1, 2);
            let w = op_to_device(t.as_ref(), kind, &e).expect("mapped");
            assert_eq!(*w, entry(132, 140));
            let e = op_to_device(t.as_ref(), kind, &entry(1, 3)).expect_err("3 unmapped");
            assert_eq!(e.to_string(), "port 3 is not in the port_map of leaf1");
            assert_eq!(
                *op_to_device(t.as_ref(), kind, &entry(320, 1)).expect("CPU"),
                entry(320, 132)
            );
        }
        let e = entry(1, 3);
        let d = op_to_device(t.as_ref(), UpdateKind::Delete, &e).expect("by key");
        assert_eq!(*d, entry(132, 3));
        let m = multicast(&[1, 3]);
        let d = op_to_device(t.as_ref(), UpdateKind::Delete, &m).expect("by id");
        assert!(matches!(d, Cow::Borrowed(_)));
        assert!(op_to_device(t.as_ref(), UpdateKind::Insert, &m).is_err());
        assert_eq!(
            *op_to_device(t.as_ref(), UpdateKind::Insert, &multicast(&[2, 1, 320]))
                .expect("mapped"),
            multicast(&[132, 140, 320])
        );
    }

    /// A read-back maps device ports to configured ones and never fails:
    /// what an earlier map left on the switch (device port 1, say, from
    /// before the map) becomes a stray that matches nothing desired (a
    /// table entry on configured port 1 is another key) and is deleted by
    /// its key as read.
    #[test]
    fn a_read_back_keeps_strays_apart_from_the_configuration() {
        let t = leaf();
        let mut rb = ReadBackMap::new(t.as_ref());
        assert_eq!(rb.entity(entry(132, 320)), entry(1, 320));
        assert_eq!(rb.strays(), (0, None));
        let stray = rb.entity(entry(1, 140));
        assert_eq!(stray, entry(STRAY | 1, 2));
        assert_ne!(stray.key(), entry(1, 2).key());
        assert_eq!(rb.entity(multicast(&[1, 140])), multicast(&[2, STRAY_PORT]));
        assert_eq!(rb.strays(), (2, Some(1)));
        let d = op_to_device(t.as_ref(), UpdateKind::Delete, &stray).expect("by key");
        assert_eq!(d.key(), entry(1, 140).key());
        // Strictly (`to_config`), the same port is an error.
        let e = entity_to_config(t.as_ref(), &entry(1, 140)).expect_err("stray");
        assert_eq!(e.to_string(), "device port 1 is not in the port_map");
    }

    /// Single ports (packet I/O): the CPU port passes both ways.
    #[test]
    fn single_ports_and_the_cpu_port() {
        let t = leaf();
        assert_eq!(port_to_device(t.as_ref(), 2).expect("mapped"), 140);
        assert_eq!(port_to_device(t.as_ref(), 320).expect("CPU"), 320);
        assert!(port_to_device(t.as_ref(), 3).is_err());
        assert_eq!(port_to_config(t.as_ref(), 132), Some(1));
        assert_eq!(port_to_config(t.as_ref(), 320), Some(320));
        assert_eq!(port_to_config(t.as_ref(), 1), None);
    }

    /// The compiler writes each switch's own CPU port and CPU clone
    /// session: the CPU entry of the ports table and the session.
    #[test]
    fn compile_uses_the_targets_cpu_port() {
        use crate::compile::names::{F_INGRESS_PORT, T_PORTS};
        use crate::p4rt::entity::TableKey;
        let (mut fabric, hosts) = sample::large(1, 2, 0, 0);
        let tofino = sample::leaf_name(1);
        let sw = fabric.switches.get_mut(&tofino).expect("leaf");
        sw.target = Target::Tofino2;
        sw.cpu_port = Some(320);
        let topo = Topology::build(&fabric, &Default::default(), None);
        let compiled = crate::compile::compile(&fabric, &topo, &hosts);
        // Tofino 2's mirror sessions are 8 bits: 255 instead of 511.
        for (name, cpu, session) in [(tofino, 320, 255), (sample::leaf_name(2), 255, 511)] {
            let es = &compiled[&name];
            let key = EntityKey::Table(TableKey::new(T_PORTS).exact(F_INGRESS_PORT, cpu));
            assert!(es.contains_key(&key), "{name}: CPU port {cpu} entry");
            match es.get(&EntityKey::Clone(session)) {
                Some(Entity::Clone(c)) => assert_eq!(c.replicas[0].port, cpu, "{name}"),
                other => panic!("{name}: clone session {other:?}"),
            }
        }
    }
}
