//! Port status from bmv2 over Thrift. P4Runtime carries no port status,
//! and simple_switch_grpc keeps its port notifications to itself (they
//! drive PI's watch ports; it publishes nothing on nanomsg). Its Thrift
//! management service does answer `bm_dev_mgr_show_ports` (the CLI's
//! `show_ports`): every port with its interface's carrier, read live. This
//! module polls that every `POLL_INTERVAL` and reports changes —
//! level-triggered: after a (re)connect every port is reported once, so a
//! port that went down meanwhile is not missed.
//!
//! The Thrift client is hand-written for the one call: binary protocol,
//! buffered transport, service multiplexed as `"standard"` (what bmv2's
//! `bm_runtime` server expects).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::PortEvent;
use crate::config::PortNum;
use crate::p4rt::backoff::Backoff;

/// Why a poll session ended (the poller reconnects).
#[derive(Debug, thiserror::Error)]
pub enum ThriftError {
    #[error("connect {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("connection closed")]
    Closed,
    #[error("reply over {MAX_REPLY} bytes")]
    TooLarge,
    #[error("bad reply: {0}")]
    BadReply(String),
}

/// bmv2's own port monitor polls carrier every 200 ms; polling faster
/// would not see changes sooner.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const METHOD: &str = "bm_dev_mgr_show_ports";
/// Far above any real answer (a few dozen ports).
const MAX_REPLY: usize = 1 << 20;

/// Polls `switch`'s port status at `addr` (`host:port`) until the
/// receiver goes away or the task is aborted, reconnecting with backoff
/// (the switch may be starting or restarting).
pub fn spawn(switch: String, addr: String, tx: mpsc::Sender<PortEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let mut logged = false;
        while !tx.is_closed() {
            if let Err(e) = poll_session(&switch, &addr, &tx, &mut backoff, &mut logged).await {
                // A switch starting or restarting; the agent reports those.
                tracing::debug!(switch, error = %e, "port status: not connected");
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    })
}

async fn poll_session(
    switch: &str,
    addr: &str,
    tx: &mpsc::Sender<PortEvent>,
    backoff: &mut Backoff,
    logged: &mut bool,
) -> Result<(), ThriftError> {
    let mut conn = tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ThriftError::Timeout("connect"))?
        .map_err(|source| ThriftError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    conn.set_nodelay(true)?;
    // Nothing known after a (re)connect: every port is reported once.
    let mut known: BTreeMap<PortNum, bool> = BTreeMap::new();
    let mut seq = 0i32;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        seq = seq.wrapping_add(1);
        let ports = tokio::time::timeout(CALL_TIMEOUT, show_ports(&mut conn, seq))
            .await
            .map_err(|_| ThriftError::Timeout("show_ports"))??;
        backoff.reset();
        if !*logged {
            tracing::info!(switch, ports = ports.len(), "reading port status");
            *logged = true;
        }
        for (port, up) in ports {
            if known.insert(port, up) == Some(up) {
                continue;
            }
            let ev = PortEvent {
                switch: switch.to_string(),
                port,
                up,
            };
            if tx.send(ev).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// One `bm_dev_mgr_show_ports` call: (port, carrier up) per port.
async fn show_ports(conn: &mut TcpStream, seq: i32) -> Result<Vec<(PortNum, bool)>, ThriftError> {
    conn.write_all(&call_message(seq)).await?;
    let mut buf = Vec::with_capacity(512);
    loop {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(ThriftError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        match decode_reply(&buf, seq) {
            Ok(ports) => return Ok(ports),
            Err(Decode::Incomplete) if buf.len() < MAX_REPLY => continue,
            Err(Decode::Incomplete) => return Err(ThriftError::TooLarge),
            Err(Decode::Bad(e)) => return Err(ThriftError::BadReply(e)),
        }
    }
}

// Thrift binary protocol constants.
const VERSION_1: u32 = 0x8001_0000;
const CALL: u32 = 1;
const REPLY: u32 = 2;
const EXCEPTION: u32 = 3;
const T_STOP: u8 = 0;
const T_BOOL: u8 = 2;
const T_BYTE: u8 = 3;
const T_DOUBLE: u8 = 4;
const T_I16: u8 = 6;
const T_I32: u8 = 8;
const T_I64: u8 = 10;
const T_STRING: u8 = 11;
const T_STRUCT: u8 = 12;
const T_MAP: u8 = 13;
const T_SET: u8 = 14;
const T_LIST: u8 = 15;

fn call_message(seq: i32) -> Vec<u8> {
    let name = format!("standard:{METHOD}");
    let mut m = Vec::with_capacity(16 + name.len());
    m.extend_from_slice(&(VERSION_1 | CALL).to_be_bytes());
    m.extend_from_slice(&(name.len() as i32).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.push(T_STOP); // the call has no arguments
    m
}

#[derive(Debug)]
enum Decode {
    /// More bytes needed.
    Incomplete,
    Bad(String),
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Decode> {
        let end = self.at.checked_add(n).ok_or(Decode::Incomplete)?;
        let s = self.b.get(self.at..end).ok_or(Decode::Incomplete)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Decode> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, Decode> {
        let s = self.take(2)?;
        Ok(i16::from_be_bytes([s[0], s[1]]))
    }
    fn i32(&mut self) -> Result<i32, Decode> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn len(&mut self) -> Result<usize, Decode> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| Decode::Bad(format!("negative length {n}")))
    }
    fn string(&mut self) -> Result<&'a [u8], Decode> {
        let n = self.len()?;
        self.take(n)
    }
    /// Skips a value of type `t` (fields this client does not use).
    fn skip(&mut self, t: u8, depth: u32) -> Result<(), Decode> {
        if depth > 32 {
            return Err(Decode::Bad("nesting too deep".into()));
        }
        match t {
            T_BOOL | T_BYTE => self.take(1).map(drop),
            T_I16 => self.take(2).map(drop),
            T_I32 => self.take(4).map(drop),
            T_DOUBLE | T_I64 => self.take(8).map(drop),
            T_STRING => self.string().map(drop),
            T_STRUCT => loop {
                let ft = self.u8()?;
                if ft == T_STOP {
                    return Ok(());
                }
                self.i16()?;
                self.skip(ft, depth + 1)?;
            },
            T_MAP => {
                let (kt, vt) = (self.u8()?, self.u8()?);
                for _ in 0..self.len()? {
                    self.skip(kt, depth + 1)?;
                    self.skip(vt, depth + 1)?;
                }
                Ok(())
            }
            T_SET | T_LIST => {
                let et = self.u8()?;
                for _ in 0..self.len()? {
                    self.skip(et, depth + 1)?;
                }
                Ok(())
            }
            _ => Err(Decode::Bad(format!("unknown type {t}"))),
        }
    }
}

/// The reply to call `seq`: `list<DevMgrPortInfo>` (1: port_num i32,
/// 2: iface_name, 3: is_up bool, 4: extra map) as field 0 of the result.
fn decode_reply(b: &[u8], seq: i32) -> Result<Vec<(PortNum, bool)>, Decode> {
    let mut r = Reader { b, at: 0 };
    let head = r.i32()? as u32;
    if head & 0xffff_0000 != VERSION_1 {
        return Err(Decode::Bad(format!(
            "not a binary-protocol message ({head:#x})"
        )));
    }
    let kind = head & 0xff;
    let name = r.string()?;
    let got_seq = r.i32()?;
    if kind == EXCEPTION {
        // TApplicationException: 1: message, 2: type.
        let mut msg = String::new();
        loop {
            let ft = r.u8()?;
            if ft == T_STOP {
                break;
            }
            let id = r.i16()?;
            if id == 1 && ft == T_STRING {
                msg = String::from_utf8_lossy(r.string()?).into_owned();
            } else {
                r.skip(ft, 0)?;
            }
        }
        return Err(Decode::Bad(format!("the switch raised: {msg}")));
    }
    if kind != REPLY || got_seq != seq || !name.ends_with(METHOD.as_bytes()) {
        return Err(Decode::Bad(format!(
            "unexpected message {:?} (type {kind}, seq {got_seq}, expected {seq})",
            String::from_utf8_lossy(name)
        )));
    }
    let mut ports = None;
    loop {
        let ft = r.u8()?;
        if ft == T_STOP {
            break;
        }
        let id = r.i16()?;
        match (id, ft) {
            (0, T_LIST) => {
                let et = r.u8()?;
                let n = r.len()?;
                if et != T_STRUCT {
                    return Err(Decode::Bad(format!("list of type {et}")));
                }
                let mut v = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    v.push(port_info(&mut r)?);
                }
                ports = Some(v);
            }
            (1, T_STRUCT) => return Err(Decode::Bad("InvalidDevMgrOperation".into())),
            _ => r.skip(ft, 0)?,
        }
    }
    let ports = ports.ok_or_else(|| Decode::Bad("no result".into()))?;
    Ok(ports.into_iter().flatten().collect())
}

/// One `DevMgrPortInfo`; `None` for a port number outside `PortNum`.
fn port_info(r: &mut Reader) -> Result<Option<(PortNum, bool)>, Decode> {
    let (mut port, mut up) = (None, None);
    loop {
        let ft = r.u8()?;
        if ft == T_STOP {
            break;
        }
        match (r.i16()?, ft) {
            (1, T_I32) => port = Some(r.i32()?),
            (3, T_BOOL) => up = Some(r.u8()? != 0),
            (_, t) => r.skip(t, 1)?,
        }
    }
    match (port, up) {
        (Some(p), Some(u)) => Ok(PortNum::try_from(p).ok().map(|p| (p, u))),
        _ => Err(Decode::Bad("port info without port_num / is_up".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as bmv2's Thrift server writes it (fields in id order).
    fn reply(seq: i32, ports: &[(i32, &str, bool)]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(VERSION_1 | REPLY).to_be_bytes());
        m.extend_from_slice(&(METHOD.len() as i32).to_be_bytes());
        m.extend_from_slice(METHOD.as_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.push(T_LIST);
        m.extend_from_slice(&0i16.to_be_bytes());
        m.push(T_STRUCT);
        m.extend_from_slice(&(ports.len() as i32).to_be_bytes());
        for (port, iface, up) in ports {
            m.push(T_I32);
            m.extend_from_slice(&1i16.to_be_bytes());
            m.extend_from_slice(&port.to_be_bytes());
            m.push(T_STRING);
            m.extend_from_slice(&2i16.to_be_bytes());
            m.extend_from_slice(&(iface.len() as i32).to_be_bytes());
            m.extend_from_slice(iface.as_bytes());
            m.push(T_BOOL);
            m.extend_from_slice(&3i16.to_be_bytes());
            m.push(u8::from(*up));
            m.push(T_MAP);
            m.extend_from_slice(&4i16.to_be_bytes());
            m.extend_from_slice(&[T_STRING, T_STRING]);
            m.extend_from_slice(&1i32.to_be_bytes());
            for s in ["k", "v"] {
                m.extend_from_slice(&(s.len() as i32).to_be_bytes());
                m.extend_from_slice(s.as_bytes());
            }
            m.push(T_STOP);
        }
        m.push(T_STOP);
        m
    }

    #[test]
    fn call_is_a_multiplexed_binary_protocol_call() {
        let m = call_message(7);
        assert_eq!(&m[..4], &[0x80, 0x01, 0x00, 0x01]);
        assert_eq!(&m[8..8 + 30], b"standard:bm_dev_mgr_show_ports");
        assert_eq!(&m[38..], &[0, 0, 0, 7, 0]);
    }

    #[test]
    fn decodes_replies_whole_or_not_yet() {
        let r = reply(
            3,
            &[(3, "s1p3", true), (4, "s1p4", false), (-1, "odd", true)],
        );
        assert_eq!(
            decode_reply(&r, 3).expect("decode"),
            vec![(3, true), (4, false)]
        );
        for cut in [0, 5, r.len() / 2, r.len() - 1] {
            assert!(matches!(
                decode_reply(&r[..cut], 3),
                Err(Decode::Incomplete)
            ));
        }
        assert!(matches!(decode_reply(&r, 4), Err(Decode::Bad(_))));
        assert!(matches!(
            decode_reply(b"HTTP/1.1 400 x", 1),
            Err(Decode::Bad(_))
        ));
    }

    /// A Thrift server answering show_ports from a script: every port is
    /// reported after connecting, then only changes, and after the server
    /// restarts every port again.
    #[tokio::test]
    async fn polls_reports_changes_and_reconnects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = mpsc::channel(16);
        let task = spawn("leaf1".into(), addr.to_string(), tx);
        let states: [&[(i32, &str, bool)]; 3] = [
            &[(3, "a", true), (4, "b", true)],
            &[(3, "a", true), (4, "b", false)],
            &[(3, "a", true), (4, "b", false)],
        ];
        let expect = |port, up| PortEvent {
            switch: "leaf1".into(),
            port,
            up,
        };
        for round in 0..2 {
            let (mut s, _) = listener.accept().await.expect("accept");
            for ports in states {
                let mut call = vec![0u8; call_message(0).len()];
                s.read_exact(&mut call).await.expect("call");
                let seq = i32::from_be_bytes([call[38], call[39], call[40], call[41]]);
                s.write_all(&reply(seq, ports)).await.expect("reply");
            }
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(
                    tokio::time::timeout(Duration::from_secs(5), rx.recv())
                        .await
                        .expect("in time")
                        .expect("event"),
                );
            }
            assert_eq!(
                got,
                vec![expect(3, true), expect(4, true), expect(4, false)],
                "round {round}"
            );
            drop(s);
        }
        task.abort();
    }
}
