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
    let mut f = ethernet(dst, src, 0x0800);
    f.extend(ipv4(sip, dip, 17, ttl, payload.len()));
    f.extend(payload);
    pad(f)
}

/// Pads to the 60-byte Ethernet minimum (without FCS).
pub fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}
