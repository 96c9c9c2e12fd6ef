//! Bridging and learning entries of a host: on every leaf an fdb entry to
//! the host's home leaf (common), overridden on the leaves it is attached
//! to by the local port or LAG, plus `src_mac` entries on its local ports
//! so its traffic is not reported for learning again.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{Attachment, PortNum};
use crate::p4rt::entity::{ActionCall, Entity, TableEntry, TableKey};
use crate::topo::LagGroup;

use super::build::{direct, mac};
use super::names::*;
use super::state::{CompiledFabric, Ctx};
use super::{HostEntry, HostKey};

/// Where an entity of a host goes: `None` = every leaf, `Some(leaf)`.
type Placed = (Option<String>, Entity);

impl CompiledFabric {
    fn place(&mut self, entities: Vec<Placed>) {
        for (leaf, e) in entities {
            match leaf {
                None => self.set_common(e),
                Some(l) => self.set_local(&l, e),
            }
        }
    }

    fn unplace(&mut self, entities: Vec<Placed>) {
        for (leaf, e) in entities {
            match leaf {
                None => self.remove_common(&e.key()),
                Some(l) => self.remove_local(&l, &e.key()),
            }
        }
    }

    pub(super) fn add_host(&mut self, h: HostEntry) {
        self.place(host_entities(&self.ctx, &h));
        let ips = routable_ips(&self.ctx, &h);
        for nh in &ips {
            self.l3.ip_hosts.entry(*nh).or_default().insert(h.key());
        }
        self.hosts.insert(h.key(), h);
        for nh in ips {
            self.l3_refresh_ip(nh);
        }
    }

    /// Replaces a host's bridging entries, keeping its addresses.
    pub(super) fn move_host(&mut self, h: HostEntry) {
        let Some(old) = self.hosts.insert(h.key(), h.clone()) else {
            return;
        };
        self.unplace(host_entities(&self.ctx, &old));
        self.place(host_entities(&self.ctx, &h));
    }

    /// Switches to new LAG state and re-places the hosts on changed LAGs
    /// (their home leaf may move); addresses and routes stay untouched.
    pub(super) fn relocate_hosts(&mut self, keys: &[HostKey], lags: BTreeMap<String, LagGroup>) {
        let placed = |c: &Self| -> Vec<Placed> {
            let hosts = keys.iter().filter_map(|k| c.hosts.get(k));
            hosts.flat_map(|h| host_entities(&c.ctx, h)).collect()
        };
        let old = placed(self);
        self.ctx.lags = lags;
        let new = placed(self);
        self.unplace(old);
        self.place(new);
    }

    pub(super) fn remove_host(&mut self, key: &HostKey) {
        let Some(h) = self.hosts.remove(key) else {
            return;
        };
        self.unplace(host_entities(&self.ctx, &h));
        for nh in routable_ips(&self.ctx, &h) {
            if let Some(set) = self.l3.ip_hosts.get_mut(&nh) {
                set.remove(key);
                if set.is_empty() {
                    self.l3.ip_hosts.remove(&nh);
                }
            }
            self.l3_refresh_ip(nh);
        }
    }
}

/// The (VRF, IP) pairs a host is routed at: IPs of a family its VLAN has a
/// gateway for, other than the gateway address itself.
pub(super) fn routable_ips(ctx: &Ctx, h: &HostEntry) -> Vec<(u16, IpAddr)> {
    let Some(vlan) = ctx.vlans.get(&h.vlan) else {
        return Vec::new();
    };
    h.ips
        .iter()
        .filter(|ip| match ip {
            IpAddr::V4(a) => vlan.ipv4_gateway.is_some_and(|g| g.addr() != *a),
            IpAddr::V6(a) => vlan.ipv6_gateway.is_some_and(|g| g.addr() != *a),
        })
        .map(|ip| (vlan.vrf, *ip))
        .collect()
}

/// One local attachment of a host: the leaf, its fdb action there, and the
/// `src_mac` learning keys `(ingress_port, lag_id)` that identify the host's
/// source there — `(port, 0)` on a plain port, `(0, LAG id)` on any member
/// of a LAG (as `learning.p4` matches).
type Local = (String, ActionCall, Vec<(PortNum, u16)>);

/// The leaf remote leaves send a host's unicast to, and its local
/// attachments.
fn placement(ctx: &Ctx, h: &HostEntry) -> Option<(u32, Vec<Local>)> {
    match &h.attachment {
        Attachment::Port(p) => {
            let label = *ctx.leaf_labels.get(&p.switch)?;
            let local = (
                p.switch.clone(),
                ActionCall::new(A_TO_PORT).param(P_PORT, p.port),
                vec![(p.port, 0)],
            );
            Some((label, vec![local]))
        }
        Attachment::Lag(name) => {
            let g = ctx.lags.get(name)?;
            let home = g.designated_forwarder(h.vlan)?;
            let label = *ctx.leaf_labels.get(home)?;
            let local = g
                .leaves
                .iter()
                .filter(|l| ctx.leaf_labels.contains_key(*l))
                .map(|l| {
                    (
                        l.clone(),
                        ActionCall::new(A_TO_LAG).param(P_LAG_ID, g.id),
                        vec![(0, g.id)],
                    )
                })
                .collect();
            Some((label, local))
        }
    }
}

fn host_entities(ctx: &Ctx, h: &HostEntry) -> Vec<Placed> {
    let Some((home, local)) = placement(ctx, h) else {
        return Vec::new();
    };
    let fdb_key = || {
        TableKey::new(T_FDB)
            .exact(F_VLAN_ID, h.vlan)
            .exact(F_ETH_DST, mac(h.mac))
    };
    let mut out = vec![(
        None,
        direct(fdb_key(), ActionCall::new(A_TO_LEAF).param(P_LABEL, home)),
    )];
    let idle_timeout_ns = if h.learned {
        i64::from(ctx.settings.mac_aging_secs) * 1_000_000_000
    } else {
        0
    };
    for (leaf, action, ports) in local {
        out.push((Some(leaf.clone()), direct(fdb_key(), action)));
        for (port, lag) in ports {
            let key = TableKey::new(T_SRC_MAC)
                .exact(F_VLAN_ID, h.vlan)
                .exact(F_ETH_SRC, mac(h.mac))
                .exact(F_INGRESS_PORT, port)
                .exact(F_LAG_ID, lag);
            let action = crate::p4rt::entity::TableAction::Direct(ActionCall::new(A_KNOWN_SOURCE));
            out.push((
                Some(leaf.clone()),
                Entity::Table(TableEntry {
                    key,
                    action,
                    idle_timeout_ns,
                }),
            ));
        }
    }
    out
}
