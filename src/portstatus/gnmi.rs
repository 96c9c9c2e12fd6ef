//! Port status from gNMI: one Subscribe stream per switch following
//! OpenConfig `/interfaces/interface[name=*]/state/oper-status` ON_CHANGE
//! (what Stratum serves on Tofino, where bmv2's Thrift service does not
//! exist). Interface names become configured port numbers through the
//! switch's `port_map` names, or are the number itself ("7").
//!
//! Like the Thrift poller, every port is reported once after each
//! (re)connect and then only changes; a lost stream is reopened with
//! backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use p4runtime_proto::gnmi::{
    g_nmi_client::GNmiClient, subscribe_request, subscribe_response, subscription_list,
    typed_value, Encoding, Notification, Path, PathElem, SubscribeRequest, Subscription,
    SubscriptionList, SubscriptionMode, TypedValue,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{PortNum, Switch};
use crate::p4rt::backoff::Backoff;
use crate::portstatus::PortEvent;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `gnmi://host:port` -> `host:port`.
pub fn parse_address(addr: &str) -> Result<String> {
    match super::host_port(addr, "gnmi") {
        Some(hp) => Ok(hp.to_string()),
        None => bail!("{addr:?} is not gnmi://HOST:PORT (the switch's gNMI server)"),
    }
}

/// Interface name -> configured port number, for one switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortNames {
    names: BTreeMap<String, PortNum>,
}

impl PortNames {
    /// The names a switch's `port_map` gives its ports.
    pub fn of(sw: &Switch) -> PortNames {
        PortNames {
            names: sw
                .port_map
                .iter()
                .filter_map(|(port, m)| m.name.clone().map(|n| (n, *port)))
                .collect(),
        }
    }

    /// The configured port an interface name stands for: a `port_map`
    /// name, else the name read as a number. `None` for other interfaces
    /// (management ports, say).
    pub fn port(&self, name: &str) -> Option<PortNum> {
        self.names.get(name).copied().or_else(|| name.parse().ok())
    }
}

/// Follows `switch`'s port status from the gNMI server at `host_port`
/// (`parse_address` of its `gnmi://` address) until the receiver goes away
/// or the task is aborted, resubscribing with backoff (the switch may be
/// starting or restarting).
pub fn spawn(
    switch: String,
    host_port: &str,
    names: PortNames,
    tx: mpsc::Sender<PortEvent>,
) -> JoinHandle<()> {
    let endpoint = format!("http://{host_port}");
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        while !tx.is_closed() {
            if let Err(e) = follow(&switch, &endpoint, &names, &tx, &mut backoff).await {
                // A switch starting or restarting; the agent reports those.
                tracing::debug!(
                    switch,
                    error = format!("{e:#}"),
                    "gNMI port status: not connected"
                );
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    })
}

/// The request: a stream of ON_CHANGE updates of every interface's
/// oper-status, values as protobuf scalars.
pub fn oper_status_request() -> SubscribeRequest {
    SubscribeRequest {
        request: Some(subscribe_request::Request::Subscribe(SubscriptionList {
            subscription: vec![Subscription {
                path: Some(oper_status_path("*")),
                mode: SubscriptionMode::OnChange as i32,
                ..Default::default()
            }],
            mode: subscription_list::Mode::Stream as i32,
            encoding: Encoding::Proto as i32,
            ..Default::default()
        })),
    }
}

/// `/interfaces/interface[name=NAME]/state/oper-status`.
pub fn oper_status_path(name: &str) -> Path {
    let elem = |n: &str| PathElem {
        name: n.to_string(),
        key: Default::default(),
    };
    let mut interface = elem("interface");
    interface.key.insert("name".into(), name.to_string());
    Path {
        elem: vec![
            elem("interfaces"),
            interface,
            elem("state"),
            elem("oper-status"),
        ],
        ..Default::default()
    }
}

async fn follow(
    switch: &str,
    endpoint: &str,
    names: &PortNames,
    tx: &mpsc::Sender<PortEvent>,
    backoff: &mut Backoff,
) -> Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connect {endpoint}"))?;
    let mut client = GNmiClient::new(channel);
    // The request stream stays open (gNMI ends the subscription when the
    // client half-closes on some servers).
    let (req_tx, req_rx) = mpsc::channel(1);
    req_tx
        .send(oper_status_request())
        .await
        .context("request stream")?;
    let mut stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await
        .context("Subscribe")?
        .into_inner();
    let mut changes = super::Changes::new(switch, tx);
    let mut logged = false;
    while let Some(resp) = stream.message().await.context("Subscribe stream")? {
        backoff.reset();
        let Some(subscribe_response::Response::Update(n)) = resp.response else {
            // sync_response: every port has been sent once.
            continue;
        };
        if !logged {
            tracing::info!(switch, "reading port status over gNMI");
            logged = true;
        }
        for (name, up) in oper_statuses(&n) {
            let Some(port) = names.port(&name) else {
                tracing::debug!(
                    switch,
                    interface = name,
                    "gNMI: interface without a port number"
                );
                continue;
            };
            if !changes.report(port, up).await {
                return Ok(());
            }
        }
    }
    drop(req_tx);
    bail!("Subscribe stream ended")
}

/// (interface name, up) of every oper-status update in a notification.
/// The interface key may sit in the prefix or in the update's path.
pub fn oper_statuses(n: &Notification) -> Vec<(String, bool)> {
    let prefix = n.prefix.as_ref().map(|p| p.elem.as_slice()).unwrap_or(&[]);
    n.update
        .iter()
        .filter_map(|u| {
            let path = u.path.as_ref()?;
            let elems: Vec<&PathElem> = prefix.iter().chain(path.elem.iter()).collect();
            let names: Vec<&str> = elems.iter().map(|e| e.name.as_str()).collect();
            if names != ["interfaces", "interface", "state", "oper-status"] {
                return None;
            }
            let name = elems[1].key.get("name")?.clone();
            Some((name, is_up(u.val.as_ref()?)?))
        })
        .collect()
}

/// OpenConfig oper-status: `UP` is up; DOWN, LOWER_LAYER_DOWN, TESTING,
/// DORMANT, NOT_PRESENT and UNKNOWN are not. Accepts the PROTO encoding
/// (a string) and JSON ones (a quoted string, maybe module-qualified).
fn is_up(v: &TypedValue) -> Option<bool> {
    let s = match v.value.as_ref()? {
        typed_value::Value::StringVal(s) | typed_value::Value::AsciiVal(s) => s.clone(),
        typed_value::Value::JsonVal(b) | typed_value::Value::JsonIetfVal(b) => {
            serde_json::from_slice::<String>(b).ok()?
        }
        _ => return None,
    };
    let s = s.rsplit_once(':').map_or(s.as_str(), |(_, v)| v);
    Some(s == "UP")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portstatus::gnmi_server::GnmiTestServer;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("gnmi://127.0.0.1:9339").expect("ok"),
            "127.0.0.1:9339"
        );
        for bad in [
            "127.0.0.1:9339",
            "gnmi://",
            "gnmi://host",
            "gnmi://:1",
            "thrift://h:1",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_from_the_port_map_or_numbers() {
        let sw: Switch = serde_yaml::from_str(
            "{address: 'h:1', device_id: 1, role: leaf, label: 101, target: tofino, cpu_port: 320, \
             port_map: {7: {device_port: 132, name: '1/0'}, 8: 140}}",
        )
        .expect("switch");
        let names = PortNames::of(&sw);
        assert_eq!(names.port("1/0"), Some(7));
        assert_eq!(names.port("9"), Some(9));
        assert_eq!(names.port("mgmt0"), None);
    }

    fn update(path: Path, val: typed_value::Value) -> p4runtime_proto::gnmi::Update {
        p4runtime_proto::gnmi::Update {
            path: Some(path),
            val: Some(TypedValue { value: Some(val) }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_statuses_in_each_encoding_and_with_a_prefix() {
        let n = Notification {
            update: vec![
                update(
                    oper_status_path("1/0"),
                    typed_value::Value::StringVal("UP".into()),
                ),
                update(
                    oper_status_path("2/0"),
                    typed_value::Value::StringVal("DOWN".into()),
                ),
                update(
                    oper_status_path("3/0"),
                    typed_value::Value::JsonIetfVal(br#""openconfig-interfaces:UP""#.to_vec()),
                ),
                update(
                    oper_status_path("4/0"),
                    typed_value::Value::JsonVal(br#""LOWER_LAYER_DOWN""#.to_vec()),
                ),
                // Not oper-status: ignored.
                update(
                    Path {
                        elem: oper_status_path("5/0").elem[..3].to_vec(),
                        ..Default::default()
                    },
                    typed_value::Value::StringVal("UP".into()),
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            oper_statuses(&n),
            vec![
                ("1/0".into(), true),
                ("2/0".into(), false),
                ("3/0".into(), true),
                ("4/0".into(), false)
            ]
        );
        // The interface in the prefix, the leaf in the update.
        let full = oper_status_path("6/0");
        let n = Notification {
            prefix: Some(Path {
                elem: full.elem[..2].to_vec(),
                ..Default::default()
            }),
            update: vec![update(
                Path {
                    elem: full.elem[2..].to_vec(),
                    ..Default::default()
                },
                typed_value::Value::StringVal("UP".into()),
            )],
            ..Default::default()
        };
        assert_eq!(oper_statuses(&n), vec![("6/0".into(), true)]);
    }

    async fn next(rx: &mut mpsc::Receiver<PortEvent>) -> PortEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("in time")
            .expect("event")
    }

    /// Against the in-process gNMI server: every port after subscribing,
    /// then flips as they happen, then every port again after the server
    /// restarts on the same address.
    #[tokio::test]
    async fn follows_flips_and_resubscribes() {
        let server = GnmiTestServer::start(&[("1/0", true), ("2", true), ("mgmt0", true)])
            .await
            .expect("server");
        let addr = server.addr();
        let mut names = PortNames::default();
        names.names.insert("1/0".into(), 7);
        let (tx, mut rx) = mpsc::channel(16);
        let task = spawn("leaf1".into(), &addr.to_string(), names, tx);
        let ev = |port, up| PortEvent {
            switch: "leaf1".into(),
            port,
            up,
        };
        let mut first = vec![next(&mut rx).await, next(&mut rx).await];
        first.sort_by_key(|e| e.port);
        assert_eq!(first, vec![ev(2, true), ev(7, true)]);
        server.set("1/0", false);
        assert_eq!(next(&mut rx).await, ev(7, false));
        server.set("1/0", false); // no change, no event
        server.set("2", false);
        assert_eq!(next(&mut rx).await, ev(2, false));
        server.stop().await;
        let server = GnmiTestServer::start_on(addr, &[("1/0", true), ("2", false)])
            .await
            .expect("restart");
        let mut again = vec![next(&mut rx).await, next(&mut rx).await];
        again.sort_by_key(|e| e.port);
        assert_eq!(again, vec![ev(2, false), ev(7, true)]);
        task.abort();
        server.stop().await;
    }
}
