//! An app that speaks HTTP, reached as `--app-protocol` says: `http` (HTTP/1.1 on pooled
//! connections), `https` (HTTP/1.1 over TLS) or `h2c` (HTTP/2 without TLS, with prior
//! knowledge). As daprd does, the app's certificate is not verified with `https`: the app is
//! the sidecar's own, on its channel address, and typically has a certificate of its own
//! making; that is said once at start.

use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::AppProtocol;
use crate::net::h1;
use crate::net::http::{Body, BoxError, boxed};

/// Unused connections to the app kept at most.
const MAX_IDLE: usize = 128;

/// The connections to an HTTP app.
pub(super) enum Web {
    /// `http`: HTTP/1.1, the request line holding the path alone.
    Plain(Arc<h1::Pool>),
    /// `https` or `h2c`.
    Client(Box<Remote>),
}

/// A client to `scheme://authority` speaking `version`.
pub(super) struct Remote {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: Authority,
    version: Version,
}

impl Web {
    pub(super) fn new(protocol: AppProtocol, authority: Authority) -> anyhow::Result<Self> {
        let (scheme, version) = match protocol {
            AppProtocol::Https => (Scheme::HTTPS, Version::HTTP_11),
            AppProtocol::H2c => (Scheme::HTTP, Version::HTTP_2),
            _ => return Ok(Self::Plain(h1::Pool::new(authority, MAX_IDLE))),
        };
        // HTTP/1.1 only, as daprd (no ALPN is offered: the connector would refuse one preset).
        let connector = app_connector(protocol, &authority)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(plain_connector());
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(MAX_IDLE)
            .http2_only(version == Version::HTTP_2)
            .build(connector);
        Ok(Self::Client(Box::new(Remote {
            client,
            scheme,
            authority,
            version,
        })))
    }

    /// Sends `req` (whose URI holds the path and query).
    pub(super) async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>, BoxError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        match self {
            Web::Plain(pool) => {
                *req.version_mut() = Version::HTTP_11;
                *req.uri_mut() = Uri::from(path);
                Ok(pool.send(req).await?.map(boxed))
            }
            Web::Client(remote) => {
                let Remote {
                    client,
                    scheme,
                    authority,
                    version,
                } = &**remote;
                *req.version_mut() = *version;
                *req.uri_mut() = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query(path)
                    .build()?;
                if *version == Version::HTTP_2 {
                    // HTTP/2 carries the authority in its own field.
                    req.headers_mut().remove(http::header::HOST);
                }
                Ok(client.request(req).await?.map(boxed))
            }
        }
    }
}

/// TCP to the app, as both HTTP and gRPC channels make it.
pub(super) fn plain_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
    http
}

/// The TLS side of a connector to the app: any certificate it shows is taken, as daprd takes
/// it with `https` and `grpcs`, which is said once at start (louder when the app is not on
/// loopback).
pub(super) fn app_connector(
    protocol: AppProtocol,
    authority: &Authority,
) -> anyhow::Result<hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>>
{
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    if matches!(protocol, AppProtocol::Https | AppProtocol::Grpcs) {
        let name = protocol.name();
        let local = authority
            .host()
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
            || authority.host().eq_ignore_ascii_case("localhost");
        if local {
            tracing::warn!(
                app = %authority,
                "--app-protocol {name}: the app's certificate is not verified (as daprd does)"
            );
        } else {
            tracing::warn!(
                app = %authority,
                "--app-protocol {name}: the app's certificate is not verified, and the app is \
                 not on loopback: whoever answers at --app-channel-address gets its calls \
                 (and APP_API_TOKEN)"
            );
        }
    }
    Ok(hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls))
}

/// Takes whatever certificate the app shows (its signatures are still checked, so the
/// handshake is a real one).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
