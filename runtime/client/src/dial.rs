//! Dialing a gRPC peer, the one place that knows address forms: `HOST:PORT`,
//! `http://HOST:PORT` (or any `SCHEME://`) and `unix:PATH`. The client dials engines with
//! it and the engine dials its workers with it. An engine that serves TLS is dialed with a
//! [`ClientTls`]; workers and callback servers stay on loopback or Unix sockets without it.

use std::fmt;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// TLS to an engine (`mlbridge serve --tls-cert ...`): the CA its certificate must chain
/// to, optionally a client certificate (for an engine started with `--tls-client-ca`), and
/// optionally the name to check its certificate against (default: the address's host).
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl ClientTls {
    /// Trusts the CA certificates in `ca_pem` (PEM) and no others.
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        ClientTls {
            ca_pem: ca_pem.into(),
            identity: None,
            domain: None,
        }
    }

    /// Presents this certificate chain and private key (PEM) to the engine: mutual TLS.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Checks the engine's certificate against `name` instead of the address's host (e.g.
    /// when dialing an IP address whose certificate names `engine.internal`).
    pub fn domain(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        config
    }
}

impl fmt::Debug for ClientTls {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// A gRPC channel to `address` (`HOST:PORT`, `SCHEME://HOST:PORT` or `unix:PATH`), with
/// `TCP_NODELAY` on TCP.
pub async fn channel(address: &str) -> Result<Channel, tonic::transport::Error> {
    channel_with(address, None).await
}

/// [`channel`], over TLS when `tls` is given (`HOST:PORT` then means `https://HOST:PORT`).
pub async fn channel_with(
    address: &str,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(path) = address.strip_prefix("unix:") {
        let path = path.to_owned();
        // The URI is a placeholder; the connector ignores it and dials the socket.
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://localhost"))?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.config())?;
        }
        endpoint
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
            format!("{scheme}://{address}")
        };
        let mut endpoint = Endpoint::from_shared(uri)?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.config())?;
        }
        endpoint.tcp_nodelay(true).connect().await
    }
}
