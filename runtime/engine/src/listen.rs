//! Listening addresses (`127.0.0.1:PORT`, `127.0.0.1:0`, `unix:PATH`) and serving the engine
//! on them until a shutdown signal, with the standard gRPC health (`grpc.health.v1`) and
//! reflection (`grpc.reflection.v1` and `v1alpha`) services beside `MLBridge`, optionally
//! over TLS or mutual TLS.
//!
//! Shutdown goes in steps: when `shutdown` completes, health reports NOT_SERVING for `""`
//! and `mlbridge.v1.MLBridge` (health watchers get that update, then their streams end);
//! the listener keeps accepting until no call is being handled, so that probes and load
//! balancers see NOT_SERVING rather than a refused connection; then it closes and open
//! streams finish.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use mlbridge_proto::mlbridge::v1::ml_bridge_server::MlBridgeServer;
use mlbridge_proto::mlbridge::v1::worker_hub_server::WorkerHubServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::Engine;
use crate::error::BridgeError;
use crate::workers::WorkerHubService;

use tonic::codegen::http;

/// How tonic starts the message of a request it could not decode.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// tonic answers a request body that is not a valid message with a bare INTERNAL status;
/// the engine's contract is an INVALID_ARGUMENT status carrying a `BridgeError` (the
/// client sent it; nothing inside the engine failed). Other responses pass unchanged.
fn undecodable_requests_are_invalid_arguments(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let Some(status) = tonic::Status::from_header_map(response.headers()) else {
        return response;
    };
    let Some(reason) = status.message().strip_prefix(DECODE_FAILURE) else {
        return response;
    };
    if status.code() != tonic::Code::Internal {
        return response;
    }
    let reason = reason.trim_start_matches(':').trim();
    let error = BridgeError::invalid_argument(
        "request",
        format!("the request is not a valid protobuf message of the RPC's request type: {reason}"),
    );
    tonic::Status::from(error).into_http()
}

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address; port 0 picks a free port.
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

/// An address that is neither `HOST:PORT` nor `unix:PATH`.
#[derive(Debug, thiserror::Error)]
#[error("invalid listen address `{0}`: expected IP:PORT (e.g. 127.0.0.1:0) or unix:PATH")]
pub struct InvalidAddr(String);

impl FromStr for ListenAddr {
    type Err = InvalidAddr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(InvalidAddr(text.to_owned()));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        text.parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| InvalidAddr(text.to_owned()))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The service name health reports for `MLBridge` (besides `""`, the whole server).
pub const MLBRIDGE_SERVICE: &str = mlbridge_proto::mlbridge::v1::ml_bridge_server::SERVICE_NAME;

/// Where workers started elsewhere attach (`WorkerHub`).
const WORKER_HUB_SERVICE: &str = mlbridge_proto::mlbridge::v1::worker_hub_server::SERVICE_NAME;

/// TLS for the engine's listener: its certificate chain and key, and optionally the CA that
/// client certificates must chain to (mutual TLS: a client without one is refused).
#[derive(Clone)]
pub struct ServerTls {
    /// The server's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The server's private key, PEM.
    pub key_pem: Vec<u8>,
    /// CA certificates (PEM) that client certificates must chain to; `None`: clients need
    /// no certificate.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ServerTls {
    // The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// How [`serve_with`] serves, beyond the address.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// TLS on the listener (`None`: plaintext HTTP/2).
    pub tls: Option<ServerTls>,
    /// The health statuses the listener reports, for a caller that turns them NOT_SERVING
    /// itself as soon as it decides to stop (before, say, stopping its workers). `None`: a
    /// fresh one. Either way they turn NOT_SERVING when `shutdown` completes.
    pub health: Option<Health>,
}

/// The statuses the engine's `grpc.health.v1.Health` service reports: SERVING for `""` and
/// `mlbridge.v1.MLBridge` until [`Health::set_not_serving`].
#[derive(Debug, Clone, Default)]
pub struct Health {
    reporter: HealthReporter,
    /// Set once NOT_SERVING has been reported, so that watchers are told once.
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Health {
    /// Statuses that start SERVING (once a listener serves them).
    pub fn new() -> Self {
        Health::default()
    }

    /// Reports NOT_SERVING for `""` and `mlbridge.v1.MLBridge`; health watchers are told
    /// (once: later calls change nothing).
    pub async fn set_not_serving(&self) {
        if self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        for service in ["", MLBRIDGE_SERVICE] {
            self.reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    }
}

/// Binds `addr`, calls `on_ready` with the bound address (the real port for port 0), and
/// serves `engine` until `shutdown` completes; in-flight calls finish first.
pub async fn serve(
    engine: Engine,
    addr: &ListenAddr,
    on_ready: impl FnOnce(&ListenAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with(engine, addr, &ServeOptions::default(), on_ready, shutdown).await
}

/// [`serve`] with options (TLS). A TLS setting that rustls rejects (e.g. a key that does
/// not parse) fails before anything is bound, as `InvalidInput`.
pub async fn serve_with(
    engine: Engine,
    addr: &ListenAddr,
    options: &ServeOptions,
    on_ready: impl FnOnce(&ListenAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    // Room above the value limit for the rest of the message, so that an oversized value
    // gets the engine's PAYLOAD_TOO_LARGE (naming the variable and limit) rather than a
    // transport error.
    let max_message = engine
        .limits()
        .max_value_bytes
        .saturating_add(4 * 1024 * 1024);
    let workers = engine.workers().cloned();
    let engine_id = engine.id().to_owned();
    let service = MlBridgeServer::new(engine)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let health = options.health.clone().unwrap_or_default();
    health
        .reporter
        .set_service_status(MLBRIDGE_SERVICE, ServingStatus::Serving)
        .await;
    let (stopping, stopping_rx) = watch::channel(false);
    let hub = WorkerHubServer::new(WorkerHubService::new(
        workers,
        engine_id,
        stopping_rx.clone(),
    ))
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(usize::MAX);
    let health_service = HealthServer::new(EndingHealth {
        inner: HealthService::from_health_reporter(health.reporter.clone()),
        stopping: stopping_rx,
    });
    let reflection_v1 = reflection().build_v1().map_err(std::io::Error::other)?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(std::io::Error::other)?;
    let (calls, calls_rx) = watch::channel(0usize);
    let calls = Arc::new(calls);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        server = server
            .tls_config(server_tls_config(tls))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    }
    let router = server
        // Outermost, so that it sees each call's final status.
        .layer(crate::telemetry::RpcTelemetryLayer)
        .layer(tower::util::MapResponseLayer::new(
            undecodable_requests_are_invalid_arguments
                as fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>,
        ))
        .layer(CountCallsLayer { calls })
        .layer(tower::util::option_layer(
            options
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_ca_pem.is_some())
                .then_some(RequireClientCertLayer),
        ))
        .add_service(service)
        .add_service(hub)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let shutdown = async move {
        shutdown.await;
        health.set_not_serving().await;
        let _ = stopping.send(true);
        // Keep accepting (health checks, and calls from clients that have not noticed
        // yet) until no call is being handled.
        let mut calls = calls_rx;
        let _ = calls.wait_for(|n| *n == 0).await;
        // The sender lives until the listener closes: health watch streams end by
        // themselves, not because it went away.
        drop(stopping);
    };
    match addr {
        ListenAddr::Tcp(addr) => {
            let listener = TcpListener::bind(addr).await?;
            on_ready(&ListenAddr::Tcp(listener.local_addr()?));
            // Small request/response messages must not wait for Nagle's algorithm,
            // especially while a watch stream shares the connection.
            let incoming = TcpListenerStream::new(listener).map(|stream| {
                let stream = stream?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(stream)
            });
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
                .map_err(std::io::Error::other)
        }
        ListenAddr::Unix(path) => {
            // A stale socket file from a previous run would make bind fail.
            if path.exists() {
                std::fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path)?;
            on_ready(addr);
            let incoming = UnixListenerStream::new(listener);
            let result = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
                .map_err(std::io::Error::other);
            let _ = std::fs::remove_file(path);
            result
        }
    }
}

/// Server reflection over the schema's descriptor set (generated from `proto/`, see
/// `mlbridge_proto::FILE_DESCRIPTOR_SET`) and those of health and reflection, listing the
/// services this listener serves (not `Worker` or `CallbackServer`, which workers and
/// clients serve).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mlbridge_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .include_reflection_service(false);
    for service in SERVED {
        builder = builder.with_service_name(*service);
    }
    builder
}

/// The services this listener serves, as reflection lists them.
const SERVED: &[&str] = &[
    MLBRIDGE_SERVICE,
    WORKER_HUB_SERVICE,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn server_tls_config(tls: &ServerTls) -> tonic::transport::ServerTlsConfig {
    let mut config = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
    );
    if let Some(ca) = &tls.client_ca_pem {
        // The handshake lets a client without a certificate through (one that presents a
        // certificate is still verified against the CA), so that its calls can be refused
        // with a status that says why (RequireClientCert): a refused TLS 1.3 handshake
        // reaches the client only as a closed connection.
        config = config
            .client_ca_root(tonic::transport::Certificate::from_pem(ca))
            .client_auth_optional(true);
    }
    config
}

/// Mutual TLS: refuses every call on a connection whose client presented no certificate,
/// with an UNAUTHENTICATED BridgeError (as a missing token is) and a message that says so.
#[derive(Clone, Copy)]
struct RequireClientCertLayer;

impl<S> tower::Layer<S> for RequireClientCertLayer {
    type Service = RequireClientCert<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireClientCert { inner }
    }
}

#[derive(Clone)]
struct RequireClientCert<S> {
    inner: S,
}

/// Whether the connection of `request` is TLS with a verified client certificate.
fn has_client_cert<B>(request: &http::Request<B>) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
    let extensions = request.extensions();
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<UdsConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs)
        });
    certs.is_some_and(|certs| !certs.is_empty())
}

impl<S, B> tower::Service<http::Request<B>> for RequireClientCert<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if has_client_cert(&request) {
            return Box::pin(self.inner.call(request));
        }
        let refused = tonic::Status::from(BridgeError::new(
            crate::error::ErrorKind::Unauthenticated,
            "this engine requires a client certificate (mutual TLS): connect with a \
             certificate signed by the CA the engine was started with (--tls-client-ca)",
        ));
        Box::pin(std::future::ready(Ok(refused.into_http())))
    }
}

/// tonic-health's service, except that once the engine is stopping a watch stream ends
/// right after it has sent NOT_SERVING: an open watch must not hold up the shutdown.
struct EndingHealth {
    inner: HealthService,
    stopping: watch::Receiver<bool>,
}

type HealthWatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl HealthApi for EndingHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream = HealthWatchStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let inner = self.inner.watch(request).await?.into_inner();
        let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
        let state = (inner, self.stopping.clone(), false);
        let stream = futures_util::stream::unfold(
            state,
            move |(mut inner, mut stopping, sent_not_serving)| async move {
                loop {
                    if sent_not_serving && *stopping.borrow() {
                        return None;
                    }
                    tokio::select! {
                        item = inner.next() => {
                            let item = item?;
                            let last = matches!(&item, Ok(r) if r.status == not_serving);
                            return Some((item, (inner, stopping, last)));
                        }
                        changed = stopping.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                        }
                    }
                }
            },
        );
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

/// Counts the calls being handled (from request to response headers; a stream's body does
/// not count), so that shutdown can wait for them before the listener closes.
#[derive(Clone)]
struct CountCallsLayer {
    calls: Arc<watch::Sender<usize>>,
}

impl<S> tower::Layer<S> for CountCallsLayer {
    type Service = CountCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountCalls {
            inner,
            calls: Arc::clone(&self.calls),
        }
    }
}

#[derive(Clone)]
struct CountCalls<S> {
    inner: S,
    calls: Arc<watch::Sender<usize>>,
}

/// One call being handled; dropping it uncounts the call.
struct CallGuard(Arc<watch::Sender<usize>>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl<S, B> tower::Service<http::Request<B>> for CountCalls<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.calls.send_modify(|n| *n += 1);
        let guard = CallGuard(Arc::clone(&self.calls));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(guard);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "127.0.0.1:0".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        for bad in ["localhost", "unix:", "127.0.0.1", ""] {
            let err = bad.parse::<ListenAddr>().unwrap_err().to_string();
            assert!(err.contains("invalid listen address"), "{err}");
        }
    }
}
