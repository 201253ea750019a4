//! The inbound mesh listener: mutual TLS from peer sidecars, then the app channel.
//!
//! A connection is accepted only if the client presents a certificate that chains to the trust
//! bundle, carries clientAuth and a SPIFFE id of our trust domain as its URI SAN (checked during
//! the handshake by `certs`). That id is the caller's identity for every request on the
//! connection: the caller headers the app sees are stamped from it, whatever the request carried.
//! The method path is normalised again here, so what the app receives is the canonical form even
//! if a peer were to send something else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;
use outrider_certs::{Credentials, SpiffeId};
use outrider_filters::normalize;
use outrider_filters::trace::TraceLayer;
use outrider_policy::Caller;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::app_channel::AppChannel;
use crate::errors::{ApiError, InvokeError};
use crate::http::{Body, boxed, capped};
use crate::serve;

/// How long a peer may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What inbound requests need.
pub(crate) struct Inbound {
    pub(crate) app_id: String,
    pub(crate) app: Option<AppChannel>,
    pub(crate) max_body_size: u64,
}

/// Accepts mesh connections until `stop`, then drains for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    creds: Credentials,
    inbound: Arc<Inbound>,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(creds.server_config()?));
    let builder = Arc::new(serve::builder(true));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    serve::accept_error(e).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, inbound, builder, watcher) =
            (acceptor.clone(), inbound.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(peer = %peer_addr, error = %e, "refused a mesh connection");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = %peer_addr, "mesh handshake timed out");
                    return;
                }
            };
            let Some(id) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| SpiffeId::from_certificate(c).ok())
            else {
                // The verifier already required one; this is unreachable in practice.
                tracing::warn!(peer = %peer_addr, "mesh peer without identity after handshake");
                return;
            };
            let caller = Arc::new(Caller {
                app_id: id.app_id().to_owned(),
                namespace: id.namespace().to_owned(),
                trust_domain: id.trust_domain().to_owned(),
            });
            tracing::debug!(peer = %peer_addr, caller = %id, "mesh connection accepted");
            let svc = ServiceBuilder::new()
                // Continue the caller's trace with a span for this hop.
                .layer(TraceLayer)
                .service(tower::service_fn(move |req| handle(req, inbound.clone(), caller.clone())));
            serve::spawn_conn(tls, svc, &builder, watcher);
        });
    }
    drop(listener);
    serve::drain(graceful, grace).await;
    Ok(())
}

async fn handle(
    req: Request<Incoming>,
    inbound: Arc<Inbound>,
    caller: Arc<Caller>,
) -> Result<Response<Body>, Infallible> {
    Ok(match forward(req, &inbound, &caller).await {
        Ok(rsp) => rsp,
        Err(e) => {
            tracing::info!(caller = %caller, error = %e, "inbound invocation failed");
            ApiError::invoke(&inbound.app_id, &e).into_response()
        }
    })
}

async fn forward(req: Request<Incoming>, inbound: &Inbound, caller: &Caller) -> Result<Response<Body>, InvokeError> {
    let app = inbound.app.as_ref().ok_or(InvokeError::NoAppChannel)?;
    if !normalize::method_ok(req.method().as_str()) {
        return Err(InvokeError::BadPath(normalize::Rejection::BadMethod));
    }
    let path = normalize::canonical_path(req.uri().path()).map_err(InvokeError::BadPath)?;
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = pq.parse().map_err(|e| InvokeError::AppChannel(Box::new(e)))?;
    let (body, tripped) = capped(body, inbound.max_body_size);
    match app.call(Request::from_parts(parts, body), caller).await {
        Ok(rsp) => Ok(rsp.map(boxed)),
        Err(_) if tripped.get() => Err(InvokeError::BodyTooLarge(inbound.max_body_size)),
        Err(e) => Err(e),
    }
}
