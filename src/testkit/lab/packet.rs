//! Building and inspecting test frames.

/// Lower-case hex, for assertion messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn mac(s: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(s.split(':')) {
        *o = u8::from_str_radix(p, 16).unwrap_or(0);
    }
    out
}

/// Ethernet header (no tag).
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// Ethernet header with an 802.1Q tag.
pub fn ethernet_tagged(dst: [u8; 6], src: [u8; 6], vlan: u16, ether_type: u16) -> Vec<u8> {
    let mut f = ethernet(dst, src, 0x8100);
    f.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header (20 bytes, checksum filled in) for `payload_len` bytes.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, ttl, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A UDP datagram (checksum 0, allowed for IPv4).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A whole untagged IPv4/UDP frame, padded to 64 bytes.
pub fn udp4_frame(
    dst: [u8; 6],
    src: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    ttl: u8,
) -> Vec<u8> {
    let payload = udp(sport, dport, b"p4fabric test payload!");
    ipv4_frame(dst, src, sip, dip, 17, ttl, &payload)
}

/// A whole untagged IPv4 frame carrying `l4` (protocol `proto`), padded.
pub fn ipv4_frame(
    dst: [u8; 6],
    src: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    proto: u8,
    ttl: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = ethernet(dst, src, 0x0800);
    f.extend(ipv4(sip, dip, proto, ttl, l4.len()));
    f.extend_from_slice(l4);
    pad(f)
}

/// Pads to the 60-byte Ethernet minimum (without FCS).
pub fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An IPv6 address from its text form (all zeros if it does not parse;
/// test literals only).
pub fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .map(|a| a.octets())
        .unwrap_or([0; 16])
}

/// Inserts an 802.1Q tag (PCP 0, DEI 0) after the source MAC.
pub fn push_vlan(frame: &[u8], vid: u16) -> Vec<u8> {
    let split = frame.len().min(12);
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..split]);
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[split..]);
    f
}

/// Removes the 802.1Q tag after the source MAC (the frame as it was
/// before `push_vlan`).
pub fn pop_vlan(frame: &[u8]) -> Vec<u8> {
    if frame.len() < 18 {
        return frame.to_vec();
    }
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&frame[16..]);
    f
}

/// The fabric encapsulation: outer Ethernet (type 0x8847) and one MPLS
/// label (TC 0, bottom of stack) in front of `inner`.
pub fn mpls_encap(inner: &[u8], dst: [u8; 6], src: [u8; 6], label: u32, ttl: u8) -> Vec<u8> {
    let mut f = ethernet(dst, src, 0x8847);
    let word = ((label & 0xf_ffff) << 12) | (1 << 8) | u32::from(ttl);
    f.extend_from_slice(&word.to_be_bytes());
    f.extend_from_slice(inner);
    f
}

/// An IPv6 header for `payload_len` bytes.
pub fn ipv6(
    src: [u8; 16],
    dst: [u8; 16],
    next_header: u8,
    hop_limit: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next_header, hop_limit]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// The checksum of an upper-layer packet over IPv6 (pseudo-header
/// included); `data` has its checksum field zeroed.
pub fn checksum6(src: [u8; 16], dst: [u8; 16], next_header: u8, data: &[u8]) -> u16 {
    let mut p = Vec::with_capacity(40 + data.len());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&(data.len() as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, next_header]);
    p.extend_from_slice(data);
    checksum(&p)
}

/// A whole untagged IPv6/UDP frame (UDP checksum filled in).
pub fn udp6_frame(
    dst: [u8; 6],
    src: [u8; 6],
    sip: [u8; 16],
    dip: [u8; 16],
    sport: u16,
    dport: u16,
    hop_limit: u8,
) -> Vec<u8> {
    let mut u = udp(sport, dport, b"p4fabric test payload!");
    let c = checksum6(sip, dip, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = ethernet(dst, src, 0x86dd);
    f.extend(ipv6(sip, dip, 17, hop_limit, u.len()));
    f.extend(u);
    pad(f)
}

/// A minimal TCP header (SYN, checksum 0) followed by `payload`.
pub fn tcp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x20, 0x00, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

/// A whole untagged IPv4/TCP frame.
pub fn tcp4_frame(
    dst: [u8; 6],
    src: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    ttl: u8,
) -> Vec<u8> {
    ipv4_frame(dst, src, sip, dip, 6, ttl, &tcp(sport, dport, b"p4fabric"))
}

/// A whole untagged ICMP echo request frame.
pub fn icmp4_echo_frame(
    dst: [u8; 6],
    src: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    ttl: u8,
) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"p4fabric ping");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_frame(dst, src, sip, dip, 1, ttl, &icmp)
}

/// An untagged ARP frame (Ethernet/IPv4; `op` 1 request, 2 reply; target
/// hardware address zero).
pub fn arp_frame(dst: [u8; 6], src: [u8; 6], op: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = ethernet(dst, src, 0x0806);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    pad(f)
}

/// An untagged ICMPv6 neighbour solicitation from `src` (`sip`) for
/// `target`, to the target's solicited-node multicast address.
pub fn nd_solicit_frame(src: [u8; 6], sip: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let mut dip = ip6("ff02::1:ff00:0");
    dip[13..].copy_from_slice(&target[13..]);
    let dst = [0x33, 0x33, dip[12], dip[13], dip[14], dip[15]];
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    icmp.extend_from_slice(&[1, 1]); // source link-layer address option
    icmp.extend_from_slice(&src);
    let c = checksum6(sip, dip, 58, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = ethernet(dst, src, 0x86dd);
    f.extend(ipv6(sip, dip, 58, 255, icmp.len()));
    f.extend(icmp);
    pad(f)
}

/// The slow-protocols multicast address (LACP).
pub const SLOW_PROTOCOLS_MAC: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x02];
/// The nearest-bridge multicast address (LLDP and discovery probes).
pub const NEAREST_BRIDGE_MAC: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];

/// An LACPDU (subtype 1, version 1) from `src` with actor port `port`;
/// the rest of the PDU is zero (enough for punt tests).
pub fn lacp_frame(src: [u8; 6], port: u16) -> Vec<u8> {
    let mut f = ethernet(SLOW_PROTOCOLS_MAC, src, 0x8809);
    f.extend_from_slice(&[1, 1, 1, 20, 0x80, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0, 1, 0x80, 0]);
    f.extend_from_slice(&port.to_be_bytes());
    f.resize(124, 0);
    f
}

/// A discovery probe (EtherType 0x88cc) from `src` carrying `payload`.
pub fn discovery_frame(src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = ethernet(NEAREST_BRIDGE_MAC, src, 0x88cc);
    f.extend_from_slice(payload);
    pad(f)
}
