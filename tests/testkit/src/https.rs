//! A local HTTPS server for tests of calls leaving the mesh (`HTTPEndpoint`, `bindings.http`):
//! a throwaway CA, certificates it issues, and a server that echoes every request as JSON.

use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// A CA, and certificates it issued.
pub struct Pki {
    /// The CA's certificate, PEM.
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A new CA.
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "endpoint test CA");
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        Self {
            ca_pem,
            issuer: rcgen::Issuer::new(params, ca_key),
        }
    }

    /// A certificate for `names` and its key, both PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// What the server saw: each request's method, path, query, headers and body.
pub type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// An HTTPS server with `cert`, asking for a client certificate from `client_ca` when given. It
/// echoes each request as JSON; `/v1/redirect` answers 302 to another host, `/v1/fail` 503.
pub async fn https_server(cert: (String, String), client_ca: Option<&str>) -> (u16, Seen) {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = vec![CertificateDer::from_pem_slice(cert.0.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let tls = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, std::convert::Infallible>(echo(req, &log).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

async fn echo(
    req: http::Request<hyper::body::Incoming>,
    log: &Seen,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt as _;
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = (parts.headers.iter())
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?"))))
        .collect();
    let seen = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    log.lock().unwrap().push(seen.clone());
    let mut rsp = http::Response::new(http_body_util::Full::new(seen.to_string().into()));
    match parts.uri.path() {
        "/v1/redirect" => {
            *rsp.status_mut() = http::StatusCode::FOUND;
            rsp.headers_mut().insert(
                http::header::LOCATION,
                "https://elsewhere.invalid/landing".parse().unwrap(),
            );
        }
        "/v1/fail" => *rsp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE,
        _ => {}
    }
    rsp
}

/// A PEM document as a YAML block scalar's lines, each indented by `indent` spaces (for a
/// `value: |` in a resource).
pub fn yaml_block(pem: &str, indent: usize) -> String {
    pem.lines()
        .map(|l| format!("{:indent$}{l}\n", ""))
        .collect()
}
