//! `p4fabric topology --format dot|svg`: a picture of the fabric — switches,
//! links with their state (configured, seen by discovery, up or down, from
//! the status keys when etcd is used), and hosts.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::trace::load_fabric;
use super::EtcdArgs;
use crate::config::keys::STATUS_DIR;
use crate::config::{Attachment, Fabric, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Dot,
    Svg,
}

#[derive(Debug, clap::Args)]
pub struct TopologyArgs {
    #[arg(long, value_enum, default_value = "dot")]
    pub format: Format,
    /// Read the configuration from this file instead of etcd.
    #[arg(long = "config", short = 'f', conflicts_with = "endpoints")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// Link state by `switch/port` of either end, from `status/links/...`.
type LinkStates = std::collections::BTreeMap<String, String>;

pub fn dot(fabric: &Fabric, links: &LinkStates) -> String {
    let mut o = String::from("graph fabric {\n  rankdir=TB;\n  node [fontname=\"sans\"];\n");
    o.push_str("  { rank=same;");
    for (n, s) in &fabric.switches {
        if s.role == Role::Spine {
            o.push_str(&format!(" \"{n}\";"));
        }
    }
    o.push_str(" }\n  { rank=same;");
    for (n, s) in &fabric.switches {
        if s.role == Role::Leaf {
            o.push_str(&format!(" \"{n}\";"));
        }
    }
    o.push_str(" }\n");
    for (n, s) in &fabric.switches {
        let shape = if s.role == Role::Spine {
            "box3d"
        } else {
            "box"
        };
        o.push_str(&format!(
            "  \"{n}\" [shape={shape} label=\"{n}\\nlabel {}\\n{}\"];\n",
            s.label, s.address
        ));
    }
    for (name, l) in &fabric.links {
        let state = links
            .get(&l.a.to_string())
            .or_else(|| links.get(&l.b.to_string()));
        let (color, style) = match state.map(String::as_str) {
            Some("up") => ("darkgreen", "solid"),
            Some("down") => ("red", "dashed"),
            _ => ("gray40", "solid"),
        };
        o.push_str(&format!(
            "  \"{}\" -- \"{}\" [taillabel=\"{}\" headlabel=\"{}\" color={color} style={style} tooltip=\"{name}: {}\"];\n",
            l.a.switch, l.b.switch, l.a.port, l.b.port, state.map(String::as_str).unwrap_or("configured")
        ));
    }
    for (name, h) in &fabric.hosts {
        o.push_str(&format!(
            "  \"host:{name}\" [shape=ellipse label=\"{name}\\n{}\\nvlan {}\"];\n",
            h.mac, h.vlan
        ));
        match &h.attachment {
            Attachment::Port(p) => o.push_str(&format!(
                "  \"host:{name}\" -- \"{}\" [headlabel=\"{}\" color=steelblue];\n",
                p.switch, p.port
            )),
            Attachment::Lag(l) => {
                for m in fabric
                    .lags
                    .get(l)
                    .map(|g| g.members.as_slice())
                    .unwrap_or(&[])
                {
                    o.push_str(&format!(
                        "  \"host:{name}\" -- \"{}\" [headlabel=\"{}\" color=purple label=\"{l}\"];\n",
                        m.switch, m.port
                    ));
                }
            }
        }
    }
    o.push_str("}\n");
    o
}

pub async fn run(args: &TopologyArgs) -> anyhow::Result<()> {
    let fabric = load_fabric(&args.config, &args.etcd).await?;
    let mut links = LinkStates::new();
    if args.config.is_none() {
        let store = args.etcd.connect().await?;
        let snap = store.get_dir(&format!("{STATUS_DIR}links/")).await?;
        for (k, v) in snap.kvs {
            let port = k
                .trim_start_matches(&format!("{STATUS_DIR}links/"))
                .to_string();
            if let Ok(s) = serde_json::from_slice::<serde_json::Value>(&v) {
                if let Some(state) = s.get("state").and_then(|x| x.as_str()) {
                    links.insert(port, state.to_string());
                }
            }
        }
    }
    let text = dot(&fabric, &links);
    match args.format {
        Format::Dot => print!("{text}"),
        Format::Svg => {
            let mut child = Command::new("dot")
                .arg("-Tsvg")
                .stdin(Stdio::piped())
                .stdout(Stdio::inherit())
                .spawn()
                .context("`dot` not found: apt-get install graphviz (or use --format dot)")?;
            child
                .stdin
                .take()
                .context("dot stdin")?
                .write_all(text.as_bytes())?;
            let status = child.wait()?;
            anyhow::ensure!(status.success(), "dot failed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_names_every_switch_link_and_host() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fabric.yaml"))
                .expect("example");
        let kvs = crate::config::keys::document_to_raw(&text).expect("parse");
        let (fabric, errors) = crate::config::ConfigState::new().reset(kvs);
        assert!(errors.is_empty());
        let mut links = LinkStates::new();
        links.insert("leaf1/1".into(), "down".into());
        let d = dot(&fabric, &links);
        for s in fabric.switches.keys() {
            assert!(d.contains(&format!("\"{s}\" [shape=")));
        }
        let host_edges: usize = fabric
            .hosts
            .values()
            .map(|h| match &h.attachment {
                Attachment::Port(_) => 1,
                Attachment::Lag(l) => fabric.lags[l].members.len(),
            })
            .sum();
        assert_eq!(d.matches(" -- ").count(), fabric.links.len() + host_edges);
        assert!(
            d.contains("color=red style=dashed"),
            "the down link is drawn as down"
        );
    }
}
