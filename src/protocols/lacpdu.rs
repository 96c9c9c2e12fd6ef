//! The LACPDU (IEEE 802.1AX-2014 section 6.4.2): slow protocols ethertype
//! 0x8809, subtype 1, version 1, to 01:80:c2:00:00:02. 110 bytes: actor and
//! partner information TLVs, the collector TLV, the terminator and 50
//! reserved bytes.

use crate::net::MacAddr;

/// The Slow_Protocols_Multicast_Address.
pub const SLOW_PROTOCOLS_MAC: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x02]);
pub const LACP_SUBTYPE: u8 = 1;
pub const LACPDU_LEN: usize = 110;

/// Port state bits, as carried in Actor_State / Partner_State.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LacpState(pub u8);

impl LacpState {
    pub const ACTIVITY: u8 = 1 << 0;
    /// Set: short timeout (the sender wants LACPDUs every second).
    pub const TIMEOUT: u8 = 1 << 1;
    pub const AGGREGATION: u8 = 1 << 2;
    pub const SYNCHRONIZATION: u8 = 1 << 3;
    pub const COLLECTING: u8 = 1 << 4;
    pub const DISTRIBUTING: u8 = 1 << 5;
    pub const DEFAULTED: u8 = 1 << 6;
    pub const EXPIRED: u8 = 1 << 7;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }

    pub fn with(mut self, bit: u8, on: bool) -> Self {
        self.set(bit, on);
        self
    }

    /// The bits spelled out, for status (`activity,timeout,...`).
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [&str; 8] = [
            "activity",
            "short_timeout",
            "aggregation",
            "synchronization",
            "collecting",
            "distributing",
            "defaulted",
            "expired",
        ];
        (0..8)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect()
    }
}

/// One side's information: what an actor says about itself, or about its
/// partner.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LacpInfo {
    pub system_priority: u16,
    pub system: MacAddr,
    pub key: u16,
    pub port_priority: u16,
    pub port: u16,
    pub state: LacpState,
}

impl LacpInfo {
    fn write(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&self.system_priority.to_be_bytes());
        b[2..8].copy_from_slice(&self.system.0);
        b[8..10].copy_from_slice(&self.key.to_be_bytes());
        b[10..12].copy_from_slice(&self.port_priority.to_be_bytes());
        b[12..14].copy_from_slice(&self.port.to_be_bytes());
        b[14] = self.state.0;
    }

    fn read(b: &[u8]) -> Option<LacpInfo> {
        let u16_at = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
        };
        Some(LacpInfo {
            system_priority: u16_at(0)?,
            system: MacAddr(b.get(2..8)?.try_into().ok()?),
            key: u16_at(8)?,
            port_priority: u16_at(10)?,
            port: u16_at(12)?,
            state: LacpState(*b.get(14)?),
        })
    }

    /// Same port of the same aggregation: everything but the state bits.
    pub fn same_port(&self, other: &LacpInfo) -> bool {
        LacpInfo {
            state: LacpState(0),
            ..*self
        } == LacpInfo {
            state: LacpState(0),
            ..*other
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lacpdu {
    pub actor: LacpInfo,
    pub partner: LacpInfo,
    /// CollectorMaxDelay in tens of microseconds.
    pub collector_max_delay: u16,
}

const TLV_ACTOR: u8 = 1;
const TLV_PARTNER: u8 = 2;
const TLV_COLLECTOR: u8 = 3;
const INFO_LEN: u8 = 20;
const COLLECTOR_LEN: u8 = 16;

impl Lacpdu {
    /// The slow-protocols payload (what follows the ethertype).
    pub fn encode(&self) -> [u8; LACPDU_LEN] {
        let mut b = [0u8; LACPDU_LEN];
        b[0] = LACP_SUBTYPE;
        b[1] = 1;
        b[2] = TLV_ACTOR;
        b[3] = INFO_LEN;
        self.actor.write(&mut b[4..19]);
        b[22] = TLV_PARTNER;
        b[23] = INFO_LEN;
        self.partner.write(&mut b[24..39]);
        b[42] = TLV_COLLECTOR;
        b[43] = COLLECTOR_LEN;
        b[44..46].copy_from_slice(&self.collector_max_delay.to_be_bytes());
        // 46..58 reserved, 58..60 terminator (type 0, length 0), 60..110
        // reserved: all zero.
        b
    }

    /// Parses a slow-protocols payload. Any version >= 1 is accepted (later
    /// versions append TLVs after the version 1 layout, 802.1AX 6.4.2.3).
    pub fn parse(b: &[u8]) -> Option<Lacpdu> {
        if b.len() < 60 || b[0] != LACP_SUBTYPE || b[1] == 0 {
            return None;
        }
        if b[2..4] != [TLV_ACTOR, INFO_LEN]
            || b[22..24] != [TLV_PARTNER, INFO_LEN]
            || b[42..44] != [TLV_COLLECTOR, COLLECTOR_LEN]
        {
            return None;
        }
        Some(Lacpdu {
            actor: LacpInfo::read(&b[4..19])?,
            partner: LacpInfo::read(&b[24..39])?,
            collector_max_delay: u16::from_be_bytes([b[44], b[45]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Lacpdu {
        Lacpdu {
            actor: LacpInfo {
                system_priority: 32768,
                system: MacAddr([0x02, 0, 0, 0xfa, 0xb0, 0x02]),
                key: 7,
                port_priority: 255,
                port: 0x0a05,
                state: LacpState(0x3f),
            },
            partner: LacpInfo {
                system_priority: 65535,
                system: MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                key: 9,
                port_priority: 255,
                port: 1,
                state: LacpState(0x0d),
            },
            collector_max_delay: 0,
        }
    }

    #[test]
    fn golden_bytes() {
        let b = sample().encode();
        let mut want = vec![0x01, 0x01, 0x01, 0x14];
        want.extend([
            0x80, 0x00, 0x02, 0, 0, 0xfa, 0xb0, 0x02, 0, 7, 0, 0xff, 0x0a, 0x05, 0x3f,
        ]);
        want.extend([0, 0, 0]);
        want.extend([0x02, 0x14]);
        want.extend([
            0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 9, 0, 0xff, 0, 1, 0x0d,
        ]);
        want.extend([0, 0, 0]);
        want.extend([0x03, 0x10, 0, 0]);
        want.extend([0; 12]);
        want.extend([0, 0]);
        want.extend([0; 50]);
        assert_eq!(want.len(), LACPDU_LEN);
        assert_eq!(b.to_vec(), want);
    }

    #[test]
    fn round_trip_and_rejects() {
        let p = sample();
        assert_eq!(Lacpdu::parse(&p.encode()), Some(p));
        let mut b = p.encode();
        b[0] = 2; // marker protocol
        assert_eq!(Lacpdu::parse(&b), None);
        assert_eq!(Lacpdu::parse(&p.encode()[..59]), None);
    }

    #[test]
    fn state_names() {
        assert_eq!(
            LacpState(0x3d).names(),
            [
                "activity",
                "aggregation",
                "synchronization",
                "collecting",
                "distributing"
            ]
        );
    }

    fn info() -> impl Strategy<Value = LacpInfo> {
        (
            any::<u16>(),
            any::<[u8; 6]>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
        )
            .prop_map(|(sp, s, k, pp, p, st)| LacpInfo {
                system_priority: sp,
                system: MacAddr(s),
                key: k,
                port_priority: pp,
                port: p,
                state: LacpState(st),
            })
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(a in info(), p in info(), d in any::<u16>()) {
            let pdu = Lacpdu { actor: a, partner: p, collector_max_delay: d };
            prop_assert_eq!(Lacpdu::parse(&pdu.encode()), Some(pdu));
        }

        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = Lacpdu::parse(&b);
        }

        /// Malformed LACPDUs: truncated, or a TLV header with a bogus
        /// type or length, are refused.
        #[test]
        fn malformed_lacpdus_are_refused(
            cut in 0usize..60, at in prop_oneof![Just(2usize), Just(3), Just(22), Just(23), Just(42), Just(43)],
            v in any::<u8>(),
        ) {
            let b = sample().encode();
            prop_assert!(Lacpdu::parse(&b[..cut]).is_none());
            let mut bad = b;
            prop_assume!(bad[at] != v);
            bad[at] = v;
            prop_assert!(Lacpdu::parse(&bad).is_none());
        }
    }
}
