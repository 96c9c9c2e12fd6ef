//! Active/standby controller HA through etcd's election API.
//!
//! Every instance campaigns under one election name with a lease it keeps
//! alive. The leader's P4Runtime election id is the create revision of its
//! election key: etcd revisions only grow, and the next leader's key was
//! created after the previous leader's, so a newer leader always outranks an
//! older one on every switch. That is the fence: a deposed leader that still
//! reaches a switch is refused, because the switch already has a higher id.
//! The leader also stops writing on its own as soon as it cannot prove its
//! lease is alive (no keepalive answer within the TTL), and resigns on
//! graceful shutdown so a standby takes over at once.
//!
//! A leader that dies without resigning (kill -9, a crash, a dead host) is
//! noticed by the standbys through its liveness port (`liveness`): they
//! revoke its lease and the next in line leads within milliseconds instead
//! of a lease TTL — short enough for LACP partners in fast mode (3 s
//! timeout) never to miss the new leader's first LACPDU.

pub mod liveness;

use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{Client, LeaderKey, ResignOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct HaOptions {
    /// Election name (an etcd key prefix), e.g. `/p4fabric/v1/election`.
    pub name: String,
    /// This instance's id, stored as the election value.
    pub instance: String,
    /// Lease TTL: how long a dead leader holds leadership when its
    /// standbys cannot tell it died (no liveness connection).
    pub ttl: Duration,
    /// Where this instance serves its liveness port (port 0: any free
    /// port); `None`: not served, standbys wait for the lease TTL.
    pub liveness: Option<SocketAddr>,
}

impl HaOptions {
    pub fn new(prefix: &str, instance: impl Into<String>) -> Self {
        HaOptions {
            name: format!("{prefix}{}", crate::config::keys::ELECTION),
            instance: instance.into(),
            ttl: Duration::from_secs(3),
            liveness: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }
}

/// One term of leadership.
pub struct Term {
    /// The P4Runtime election id for this term.
    pub election_id: u128,
    leader: LeaderKey,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
    client: Client,
    lease: i64,
}

impl Term {
    /// Resolves when leadership is lost (lease expired or unprovable).
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Gives leadership up (graceful shutdown): a standby takes over now
    /// rather than after the TTL.
    pub async fn resign(mut self) {
        self.keeper.abort();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.client
                .resign(Some(ResignOptions::new().with_leader(self.leader.clone()))),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.lease_revoke(self.lease))
            .await;
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Campaigns until this instance leads; then returns the term. The lease
/// is kept alive from the start, so a waiting candidate keeps its place.
pub async fn campaign(
    client: &Client,
    opts: &HaOptions,
    value: &str,
) -> Result<Term, etcd_client::Error> {
    let mut client = client.clone();
    let ttl = opts.ttl.as_secs().max(1) as i64;
    let lease = client.lease_grant(ttl, None).await?.id();
    let (lost_tx, lost) = watch::channel(false);
    let keeper = tokio::spawn(keep_alive(client.clone(), lease, opts.ttl, lost_tx));
    let resp = client.campaign(opts.name.as_str(), value, lease).await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            keeper.abort();
            return Err(e);
        }
    };
    let leader = resp.leader().cloned().unwrap_or_default();
    let election_id = u128::from(leader.rev().max(0) as u64);
    tracing::info!(instance = %opts.instance, election_id, "elected leader");
    Ok(Term {
        election_id,
        leader,
        lost,
        keeper,
        client,
        lease,
    })
}

/// Keeps the lease alive; flags `lost` once a keepalive has not been
/// acknowledged for a whole TTL (or etcd says the lease is gone).
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let mut last_ok = Instant::now();
    let interval = ttl / 3;
    loop {
        let attempt = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
            loop {
                keeper.keep_alive().await?;
                match tokio::time::timeout(interval, stream.message()).await {
                    Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                        last_ok = Instant::now();
                    }
                    Ok(Ok(Some(_))) => return Ok::<bool, etcd_client::Error>(true), // expired
                    Ok(Ok(None)) | Err(_) => return Ok(false),
                    Ok(Err(e)) => return Err(e),
                }
                if last_ok.elapsed() >= ttl {
                    return Ok(true);
                }
                tokio::time::sleep(interval).await;
            }
        };
        let expired = tokio::time::timeout(ttl, attempt).await;
        if matches!(expired, Ok(Ok(true))) || last_ok.elapsed() >= ttl {
            tracing::warn!(lease, "leadership lease lost: stopping all writes");
            lost.send_replace(true);
            return;
        }
        tokio::time::sleep(interval / 2).await;
    }
}

/// Runs `lead` for every term this instance wins, until `shutdown`
/// resolves. `lead(election_id, stop)` must stop writing when `stop` is
/// set. Between terms the instance is a standby.
pub async fn run<F, Fut>(
    client: Client,
    opts: HaOptions,
    shutdown: impl std::future::Future<Output = ()>,
    mut lead: F,
) where
    F: FnMut(u128, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut backoff = crate::p4rt::backoff::Backoff::new(Duration::from_millis(200), opts.ttl);
    // Served for as long as this instance runs (dropped with it).
    let server = match opts.liveness {
        Some(bind) => match liveness::LivenessServer::start(bind, &opts.instance).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(%bind, error = %e, "cannot serve the liveness port: a standby will wait a lease TTL for this instance");
                None
            }
        },
        None => None,
    };
    let value = liveness::Candidate {
        instance: opts.instance.clone(),
        liveness: server.as_ref().map(|s| s.addr()),
    }
    .encode();
    loop {
        let term = tokio::select! {
            _ = &mut shutdown => return,
            t = campaign(&client, &opts, &value) => t,
            _ = depose_dead_leaders(client.clone(), &opts) => continue,
        };
        let term = match term {
            Ok(t) => {
                backoff.reset();
                t
            }
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed; standby");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let leading = lead(term.election_id, stop_rx);
        tokio::pin!(leading);
        let mut finished = false;
        let graceful = tokio::select! {
            _ = &mut shutdown => true,
            _ = term.lost() => false,
            _ = &mut leading => { finished = true; false }
        };
        stop_tx.send_replace(true);
        if !finished {
            leading.await;
        }
        if graceful {
            term.resign().await;
            return;
        }
        tracing::warn!("leadership ended; back to standby");
    }
}

/// While this instance waits in line: watches the leader's liveness port
/// and revokes the leader's lease when the leader is gone, so the next in
/// line is elected at once. Never returns.
async fn depose_dead_leaders(mut client: Client, opts: &HaOptions) {
    // The leader (its election key) last reported unwatchable, so the
    // warning is not repeated every second.
    let mut warned: Option<Vec<u8>> = None;
    loop {
        let leader = client.leader(opts.name.as_str()).await.ok().and_then(|r| {
            r.kv().map(|kv| {
                (
                    kv.key().to_vec(),
                    kv.lease(),
                    liveness::Candidate::decode(kv.value()),
                )
            })
        });
        let Some((key, lease, who)) = leader.filter(|(_, _, w)| w.instance != opts.instance) else {
            // No leader, or we are about to lead.
            tokio::time::sleep(liveness::HEARTBEAT).await;
            continue;
        };
        let why = match who.liveness {
            Some(addr) => match liveness::watch(addr, &who.instance).await {
                liveness::Watched::Lost(why) => {
                    // Only the leader we watched: it may have resigned and
                    // another taken over meanwhile.
                    let still = client
                        .leader(opts.name.as_str())
                        .await
                        .ok()
                        .and_then(|r| r.kv().map(|kv| kv.key() == key.as_slice()))
                        .unwrap_or(false);
                    if still {
                        tracing::warn!(leader = %who.instance, reason = %why, "leader lost: revoking its lease");
                        if let Err(e) = client.lease_revoke(lease).await {
                            tracing::debug!(error = %e, "lease revoke failed (already gone?)");
                        }
                    }
                    continue;
                }
                liveness::Watched::Unreachable(why) => why,
            },
            None => "it serves no liveness port".to_string(),
        };
        if warned.as_ref() != Some(&key) {
            tracing::warn!(leader = %who.instance, reason = %why, ttl = ?opts.ttl, "cannot watch the leader: if it dies, a standby takes over after its lease TTL");
            warned = Some(key);
        }
        tokio::time::sleep(liveness::SILENT_LIMIT).await;
    }
}
