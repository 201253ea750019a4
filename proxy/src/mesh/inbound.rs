//! The inbound mesh listener: mutual TLS from peer sidecars, then the app channel.
//!
//! A connection is accepted only if the client presents a certificate that chains to the trust
//! bundle, carries clientAuth and a SPIFFE id of our trust domain as its URI SAN (checked during
//! the handshake by `certs`). That id is the caller's identity for every request on the
//! connection: the caller headers the app sees are stamped from it, whatever the request carried.
//! The method path is normalised again here, so what the app receives is the canonical form even
//! if a peer were to send something else, and the callee's access policy decides on that form.
//! A `CONNECT` is a tunnel for a peer app's TCP connection instead (see [`tunnel`]). The same
//! stack serves HTTP/3 over QUIC on the mesh port's number (see [`h3`]).

pub(crate) mod h3;
mod tunnel;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use metrics::Counter;
use outrider_certs::{Credentials, SpiffeId};
use outrider_filters::authz::AuthorizeLayer;
use outrider_filters::canonical::CanonicalLayer;
use outrider_filters::metrics::SeriesCache;
use outrider_filters::trace::TraceLayer;
use outrider_policy::{AccessControl, Caller};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt as _};

use crate::errors::{ApiError, InvokeError};
use crate::net::http::{Body, Tripped, boxed, capped, grpc_messages, is_grpc};
use crate::net::serve;
use crate::telemetry::metrics as catalogue;
use crate::to_app::channel::AppChannel;

/// What inbound requests need.
pub(crate) struct Inbound {
    pub(crate) app_id: String,
    pub(crate) app: Option<AppChannel>,
    /// The host the app listens on (`--app-channel-address`), for tunnels.
    pub(crate) app_address: String,
    /// The app's ports a tunnel may reach: `--app-ports`.
    pub(crate) tunnel_ports: BTreeSet<u16>,
    pub(crate) max_body_size: u64,
    /// The longest pause inside a caller's request body.
    pub(crate) body_idle_timeout: Duration,
    /// The access policies in force (reloaded while running).
    pub(crate) policies: watch::Receiver<Arc<AccessControl>>,
    /// The latest denials, for the dashboard.
    pub(crate) denials: Arc<outrider_filters::authz::Denials>,
    /// Where finished spans go, when exported.
    pub(crate) spans: Option<outrider_filters::spans::Spans>,
    /// Actor calls other sidecars send here.
    pub(crate) actors: Arc<crate::api::actors::Actors>,
}

/// A request body arriving from a peer over either transport (HTTP/2 or HTTP/3). A type of its
/// own rather than the boxed [`Body`]: futures that hold a `dyn` error type in a closure's
/// argument trip the compiler's check that they are `Send`.
pub(crate) struct MeshBody(pub(crate) Body);

impl http_body::Body for MeshBody {
    type Data = bytes::Bytes;
    type Error = crate::net::http::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// The inbound stack, built once and shared by every connection (and every transport that
/// feeds it): each request arrives with its connection's verified [`Caller`] attached.
pub(crate) type Stack = BoxCloneSyncService<Request<MeshBody>, Response<Body>, Infallible>;

/// Builds the inbound stack, in request order.
pub(crate) fn stack(inbound: Arc<Inbound>) -> Stack {
    let app_id: Arc<str> = inbound.app_id.as_str().into();
    let to_app = ServiceBuilder::new()
        // One canonical path for the policy decision and for what the app receives.
        .layer(CanonicalLayer)
        // The callee's access policy, from the caller's verified identity.
        .layer(AuthorizeLayer::new(
            inbound.policies.clone(),
            inbound.denials.clone(),
        ))
        .service_fn({
            let inbound = inbound.clone();
            move |req| forward(req, inbound.clone())
        });
    let requests = ServiceBuilder::new()
        // Continue the caller's trace with a span for this hop.
        .layer(TraceLayer::mesh(inbound.spans.clone()))
        // The one place where failures below become the caller's answer.
        .service_fn(move |req: Request<MeshBody>| {
            let (to_app, app_id) = (to_app.clone(), app_id.clone());
            let caller = req.extensions().get::<Arc<Caller>>().cloned();
            async move {
                let rsp = rescue(&app_id, to_app.oneshot(req).await);
                if let Some(c) = caller {
                    record_received(&app_id, &c, rsp.status().as_u16());
                }
                Ok::<_, Infallible>(rsp)
            }
        });
    let stack = tower::service_fn(move |req: Request<MeshBody>| {
        let (requests, inbound) = (requests.clone(), inbound.clone());
        async move {
            if tunnel::is_tunnel(&req) {
                return Ok(tunnel::accept(req, inbound).await);
            }
            let hop = req.headers().get(&super::ACTOR_HOP).cloned();
            if let Some(hop) = hop {
                return Ok(actor_call(req, hop, &inbound).await);
            }
            requests.oneshot(req).await
        }
    });
    BoxCloneSyncService::new(stack)
}

/// Accepts mesh connections until `stop`, then drains for at most `grace`.
pub(crate) async fn serve(
    mut listener: serve::Listener,
    creds: Credentials,
    stack: Stack,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    // A new trust bundle needs a new server configuration (its root hints are fixed in it).
    // Following changes starts before the first configuration is built: none is missed.
    let mut bundles = creds.bundle_changes();
    let mut acceptor = TlsAcceptor::from(Arc::new(creds.server_config()?));
    let builder = Arc::new(serve::builder(true));
    let conns = Arc::new(serve::Conns::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        if bundles.has_changed().unwrap_or(false) {
            bundles.borrow_and_update();
            match creds.server_config() {
                Ok(cfg) => acceptor = TlsAcceptor::from(Arc::new(cfg)),
                Err(e) => {
                    tracing::error!(error = %e, "the new trust bundle is not in force on the mesh port")
                }
            }
        }
        let (acceptor, stack, builder, conns) = (
            acceptor.clone(),
            stack.clone(),
            builder.clone(),
            conns.clone(),
        );
        tokio::spawn(async move {
            let serve::Accepted { tcp, peer, watch } = accepted;
            // The handshake counts against the deadline for the first request head.
            let refused = "refused a mesh connection";
            let Some(tls) = serve::tls_handshake(&acceptor, tcp, peer, &watch, refused).await
            else {
                return;
            };
            let Some(caller) = caller_of(tls.get_ref().1) else {
                // The verifier already required one; this is unreachable in practice.
                tracing::warn!(%peer, "mesh peer without identity after handshake");
                return;
            };
            tracing::debug!(%peer, caller = %caller.app_id, namespace = %caller.namespace, "mesh connection accepted");
            // The verified peer identity travels with each request, for policy and the app; the
            // connection's activity, for tunnels that outlive their request.
            let activity = watch.activity();
            let svc = stack.map_request(move |req: Request<Incoming>| {
                let mut req = req.map(|b| MeshBody(boxed(b)));
                crate::telemetry::metrics::record_mesh_request("inbound", "h2");
                req.extensions_mut().insert(caller.clone());
                req.extensions_mut().insert(activity.clone());
                req
            });
            conns.spawn(watch.io(tls), svc, &builder, watch);
        });
    }
    drop(listener);
    conns.drain(grace).await;
    Ok(())
}

/// The caller a TLS session's client certificate names.
fn caller_of(tls: &rustls::ServerConnection) -> Option<Arc<Caller>> {
    let cert = tls.peer_certificates()?.first()?;
    let id = SpiffeId::from_certificate(cert).ok()?;
    Some(Arc::new(Caller {
        app_id: id.app_id().to_owned(),
        namespace: id.namespace().to_owned(),
        trust_domain: id.trust_domain().to_owned(),
    }))
}

/// Dapr's service invocation metrics on the callee's side, by the caller's verified app id.
fn record_received(app_id: &str, caller: &Caller, status: u16) {
    static SERIES: SeriesCache<(String, String, u16), (Counter, Counter)> = SeriesCache::new();
    let key = (app_id.to_owned(), caller.app_id.clone(), status);
    let (received, sent) = SERIES.get(key, |(app, source, status)| {
        let who = [
            ("app_id", app.clone()),
            ("source_app_id", source.clone()),
            ("type", "http".to_owned()),
        ];
        let mut answered = who.to_vec();
        answered.push(("status", status.to_string()));
        (
            catalogue::INVOCATION_REQ_RECV.counter(&who),
            catalogue::INVOCATION_RES_SENT.counter(&answered),
        )
    });
    received.increment(1);
    sent.increment(1);
}

fn rescue(app_id: &str, r: Result<Response<Body>, InvokeError>) -> Response<Body> {
    match r {
        Ok(rsp) => rsp,
        Err(e) => {
            if !matches!(e, InvokeError::Denied(_)) {
                // Denials are logged by the policy layer, with the rule.
                tracing::info!(error = %e, "inbound invocation failed");
            }
            ApiError::invoke(app_id, &e).into_response()
        }
    }
}

async fn forward(
    req: Request<MeshBody>,
    inbound: Arc<Inbound>,
) -> Result<Response<Body>, InvokeError> {
    let app = inbound.app.as_ref().ok_or(InvokeError::NoAppChannel)?;
    let caller = req
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| InvokeError::AppChannel("the request lost its caller identity".into()))?;
    // A proxied gRPC call streams for as long as both ends keep it, idle in between: its body is
    // passed on as it comes, never held, with each message bounded by `--max-body-size` rather
    // than the whole. Only an app that speaks gRPC takes one.
    let (body, tripped) = if is_grpc(req.headers()) {
        if !app.speaks_grpc() {
            return Err(InvokeError::AppChannel(
                "a gRPC call for an app that does not speak gRPC (--app-protocol)".into(),
            ));
        }
        let (parts, body) = req.into_parts();
        let body = grpc_messages(body, inbound.max_body_size);
        (Request::from_parts(parts, body), Tripped::default())
    } else {
        capped_request(req, inbound.max_body_size, inbound.body_idle_timeout)
    };
    match app.invoke(body, &caller).await {
        Ok(rsp) => Ok(rsp),
        Err(_) if tripped.get() => Err(InvokeError::BodyTooLarge(inbound.max_body_size)),
        Err(_) if tripped.timed_out() => Err(InvokeError::BodyPaused(inbound.body_idle_timeout)),
        Err(_) if tripped.broken() => Err(InvokeError::MalformedBody),
        Err(e) => Err(e),
    }
}

/// An actor call another sidecar sent here: run as the caller's own sidecar would, except that
/// it is never sent on twice. Access policies are for invocations; actor calls are not subject
/// to them (as in daprd).
async fn actor_call(
    req: Request<MeshBody>,
    hop: http::HeaderValue,
    inbound: &Inbound,
) -> Response<Body> {
    crate::api::actors::serve_hop(
        &inbound.actors,
        req,
        &hop,
        inbound.max_body_size,
        inbound.body_idle_timeout,
    )
    .await
}

/// The request with its body capped at `max`, and the flag that says the cap was hit.
fn capped_request(
    req: Request<MeshBody>,
    max: u64,
    idle: Duration,
) -> (Request<Body>, crate::net::http::Tripped) {
    let (parts, body) = req.into_parts();
    let (body, tripped) = capped(body, max, idle);
    (Request::from_parts(parts, body), tripped)
}
