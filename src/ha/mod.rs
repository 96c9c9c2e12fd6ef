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
    /// Lease TTL: how long a dead leader holds leadership.
    pub ttl: Duration,
}

impl HaOptions {
    pub fn new(prefix: &str, instance: impl Into<String>) -> Self {
        HaOptions {
            name: format!("{prefix}{}", crate::config::keys::ELECTION),
            instance: instance.into(),
            ttl: Duration::from_secs(3),
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
pub async fn campaign(client: &Client, opts: &HaOptions) -> Result<Term, etcd_client::Error> {
    let mut client = client.clone();
    let ttl = opts.ttl.as_secs().max(1) as i64;
    let lease = client.lease_grant(ttl, None).await?.id();
    let (lost_tx, lost) = watch::channel(false);
    let keeper = tokio::spawn(keep_alive(client.clone(), lease, opts.ttl, lost_tx));
    let resp = client
        .campaign(opts.name.as_str(), opts.instance.as_str(), lease)
        .await;
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
    loop {
        let term = tokio::select! {
            _ = &mut shutdown => return,
            t = campaign(&client, &opts) => t,
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
