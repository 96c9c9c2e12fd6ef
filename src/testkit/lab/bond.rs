//! A user-space bond and 802.1Q tagger for lab hosts.
//!
//! The lab kernel has no bonding and no 802.1Q drivers (docs/lab.md), so a
//! host that sits on a LAG, or on a VLAN its port carries tagged, is wired
//! through this forwarder: the host's `eth0` is one end of a veth pair whose
//! other end (a "host leg") and the switch-port far ends (the "uplinks")
//! are raw sockets in the lab's wires namespace. Frames from a host get its
//! VLAN tag pushed (unless that VLAN is untagged on the attachment) and go
//! out of one uplink chosen by a flow hash. Frames from any uplink are
//! matched to hosts by VLAN and destination MAC, popped and delivered.
//!
//! Static mode uses every uplink. LACP mode runs an 802.1AX partner
//! (`lacp_partner`) on the uplinks: only members that are collecting and
//! distributing carry traffic either way, LACPDUs are never delivered to
//! hosts, and a test can mute a member's LACP (`set_lacp_muted`) to make
//! the fabric time it out.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use super::lacp_partner::{LacpPartner, MemberReport};
use super::PortSocket;
use crate::config::VlanId;
use crate::net::MacAddr;
use crate::protocols::frames::ETH_SLOW;

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
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

/// What the forwarder thread and the test share.
struct Shared {
    lacp: Option<LacpPartner>,
    /// Frames from hosts sent out of each uplink.
    sent: Vec<u64>,
    /// Frames from each uplink delivered to a host.
    delivered: Vec<u64>,
}

impl UserBond {
    /// Starts the forwarder; with `lacp`, it speaks LACP on the uplinks
    /// (in uplink order) and uses only members in sync.
    pub fn start(
        name: &str,
        uplinks: Vec<PortSocket>,
        hosts: Vec<HostLeg>,
        lacp: Option<LacpPartner>,
    ) -> UserBond {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared {
            lacp,
            sent: vec![0; uplinks.len()],
            delivered: vec![0; uplinks.len()],
        }));
        let flag = stop.clone();
        let state = shared.clone();
        let tname = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("bond-{name}"))
            .spawn(move || {
                let b = Bond {
                    name: &tname,
                    uplinks: &uplinks,
                    hosts: &hosts,
                    shared: &state,
                };
                b.forward(&flag)
            })
            .ok();
        UserBond {
            name: name.to_string(),
            stop,
            shared,
            thread,
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Per uplink: LACP state (`None` in static mode).
    pub fn lacp(&self) -> Option<Vec<MemberReport>> {
        self.shared().lacp.as_ref().map(|l| l.report())
    }

    /// Stops (or resumes) LACPDUs on uplink `i`; it keeps listening.
    pub fn set_lacp_muted(&self, i: usize, muted: bool) {
        if let Some(l) = self.shared().lacp.as_mut() {
            l.set_muted(i, muted, Instant::now());
        }
    }

    /// Host frames sent out of each uplink so far.
    pub fn sent(&self) -> Vec<u64> {
        self.shared().sent.clone()
    }

    /// Frames from each uplink delivered to hosts so far.
    pub fn delivered(&self) -> Vec<u64> {
        self.shared().delivered.clone()
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

struct Bond<'a> {
    name: &'a str,
    uplinks: &'a [PortSocket],
    hosts: &'a [HostLeg],
    shared: &'a Mutex<Shared>,
}

impl Bond<'_> {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forward(&self, stop: &AtomicBool) {
        let all: Vec<&PortSocket> = self
            .uplinks
            .iter()
            .chain(self.hosts.iter().map(|h| &h.socket))
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
            self.lacp_tick();
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
                            tracing::debug!(bond = self.name, error = %e, "receive failed");
                            break;
                        }
                    };
                    if i < self.uplinks.len() {
                        self.on_uplink_frame(i, &frame);
                    } else {
                        self.on_host_frame(&self.hosts[i - self.uplinks.len()], &frame);
                    }
                }
            }
        }
    }

    fn send_lacp(&self, frames: Vec<(usize, Vec<u8>)>) {
        for (i, f) in frames {
            if let Some(u) = self.uplinks.get(i) {
                if let Err(e) = u.send(&f) {
                    tracing::debug!(bond = self.name, error = %e, "LACPDU not sent");
                }
            }
        }
    }

    fn lacp_tick(&self) {
        let frames = match self.lock().lacp.as_mut() {
            Some(l) => l.on_tick(Instant::now()),
            None => return,
        };
        self.send_lacp(frames);
    }

    /// The uplinks that may carry traffic: all (static) or those in sync.
    fn usable(&self) -> Vec<usize> {
        let g = self.lock();
        (0..self.uplinks.len())
            .filter(|i| g.lacp.as_ref().is_none_or(|l| l.distributing(*i)))
            .collect()
    }

    fn on_host_frame(&self, host: &HostLeg, frame: &[u8]) {
        if frame.len() < 14 {
            return;
        }
        let usable = self.usable();
        if usable.is_empty() {
            return;
        }
        let out = if host.tagged {
            push_tag(frame, host.vlan)
        } else {
            frame.to_vec()
        };
        let first = (flow_hash(frame) % usable.len() as u64) as usize;
        // A leg whose link is down: try the others (what a bond does when
        // it sees carrier loss).
        for k in 0..usable.len() {
            let leg = usable[(first + k) % usable.len()];
            match self.uplinks[leg].send(&out) {
                Ok(()) => {
                    if let Some(n) = self.lock().sent.get_mut(leg) {
                        *n += 1;
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(bond = self.name, error = %e, "send failed, trying other legs")
                }
            }
        }
    }

    fn on_uplink_frame(&self, i: usize, frame: &[u8]) {
        let (vid, inner) = pop_tag(frame);
        if inner.len() < 14 {
            return;
        }
        if vid.is_none() && u16::from_be_bytes([inner[12], inner[13]]) == ETH_SLOW {
            let frames = match self.lock().lacp.as_mut() {
                Some(l) => l.on_slow_frame(i, &inner[14..], Instant::now()),
                None => Vec::new(),
            };
            self.send_lacp(frames);
            return;
        }
        {
            let g = self.lock();
            // 802.1AX: a port that is not collecting discards what it gets.
            if g.lacp.as_ref().is_some_and(|l| !l.distributing(i)) {
                return;
            }
        }
        let dst = MacAddr([inner[0], inner[1], inner[2], inner[3], inner[4], inner[5]]);
        for h in self.hosts {
            let same_vlan = match vid {
                Some(v) => h.tagged && h.vlan == v,
                None => !h.tagged,
            };
            if same_vlan && (dst == h.mac || dst.is_multicast()) {
                match h.socket.send(&inner) {
                    Ok(()) => {
                        if let Some(n) = self.lock().delivered.get_mut(i) {
                            *n += 1;
                        }
                    }
                    Err(e) => tracing::debug!(bond = self.name, error = %e, "deliver failed"),
                }
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
