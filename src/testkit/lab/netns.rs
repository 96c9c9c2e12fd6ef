//! Network namespaces, veth pairs and raw packet sockets for tests.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Runs a command, failing with its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace the test created; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip netns exec NAME CMD ARGS...`
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<()> {
        let mut full = vec!["netns", "exec", self.name.as_str(), cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A raw AF_PACKET socket bound to `ifname` inside this namespace.
    pub fn packet_socket(&self, ifname: &str) -> Result<PortSocket> {
        let ns_path = format!("/var/run/netns/{}", self.name);
        let ifname = ifname.to_string();
        // setns affects only the calling thread: do it in a thread of its
        // own; the socket keeps its namespace after the thread ends.
        std::thread::spawn(move || -> Result<PortSocket> {
            let ns = std::fs::File::open(&ns_path).with_context(|| format!("open {ns_path}"))?;
            // SAFETY: plain syscalls on descriptors we own.
            unsafe {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    bail!("setns {ns_path}: {}", std::io::Error::last_os_error());
                }
            }
            PortSocket::open(&ifname)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("socket thread panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates a veth pair: `sw` in the root namespace, `far` inside `ns`, both
/// up, IPv6 off and checksum offloads off on both (docs/lab.md: a quiet
/// kernel, and no bad checksums through bmv2).
pub fn create_veth(sw: &str, far: &str, ns: &Netns) -> Result<()> {
    run(
        "ip",
        &[
            "link", "add", sw, "type", "veth", "peer", "name", far, "netns", &ns.name,
        ],
    )?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{sw}/disable_ipv6"), "1");
    let _ = ns.exec(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{far}.disable_ipv6=1")],
    );
    run("ip", &["link", "set", sw, "mtu", "9000", "up"])?;
    ns.ip(&["link", "set", far, "mtu", "9000", "up"])?;
    let _ = run("ethtool", &offload_args(sw));
    offloads_off(ns, far);
    Ok(())
}

fn offload_args(ifname: &str) -> Vec<&str> {
    vec![
        "-K", ifname, "rx", "off", "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro",
        "off",
    ]
}

/// Checksum and segmentation offloads off on `ifname` inside `ns`
/// (docs/lab.md: otherwise TCP through bmv2 fails on bad checksums). Best
/// effort: without ethtool, ping still works.
pub fn offloads_off(ns: &Netns, ifname: &str) {
    let _ = ns.exec("ethtool", &offload_args(ifname));
}

/// A raw socket seeing every frame of one interface.
pub struct PortSocket {
    fd: OwnedFd,
    pub ifname: String,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_AUXDATA: libc::c_int = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// What one recvmsg got: (length, or None if nothing was ready; sent by
/// us; the 802.1Q (TPID, TCI) the kernel took out of the frame).
type RawRecv = (Option<usize>, bool, Option<(u16, u16)>);

/// `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct AuxData {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

impl AsRawFd for PortSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl PortSocket {
    /// A socket on `ifname` in the calling thread's namespace.
    pub fn open(ifname: &str) -> Result<PortSocket> {
        let c = CString::new(ifname)?;
        // SAFETY: plain syscalls; every result is checked.
        unsafe {
            let ifindex = libc::if_nametoindex(c.as_ptr());
            if ifindex == 0 {
                bail!("no interface {ifname}");
            }
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            );
            if fd < 0 {
                bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = ETH_P_ALL.to_be();
            sll.sll_ifindex = ifindex as i32;
            let r = libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if r != 0 {
                bail!("bind to {ifname}: {}", std::io::Error::last_os_error());
            }
            // The kernel moves a received 802.1Q tag out of the frame into
            // metadata; ask for it so `recv` can put it back.
            let on: libc::c_int = 1;
            let r = libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_AUXDATA,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
            if r != 0 {
                bail!(
                    "PACKET_AUXDATA on {ifname}: {}",
                    std::io::Error::last_os_error()
                );
            }
            Ok(PortSocket {
                fd,
                ifname: ifname.to_string(),
            })
        }
    }

    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: the buffer outlives the call.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 || n as usize != frame.len() {
            bail!(
                "send on {}: {}",
                self.ifname,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// The next frame that arrives (not one we sent), within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 10_000];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
            if r < 0 {
                bail!("poll: {}", std::io::Error::last_os_error());
            }
            if r == 0 {
                return Ok(None);
            }
            let (n, outgoing, tag) = self.recv_raw(&mut buf)?;
            let Some(n) = n else { continue };
            if outgoing {
                continue;
            }
            let mut frame = buf[..n].to_vec();
            if let Some((tpid, tci)) = tag {
                if frame.len() >= 12 {
                    let mut t = tpid.to_be_bytes().to_vec();
                    t.extend_from_slice(&tci.to_be_bytes());
                    frame.splice(12..12, t);
                }
            }
            return Ok(Some(frame));
        }
    }

    /// One recvmsg: (length or None if nothing was ready, sent by us,
    /// 802.1Q tag the kernel took out of the frame).
    fn recv_raw(&self, buf: &mut [u8]) -> Result<RawRecv> {
        // SAFETY: every pointer refers to a live, correctly sized buffer.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            let mut cbuf = [0u64; 16];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = &mut sll as *mut libc::sockaddr_ll as *mut libc::c_void;
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
            let n = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok((None, false, None));
                }
                bail!("recv on {}: {e}", self.ifname);
            }
            let mut tag = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                    let aux = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const AuxData);
                    if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                            aux.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                        tag = Some((tpid, aux.tp_vlan_tci));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            let outgoing = sll.sll_pkttype == libc::PACKET_OUTGOING;
            Ok((Some(n as usize), outgoing, tag))
        }
    }

    /// Discards whatever is queued.
    pub fn drain(&self) -> Result<()> {
        while self.recv(Duration::from_millis(0))?.is_some() {}
        Ok(())
    }

    /// Fails if any frame arrives within `dur`.
    pub fn expect_silence(&self, dur: Duration) -> Result<()> {
        if let Some(f) = self.recv(dur)? {
            bail!(
                "unexpected frame on {}: {}",
                self.ifname,
                super::packet::hex(&f)
            );
        }
        Ok(())
    }
}
