//! A user-space bond and 802.1Q tagger for lab hosts.
//!
//! The lab kernel has no bonding and no 802.1Q drivers (LAB-NOTES), so a
//! host that sits on a LAG, or on a VLAN its port carries tagged, is wired
//! through this forwarder: the host's `eth0` is one end of a veth pair whose
//! other end (a "host leg") and the switch-port far ends (the "uplinks")
//! are raw sockets in the lab's wires namespace. Frames from a host get its
//! VLAN tag pushed (unless that VLAN is untagged on the attachment) and go
//! out of one uplink chosen by a flow hash — static bond mode, no LACPDUs.
//! Frames from any uplink are matched to hosts by VLAN and destination MAC,
//! popped and delivered.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::PortSocket;
use crate::config::VlanId;
use crate::net::MacAddr;

/// One host behind the forwarder.
pub struct HostLeg {
    pub socket: PortSocket,
    pub mac: MacAddr,
    pub vlan: VlanId,
    /// Does this VLAN travel tagged on the attachment?
    pub tagged: bool,
}

/// A running forwarder thread; stops (and closes its sockets) on drop.
pub struct UserBond {
    pub name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UserBond {
    pub fn start(name: &str, uplinks: Vec<PortSocket>, hosts: Vec<HostLeg>) -> UserBond {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let tname = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("bond-{name}"))
            .spawn(move || forward(&tname, &uplinks, &hosts, &flag))
            .ok();
        UserBond {
            name: name.to_string(),
            stop,
            thread,
        }
    }
}

impl Drop for UserBond {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const TPID: u16 = 0x8100;

/// Pushes an 802.1Q tag after the MAC addresses.
pub fn push_tag(frame: &[u8], vlan: VlanId) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12.min(frame.len())]);
    f.extend_from_slice(&TPID.to_be_bytes());
    f.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[12.min(frame.len())..]);
    f
}

/// (VLAN id if tagged, the frame without its tag).
pub fn pop_tag(frame: &[u8]) -> (Option<VlanId>, Vec<u8>) {
    if frame.len() >= 18 && u16::from_be_bytes([frame[12], frame[13]]) == TPID {
        let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
        let mut f = frame[..12].to_vec();
        f.extend_from_slice(&frame[16..]);
        return (Some(vid), f);
    }
    (None, frame.to_vec())
}

/// A flow hash over addresses (MACs, and IPv4/IPv6 source and
/// destination), so one flow always takes the same uplink.
pub fn flow_hash(frame: &[u8]) -> u64 {
    let mut parts: Vec<&[u8]> = vec![&frame[..12.min(frame.len())]];
    if frame.len() >= 14 {
        match u16::from_be_bytes([frame[12], frame[13]]) {
            0x0800 if frame.len() >= 34 => parts.push(&frame[26..34]),
            0x86dd if frame.len() >= 54 => parts.push(&frame[22..54]),
            _ => {}
        }
    }
    crate::p4rt::pipeline::fnv1a(&parts)
}

fn forward(name: &str, uplinks: &[PortSocket], hosts: &[HostLeg], stop: &AtomicBool) {
    let all: Vec<&PortSocket> = uplinks
        .iter()
        .chain(hosts.iter().map(|h| &h.socket))
        .collect();
    let mut pfds: Vec<libc::pollfd> = all
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: pfds is a live array of pfds.len() pollfds.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        if r <= 0 {
            continue;
        }
        for (i, pfd) in pfds.iter_mut().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            pfd.revents = 0;
            // Drain what is queued on this socket, a bounded batch at a time.
            for _ in 0..64 {
                let frame = match all[i].recv(std::time::Duration::ZERO) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(bond = name, error = %e, "receive failed");
                        break;
                    }
                };
                if i < uplinks.len() {
                    from_uplink(name, hosts, &frame);
                } else {
                    from_host(name, uplinks, &hosts[i - uplinks.len()], &frame);
                }
            }
        }
    }
}

fn from_host(name: &str, uplinks: &[PortSocket], host: &HostLeg, frame: &[u8]) {
    if uplinks.is_empty() || frame.len() < 14 {
        return;
    }
    let out = if host.tagged {
        push_tag(frame, host.vlan)
    } else {
        frame.to_vec()
    };
    let leg = (flow_hash(frame) % uplinks.len() as u64) as usize;
    if let Err(e) = uplinks[leg].send(&out) {
        // A leg whose link is down: try the others (what a bond does when
        // it sees carrier loss).
        tracing::debug!(bond = name, error = %e, "send failed, trying other legs");
        for (i, u) in uplinks.iter().enumerate() {
            if i != leg && u.send(&out).is_ok() {
                break;
            }
        }
    }
}

fn from_uplink(name: &str, hosts: &[HostLeg], frame: &[u8]) {
    let (vid, inner) = pop_tag(frame);
    if inner.len() < 14 {
        return;
    }
    let dst = MacAddr([inner[0], inner[1], inner[2], inner[3], inner[4], inner[5]]);
    for h in hosts {
        let same_vlan = match vid {
            Some(v) => h.tagged && h.vlan == v,
            None => !h.tagged,
        };
        if same_vlan && (dst == h.mac || dst.is_multicast()) {
            if let Err(e) = h.socket.send(&inner) {
                tracing::debug!(bond = name, error = %e, "deliver failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trip() {
        let f: Vec<u8> = (0u8..60).collect();
        let t = push_tag(&f, 10);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(pop_tag(&t), (Some(10), f.clone()));
        assert_eq!(pop_tag(&f), (None, f));
    }
}
