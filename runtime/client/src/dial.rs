//! Dialing a gRPC peer, the one place that knows address forms: `HOST:PORT`,
//! `http://HOST:PORT` (or any `SCHEME://`) and `unix:PATH`. The client dials engines with
//! it and the engine dials its workers with it.

use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC channel to `address` (`HOST:PORT`, `SCHEME://HOST:PORT` or `unix:PATH`), with
/// `TCP_NODELAY` on TCP.
pub async fn channel(address: &str) -> Result<Channel, tonic::transport::Error> {
    if let Some(path) = address.strip_prefix("unix:") {
        let path = path.to_owned();
        // The URI is a placeholder; the connector ignores it and dials the socket.
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
    } else {
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        Endpoint::from_shared(uri)?
            .tcp_nodelay(true)
            .connect()
            .await
    }
}
