//! Configured port numbers <-> device ports in entities, through a
//! target's port map: `to_device` for what the compiler writes,
//! `to_config` for what a switch reads back. The one place that knows
//! which fields carry ports (the `ingress_port` / `egress_port` match
//! fields, the `port` action parameter, group members' watch ports,
//! multicast and clone replicas). The CPU port is a device port already
//! and passes as it is, and so does the learning table's `ingress_port` 0
//! beside a non-zero `lag_id` (the LAG stands for its ports there).
//! (Not yet called by the agents: see docs/targets.md.)

use crate::compile::names::{F_EGRESS_PORT, F_INGRESS_PORT, F_LAG_ID, P_PORT};
use crate::config::PortNum;
use crate::p4rt::entity::{
    ActionCall, Entity, EntityKey, Match, Replica, SwitchEntities, TableAction, Value,
};

use super::{SwitchTarget, TargetError};

/// Which way ports are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    ToDevice,
    ToConfig,
}

/// Maps one port value (the CPU port passes).
fn device(t: &dyn SwitchTarget, way: Way, v: Value) -> Result<Value, TargetError> {
    // A port value wider than 32 bits maps to nothing: report it as such.
    let port = PortNum::try_from(v).unwrap_or(PortNum::MAX);
    if port == t.cpu_port() {
        return Ok(v);
    }
    match way {
        Way::ToDevice => t.device_port(port).map(Value::from),
        Way::ToConfig => t
            .config_port(port)
            .map(Value::from)
            .ok_or(TargetError::UnknownDevicePort { device_port: port }),
    }
}

fn action(t: &dyn SwitchTarget, way: Way, a: &ActionCall) -> Result<ActionCall, TargetError> {
    let mut a = a.clone();
    for (name, v) in a.params.iter_mut() {
        if *name == P_PORT {
            *v = device(t, way, *v)?;
        }
    }
    Ok(a)
}

fn replicas(t: &dyn SwitchTarget, way: Way, r: &[Replica]) -> Result<Vec<Replica>, TargetError> {
    let mut out = r
        .iter()
        .map(|r| {
            Ok(Replica {
                port: device(t, way, r.port.into())? as PortNum,
                instance: r.instance,
            })
        })
        .collect::<Result<Vec<_>, TargetError>>()?;
    out.sort_unstable(); // replicas are kept sorted
    Ok(out)
}

/// One entity with its ports on the device.
pub fn entity_to_device(t: &dyn SwitchTarget, e: &Entity) -> Result<Entity, TargetError> {
    map_entity(t, Way::ToDevice, e)
}

/// One entity as read from the device, with configured port numbers.
pub fn entity_to_config(t: &dyn SwitchTarget, e: &Entity) -> Result<Entity, TargetError> {
    map_entity(t, Way::ToConfig, e)
}

fn map_entity(t: &dyn SwitchTarget, way: Way, e: &Entity) -> Result<Entity, TargetError> {
    Ok(match e {
        Entity::Table(te) => {
            let mut te = te.clone();
            let on_lag = te
                .key
                .matches
                .iter()
                .any(|(f, m)| *f == F_LAG_ID && *m != Match::Exact(0));
            for (field, m) in te.key.matches.iter_mut() {
                if on_lag && *field == F_INGRESS_PORT && *m == Match::Exact(0) {
                    continue;
                }
                if *field == F_INGRESS_PORT || *field == F_EGRESS_PORT {
                    let exact_mask = (1u128 << t.port_bits().min(64)) - 1;
                    *m = match *m {
                        Match::Exact(v) => Match::Exact(device(t, way, v)?),
                        Match::Optional(v) => Match::Optional(device(t, way, v)?),
                        // A ternary on one whole port (the ACL's punts).
                        Match::Ternary { value, mask } if mask == exact_mask => Match::Ternary {
                            value: device(t, way, value)?,
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
            if let TableAction::Direct(a) = &te.action {
                te.action = TableAction::Direct(action(t, way, a)?);
            }
            Entity::Table(te)
        }
        Entity::Member(m) => {
            let mut m = m.clone();
            m.action = action(t, way, &m.action)?;
            Entity::Member(m)
        }
        Entity::Group(g) => {
            let mut g = g.clone();
            for m in g.members.iter_mut() {
                if let Some(p) = m.watch_port {
                    m.watch_port = Some(device(t, way, p.into())? as PortNum);
                }
            }
            Entity::Group(g)
        }
        Entity::Multicast(g) => {
            let mut g = g.clone();
            g.replicas = replicas(t, way, &g.replicas)?;
            Entity::Multicast(g)
        }
        Entity::Clone(c) => {
            let mut c = c.clone();
            c.replicas = replicas(t, way, &c.replicas)?;
            Entity::Clone(c)
        }
        Entity::Digest(_) | Entity::Meter(_) => e.clone(),
    })
}

/// A switch's entities with their ports on the device (keys change with
/// the ports in table matches).
pub fn to_device(t: &dyn SwitchTarget, es: &SwitchEntities) -> Result<SwitchEntities, TargetError> {
    map_all(t, Way::ToDevice, es)
}

/// A switch's entities as read back, with configured port numbers.
pub fn to_config(t: &dyn SwitchTarget, es: &SwitchEntities) -> Result<SwitchEntities, TargetError> {
    map_all(t, Way::ToConfig, es)
}

fn map_all(
    t: &dyn SwitchTarget,
    way: Way,
    es: &SwitchEntities,
) -> Result<SwitchEntities, TargetError> {
    es.values()
        .map(|e| {
            let d = map_entity(t, way, e)?;
            Ok::<(EntityKey, Entity), TargetError>((d.key(), d))
        })
        .collect()
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
