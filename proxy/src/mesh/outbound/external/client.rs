//! The HTTP(S) client of one endpoint: HTTP/1.1, or HTTP/2 where the server offers it over TLS;
//! the server's certificate verified against the endpoint's root CA (else `SSL_CERT_FILE` or the
//! system's bundle); the endpoint's client certificate presented when it has one. A connection
//! (TCP and TLS) must be up within 15 seconds, as daprd's.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use http::uri::Scheme;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::OutboundRequest;
use crate::errors::InvokeError;
use crate::net::http::{Body, BoxError, boxed, strip_hop_by_hop};
use crate::to_app::channel::limit::Holding;

/// A connection (TCP and TLS handshake) that is not up by then is a failed one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Calls in flight to one endpoint at most (each until its answer's body ends); past that a call
/// fails at once rather than opening yet another connection.
const MAX_IN_FLIGHT: usize = 1024;
/// Idle connections kept per endpoint, and for how long.
const MAX_IDLE: usize = 32;
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// `spec.clientTLS`, its documents read (PEM).
#[derive(Clone, Default)]
pub(crate) struct ClientTls {
    pub(crate) root_ca: Option<String>,
    pub(crate) certificate: Option<String>,
    pub(crate) private_key: Option<String>,
}

pub(super) struct Client {
    inner: hyper_util::client::legacy::Client<Timed, Body>,
    /// The endpoint's name, for errors.
    name: String,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Client {
    pub(super) fn new(name: &str, tls: &ClientTls, ca_file: Option<&Path>) -> Result<Self, String> {
        let config = tls_config(tls, ca_file)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(MAX_IDLE)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(Timed(connector));
        Ok(Self {
            inner,
            name: name.to_owned(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// One attempt: `req` (its URI the path and query) to `scheme://authority`.
    pub(super) async fn send(
        &self,
        req: OutboundRequest,
        scheme: Scheme,
        authority: &str,
    ) -> Result<Response<Body>, InvokeError> {
        let failed = |unsent: bool, source: BoxError| InvokeError::Endpoint {
            endpoint: self.name.clone(),
            unsent,
            source,
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let busy =
                format!("{MAX_IN_FLIGHT} calls to it are in flight already; try again later");
            return Err(failed(true, busy.into()));
        };
        let mut req = req.into_request();
        *req.uri_mut() =
            super::absolute(req.uri(), scheme, authority).map_err(|e| failed(true, e.into()))?;
        *req.version_mut() = http::Version::HTTP_11;
        match self.inner.request(req).await {
            Ok(rsp) => {
                let (mut parts, body) = rsp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                // A service outside the mesh does not speak for the gRPC API: what it says is
                // its HTTP answer, never a gRPC status the API would pass on as its own.
                for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                    parts.headers.remove(name);
                }
                let body = boxed(Holding::new(boxed(body), permit));
                Ok(Response::from_parts(parts, body))
            }
            Err(e) => {
                let unsent = e.is_connect();
                Err(failed(unsent, e.into()))
            }
        }
    }
}

/// The server verified against the endpoint's root CA, else `ca_file` or the system's bundle;
/// the client certificate, if any.
fn tls_config(tls: &ClientTls, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let roots = match &tls.root_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("spec.clientTLS.rootCA: not PEM certificates: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err("spec.clientTLS.rootCA: holds no usable CA certificate".into());
            }
            roots
        }
        None => crate::telemetry::root_store(ca_file).map_err(|e| format!("{e:#}"))?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&tls.certificate, &tls.private_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("spec.clientTLS.certificate: not PEM certificates: {e}"))?;
            if chain.is_empty() {
                return Err("spec.clientTLS.certificate: holds no certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|_| "spec.clientTLS.privateKey: not a PEM private key".to_owned())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!("spec.clientTLS: the certificate and key do not go together: {e}")
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(
            "spec.clientTLS: a certificate needs its privateKey, and a privateKey its certificate"
                .into(),
        ),
    }
}

/// The connector with a deadline on the whole connection set-up (TCP and TLS).
#[derive(Clone)]
struct Timed(HttpsConnector<HttpConnector>);

type Stream = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

impl tower::Service<http::Uri> for Timed {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}").into()),
            }
        })
    }
}
