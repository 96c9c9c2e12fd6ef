//! `p4fabric upgrade --pipeline-dir DIR [--version LABEL] [--force]
//! [--wait SECS]`: writes the `upgrade` key naming a new pipeline build;
//! the controller rolls it out switch by switch (`controller::upgrade`)
//! and reports in `status/upgrade`.
//!
//! Checks first that the build loads for every configured switch's target
//! (as the controller will) and that it is rollable from the build the
//! switches run now (`p4rt::compat`), and writes nothing otherwise. The
//! pipeline named by the key in force, if any, becomes `from_dir`: what
//! switches not yet upgraded run. It is also what the new build is
//! compared with; without a key, the controller's default directory as
//! this binary knows it (`Pipeline::default_dir`). Where that does not
//! load, the CLI says so and leaves the check to the controller, which
//! makes it before draining anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::EtcdArgs;
use crate::config::keys::{ConfigKey, STATUS_DIR};
use crate::config::status::{paths, UpgradeState, UpgradeStatus};
use crate::config::{Fabric, Upgrade};
use crate::p4rt::{compat, Pipeline};

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
    let previous = fabric.upgrade.as_ref();
    let running = previous
        .map(|p| PathBuf::from(&p.pipeline_dir))
        .unwrap_or_else(Pipeline::default_dir);
    if let Some(note) = not_compared(&check(&fabric, &running, &dir)?) {
        println!("{note}");
    }
    let version = args
        .version
        .clone()
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()));
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

/// Loads the new build in `new` for every configured switch's target, as
/// the controller will, and compares it with the build in `running` (the
/// rule of a rollable change, `p4rt::compat`). An error — the build does
/// not load, or is not rollable, every incompatibility named — means
/// nothing may be written. Otherwise the switches (and why) for which
/// `running` does not load: not compared.
pub fn check(fabric: &Fabric, running: &Path, new: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut not_found = Vec::new();
    let mut compared = BTreeSet::new();
    for (name, sw) in &fabric.switches {
        let target = crate::target::for_switch(name, sw)?;
        let build = Pipeline::load_for(new, &sw.pipeline, target.as_ref()).map_err(|e| {
            anyhow::anyhow!("the new pipeline does not load for {name}: {e}; nothing written")
        })?;
        let old = match Pipeline::load_for(running, &sw.pipeline, target.as_ref()) {
            Ok(old) => old,
            Err(e) => {
                not_found.push((name.clone(), e.to_string()));
                continue;
            }
        };
        // Switches of one target share both builds: compared once.
        if !compared.insert((old.cookie, build.cookie)) {
            continue;
        }
        let found = compat::rollable(old.registry.p4info(), build.registry.p4info());
        if !found.is_empty() {
            let list: Vec<String> = found.iter().map(|i| format!("  - {i}")).collect();
            anyhow::bail!(
                "the new pipeline is not rollable from the running build {} (compared as {name}'s {} target runs them):\n{}\nnothing written (a roll-out runs both builds side by side and the new one may only add; docs/operations.md, \"The rule a pipeline change must follow to be rollable\")",
                running.display(),
                target.name(),
                list.join("\n")
            );
        }
    }
    Ok(not_found)
}

/// What to say of the switches `check` could not compare (none: nothing).
fn not_compared(not_found: &[(String, String)]) -> Option<String> {
    let (name, why) = not_found.first()?;
    let names: Vec<&str> = not_found.iter().map(|(n, _)| n.as_str()).collect();
    Some(format!(
        "could not find the running build to compare; the controller checks it before draining anything (not compared for {}: {name}: {why})",
        names.join(", ")
    ))
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

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::compile::sample::leaf_spine;

    /// The second build of the tests only adds: compared for the one
    /// target, nothing reported, nothing left uncompared.
    #[test]
    fn a_build_that_only_adds_passes() {
        let v2 = tempfile::tempdir().expect("tempdir");
        crate::testkit::second_pipeline(v2.path()).expect("second build");
        let f = leaf_spine(2, 2);
        let not_found = check(&f, &Pipeline::default_dir(), v2.path()).expect("rollable");
        assert_eq!(not_found, vec![]);
    }

    /// A build that renames a table the compiler writes and widens a
    /// parameter: refused, every incompatibility named, nothing written.
    #[test]
    fn a_build_that_renames_a_table_is_refused_naming_it() {
        let bad = tempfile::tempdir().expect("tempdir");
        crate::testkit::changed_pipeline(bad.path(), |p| {
            let t = p.tables.iter_mut().find(|t| {
                t.preamble
                    .as_ref()
                    .is_some_and(|p| p.name == crate::compile::names::T_LABEL_FWD)
            });
            t.and_then(|t| t.preamble.as_mut()).expect("label_fwd").name =
                "FabricIngress.fabric.label_fwd_v2".into();
            let a = p.actions.iter_mut().find(|a| {
                a.preamble
                    .as_ref()
                    .is_some_and(|p| p.name == crate::compile::names::A_TO_PORT)
            });
            a.expect("to_port").params[0].bitwidth = 16;
        })
        .expect("changed build");
        let f = leaf_spine(2, 2);
        let e = check(&f, &Pipeline::default_dir(), bad.path())
            .expect_err("not rollable")
            .to_string();
        assert!(
            e.starts_with("the new pipeline is not rollable from the running build"),
            "{e}"
        );
        assert!(e.contains("  - table FabricIngress.fabric.label_fwd is in the running build, not in the new one\n"), "{e}");
        assert!(e.contains("  - action FabricIngress.bridging.to_port: parameter port is 9-bit in the running build, 16-bit in the new one\n"), "{e}");
        assert!(e.contains("nothing written"), "{e}");
    }

    /// No build where the CLI looks for the running one: every switch
    /// named as not compared, the new build still checked to load.
    #[test]
    fn without_the_running_build_nothing_is_compared() {
        let none = tempfile::tempdir().expect("tempdir");
        let f = leaf_spine(1, 2);
        let not_found = check(&f, none.path(), &Pipeline::default_dir()).expect("loads");
        let names: Vec<&str> = not_found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 3, "{not_found:?}");
        assert!(
            not_found[0].1.contains("fabric.p4info.txt"),
            "{not_found:?}"
        );
        let note = not_compared(&not_found).expect("a note");
        assert!(
            note.starts_with("could not find the running build to compare; the controller checks it before draining anything")
                && names.iter().all(|n| note.contains(n)),
            "{note}"
        );
        assert_eq!(not_compared(&[]), None);
        let e = check(&f, &Pipeline::default_dir(), none.path()).expect_err("no new build");
        assert!(e.to_string().contains("nothing written"), "{e}");
    }
}
