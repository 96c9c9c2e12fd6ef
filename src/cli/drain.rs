//! `p4fabric drain <switch> [--force] [--reason ..] [--wait SECS]` and
//! `p4fabric undrain <switch> [--wait SECS]`: write or remove the
//! `maintenance/<switch>` key; the controller does the rest
//! (`controller::maintenance`) and reports in `status/maintenance/`.
//!
//! `drain` checks first what the controller would refuse (the last spine
//! in service; hosts attached to a leaf alone, configured or learned) and
//! writes nothing then unless `--force`, naming the hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::EtcdArgs;
use crate::config::etcd::EtcdStore;
use crate::config::keys::{ConfigKey, STATUS_DIR};
use crate::config::status::{paths, MaintenanceState, MaintenanceStatus};
use crate::config::{Fabric, Maintenance};
use crate::controller::{maintenance, observations};

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The switch to take out of service.
    pub switch: String,
    /// Drain even what cannot move (the last spine; a leaf's single-homed
    /// hosts lose service).
    #[arg(long)]
    pub force: bool,
    /// Why (shown in status).
    #[arg(long)]
    pub reason: Option<String>,
    /// Wait up to this many seconds for the controller to report the
    /// switch drained (or refused).
    #[arg(long)]
    pub wait: Option<u64>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, clap::Args)]
pub struct UndrainArgs {
    /// The switch to bring back.
    pub switch: String,
    /// Wait up to this many seconds for the controller to report the
    /// switch in service.
    #[arg(long)]
    pub wait: Option<u64>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// The configuration in force and the status, read at one revision.
struct View {
    revision: i64,
    fabric: Fabric,
    status: BTreeMap<String, serde_json::Value>,
}

async fn read(store: &EtcdStore) -> anyhow::Result<View> {
    let snap = store.get_dir("").await?;
    let mut status = BTreeMap::new();
    let mut config = BTreeMap::new();
    for (k, v) in snap.kvs {
        match k.strip_prefix(STATUS_DIR) {
            Some(rel) => {
                if let Ok(v) = serde_json::from_slice(&v) {
                    status.insert(rel.to_string(), v);
                }
            }
            None => {
                config.insert(k, v);
            }
        }
    }
    let (fabric, _) = crate::config::ConfigState::new().reset(config);
    Ok(View {
        revision: snap.revision,
        fabric,
        status,
    })
}

/// The switches already out of service or on their way (so a second
/// spine drain sees the first): requested and not refused.
fn routed(view: &View, except: &str) -> BTreeSet<String> {
    view.fabric
        .maintenance
        .iter()
        .filter(|(n, m)| m.drain && n.as_str() != except)
        .filter(|(n, _)| {
            maintenance_status(view, n).is_none_or(|s| s.state != MaintenanceState::Refused)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

fn maintenance_status(view: &View, switch: &str) -> Option<MaintenanceStatus> {
    view.status
        .get(&paths::maintenance(switch))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

pub async fn drain(args: &DrainArgs) -> anyhow::Result<()> {
    let store = args.etcd.connect().await?;
    let view = read(&store).await?;
    let Some(sw) = view.fabric.switches.get(&args.switch) else {
        anyhow::bail!("unknown switch {}", args.switch);
    };
    let learned = observations::learned_hosts(&view.status)
        .into_iter()
        .map(|h| (h.key(), h))
        .collect();
    let refusal = maintenance::refusal(
        &view.fabric,
        &learned,
        &args.switch,
        sw.role,
        &routed(&view, &args.switch),
    );
    match (&refusal, args.force) {
        (Some(why), false) => anyhow::bail!("not drained: {why}; nothing written"),
        (Some(why), true) => eprintln!("forced: {why}"),
        (None, _) => {}
    }
    let value = Maintenance {
        drain: true,
        force: args.force,
        reason: args.reason.clone(),
    };
    let key = ConfigKey::Maintenance(args.switch.clone()).to_string();
    store
        .commit_if_unchanged_since(
            vec![(key.clone(), serde_json::to_vec(&value)?)],
            vec![],
            view.revision,
        )
        .await?;
    println!("+ {key}");
    if let Some(secs) = args.wait {
        let s = wait_for(&store, &args.switch, Duration::from_secs(secs), |s| {
            s.is_some_and(|s| {
                matches!(
                    s.state,
                    MaintenanceState::Drained | MaintenanceState::Refused
                )
            })
        })
        .await?;
        match s {
            Some(s) if s.state == MaintenanceState::Refused => {
                anyhow::bail!("{} refused: {}", args.switch, s.detail)
            }
            Some(s) => println!("{}: drained ({})", args.switch, s.detail),
            None => anyhow::bail!("{}: no maintenance status", args.switch),
        }
    }
    Ok(())
}

pub async fn undrain(args: &UndrainArgs) -> anyhow::Result<()> {
    let store = args.etcd.connect().await?;
    let view = read(&store).await?;
    let key = ConfigKey::Maintenance(args.switch.clone()).to_string();
    if !view.fabric.maintenance.contains_key(&args.switch) {
        anyhow::bail!("{} is not drained (no {key})", args.switch);
    }
    store
        .commit_if_unchanged_since(vec![], vec![key.clone()], view.revision)
        .await?;
    println!("- {key}");
    if let Some(secs) = args.wait {
        wait_for(&store, &args.switch, Duration::from_secs(secs), |s| {
            s.is_none()
        })
        .await?;
        println!("{}: in service", args.switch);
    }
    Ok(())
}

/// Polls the switch's maintenance status until `done` holds (or fails
/// after `timeout`).
async fn wait_for(
    store: &EtcdStore,
    switch: &str,
    timeout: Duration,
    done: impl Fn(Option<&MaintenanceStatus>) -> bool,
) -> anyhow::Result<Option<MaintenanceStatus>> {
    let deadline = Instant::now() + timeout;
    // The controller needs a moment to see the key: a status from before
    // the change must not count as the answer.
    tokio::time::sleep(Duration::from_millis(600)).await;
    loop {
        let view = read(store).await?;
        let s = maintenance_status(&view, switch);
        if done(s.as_ref()) {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{switch}: still {} after {timeout:?}", describe(s.as_ref()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One switch's maintenance state as `status` prints it.
pub fn describe(s: Option<&MaintenanceStatus>) -> String {
    match s {
        None => "in service".to_string(),
        Some(s) => {
            let state = match s.state {
                MaintenanceState::Draining => "draining",
                MaintenanceState::Drained => "drained",
                MaintenanceState::Undraining => "undraining",
                MaintenanceState::Refused => "refused",
            };
            let reason = s
                .reason
                .as_ref()
                .map(|r| format!(" [reason: {r}]"))
                .unwrap_or_default();
            format!("{state}: {}{reason}", s.detail)
        }
    }
}

/// `switch -> state` for every configured switch (status of `status`).
pub fn states(
    switches: impl IntoIterator<Item = String>,
    status: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, String> {
    switches
        .into_iter()
        .map(|n| {
            let s = status
                .get(&paths::maintenance(&n))
                .and_then(|v| serde_json::from_value::<MaintenanceStatus>(v.clone()).ok());
            let d = describe(s.as_ref());
            (n, d)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_show_every_switch_in_service_unless_status_says_otherwise() {
        let status: BTreeMap<String, serde_json::Value> = [(
            "maintenance/spine1".to_string(),
            serde_json::json!({"state": "drained", "detail": "after 2 s, counters not available",
                               "reason": "optics", "controller": "c1", "since": 1}),
        )]
        .into();
        let s = states(["leaf1".to_string(), "spine1".to_string()], &status);
        assert_eq!(s["leaf1"], "in service");
        assert_eq!(
            s["spine1"],
            "drained: after 2 s, counters not available [reason: optics]"
        );
    }
}
