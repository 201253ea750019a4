//! The endpoint stage: one address of a target, reached over a pooled HTTP/2 connection with
//! mutual TLS 1.3 that accepts only the target's SPIFFE id.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use outrider_certs::{Credentials, SpiffeId};
use outrider_discovery::Target;

use super::balance::MeshClient;
use crate::errors::InvokeError;

/// The client for `target`'s endpoints: it connects with this sidecar's credentials and checks
/// that the peer is `target`.
pub(super) fn client(creds: &Credentials, target: &Target) -> Result<MeshClient, InvokeError> {
    let expected = SpiffeId::new(creds.id().trust_domain(), &target.namespace, &target.app_id)
        .map_err(|_| InvokeError::InvalidAppId(target.to_string()))?;
    let mut tls = creds
        .client_config(expected)
        .map_err(|e| InvokeError::Upstream {
            target: target.clone(),
            source: Box::new(e),
        })?;
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
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .build(connector);
    Ok(client)
}
