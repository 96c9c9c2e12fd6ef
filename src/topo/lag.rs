//! LAG groups (on one leaf, or split across two) and their designated
//! forwarder per VLAN.
//!
//! DF rule: the LAG's leaves sorted by name; VLAN `v` prefers leaf
//! `v % n` (even VLANs the first leaf, odd the second, for two leaves), so
//! both leaves share the flood load; when the preferred leaf has no usable
//! member, the first leaf (in that rotation) that has one takes over.

use std::collections::BTreeMap;

use crate::config::{Fabric, LagMode, PortNum, PortRef, VlanId, VlanMode};

use super::ObservedState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagGroup {
    pub name: String,
    pub id: u16,
    pub vlans: VlanMode,
    /// Leaves with configured members, sorted by name.
    pub leaves: Vec<String>,
    /// Configured members per leaf (sorted).
    pub members: BTreeMap<String, Vec<PortNum>>,
    /// Members that may carry traffic: port up, LAG admin up, leaf not
    /// drained and, for LACP, in sync.
    pub usable: BTreeMap<String, Vec<PortNum>>,
    /// Members a leaf itself still delivers on: `usable` but for a
    /// drained leaf, whose members keep serving what reaches it until it
    /// hands over to the other leaf (frames in flight are not dropped).
    pub serving: BTreeMap<String, Vec<PortNum>>,
}

impl LagGroup {
    pub fn usable_on(&self, leaf: &str) -> &[PortNum] {
        self.usable.get(leaf).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn serving_on(&self, leaf: &str) -> &[PortNum] {
        self.serving.get(leaf).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn members_on(&self, leaf: &str) -> &[PortNum] {
        self.members.get(leaf).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The leaf that floods into this LAG for `vlan` and that remote leaves
    /// send its hosts' unicast to.
    pub fn designated_forwarder(&self, vlan: VlanId) -> Option<&str> {
        let n = self.leaves.len();
        if n == 0 {
            return None;
        }
        let first = usize::from(vlan) % n;
        let rotation = (0..n).map(|i| self.leaves[(first + i) % n].as_str());
        rotation
            .clone()
            .find(|l| !self.usable_on(l).is_empty())
            .or_else(|| rotation.clone().next())
    }

    /// The other leaf of a two-leaf LAG that has usable members.
    pub fn usable_peer(&self, leaf: &str) -> Option<&str> {
        self.leaves
            .iter()
            .map(String::as_str)
            .find(|l| *l != leaf && !self.usable_on(l).is_empty())
    }
}

pub(super) fn groups(fabric: &Fabric, observed: &ObservedState) -> BTreeMap<String, LagGroup> {
    let mut out = BTreeMap::new();
    for (name, lag) in &fabric.lags {
        let mut members: BTreeMap<String, Vec<PortNum>> = BTreeMap::new();
        let mut usable: BTreeMap<String, Vec<PortNum>> = BTreeMap::new();
        let mut serving: BTreeMap<String, Vec<PortNum>> = BTreeMap::new();
        for m in &lag.members {
            members.entry(m.switch.clone()).or_default().push(m.port);
            if member_serving(lag.admin_up, lag.protocol, m, observed) {
                serving.entry(m.switch.clone()).or_default().push(m.port);
                if !observed.drained.contains(&m.switch) {
                    usable.entry(m.switch.clone()).or_default().push(m.port);
                }
            }
        }
        for v in members
            .values_mut()
            .chain(usable.values_mut())
            .chain(serving.values_mut())
        {
            v.sort_unstable();
            v.dedup();
        }
        out.insert(
            name.clone(),
            LagGroup {
                name: name.clone(),
                id: lag.id,
                vlans: lag.vlans.clone(),
                leaves: members.keys().cloned().collect(),
                members,
                usable,
                serving,
            },
        );
    }
    out
}

/// Port up, LAG admin up and, for LACP, in sync. (A drained leaf's members
/// are left out of `usable` at once, before its LACP actor goes out of
/// sync — make-before-break: the fabric stops sending through them before
/// the server stops taking frames on them.)
fn member_serving(admin_up: bool, mode: LagMode, port: &PortRef, obs: &ObservedState) -> bool {
    admin_up
        && !obs.lags_handed_over.contains(&port.switch)
        && !obs.ports_down.contains(port)
        && (mode == LagMode::Static || !obs.lacp_unsynced.contains(port))
}
