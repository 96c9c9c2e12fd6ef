//! Leader liveness: how a standby learns at once that the leader died.
//!
//! The etcd lease alone lets a dead leader hold leadership for its whole
//! TTL (3 s by default), and LACP partners in fast mode give up after 3 s
//! without a LACPDU — which only the leader sends. So every instance serves
//! a liveness port (its address is in its election value), and each standby
//! holds a TCP connection to the leader's, on which the leader writes a
//! byte every `HEARTBEAT`. When that connection breaks (a killed process:
//! the kernel resets it at once) or falls silent for `SILENT_LIMIT` (a hung
//! process, a dead host), the standby revokes the leader's lease, and the
//! next candidate in line is elected within milliseconds.
//!
//! A standby that never managed to connect (a wrong or unreachable
//! address) never revokes: it falls back to the lease TTL and says so. A
//! falsely revoked leader is safe: it sees its lease gone and stops writing,
//! and its P4Runtime election id is outranked by its successor's anyway.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How often the leader writes to each standby's connection.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// A connection without a byte for this long counts as broken (a hung
/// leader or a dead host, where no reset arrives).
pub const SILENT_LIMIT: Duration = Duration::from_millis(1000);

/// What an instance publishes as its election value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub instance: String,
    /// Where its liveness port listens (absent: not served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<SocketAddr>,
}

impl Candidate {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.instance.clone())
    }

    /// An election value: ours (JSON), or a plain instance id as older
    /// versions wrote it (no liveness port).
    pub fn decode(value: &[u8]) -> Candidate {
        serde_json::from_slice(value).unwrap_or_else(|_| Candidate {
            instance: String::from_utf8_lossy(value).into_owned(),
            liveness: None,
        })
    }
}

/// The liveness port of this instance; stops serving when dropped.
pub struct LivenessServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl LivenessServer {
    /// Listens on `bind` (port 0: any free port) for `instance`.
    pub async fn start(bind: SocketAddr, instance: &str) -> std::io::Result<LivenessServer> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, greeting(instance)));
        Ok(LivenessServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LivenessServer {
    fn drop(&mut self) {
        // The connections live in the task's JoinSet: they close with it.
        self.task.abort();
    }
}

/// The first line on a liveness connection: which instance this is, so a
/// standby that reached some other program (a wrong address) never takes
/// its silence for a dead leader.
fn greeting(instance: &str) -> Vec<u8> {
    format!("p4fabric-liveness {instance}\n").into_bytes()
}

async fn serve(listener: TcpListener, hello: Vec<u8>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(heartbeats(stream, hello.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "liveness accept failed");
                    tokio::time::sleep(HEARTBEAT).await;
                }
            },
            Some(_) = conns.join_next() => {}
        }
    }
}

async fn heartbeats(mut stream: TcpStream, hello: Vec<u8>) {
    let _ = stream.set_nodelay(true);
    if stream.write_all(&hello).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        if stream.write_all(b".").await.is_err() {
            return;
        }
    }
}

/// How watching a leader's liveness port ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// The connection was up, then broke or fell silent: the leader is gone.
    Lost(String),
    /// No connection could be made: nothing is known (use the lease).
    Unreachable(String),
}

/// Connects to the liveness port of leader `instance` and returns when it
/// is lost (or could not be reached, or is not that instance's).
pub async fn watch(addr: SocketAddr, instance: &str) -> Watched {
    let mut stream = match tokio::time::timeout(SILENT_LIMIT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Watched::Unreachable(format!("cannot connect to {addr}: {e}")),
        Err(_) => return Watched::Unreachable(format!("connecting to {addr} timed out")),
    };
    let want = greeting(instance);
    let mut hello = vec![0u8; want.len()];
    match tokio::time::timeout(SILENT_LIMIT, stream.read_exact(&mut hello)).await {
        Ok(Ok(_)) if hello == want => {}
        _ => return Watched::Unreachable(format!("{addr} is not the liveness port of {instance}")),
    }
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(SILENT_LIMIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return Watched::Lost("connection closed".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Watched::Lost(format!("connection broke: {e}")),
            Err(_) => return Watched::Lost(format!("silent for {SILENT_LIMIT:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_values_old_and_new() {
        let c = Candidate {
            instance: "ctl-a".into(),
            liveness: Some("127.0.0.1:4100".parse().unwrap()),
        };
        assert_eq!(Candidate::decode(c.encode().as_bytes()), c);
        // A plain instance id, as written before liveness ports existed.
        let old = Candidate::decode(b"host-1234");
        assert_eq!(old.instance, "host-1234");
        assert_eq!(old.liveness, None);
    }

    #[tokio::test]
    async fn a_dropped_server_is_seen_at_once_and_silence_after_the_limit() {
        let server = LivenessServer::start("127.0.0.1:0".parse().unwrap(), "ctl-a")
            .await
            .unwrap();
        let addr = server.addr();
        // Another instance's name: not the leader we look for.
        assert!(matches!(
            watch(addr, "ctl-b").await,
            Watched::Unreachable(_)
        ));
        let watcher = tokio::spawn(async move { watch(addr, "ctl-a").await });
        // Alive: heartbeats keep the watch going.
        tokio::time::sleep(SILENT_LIMIT + HEARTBEAT).await;
        assert!(!watcher.is_finished());
        let dropped = std::time::Instant::now();
        drop(server);
        let r = watcher.await.unwrap();
        assert!(matches!(r, Watched::Lost(_)), "{r:?}");
        assert!(
            dropped.elapsed() < SILENT_LIMIT / 2,
            "{:?}",
            dropped.elapsed()
        );
        // Nothing listens there any more: unreachable, not lost.
        assert!(matches!(
            watch(addr, "ctl-a").await,
            Watched::Unreachable(_)
        ));

        // A leader that greets, then hangs, is lost after the silence
        // limit; a program that never greets is merely unreachable.
        for greets in [true, false] {
            let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mute_addr = mute.local_addr().unwrap();
            let hold = tokio::spawn(async move {
                let (mut s, _) = mute.accept().await.unwrap();
                if greets {
                    s.write_all(&greeting("ctl-a")).await.unwrap();
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(s);
            });
            let started = std::time::Instant::now();
            let r = watch(mute_addr, "ctl-a").await;
            if greets {
                assert!(matches!(r, Watched::Lost(_)), "{r:?}");
                assert!(started.elapsed() >= SILENT_LIMIT);
            } else {
                assert!(matches!(r, Watched::Unreachable(_)), "{r:?}");
            }
            hold.abort();
        }
    }
}
