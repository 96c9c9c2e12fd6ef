//! The P4Runtime client: one gRPC channel to one switch, the StreamChannel
//! session (arbitration, packet I/O, digests, idle timeouts), pipeline
//! push, batched writes with per-update errors, and streamed reads.

use std::time::Duration;

use p4runtime_proto::config::v1 as p4i;
use p4runtime_proto::v1 as p4;
use p4runtime_proto::v1::p4_runtime_client::P4RuntimeClient;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};

use super::backoff::Backoff;

/// Largest gRPC message we send or accept (a full read of a big switch).
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// TLS for the P4Runtime channel (PEM contents, not paths).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key for mutual TLS.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// Server name to verify, when it differs from the address host.
    pub domain: Option<String>,
}

/// Where and who: one switch, one controller identity.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of the P4Runtime server.
    pub address: String,
    pub device_id: u64,
    /// Our election id: the highest one connected is primary.
    pub election_id: u128,
    /// P4Runtime role; `None` is the default (full-access) role.
    pub role: Option<String>,
    pub connect_timeout: Duration,
    /// Deadline of each unary RPC (a Read is bounded by this per message).
    pub rpc_timeout: Duration,
    /// An HTTP/2 ping not answered within this long drops the connection
    /// (finds a dead switch or path even when idle).
    pub keepalive_timeout: Duration,
    pub tls: Option<TlsOptions>,
}

impl ClientOptions {
    pub fn new(address: impl Into<String>, device_id: u64, election_id: u128) -> Self {
        ClientOptions {
            address: address.into(),
            device_id,
            election_id,
            role: None,
            connect_timeout: Duration::from_secs(3),
            rpc_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// A P4Runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("{op} failed: {status}")]
    Rpc {
        op: &'static str,
        status: tonic::Status,
    },
    #[error("stream channel closed{}", .0.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    StreamClosed(Option<tonic::Status>),
    #[error("not primary for device (another controller has a higher election id)")]
    NotPrimary,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

impl ClientError {
    /// The gRPC code, where the error carries one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.code()),
            ClientError::StreamClosed(Some(s)) => Some(s.code()),
            _ => None,
        }
    }
}

/// Why one update of a batch failed (from the p4.v1.Error in the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateError {
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// The result of a Write: per update, in request order.
#[derive(Debug)]
pub enum WriteError {
    /// Some updates failed; `results[i]` belongs to `updates[i]`.
    Partial(Vec<Result<(), UpdateError>>),
    /// The whole call failed (transport, permission, bad request).
    Call(ClientError),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Partial(r) => {
                let failed: Vec<String> = r
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("#{i} {e}")))
                    .collect();
                write!(
                    f,
                    "{} of {} updates failed: {}",
                    failed.len(),
                    r.len(),
                    failed.join("; ")
                )
            }
            WriteError::Call(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WriteError {}

/// Decodes the per-update errors PI and Stratum put in the details of a
/// failed Write's status (one p4.v1.Error per update, OK for the good ones).
pub fn decode_update_errors(
    status: &tonic::Status,
    n: usize,
) -> Option<Vec<Result<(), UpdateError>>> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let rpc = tonic_types::Status::decode(details).ok()?;
    if rpc.details.len() != n {
        return None;
    }
    rpc.details
        .iter()
        .map(|any| {
            if !any.type_url.ends_with("p4.v1.Error") {
                return None;
            }
            let e = p4::Error::decode(any.value.as_slice()).ok()?;
            Some(if e.canonical_code == 0 {
                Ok(())
            } else {
                Err(UpdateError {
                    code: Code::from_i32(e.canonical_code),
                    message: e.message,
                })
            })
        })
        .collect()
}

/// Arbitration state of our stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mastership {
    /// No answer to our arbitration yet.
    Pending,
    Primary,
    /// Someone else is primary (their election id, if the switch says).
    Backup {
        primary_election_id: Option<u128>,
    },
}

/// Something the switch sent on the stream (other than arbitration, which
/// is reported through `Session::mastership`).
#[derive(Debug, Clone)]
pub enum StreamEvent {
    PacketIn(p4::PacketIn),
    Digest(p4::DigestList),
    IdleTimeout(p4::IdleTimeoutNotification),
    Error(p4::StreamError),
    /// The stream ended; no more events follow.
    Closed(Option<tonic::Status>),
}

pub fn to_uint128(v: u128) -> p4::Uint128 {
    p4::Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

pub fn from_uint128(v: &p4::Uint128) -> u128 {
    (u128::from(v.high) << 64) | u128::from(v.low)
}

/// A connected P4Runtime client for one device. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    rpc: P4RuntimeClient<Channel>,
    opts: ClientOptions,
}

/// Largest response header block (trailers with per-update errors) taken.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024 * 1024;

impl Client {
    /// Connects once, within `connect_timeout`.
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{}", opts.address))
            .map_err(|_| ClientError::Address(opts.address.clone()))?
            .connect_timeout(opts.connect_timeout)
            .tcp_nodelay(true)
            // Keepalive finds a dead switch or path within seconds even when
            // nothing is being written.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(opts.keepalive_timeout)
            .keep_alive_while_idle(true)
            // A Write whose 1,000 updates all fail carries 1,000 decoded
            // errors in its `grpc-status-details-bin` trailer: far beyond
            // h2's 16 KiB default, which would tear the connection down
            // (GOAWAY ENHANCE_YOUR_CALM) instead of reporting the errors.
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES);
        if let Some(tls) = &opts.tls {
            let mut cfg = ClientTlsConfig::new();
            if let Some(ca) = &tls.ca_pem {
                cfg = cfg.ca_certificate(Certificate::from_pem(ca));
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert_pem, &tls.client_key_pem) {
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
            if let Some(d) = &tls.domain {
                cfg = cfg.domain_name(d.clone());
            }
            ep = ep.tls_config(cfg).map_err(|source| ClientError::Connect {
                address: opts.address.clone(),
                source,
            })?;
        }
        let channel = ep.connect().await.map_err(|source| ClientError::Connect {
            address: opts.address.clone(),
            source,
        })?;
        let rpc = P4RuntimeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Client { rpc, opts })
    }

    /// Connects, retrying with capped backoff until it works or `give_up`
    /// resolves (e.g. shutdown).
    pub async fn connect_with_retry(
        opts: ClientOptions,
        backoff: &mut Backoff,
        give_up: impl std::future::Future<Output = ()>,
    ) -> Option<Client> {
        tokio::pin!(give_up);
        loop {
            match Client::connect(opts.clone()).await {
                Ok(c) => {
                    backoff.reset();
                    return Some(c);
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::debug!(address = %opts.address, error = %e, ?delay, "connect failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut give_up => return None,
                    }
                }
            }
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(self.opts.rpc_timeout);
        r
    }

    fn role(&self) -> String {
        self.opts.role.clone().unwrap_or_default()
    }

    pub async fn capabilities(&self) -> Result<String, ClientError> {
        let req = self.request(p4::CapabilitiesRequest {
            device_id: self.opts.device_id,
        });
        let resp = self
            .rpc
            .clone()
            .capabilities(req)
            .await
            .map_err(|status| ClientError::Rpc {
                op: "Capabilities",
                status,
            })?;
        Ok(resp.into_inner().p4runtime_api_version)
    }

    /// Opens the StreamChannel and sends our arbitration. The returned
    /// session reports mastership changes and delivers packet-ins etc.
    pub async fn open_session(&self) -> Result<Session, ClientError> {
        let (tx, rx) = mpsc::channel::<p4::StreamMessageRequest>(1024);
        let arbitration = p4::StreamMessageRequest {
            update: Some(p4::stream_message_request::Update::Arbitration(
                p4::MasterArbitrationUpdate {
                    device_id: self.opts.device_id,
                    role: self.opts.role.as_ref().map(|name| p4::Role {
                        name: name.clone(),
                        ..Default::default()
                    }),
                    election_id: Some(to_uint128(self.opts.election_id)),
                    status: None,
                },
            )),
        };
        tx.send(arbitration)
            .await
            .map_err(|_| ClientError::StreamClosed(None))?;
        let inbound = self
            .rpc
            .clone()
            .stream_channel(ReceiverStream::new(rx))
            .await
            .map_err(|status| ClientError::Rpc {
                op: "StreamChannel",
                status,
            })?
            .into_inner();
        let (mastership_tx, mastership) = watch::channel(Mastership::Pending);
        let (events_tx, events) = mpsc::channel(4096);
        let my_id = self.opts.election_id;
        let address = self.opts.address.clone();
        tokio::spawn(pump_stream(
            inbound,
            my_id,
            address,
            mastership_tx,
            events_tx,
        ));
        Ok(Session {
            tx,
            mastership,
            events,
        })
    }

    /// Writes one batch with CONTINUE_ON_ERROR (bmv2 supports no other
    /// atomicity): every update is tried, failures come back per update.
    pub async fn write(&self, updates: Vec<p4::Update>) -> Result<(), WriteError> {
        if updates.is_empty() {
            return Ok(());
        }
        let n = updates.len();
        #[allow(deprecated)]
        let req = self.request(p4::WriteRequest {
            device_id: self.opts.device_id,
            role_id: 0,
            role: self.role(),
            election_id: Some(to_uint128(self.opts.election_id)),
            updates,
            atomicity: p4::write_request::Atomicity::ContinueOnError as i32,
        });
        match self.rpc.clone().write(req).await {
            Ok(_) => Ok(()),
            Err(status) => match decode_update_errors(&status, n) {
                Some(results) if results.iter().any(|r| r.is_err()) => {
                    Err(WriteError::Partial(results))
                }
                _ => Err(WriteError::Call(ClientError::Rpc {
                    op: "Write",
                    status,
                })),
            },
        }
    }

    /// Reads every entity matching the (possibly wildcard) request entities.
    pub async fn read(&self, entities: Vec<p4::Entity>) -> Result<Vec<p4::Entity>, ClientError> {
        let req = self.request(p4::ReadRequest {
            device_id: self.opts.device_id,
            role: self.role(),
            entities,
        });
        let mut stream = self
            .rpc
            .clone()
            .read(req)
            .await
            .map_err(|status| ClientError::Rpc { op: "Read", status })?
            .into_inner();
        let mut out = Vec::new();
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(|status| ClientError::Rpc { op: "Read", status })?;
            out.extend(msg.entities);
        }
        Ok(out)
    }

    /// Pushes a pipeline. VERIFY_AND_COMMIT replaces everything (a fresh
    /// switch); RECONCILE_AND_COMMIT keeps forwarding state where the new
    /// program allows (a running switch).
    pub async fn set_pipeline(
        &self,
        action: p4::set_forwarding_pipeline_config_request::Action,
        p4info: p4i::P4Info,
        device_config: Vec<u8>,
        cookie: u64,
    ) -> Result<(), ClientError> {
        #[allow(deprecated)]
        let req = self.request(p4::SetForwardingPipelineConfigRequest {
            device_id: self.opts.device_id,
            role_id: 0,
            role: self.role(),
            election_id: Some(to_uint128(self.opts.election_id)),
            action: action as i32,
            config: Some(p4::ForwardingPipelineConfig {
                p4info: Some(p4info),
                p4_device_config: device_config,
                cookie: Some(p4::forwarding_pipeline_config::Cookie { cookie }),
            }),
        });
        self.rpc
            .clone()
            .set_forwarding_pipeline_config(req)
            .await
            .map_err(|status| ClientError::Rpc {
                op: "SetForwardingPipelineConfig",
                status,
            })?;
        Ok(())
    }

    /// The P4Info and cookie of the pipeline the switch runs (`None`: it
    /// runs none, or does not say which).
    pub async fn pipeline_p4info(&self) -> Result<Option<(p4i::P4Info, Option<u64>)>, ClientError> {
        use p4::get_forwarding_pipeline_config_request::ResponseType;
        let config = self.pipeline_config(ResponseType::P4infoAndCookie).await?;
        Ok(config.and_then(|c| {
            let cookie = c.cookie.map(|c| c.cookie);
            c.p4info.map(|p| (p, cookie))
        }))
    }

    /// The cookie of the installed pipeline; `None` when the switch runs no
    /// pipeline (bmv2 answers FAILED_PRECONDITION then, e.g. after a restart).
    pub async fn pipeline_cookie(&self) -> Result<Option<u64>, ClientError> {
        use p4::get_forwarding_pipeline_config_request::ResponseType;
        let config = self.pipeline_config(ResponseType::CookieOnly).await?;
        Ok(config.and_then(|c| c.cookie).map(|c| c.cookie))
    }

    /// GetForwardingPipelineConfig: the parts `response_type` asks for;
    /// `None` when the switch runs no pipeline.
    async fn pipeline_config(
        &self,
        response_type: p4::get_forwarding_pipeline_config_request::ResponseType,
    ) -> Result<Option<p4::ForwardingPipelineConfig>, ClientError> {
        let req = self.request(p4::GetForwardingPipelineConfigRequest {
            device_id: self.opts.device_id,
            response_type: response_type as i32,
        });
        match self.rpc.clone().get_forwarding_pipeline_config(req).await {
            Ok(resp) => Ok(resp.into_inner().config),
            Err(s) if s.code() == Code::FailedPrecondition || s.code() == Code::NotFound => {
                Ok(None)
            }
            Err(status) => Err(ClientError::Rpc {
                op: "GetForwardingPipelineConfig",
                status,
            }),
        }
    }
}

/// Reads the switch's stream and turns it into mastership + events.
async fn pump_stream(
    mut inbound: tonic::Streaming<p4::StreamMessageResponse>,
    my_id: u128,
    address: String,
    mastership: watch::Sender<Mastership>,
    events: mpsc::Sender<StreamEvent>,
) {
    use p4::stream_message_response::Update as U;
    let closed = loop {
        let msg = match inbound.next().await {
            Some(Ok(m)) => m,
            Some(Err(status)) => break Some(status),
            None => break None,
        };
        let event = match msg.update {
            Some(U::Arbitration(a)) => {
                let code = a.status.as_ref().map(|s| s.code).unwrap_or(0);
                let primary_id = a.election_id.as_ref().map(from_uint128);
                // OK means we are primary; otherwise the election id names the
                // current primary (or is absent when there is none).
                let m = if code == 0 && primary_id.is_none_or(|id| id == my_id) {
                    Mastership::Primary
                } else {
                    Mastership::Backup {
                        primary_election_id: primary_id,
                    }
                };
                tracing::debug!(%address, ?m, "arbitration");
                mastership.send_replace(m);
                continue;
            }
            Some(U::Packet(p)) => StreamEvent::PacketIn(p),
            Some(U::Digest(d)) => StreamEvent::Digest(d),
            Some(U::IdleTimeoutNotification(n)) => StreamEvent::IdleTimeout(n),
            Some(U::Error(e)) => StreamEvent::Error(e),
            Some(U::Other(_)) | None => continue,
        };
        // A full event queue means nobody is keeping up; drop rather than
        // stall arbitration updates behind it.
        if events.try_send(event).is_err() {
            tracing::warn!(%address, "stream event queue full, event dropped");
        }
    };
    mastership.send_replace(Mastership::Backup {
        primary_election_id: None,
    });
    let _ = events.send(StreamEvent::Closed(closed)).await;
}

/// A clonable handle for sending on a session's stream (packet-outs, digest
/// acks) from other tasks.
#[derive(Clone)]
pub struct SessionSender {
    tx: mpsc::Sender<p4::StreamMessageRequest>,
}

impl SessionSender {
    pub async fn send_packet(&self, packet: p4::PacketOut) -> Result<(), ClientError> {
        self.tx
            .send(p4::StreamMessageRequest {
                update: Some(p4::stream_message_request::Update::Packet(packet)),
            })
            .await
            .map_err(|_| ClientError::StreamClosed(None))
    }

    pub async fn ack_digest(&self, digest_id: u32, list_id: u64) -> Result<(), ClientError> {
        self.tx
            .send(p4::StreamMessageRequest {
                update: Some(p4::stream_message_request::Update::DigestAck(
                    p4::DigestListAck { digest_id, list_id },
                )),
            })
            .await
            .map_err(|_| ClientError::StreamClosed(None))
    }
}

/// An open StreamChannel. Dropping it closes the stream (and, on the
/// switch, our claim to be primary).
pub struct Session {
    tx: mpsc::Sender<p4::StreamMessageRequest>,
    mastership: watch::Receiver<Mastership>,
    pub events: mpsc::Receiver<StreamEvent>,
}

impl Session {
    pub fn mastership(&self) -> Mastership {
        *self.mastership.borrow()
    }

    /// A receiver that sees every mastership change.
    pub fn mastership_watch(&self) -> watch::Receiver<Mastership> {
        self.mastership.clone()
    }

    /// Waits until the switch has answered our arbitration.
    pub async fn wait_arbitration(&mut self, timeout: Duration) -> Result<Mastership, ClientError> {
        let r = tokio::time::timeout(
            timeout,
            self.mastership.wait_for(|m| *m != Mastership::Pending),
        )
        .await
        .map_err(|_| ClientError::Timeout("arbitration"))?;
        r.map(|m| *m).map_err(|_| ClientError::StreamClosed(None))
    }

    /// Waits to be primary; `NotPrimary` if the switch says we are backup.
    pub async fn wait_primary(&mut self, timeout: Duration) -> Result<(), ClientError> {
        match self.wait_arbitration(timeout).await? {
            Mastership::Primary => Ok(()),
            _ => Err(ClientError::NotPrimary),
        }
    }

    pub fn sender(&self) -> SessionSender {
        SessionSender {
            tx: self.tx.clone(),
        }
    }

    pub async fn send_packet(&self, packet: p4::PacketOut) -> Result<(), ClientError> {
        self.sender().send_packet(packet).await
    }

    pub async fn ack_digest(&self, digest_id: u32, list_id: u64) -> Result<(), ClientError> {
        self.sender().ack_digest(digest_id, list_id).await
    }

    /// Splits the session: the sender, the mastership watch, and the event
    /// receiver, for use from different tasks. The stream stays open while
    /// any sender lives.
    pub fn split(
        self,
    ) -> (
        SessionSender,
        watch::Receiver<Mastership>,
        mpsc::Receiver<StreamEvent>,
    ) {
        (SessionSender { tx: self.tx }, self.mastership, self.events)
    }
}
