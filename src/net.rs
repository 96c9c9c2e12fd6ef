//! Small network values shared by every layer: MAC addresses, the
//! ethertypes the fabric handles, which frames are control frames, the
//! fabric's MPLS label space (which labels are flood labels).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_SLOW: u16 = 0x8809;
pub const ETH_LLDP: u16 = 0x88cc;

/// Discovery and LACP frames (untagged LLDP, slow protocols): the control
/// traffic that must not queue behind an ARP / ND storm, in either
/// direction. The one frame classification below the protocols: agents
/// queue these first.
pub fn is_control_frame(frame: &[u8]) -> bool {
    matches!(
        frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])),
        Some(ETH_LLDP | ETH_SLOW)
    )
}

/// The largest MPLS label (labels have 20 bits).
pub const MAX_LABEL: u32 = 0xF_FFFF;
/// The hex digit every flood label ends in. A flood label is `(source LAG
/// id << 4) | FLOOD_LABEL_MARKER` (p4/include/constants.p4): the LAG id
/// fills the label's top 16 bits, the first two bytes of the MPLS header,
/// because Tofino moves header fields in whole bytes. Switch labels must
/// therefore never end in hex F (config validation).
pub const FLOOD_LABEL_MARKER: u32 = 0xF;
/// The ternary match (value, mask) of every flood label (`mpls_in`).
pub const FLOOD_LABEL_MATCH: (u32, u32) = (FLOOD_LABEL_MARKER, 0xF);

/// The flood label of a flood from source LAG `src_lag` (0: the source
/// port is not in a LAG).
pub const fn flood_label(src_lag: u16) -> u32 {
    ((src_lag as u32) << 4) | FLOOD_LABEL_MARKER
}

/// Whether `label` is a flood label (what `FLOOD_LABEL_MATCH` takes).
pub const fn is_flood_label(label: u32) -> bool {
    label & FLOOD_LABEL_MATCH.1 == FLOOD_LABEL_MATCH.0
}

/// The source LAG id a flood label carries (the pipeline's `label[19:4]`).
pub const fn flood_label_lag(label: u32) -> u16 {
    ((label & MAX_LABEL) >> 4) as u16
}

/// An Ethernet MAC address, written `aa:bb:cc:dd:ee:ff` in config and logs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group (multicast or broadcast) bit of the first octet.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn as_u64(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }

    /// The MAC in the low 48 bits of a P4 field value.
    pub fn from_value(v: u128) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[10], b[11], b[12], b[13], b[14], b[15]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 02:00:00:00:00:01")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:0A:00:00:00:ff".parse().unwrap();
        assert_eq!(m.to_string(), "02:0a:00:00:00:ff");
        assert_eq!(m.as_u64(), 0x020a_0000_00ff);
        assert!(!m.is_multicast());
        assert!(MacAddr::BROADCAST.is_multicast());
    }

    #[test]
    fn flood_labels_carry_the_lag_id_above_the_marker() {
        assert_eq!(flood_label(0), 0x0000F);
        assert_eq!(flood_label(7), 0x0007F);
        assert_eq!(flood_label(u16::MAX), 0xFFFFF);
        for lag in [0, 1, 7, 0x1234, u16::MAX] {
            assert!(is_flood_label(flood_label(lag)));
            assert_eq!(flood_label_lag(flood_label(lag)), lag);
        }
        // Switch labels: anything not ending in hex F, the old flood range
        // included.
        for label in [16, 101, 0xF0000, 0xFFFFE] {
            assert!(!is_flood_label(label), "{label:#x}");
        }
    }

    #[test]
    fn mac_rejects_garbage() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "123:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
