//! Edge port facts the protocols need: which VLAN and attachment a punted
//! frame belongs to, how a VLAN is sent out of a port (tagged or not), and
//! which ports flood a VLAN. Derived from the configuration only.

use std::collections::BTreeMap;

use crate::config::{Attachment, Fabric, PortRef, VlanId, VlanMode};

#[derive(Debug, Clone)]
struct EdgeInfo {
    attachment: Attachment,
    vlans: VlanMode,
}

#[derive(Debug, Clone, Default)]
pub struct EdgePorts {
    ports: BTreeMap<PortRef, EdgeInfo>,
    lag_ids: BTreeMap<u16, String>,
}

impl EdgePorts {
    pub fn new(fabric: &Fabric) -> Self {
        let mut ports = BTreeMap::new();
        for (p, e) in &fabric.ports {
            ports.insert(
                p.clone(),
                EdgeInfo {
                    attachment: Attachment::Port(p.clone()),
                    vlans: e.vlans.clone(),
                },
            );
        }
        // LAG members take their VLANs from the LAG.
        for (name, lag) in &fabric.lags {
            for m in &lag.members {
                ports.insert(
                    m.clone(),
                    EdgeInfo {
                        attachment: Attachment::Lag(name.clone()),
                        vlans: lag.vlans.clone(),
                    },
                );
            }
        }
        let lag_ids = fabric.lags.iter().map(|(n, l)| (l.id, n.clone())).collect();
        EdgePorts { ports, lag_ids }
    }

    /// The VLAN and attachment of a frame received on `port` with 802.1Q
    /// tag `tag`, or `None` when the port does not accept it.
    pub fn classify(&self, port: &PortRef, tag: Option<u16>) -> Option<(VlanId, &Attachment)> {
        let e = self.ports.get(port)?;
        let vlan = match (&e.vlans, tag) {
            (VlanMode::Access { vlan }, None) => *vlan,
            (VlanMode::Trunk { native, .. }, None) => (*native)?,
            (VlanMode::Trunk { vlans, .. }, Some(t)) if vlans.contains(&t) => t,
            _ => return None,
        };
        Some((vlan, &e.attachment))
    }

    /// How `vlan` leaves `port`: `Some(None)` untagged, `Some(Some(v))`
    /// tagged, `None` not a member.
    pub fn tag_for(&self, port: &PortRef, vlan: VlanId) -> Option<Option<u16>> {
        let e = self.ports.get(port)?;
        if e.vlans.is_untagged(vlan) {
            Some(None)
        } else if e.vlans.member_vlans().contains(&vlan) {
            Some(Some(vlan))
        } else {
            None
        }
    }

    /// The attachments carrying `vlan`, each with its member ports and tag.
    pub fn vlan_members(
        &self,
        vlan: VlanId,
    ) -> BTreeMap<&Attachment, Vec<(&PortRef, Option<u16>)>> {
        let mut out: BTreeMap<&Attachment, Vec<(&PortRef, Option<u16>)>> = BTreeMap::new();
        for (p, e) in &self.ports {
            if let Some(tag) = self.tag_for(p, vlan) {
                out.entry(&e.attachment).or_default().push((p, tag));
            }
        }
        out
    }

    pub fn attachment(&self, port: &PortRef) -> Option<&Attachment> {
        self.ports.get(port).map(|e| &e.attachment)
    }

    pub fn lag_name(&self, id: u16) -> Option<&str> {
        self.lag_ids.get(&id).map(String::as_str)
    }
}
