//! The endpoint stage: one address of a target, reached over mutual TLS 1.3 that accepts only
//! the target's SPIFFE id — a pooled HTTP/2 connection (TCP), or an HTTP/3 connection (QUIC)
//! where [`super::transport`] chooses it.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use outrider_certs::{Credentials, SpiffeId};
use outrider_discovery::{EndpointSet, Target};
use tokio::sync::watch;

use super::h3::H3Client;
use super::transport::{H2Client, MeshClient, MeshTransport};
use crate::errors::InvokeError;

/// How this sidecar reaches its peers.
pub(crate) struct Connect {
    /// `--mesh-transport`.
    pub(crate) mode: MeshTransport,
    /// How long the transport that got through to an endpoint is remembered.
    pub(crate) memory: Duration,
}

/// The client for `target`'s endpoints (whose advertised transports `endpoints` holds): it
/// connects with this sidecar's credentials and checks that the peer is `target`.
pub(super) fn client(
    creds: &Credentials,
    target: &Target,
    connect: &Connect,
    endpoints: watch::Receiver<Arc<EndpointSet>>,
) -> Result<MeshClient, InvokeError> {
    let expected = SpiffeId::new(creds.id().trust_domain(), &target.namespace, &target.app_id)
        .map_err(|_| InvokeError::InvalidAppId(target.to_string()))?;
    let upstream = |e: Box<dyn std::error::Error + Send + Sync>| InvokeError::Upstream {
        target: target.clone(),
        source: e,
    };
    let tls = creds
        .client_config(expected)
        .map_err(|e| upstream(Box::new(e)))?;
    let h3 = H3Client::new(tls.clone()).map_err(|e| upstream(e.into()))?;
    Ok(MeshClient::new(
        connect.mode,
        h2(tls),
        h3,
        endpoints,
        connect.memory,
    ))
}

/// The pooled HTTP/2 client over `tls`.
fn h2(mut tls: rustls::ClientConfig) -> H2Client {
    // The connector negotiates h2 itself and refuses a config with ALPN already set.
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(http);
    // HEADERS and DATA of a small request leave in one record (see `coalesce`).
    let connector = crate::net::coalesce::mesh_connector(https);
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .build(connector)
}
