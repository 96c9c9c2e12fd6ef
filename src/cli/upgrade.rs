//! `p4fabric upgrade --pipeline-dir DIR [--version LABEL] [--force]
//! [--wait SECS]`: writes the `upgrade` key naming a new pipeline build;
//! the controller rolls it out switch by switch (`controller::upgrade`)
//! and reports in `status/upgrade`.
//!
//! Checks first that the build loads for every configured switch's target
//! (as the controller will), and writes nothing otherwise. The pipeline
//! named by the key in force, if any, becomes `from_dir`: what switches
//! not yet upgraded run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::EtcdArgs;
use crate::config::keys::{ConfigKey, STATUS_DIR};
use crate::config::status::{paths, UpgradeState, UpgradeStatus};
use crate::config::Upgrade;
use crate::p4rt::Pipeline;

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// Directory of the new compiled pipeline (as `p4/build/`), as the
    /// controller sees it: give an absolute path, or one valid where the
    /// controller runs.
    #[arg(long)]
    pub pipeline_dir: PathBuf,
    /// A label for the new pipeline (default: the directory's name).
    #[arg(long)]
    pub version: Option<String>,
    /// Drain a spine even when it is the last one in service.
    #[arg(long)]
    pub force: bool,
    /// Wait up to this many seconds for the roll-out to finish (or fail).
    #[arg(long)]
    pub wait: Option<u64>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub async fn run(args: &UpgradeArgs) -> anyhow::Result<()> {
    let store = args.etcd.connect().await?;
    let snap = store.get_dir("").await?;
    let config = snap
        .kvs
        .into_iter()
        .filter(|(k, _)| !k.starts_with(STATUS_DIR))
        .collect();
    let (fabric, _) = crate::config::ConfigState::new().reset(config);
    let dir = std::path::absolute(&args.pipeline_dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.pipeline_dir.display()))?;
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory; nothing written", dir.display());
    }
    // The controller loads it the same way, per switch target.
    for (name, sw) in &fabric.switches {
        let target = crate::target::for_switch(name, sw)?;
        Pipeline::load_for(&dir, &sw.pipeline, target.as_ref()).map_err(|e| {
            anyhow::anyhow!("the new pipeline does not load for {name}: {e}; nothing written")
        })?;
    }
    let version = args
        .version
        .clone()
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()));
    let previous = fabric.upgrade.as_ref();
    let value = Upgrade {
        pipeline_dir: dir.display().to_string(),
        version,
        from_dir: previous.map(|p| p.pipeline_dir.clone()),
        from_version: previous.and_then(|p| p.version.clone()),
        force: args.force,
    };
    if previous == Some(&value) {
        println!("= {} (unchanged)", ConfigKey::Upgrade);
    } else {
        store
            .commit_if_unchanged_since(
                vec![(ConfigKey::Upgrade.to_string(), serde_json::to_vec(&value)?)],
                vec![],
                snap.revision,
            )
            .await?;
        println!("+ {}", ConfigKey::Upgrade);
    }
    if let Some(secs) = args.wait {
        let s = wait(&store, &value, Duration::from_secs(secs)).await?;
        match s.state {
            UpgradeState::Done => println!("upgrade: done ({})", s.done.join(", ")),
            _ => anyhow::bail!("upgrade failed: {}", s.detail),
        }
    }
    Ok(())
}

/// Polls `status/upgrade` until the roll-out of `value` is done or failed.
async fn wait(
    store: &crate::config::etcd::EtcdStore,
    value: &Upgrade,
    timeout: Duration,
) -> anyhow::Result<UpgradeStatus> {
    let deadline = Instant::now() + timeout;
    // A status from before the key changed must not count as the answer.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut last = None;
    loop {
        if let Some(s) = read_status(store).await? {
            let ours = s.pipeline_dir == value.pipeline_dir && s.version == value.version;
            if ours && matches!(s.state, UpgradeState::Done | UpgradeState::Failed) {
                return Ok(s);
            }
            last = Some(s);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "not done after {timeout:?}: {}",
                last.map(|s| describe(&s))
                    .unwrap_or_else(|| "no status/upgrade".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `status/upgrade`, if a controller wrote one.
pub async fn read_status(
    store: &crate::config::etcd::EtcdStore,
) -> anyhow::Result<Option<UpgradeStatus>> {
    let path = format!("{STATUS_DIR}{}", paths::UPGRADE);
    let snap = store.get_dir(&path).await?;
    Ok(snap
        .kvs
        .get(&path)
        .and_then(|v| serde_json::from_slice(v).ok()))
}

/// One line for `p4fabric status`.
pub fn describe(s: &UpgradeStatus) -> String {
    let state = match s.state {
        UpgradeState::Waiting => "waiting",
        UpgradeState::Running => "running",
        UpgradeState::Done => "done",
        UpgradeState::Failed => "failed",
    };
    let at = match (&s.switch, &s.phase) {
        (Some(sw), Some(p)) => format!(" at {sw} ({p})"),
        (Some(sw), None) => format!(" at {sw}"),
        _ => String::new(),
    };
    format!(
        "{state}{at}: {} [to {}; done {}/{}: {}]",
        s.detail,
        s.version.as_deref().unwrap_or(&s.pipeline_dir),
        s.done.len(),
        s.done.len() + s.remaining.len(),
        s.done.join(", ")
    )
}
