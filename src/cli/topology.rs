//! `p4fabric topology --format dot|svg`: a picture of the fabric — switches,
//! links with their state (configured, seen by discovery, up or down, from
//! the status keys when etcd is used), and hosts.

use std::path::PathBuf;

use super::trace::load_seen;
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

/// XML text escaping.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The fabric as SVG, laid out by role: spines on top, leaves below, hosts
/// at the bottom (each under its first leaf), so no Graphviz is needed.
/// Links are coloured by state (green up, red dashed down, gray
/// configured), host attachments blue, LAG legs purple.
pub fn svg(fabric: &Fabric, links: &LinkStates) -> String {
    const W: f64 = 150.0;
    const BOX_W: f64 = 120.0;
    let spines: Vec<&String> = fabric
        .switches
        .iter()
        .filter(|(_, s)| s.role == Role::Spine)
        .map(|(n, _)| n)
        .collect();
    let leaves: Vec<&String> = fabric
        .switches
        .iter()
        .filter(|(_, s)| s.role != Role::Spine)
        .map(|(n, _)| n)
        .collect();
    let ports_of = |h: &crate::config::Host| -> Vec<crate::config::PortRef> {
        match &h.attachment {
            Attachment::Port(p) => vec![p.clone()],
            Attachment::Lag(l) => fabric
                .lags
                .get(l)
                .map(|g| g.members.clone())
                .unwrap_or_default(),
        }
    };
    let leaf_index = |sw: &str| leaves.iter().position(|l| l.as_str() == sw);
    let mut hosts: Vec<(&String, &crate::config::Host)> = fabric.hosts.iter().collect();
    hosts.sort_by_key(|(n, h)| {
        let first = ports_of(h)
            .iter()
            .filter_map(|p| leaf_index(&p.switch))
            .min();
        (first.unwrap_or(usize::MAX), (*n).clone())
    });
    let cols = spines.len().max(leaves.len()).max(hosts.len()).max(1) as f64;
    let width = cols * W + 40.0;
    let row_x = |i: usize, n: usize| 20.0 + (width - 40.0) * (i as f64 + 0.5) / n.max(1) as f64;
    let (y_spine, y_leaf, y_host) = (40.0, 240.0, 430.0);
    let mut pos: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for (i, n) in spines.iter().enumerate() {
        pos.insert(n.as_str(), (row_x(i, spines.len()), y_spine));
    }
    for (i, n) in leaves.iter().enumerate() {
        pos.insert(n.as_str(), (row_x(i, leaves.len()), y_leaf));
    }
    let host_pos: Vec<(f64, f64)> = (0..hosts.len())
        .map(|i| (row_x(i, hosts.len()), y_host))
        .collect();
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"520\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    // Box centres; edges run from the bottom of the upper box to the top of
    // the lower one.
    let edge = |o: &mut String,
                a: (f64, f64),
                b: (f64, f64),
                style: &str,
                la: &str,
                lb: &str,
                tip: &str| {
        let (ya, yb) = (a.1 + 25.0, b.1 - 25.0);
        o.push_str(&format!(
            "<line x1=\"{:.0}\" y1=\"{ya:.0}\" x2=\"{:.0}\" y2=\"{yb:.0}\" {style}><title>{}</title></line>\n",
            a.0,
            b.0,
            xml(tip)
        ));
        // Port numbers a fifth of the way along, at each end.
        for (t, l) in [(0.18, la), (0.82, lb)] {
            if !l.is_empty() {
                let x = a.0 + (b.0 - a.0) * t;
                let y = ya + (yb - ya) * t;
                o.push_str(&format!(
                    "<text x=\"{x:.0}\" y=\"{y:.0}\" font-size=\"10\" fill=\"#555\" text-anchor=\"middle\">{}</text>\n",
                    xml(l)
                ));
            }
        }
    };
    for (name, l) in &fabric.links {
        let (Some(&pa), Some(&pb)) = (pos.get(l.a.switch.as_str()), pos.get(l.b.switch.as_str()))
        else {
            continue;
        };
        let state = links
            .get(&l.a.to_string())
            .or_else(|| links.get(&l.b.to_string()))
            .map(String::as_str);
        let style = match state {
            Some("up") => "stroke=\"darkgreen\" stroke-width=\"2\"",
            Some("down") => "stroke=\"red\" stroke-width=\"2\" stroke-dasharray=\"6,4\"",
            _ => "stroke=\"#666\" stroke-width=\"1.5\"",
        };
        // The upper end first.
        let ((a, pa), (b, pb)) = if pa.1 <= pb.1 {
            ((&l.a, pa), (&l.b, pb))
        } else {
            ((&l.b, pb), (&l.a, pa))
        };
        let tip = format!("{name}: {}", state.unwrap_or("configured"));
        edge(
            &mut o,
            pa,
            pb,
            style,
            &a.port.to_string(),
            &b.port.to_string(),
            &tip,
        );
    }
    for ((name, h), hp) in hosts.iter().zip(&host_pos) {
        let lag = matches!(h.attachment, Attachment::Lag(_));
        let style = if lag {
            "stroke=\"purple\" stroke-width=\"2\""
        } else {
            "stroke=\"steelblue\" stroke-width=\"1.5\""
        };
        for p in ports_of(h) {
            let Some(&sp) = pos.get(p.switch.as_str()) else {
                continue;
            };
            let tip = match &h.attachment {
                Attachment::Lag(l) => format!("{name} on {l} via {p}"),
                Attachment::Port(_) => format!("{name} on {p}"),
            };
            edge(&mut o, sp, *hp, style, &p.port.to_string(), "", &tip);
        }
    }
    for (n, s) in &fabric.switches {
        let Some(&(x, y)) = pos.get(n.as_str()) else {
            continue;
        };
        let fill = if s.role == Role::Spine {
            "#dde8f8"
        } else {
            "#e4f4e4"
        };
        o.push_str(&format!(
            "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"{BOX_W:.0}\" height=\"50\" rx=\"6\" fill=\"{fill}\" stroke=\"#333\"/>\n\
             <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n\
             <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-size=\"10\">label {} · {}</text>\n",
            x - BOX_W / 2.0,
            y - 25.0,
            y - 4.0,
            xml(n),
            y + 13.0,
            s.label,
            xml(&s.address)
        ));
    }
    for ((name, h), (x, y)) in hosts.iter().zip(&host_pos) {
        let att = match &h.attachment {
            Attachment::Lag(l) => format!(" · {l}"),
            Attachment::Port(_) => String::new(),
        };
        o.push_str(&format!(
            "<ellipse cx=\"{x:.0}\" cy=\"{y:.0}\" rx=\"66\" ry=\"25\" fill=\"#fff7e0\" stroke=\"#333\"/>\n\
             <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n\
             <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-size=\"10\">vlan {}{}</text>\n",
            y - 3.0,
            xml(name),
            y + 12.0,
            h.vlan,
            xml(&att)
        ));
    }
    o.push_str(
        "<text x=\"20\" y=\"505\" font-size=\"10\" fill=\"#555\">links: green up, red dashed down, gray configured (not reported) · hosts: blue port, purple LAG leg</text>\n</svg>\n"
    );
    o
}

pub async fn run(args: &TopologyArgs) -> anyhow::Result<()> {
    let seen = load_seen(&args.config, &args.etcd).await?;
    let fabric = with_discovered_links(&seen.fabric, &seen.observed);
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
    match args.format {
        Format::Dot => print!("{}", dot(&fabric, &links)),
        Format::Svg => print!("{}", svg(&fabric, &links)),
    }
    Ok(())
}

/// `fabric` with the links discovery found that are not configured
/// (named `discovered:<a>-<b>`), so a fabric without `links:` is drawn
/// with the links it forwards over.
fn with_discovered_links(fabric: &Fabric, observed: &crate::topo::ObservedState) -> Fabric {
    let mut f = fabric.clone();
    let configured: std::collections::BTreeSet<crate::topo::LinkId> = fabric
        .links
        .values()
        .map(|l| crate::topo::LinkId::new(l.a.clone(), l.b.clone()))
        .collect();
    for id in observed
        .discovered
        .keys()
        .filter(|id| !configured.contains(*id))
    {
        f.links.insert(
            format!("discovered:{}-{}", id.0, id.1),
            crate::config::Link {
                a: id.0.clone(),
                b: id.1.clone(),
            },
        );
    }
    f
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
        let svg = svg(&fabric, &links);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        for n in fabric.switches.keys().chain(fabric.hosts.keys()) {
            assert!(svg.contains(&format!(">{n}</text>")), "{n} not drawn");
        }
        assert_eq!(
            svg.matches("<line ").count(),
            fabric.links.len() + host_edges
        );
        assert_eq!(svg.matches("stroke-dasharray").count(), 1);
    }

    #[test]
    fn discovered_links_are_drawn_on_a_fabric_without_configured_links() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fabric.yaml"))
                .expect("example");
        let mut kvs = crate::config::keys::document_to_raw(&text).expect("parse");
        kvs.retain(|k, _| !k.starts_with("links/"));
        let (fabric, errors) = crate::config::ConfigState::new().reset(kvs);
        assert!(errors.is_empty());
        let mut observed = crate::topo::ObservedState::default();
        let id = crate::topo::LinkId::new(
            crate::config::PortRef::new("leaf1", 1),
            crate::config::PortRef::new("spine1", 1),
        );
        observed.discovered.insert(id, true);
        let drawn = with_discovered_links(&fabric, &observed);
        assert_eq!(drawn.links.len(), 1);
        let d = dot(&drawn, &LinkStates::new());
        assert!(d.contains("\"leaf1\" -- \"spine1\""), "{d}");
    }
}
