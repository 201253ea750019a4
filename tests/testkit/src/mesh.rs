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

/// `cfg` presenting no client certificate at all.
pub fn anonymous(mut cfg: rustls::ClientConfig) -> rustls::ClientConfig {
    cfg.client_auth_cert_resolver = Arc::new(NoCertificate);
    cfg
}

#[derive(Debug)]
struct NoCertificate;

impl rustls::client::ResolvesClientCert for NoCertificate {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
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

/// A TLS connection to the mesh port (the client's side of the handshake done).
pub async fn mesh_tls(
    port: u16,
    config: rustls::ClientConfig,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("tcp: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("mesh.invalid").expect("name"), tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// The leaf certificate the mesh port presents to a client with `config`.
pub async fn served_leaf(port: u16, config: rustls::ClientConfig) -> Result<Vec<u8>, String> {
    let tls = mesh_tls(port, config).await?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    Ok(leaf.ok_or("no certificate")?.to_vec())
}

/// `GET path` over mutual TLS and HTTP/2 to the mesh port; `Err` describes where it failed.
pub async fn mesh_get(
    port: u16,
    config: rustls::ClientConfig,
    path: &str,
) -> Result<(u16, Bytes), String> {
    let fut = async {
        let tls = mesh_tls(port, config).await?;
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

/// `GET path` over mutual TLS and HTTP/3 (QUIC) to the mesh port's number on UDP; `Err`
/// describes where it failed.
pub async fn mesh_get_h3(
    port: u16,
    config: rustls::ClientConfig,
    path: &str,
) -> Result<(u16, Bytes), String> {
    let fut = async {
        let mut peer = H3Peer::connect(port, config).await?;
        peer.get(path).await
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// An HTTP/3 connection to a sidecar's mesh port, as a peer makes it.
pub struct H3Peer {
    endpoint: quinn::Endpoint,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
}

impl H3Peer {
    /// Connects to 127.0.0.1:`port` (UDP) with `config` (ALPN set to h3 here).
    pub async fn connect(port: u16, mut config: rustls::ClientConfig) -> Result<Self, String> {
        config.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
            .map_err(|e| format!("quic config: {e}"))?;
        let mut endpoint =
            quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).map_err(|e| format!("udp: {e}"))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(([127, 0, 0, 1], port).into(), "mesh.invalid")
            .map_err(|e| format!("quic: {e}"))?
            .await
            .map_err(|e| format!("quic handshake: {e}"))?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .map_err(|e| format!("h3: {e}"))?;
        tokio::spawn(async move { driver.wait_idle().await });
        Ok(Self { endpoint, send })
    }

    /// Moves the connection to a new UDP socket (a new local port), as a client behind a NAT
    /// that rebinds, or a roaming one, would find itself.
    pub fn rebind(&self) -> std::io::Result<()> {
        self.endpoint
            .rebind(std::net::UdpSocket::bind(("127.0.0.1", 0))?)
    }

    /// The local port the connection sends from now.
    pub fn local_port(&self) -> u16 {
        self.endpoint.local_addr().map_or(0, |a| a.port())
    }

    /// `GET path` on this connection: status and body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, Bytes), String> {
        self.send("GET", path, &[], Bytes::new()).await
    }

    /// `method path` with `headers` (sent as they are, whatever they say) and `body`: status
    /// and body of the answer.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://mesh.invalid{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(()).map_err(|e| format!("request: {e}"))?;
        let mut stream = self
            .send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        if !body.is_empty() {
            stream
                .send_data(body)
                .await
                .map_err(|e| format!("request body: {e}"))?;
        }
        stream.finish().await.map_err(|e| format!("request: {e}"))?;
        let rsp = stream
            .recv_response()
            .await
            .map_err(|e| format!("request: {e}"))?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| format!("body: {e}"))? {
            use bytes::Buf;
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        Ok((rsp.status().as_u16(), Bytes::from(body)))
    }
}
