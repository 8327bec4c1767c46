//! Listening addresses (`127.0.0.1:PORT`, `127.0.0.1:0`, `unix:PATH`) and serving the engine
//! on them until a shutdown signal.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use mlbridge_proto::mlbridge::v1::ml_bridge_server::MlBridgeServer;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::Engine;
use crate::error::BridgeError;

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

/// Binds `addr`, calls `on_ready` with the bound address (the real port for port 0), and
/// serves `engine` until `shutdown` completes; in-flight calls finish first.
pub async fn serve(
    engine: Engine,
    addr: &ListenAddr,
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
    let service = MlBridgeServer::new(engine)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(usize::MAX);
    let router = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            undecodable_requests_are_invalid_arguments
                as fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>,
        ))
        .add_service(service);
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
