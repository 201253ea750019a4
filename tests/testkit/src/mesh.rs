//! Talking to a sidecar's mesh port directly, as a peer would (or as an intruder would).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use outrider_certs::{Credentials, DevCa, IssuedCert, SpiffeId};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// A client config toward the sidecar `server` (trust domain `public`, namespace `default`),
/// presenting a proper certificate for `app` issued by the CA in `ca_dir`.
pub fn peer_config(ca_dir: &std::path::Path, app: &str, server: &str) -> rustls::ClientConfig {
    let ca = DevCa::load(ca_dir).expect("mesh CA");
    let id = SpiffeId::new("public", "default", app).expect("id");
    let creds = Credentials::new(
        id.clone(),
        &ca.trust_bundle(),
        ca.issue(&id, Duration::from_secs(600)).expect("issue"),
    )
    .expect("creds");
    creds
        .client_config(SpiffeId::new("public", "default", server).expect("id"))
        .expect("client config")
}

/// Like [`peer_config`], but presenting `leaf` instead.
pub fn config_presenting(
    ca_dir: &std::path::Path,
    server: &str,
    leaf: IssuedCert,
) -> rustls::ClientConfig {
    presenting(peer_config(ca_dir, "helper", server), leaf)
}

/// `cfg` with its client certificate replaced by `leaf`, which our own builders would refuse.
pub fn presenting(mut cfg: rustls::ClientConfig, leaf: IssuedCert) -> rustls::ClientConfig {
    let signer = outrider_certs::crypto_provider()
        .key_provider
        .load_private_key(leaf.key)
        .expect("key");
    cfg.client_auth_cert_resolver = Arc::new(Fixed(Arc::new(rustls::sign::CertifiedKey::new(
        leaf.chain, signer,
    ))));
    cfg
}

/// A leaf signed by the CA in `ca_dir` with exactly these SANs and usages.
pub fn leaf_with(
    ca_dir: &std::path::Path,
    sans: Vec<SanType>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> IssuedCert {
    let (cert, key) = signed_leaf(ca_dir, sans, ekus);
    IssuedCert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after: std::time::SystemTime::now() + Duration::from_secs(600),
        issued_at: std::time::SystemTime::now(),
    }
}

/// A proper client certificate for `app` (namespace `default`) from the CA in `ca_dir`, and its
/// key, both in PEM, for clients outside this code base (curl, OpenSSL, Python).
pub fn client_pem(ca_dir: &std::path::Path, app: &str) -> (String, String) {
    let san = SanType::URI(
        format!("spiffe://public/ns/default/{app}")
            .try_into()
            .expect("uri"),
    );
    let (cert, key) = signed_leaf(ca_dir, vec![san], vec![ExtendedKeyUsagePurpose::ClientAuth]);
    (cert.pem(), key.serialize_pem())
}

fn signed_leaf(
    ca_dir: &std::path::Path,
    sans: Vec<SanType>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca.key")).expect("ca key"))
        .expect("key");
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(ca_dir.join("ca.crt")).expect("ca cert"),
        key,
    )
    .expect("issuer");
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.extended_key_usages = ekus;
    params.is_ca = IsCa::ExplicitNoCa;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    (cert, key)
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `GET path` over mutual TLS and HTTP/2 to the mesh port; `Err` describes where it failed.
pub async fn mesh_get(
    port: u16,
    config: rustls::ClientConfig,
    path: &str,
) -> Result<(u16, Bytes), String> {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("tcp: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("mesh.invalid").expect("name"), tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| format!("h2: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://mesh.invalid{path}"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let rsp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = rsp.status().as_u16();
        let body = rsp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}
