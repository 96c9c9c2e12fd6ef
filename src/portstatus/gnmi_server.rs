//! An in-process gNMI server for tests: it serves interface oper-status
//! to Subscribe (ON_CHANGE, STREAM) the way Stratum does, from a table a
//! test flips with `set`. An addition to real switches, never instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use p4runtime_proto::gnmi::g_nmi_server::{GNmi, GNmiServer};
use p4runtime_proto::gnmi::{
    subscribe_request, subscribe_response, subscription_list, typed_value, Notification,
    SubscribeRequest, SubscribeResponse, SubscriptionMode, TypedValue, Update,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::gnmi::{oper_status_path, oper_status_request};

/// Interface name -> oper-status up.
type Ports = BTreeMap<String, bool>;

struct Shared {
    ports: Mutex<Ports>,
    changes: broadcast::Sender<(String, bool)>,
    stopping: watch::Receiver<bool>,
}

/// A running gNMI test server on 127.0.0.1.
pub struct GnmiTestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    ended: oneshot::Receiver<()>,
}

impl GnmiTestServer {
    /// Starts on a free port with these interfaces and states.
    pub async fn start(ports: &[(&str, bool)]) -> std::io::Result<GnmiTestServer> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), ports).await
    }

    /// Starts on `addr` (a restart on the address a client knows).
    pub async fn start_on(
        addr: SocketAddr,
        ports: &[(&str, bool)],
    ) -> std::io::Result<GnmiTestServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared {
            ports: Mutex::new(ports.iter().map(|(n, up)| (n.to_string(), *up)).collect()),
            changes: broadcast::channel(1024).0,
            stopping: stopping.clone(),
        });
        let (done, ended) = oneshot::channel();
        let svc = GNmiServer::new(Service {
            shared: shared.clone(),
        });
        tokio::spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped(stopping))
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "gNMI test server ended");
            }
            let _ = done.send(());
        });
        Ok(GnmiTestServer {
            addr,
            shared,
            stop,
            ended,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets an interface's oper-status (adding the interface if new);
    /// subscribers hear of it only if it changed.
    pub fn set(&self, name: &str, up: bool) {
        let mut ports = self.shared.ports.lock().unwrap_or_else(|p| p.into_inner());
        if ports.insert(name.to_string(), up) != Some(up) {
            // No subscriber is fine.
            let _ = self.shared.changes.send((name.to_string(), up));
        }
    }

    /// Ends every stream and the server, and frees the address.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.ended.await;
    }
}

/// Resolves once the server is told to stop (or dropped).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    while !*stopping.borrow_and_update() {
        if stopping.changed().await.is_err() {
            return;
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

fn notification(name: &str, up: bool) -> SubscribeResponse {
    let status = if up { "UP" } else { "DOWN" };
    SubscribeResponse {
        response: Some(subscribe_response::Response::Update(Notification {
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
            update: vec![Update {
                path: Some(oper_status_path(name)),
                val: Some(TypedValue {
                    value: Some(typed_value::Value::StringVal(status.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

/// Only what Stratum serves for port status: a STREAM subscription to
/// interface oper-status, ON_CHANGE.
fn check_request(req: &SubscribeRequest) -> Result<(), Status> {
    let want = oper_status_request();
    let (
        Some(subscribe_request::Request::Subscribe(got)),
        Some(subscribe_request::Request::Subscribe(want)),
    ) = (&req.request, &want.request)
    else {
        return Err(Status::invalid_argument(
            "first request must be a subscription list",
        ));
    };
    if got.mode != subscription_list::Mode::Stream as i32 {
        return Err(Status::unimplemented("only STREAM subscriptions"));
    }
    let ok = got.subscription.len() == 1
        && got.subscription[0].path == want.subscription[0].path
        && got.subscription[0].mode == SubscriptionMode::OnChange as i32;
    if !ok {
        return Err(Status::unimplemented(
            "only /interfaces/interface[name=*]/state/oper-status ON_CHANGE",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl GNmi for Service {
    type SubscribeStream = ReceiverStream<Result<SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut requests = request.into_inner();
        let first = requests
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("no subscription"))??;
        check_request(&first)?;
        // Subscribed to changes before the snapshot: none is lost between.
        let mut changes = self.shared.changes.subscribe();
        let snapshot = self
            .shared
            .ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let stop = stopped(self.shared.stopping.clone());
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            for (name, up) in &snapshot {
                if tx.send(Ok(notification(name, *up))).await.is_err() {
                    return;
                }
            }
            let sync = SubscribeResponse {
                response: Some(subscribe_response::Response::SyncResponse(true)),
            };
            if tx.send(Ok(sync)).await.is_err() {
                return;
            }
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    change = changes.recv() => match change {
                        Ok((name, up)) => {
                            if tx.send(Ok(notification(&name, up))).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx.send(Err(Status::resource_exhausted("subscriber too slow"))).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
