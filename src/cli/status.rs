//! `p4fabric status [--json]`: the status controllers wrote back, as a
//! table (kind, name, fields) or as JSON.

use std::collections::BTreeMap;

use super::{display_value, EtcdArgs};
use crate::config::keys::STATUS_DIR;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub async fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let store = args.etcd.connect().await?;
    let snap = store.get_dir(STATUS_DIR).await?;
    let entries: BTreeMap<String, serde_json::Value> = snap
        .kvs
        .iter()
        .map(|(k, v)| (k[STATUS_DIR.len()..].to_string(), display_value(v)))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "no status under {}{STATUS_DIR} (is a controller running?)",
            store.prefix()
        );
        return Ok(());
    }
    print!("{}", table(&entries));
    print!("{}", maintenance_table(&store, &entries).await?);
    if let Some(s) = entries
        .get(crate::config::status::paths::UPGRADE)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
    {
        println!("\nUPGRADE  {}", super::upgrade::describe(&s));
    }
    Ok(())
}

/// Each configured switch's maintenance state (in service, draining,
/// drained and how that was confirmed, undraining, refused and why).
async fn maintenance_table(
    store: &crate::config::etcd::EtcdStore,
    status: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<String> {
    let switches = store.get_dir("switches/").await?;
    let names = switches
        .kvs
        .keys()
        .filter_map(|k| k.strip_prefix("switches/").map(str::to_string));
    let states = super::drain::states(names, status);
    let w = states.keys().map(String::len).max().unwrap_or(0).max(6);
    let mut out = format!("\n{:w$}  {:24}  MAINTENANCE\n", "SWITCH", "PIPELINE");
    for (name, state) in states {
        let pipeline = pipeline_of(status, &name);
        out.push_str(&format!("{name:w$}  {pipeline:24}  {state}\n"));
    }
    Ok(out)
}

/// A switch's pipeline as its status says: version label and cookie.
fn pipeline_of(status: &BTreeMap<String, serde_json::Value>, switch: &str) -> String {
    let s = status.get(&crate::config::status::paths::switch(switch));
    let field = |f: &str| s.and_then(|s| s.get(f)).and_then(|v| v.as_str());
    match (field("pipeline_version"), field("pipeline_cookie")) {
        (Some(v), Some(c)) => format!("{v} {c}"),
        (None, Some(c)) => c.to_string(),
        _ => "-".to_string(),
    }
}

/// Renders `kind/name -> value` as aligned rows `KIND NAME DETAILS`.
pub fn table(entries: &BTreeMap<String, serde_json::Value>) -> String {
    let rows: Vec<[String; 3]> = entries
        .iter()
        .map(|(k, v)| {
            let (kind, name) = k.split_once('/').unwrap_or((k.as_str(), ""));
            [kind.to_string(), name.to_string(), details(v)]
        })
        .collect();
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(4);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(4);
    let mut out = format!("{:w0$}  {:w1$}  DETAILS\n", "KIND", "NAME");
    for [a, b, c] in rows {
        out.push_str(&format!("{a:w0$}  {b:w1$}  {c}\n"));
    }
    out
}

const FIRST: [&str; 4] = ["state", "error", "leader", "remote"];

fn details(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            // What a reader looks for first, then the rest by name.
            let mut fields: Vec<(&String, &serde_json::Value)> = m.iter().collect();
            fields.sort_by_key(|(k, _)| (!FIRST.contains(&k.as_str()), k.as_str()));
            fields
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    // Long lists (status/observed) in full with --json.
                    serde_json::Value::Array(a) if a.len() > 3 => {
                        format!("{k}=[{} items]", a.len())
                    }
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_puts_state_first() {
        let entries: BTreeMap<String, serde_json::Value> = [
            (
                "switches/leaf1".to_string(),
                serde_json::json!({"controller": "c1", "state": "primary"}),
            ),
            (
                "config/vlans/10".to_string(),
                serde_json::json!({"error": "bad gateway", "controller": "c1"}),
            ),
        ]
        .into();
        let t = table(&entries);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "KIND      NAME      DETAILS");
        assert_eq!(
            lines[1],
            "config    vlans/10  error=bad gateway controller=c1"
        );
        assert_eq!(lines[2], "switches  leaf1     state=primary controller=c1");
    }
}
