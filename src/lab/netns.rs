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
/// up, IPv6 off and checksum offloads off on both (LAB-NOTES: a quiet
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
    if Command::new("ethtool").arg("--version").output().is_ok() {
        let off = [
            "rx", "off", "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
        ];
        let mut a = vec!["-K", sw];
        a.extend_from_slice(&off);
        let _ = run("ethtool", &a);
        let mut b = vec!["ethtool", "-K", far];
        b.extend_from_slice(&off);
        let _ = ns.exec(b[0], &b[1..]);
    }
    Ok(())
}

/// A raw socket seeing every frame of one interface.
pub struct PortSocket {
    fd: OwnedFd,
    pub ifname: String,
}

const ETH_P_ALL: u16 = 0x0003;

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
            // SAFETY: buffers sized as passed.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    continue;
                }
                bail!("recv on {}: {e}", self.ifname);
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(buf[..n as usize].to_vec()));
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
