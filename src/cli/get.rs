//! `p4fabric get [path]`: prints keys under the prefix as YAML, JSON, or
//! reassembled into a fabric file (`-o fabric`, which `apply` takes back).

use std::collections::BTreeMap;

use super::{display_value, EtcdArgs};
use crate::config::keys::STATUS_DIR;
use crate::config::ConfigState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    /// The configuration in force, in the shape of a fabric YAML file.
    Fabric,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// A key or directory relative to the prefix (`switches`,
    /// `switches/leaf1`, `status/`); everything when omitted.
    pub path: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: Format,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub async fn run(args: &GetArgs) -> anyhow::Result<()> {
    let store = args.etcd.connect().await?;
    let path = args.path.clone().unwrap_or_default();
    let path = path.trim_start_matches('/');
    let mut snap = store.get_dir(path).await?;
    // `switches/leaf1` must not also match `switches/leaf10`.
    if !path.is_empty() && !path.ends_with('/') {
        let dir = format!("{path}/");
        snap.kvs.retain(|k, _| k == path || k.starts_with(&dir));
    }
    let found = !snap.kvs.is_empty();
    match args.output {
        Format::Fabric => {
            snap.kvs.retain(|k, _| !k.starts_with(STATUS_DIR));
            let (fabric, errors) = ConfigState::new().reset(snap.kvs);
            for e in &errors {
                eprintln!("rejected {e}");
            }
            print!("{}", serde_yaml::to_string(&fabric)?);
        }
        Format::Yaml | Format::Json => {
            let map: BTreeMap<&String, serde_json::Value> = snap
                .kvs
                .iter()
                .map(|(k, v)| (k, display_value(v)))
                .collect();
            if args.output == Format::Json {
                println!("{}", serde_json::to_string_pretty(&map)?);
            } else if !map.is_empty() {
                print!("{}", serde_yaml::to_string(&map)?);
            }
        }
    }
    if !found && !path.is_empty() {
        anyhow::bail!("no key under {}{path}", store.prefix());
    }
    Ok(())
}
