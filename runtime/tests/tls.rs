//! TLS and mutual TLS between the Rust client and `mlbridge serve --tls-*`, with
//! certificates made here (rcgen): a round trip, a client certificate required and
//! accepted, a client without one refused, and a server whose CA the client does not trust
//! refused.

mod support;

use std::path::{Path, PathBuf};

use mlbridge::Client;
use mlbridge::dial::ClientTls;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::Engine;

/// A CA that signs leaf certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mlbridge test CA");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` and its key, both PEM.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// An engine serving TLS with a certificate for `localhost` and 127.0.0.1 from `ca`, and
/// requiring client certificates from `client_ca` when given.
fn start_tls_engine(dir: &Path, ca: &Ca, client_ca: Option<&Ca>) -> Engine {
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let cert = write(dir, "server.pem", &cert);
    let key = write(dir, "server.key", &key);
    let mut args = vec![
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
    ];
    if let Some(client_ca) = client_ca {
        let path = write(dir, "client-ca.pem", &client_ca.pem());
        args.push("--tls-client-ca".to_owned());
        args.push(path.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Engine::start(&args)
}

/// The message of the first failure of connecting and pinging, with its causes.
async fn failure(address: &str, tls: Option<&ClientTls>) -> mlbridge::BridgeError {
    let client = match tls {
        Some(tls) => Client::connect_tls(address, tls).await,
        None => Client::connect(address).await,
    };
    let result = match client {
        Ok(client) => client.ping("hello").await.map(|_| ()),
        Err(error) => Err(error),
    };
    result.expect_err("the connection should be refused")
}

#[tokio::test]
async fn a_tls_round_trip_and_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let engine = start_tls_engine(dir.path(), &ca, None);
    // The certificate names 127.0.0.1 too, so the address's host checks out as it is.
    let client = Client::connect_tls(&engine.address, &ClientTls::new(ca.pem()))
        .await
        .unwrap();
    assert_eq!(client.ping("over tls").await.unwrap().message, "over tls");
    let session = client.session().await.unwrap();
    assert!(!session.id().is_empty());
    // `domain` checks against another name the certificate carries.
    let named = Client::connect_tls(
        &engine.address,
        &ClientTls::new(ca.pem()).domain("localhost"),
    )
    .await
    .unwrap();
    assert_eq!(named.ping("named").await.unwrap().message, "named");
    // A plaintext client gets no answer from a TLS listener.
    failure(&engine.address, None).await;
}

#[tokio::test]
async fn mutual_tls_accepts_a_client_certificate_and_refuses_none() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let client_ca = Ca::new();
    let engine = start_tls_engine(dir.path(), &ca, Some(&client_ca));
    let (cert, key) = client_ca.leaf(&["client.test"]);
    let with_identity = ClientTls::new(ca.pem()).identity(cert, key);
    let client = Client::connect_tls(&engine.address, &with_identity)
        .await
        .unwrap();
    assert_eq!(client.ping("mtls").await.unwrap().message, "mtls");

    let refused = failure(&engine.address, Some(&ClientTls::new(ca.pem()))).await;
    assert_eq!(
        refused.kind,
        mlbridge::ErrorKind::Unauthenticated,
        "{refused:?}"
    );
    assert!(
        refused
            .message
            .starts_with("this engine requires a client certificate"),
        "a refusal should say a certificate is missing: {refused:?}"
    );
    // A client certificate from a CA the engine does not trust is refused too (by the
    // handshake: the client learns only that the connection closed).
    let (cert, key) = Ca::new().leaf(&["stranger.test"]);
    let stranger = ClientTls::new(ca.pem()).identity(cert, key);
    let refused = failure(&engine.address, Some(&stranger)).await.message;
    assert!(!refused.contains("mtls"), "{refused}");
}

#[tokio::test]
async fn a_server_from_an_untrusted_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start_tls_engine(dir.path(), &Ca::new(), None);
    let refused = failure(&engine.address, Some(&ClientTls::new(Ca::new().pem())))
        .await
        .message;
    assert!(
        refused.contains("UnknownIssuer") || refused.to_lowercase().contains("certificate"),
        "{refused}"
    );
}

#[test]
fn the_client_tls_debug_hides_the_key() {
    let tls = ClientTls::new("ca").identity("cert", "SECRET KEY");
    assert!(!format!("{tls:?}").contains("SECRET"));
}
