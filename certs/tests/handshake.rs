//! Real TLS handshakes over loopback between configurations built by this crate, and with
//! certificates from elsewhere that must be refused.

use std::sync::Arc;
use std::time::Duration;

use outrider_certs::{Credentials, DevCa, SpiffeId};
use outrider_testkit::mesh::{leaf_with, presenting};
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn id(app: &str) -> SpiffeId {
    SpiffeId::new("public", "default", app).unwrap()
}

fn creds(ca: &DevCa, app: &str) -> Credentials {
    let cert = ca.issue(&id(app), Duration::from_secs(3600)).unwrap();
    Credentials::new(id(app), &ca.trust_bundle(), cert).unwrap()
}

/// A development CA of its own, in `ca` under a temporary directory that lives as long as the
/// guard returned with it.
fn fresh_ca() -> (tempfile::TempDir, DevCa) {
    let home = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(&home.path().join("ca")).unwrap();
    (home, ca)
}

/// Runs one handshake; returns the identity the server saw, or the client's error.
async fn handshake(server: &Credentials, client: rustls::ClientConfig) -> Result<SpiffeId, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server.server_config().unwrap()));
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        tls.write_all(b"hi").await.unwrap();
        tls.shutdown().await.ok();
        Ok::<_, String>(SpiffeId::from_certificate(&peer).unwrap())
    });
    let connector = TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("mesh.invalid").unwrap();
    let client_result = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(buf)
    }
    .await;
    let server_result = srv.await.unwrap();
    match (client_result, server_result) {
        (Ok(buf), Ok(peer)) if buf == b"hi" => Ok(peer),
        (c, s) => Err(format!("client: {c:?}, server: {s:?}")),
    }
}

#[tokio::test]
async fn mutual_tls_between_workloads_of_one_ca() {
    let (_home, ca) = fresh_ca();
    let (a, b) = (creds(&ca, "a"), creds(&ca, "b"));
    let peer = handshake(&b, a.client_config(id("b")).unwrap())
        .await
        .unwrap();
    assert_eq!(peer, id("a"));
}

#[tokio::test]
async fn client_refuses_a_server_with_another_identity() {
    let (_home, ca) = fresh_ca();
    let (a, c) = (creds(&ca, "a"), creds(&ca, "c"));
    let err = handshake(&c, a.client_config(id("b")).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.contains("expected spiffe://public/ns/default/b"),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_from_another_ca() {
    let ((_h1, ca1), (_h2, ca2)) = (fresh_ca(), fresh_ca());
    let b = creds(&ca1, "b");
    // The intruder trusts ca1 (so it would accept b) but its own certificate is from ca2.
    let cert = ca2.issue(&id("a"), Duration::from_secs(3600)).unwrap();
    let intruder = Credentials::new(id("a"), &ca2.trust_bundle(), cert).unwrap();
    let err = handshake(&b, intruder.client_config(id("b")).unwrap())
        .await
        .unwrap_err();
    assert!(err.contains("server: Err"), "{err}");
}

#[tokio::test]
async fn own_certificate_must_carry_the_id_as_uri_san() {
    let (home, ca) = fresh_ca();
    let dir = home.path().join("ca");
    let dns = leaf_with(
        &dir,
        vec![SanType::DnsName(
            "spiffe://public/ns/default/a".try_into().unwrap(),
        )],
        vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
    );
    let err = Credentials::new(id("a"), &ca.trust_bundle(), dns).unwrap_err();
    assert!(
        err.to_string().contains("no URI SAN") || err.to_string().contains("SAN"),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_clients_without_uri_san_or_client_auth() {
    let (home, ca) = fresh_ca();
    let dir = home.path().join("ca");
    let b = creds(&ca, "b");
    let uri = |s: &str| SanType::URI(s.try_into().unwrap());
    let cases = [
        (
            "DNS SAN instead of URI SAN",
            vec![SanType::DnsName(
                "spiffe://public/ns/default/a".try_into().unwrap(),
            )],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
        (
            "serverAuth only",
            vec![uri("spiffe://public/ns/default/a")],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        ),
        (
            "no EKU extension at all",
            vec![uri("spiffe://public/ns/default/a")],
            vec![],
        ),
        (
            "other trust domain",
            vec![uri("spiffe://other/ns/default/a")],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
        (
            "two URI SANs",
            vec![
                uri("spiffe://public/ns/default/a"),
                uri("spiffe://public/ns/default/b"),
            ],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
    ];
    for (what, sans, ekus) in cases {
        let leaf = leaf_with(&dir, sans, ekus);
        let client = presenting(creds(&ca, "helper").client_config(id("b")).unwrap(), leaf);
        let err = handshake(&b, client).await.expect_err(what);
        assert!(err.contains("server: Err"), "{what}: {err}");
    }
}

/// Records the certificate authorities the server names, then presents the usual certificate.
#[derive(Debug)]
struct RecordingHints {
    inner: Arc<dyn rustls::client::ResolvesClientCert>,
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl rustls::client::ResolvesClientCert for RecordingHints {
    fn resolve(
        &self,
        hints: &[&[u8]],
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .extend(hints.iter().map(|h| h.to_vec()));
        self.inner.resolve(hints, schemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

#[tokio::test]
async fn the_server_names_its_roots_as_whole_der_names() {
    let (_home, ca) = fresh_ca();
    let (a, b) = (creds(&ca, "a"), creds(&ca, "b"));
    let mut client = a.client_config(id("b")).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    client.client_auth_cert_resolver = Arc::new(RecordingHints {
        inner: client.client_auth_cert_resolver.clone(),
        seen: seen.clone(),
    });
    handshake(&b, client).await.unwrap();

    let hints = seen.lock().unwrap().clone();
    let bundle = ca.trust_bundle();
    let root = &bundle.certs()[0];
    let (_, root) = x509_parser::parse_x509_certificate(root).unwrap();
    assert_eq!(hints.len(), 1);
    // A complete DER Name (OpenSSL parses the hint as one), equal to the root's subject.
    use x509_parser::prelude::FromDer as _;
    let (rest, name) =
        x509_parser::x509::X509Name::from_der(&hints[0]).expect("the hint is a DER Name");
    assert!(rest.is_empty());
    assert_eq!(name.as_raw(), root.subject().as_raw());
}
