//! `outrider ca serve`: the CA service sidecars on other hosts get their certificates from.
//!
//! One TLS 1.3 listener (HTTP/2 or HTTP/1.1) with the same limits as every other listener: a cap
//! on connections, a deadline for the handshake and the first request head, bounded bodies.
//!
//! - `POST /v1/certificates` `{"csr": "<PEM>"}` → `{"certificateChain", "trustBundle",
//!   "validUntil"}` (see `sign`);
//! - `GET /v1/trust-bundle` → the roots (PEM) with an `ETag`; with `If-None-Match` naming the
//!   current roots the answer waits up to 20 s for them to change (304 if they do not), which is
//!   how sidecars follow a rotation within a second;
//! - `GET /healthz` → 200.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_certs::{KubernetesTokens, SpiffeId};
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::authority::Authority;
use super::sign::{self, Caller};
use crate::cli::CaServeArgs;
use crate::errors::ApiError;
use crate::net::http::{Body, full};
use crate::net::serve::{self, Limits};

/// How long a trust bundle request naming the current roots waits for them to change: under
/// the listener's stall timeout, so a waiting answer is never taken for a stalled one.
const BUNDLE_WAIT: Duration = Duration::from_secs(20);

/// Serves until SIGTERM or SIGINT, then drains for at most 5 s.
pub(crate) async fn run(args: CaServeArgs, metrics: PrometheusHandle) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let fd_limit = serve::raise_fd_limit();
    let kubernetes = match &args.kubernetes_jwks {
        Some(jwks) => Some(
            KubernetesTokens::new(jwks, &args.kubernetes_issuer, &args.kubernetes_audience)
                .context("--kubernetes-jwks")?,
        ),
        None => None,
    };
    let ca = Arc::new(
        Authority::load(
            &args.dir,
            &args.trust_domain,
            &args.namespace,
            args.workload_cert_ttl,
            kubernetes,
        )
        .with_context(|| format!("loading the CA in {}", args.dir.display()))?,
    );
    // A CA that cannot serve TLS must not look alive.
    ca.own
        .service_server_config()
        .context("the CA's TLS configuration")?;
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {} (--listen)", args.listen))?;
    let limits = Limits {
        head_timeout: args.request_head_timeout,
        ..Limits::with_cap(
            args.max_connections
                .map_or_else(|| Limits::default_cap(fd_limit), |n| n as usize),
        )
    };
    let listener = serve::Listener::new(tcp, "ca", limits);
    let stop = CancellationToken::new();
    tokio::spawn(ca.clone().follow(stop.clone()));
    let body_timeout = args.request_head_timeout;
    let mut tasks = vec![tokio::spawn(accept(
        listener,
        ca.clone(),
        body_timeout,
        stop.clone(),
    ))];
    if let Some(addr) = args.metrics_listen {
        tasks.push(tokio::spawn(
            metrics_listener(addr, metrics, stop.clone()).await?,
        ));
    }
    tracing::info!(listen = %args.listen, identity = %ca.id(), dir = %ca.dir().display(), roots = ca.bundle().borrow().roots, "serving the CA");
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Accepts TLS connections until `stop`, then drains them.
async fn accept(
    mut listener: serve::Listener,
    ca: Arc<Authority>,
    body_timeout: Duration,
    stop: CancellationToken,
) {
    // A new trust bundle needs a new server configuration (see the mesh inbound listener).
    let mut bundles = ca.own.bundle_changes();
    bundles.mark_changed();
    let mut acceptor: Option<TlsAcceptor> = None;
    let builder = Arc::new(serve::builder(false));
    let conns = Arc::new(serve::Conns::default());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        if bundles.has_changed().unwrap_or(false) {
            bundles.borrow_and_update();
            match ca.own.service_server_config() {
                Ok(cfg) => acceptor = Some(TlsAcceptor::from(Arc::new(cfg))),
                Err(e) => tracing::error!(error = %e, "the new trust bundle is not in force"),
            }
        }
        // Checked at start (run), so only a later bundle can be unusable; the last good stays.
        let Some(acceptor) = acceptor.clone() else {
            continue;
        };
        let (acceptor, builder, conns, ca, stop) = (
            acceptor,
            builder.clone(),
            conns.clone(),
            ca.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let serve::Accepted { tcp, peer, watch } = accepted;
            let refused = "refused a connection to the CA";
            let Some(tls) = serve::tls_handshake(&acceptor, tcp, peer, &watch, refused).await
            else {
                return;
            };
            let caller = Arc::new(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| SpiffeId::from_certificate(c).ok())
                    .map_or(Caller::Anonymous, Caller::Certified),
            );
            let svc = tower::service_fn(move |req: Request<Incoming>| {
                let at = Peer {
                    addr: peer,
                    caller: caller.clone(),
                    body_timeout,
                };
                route(ca.clone(), at, stop.clone(), req)
            });
            conns.spawn(watch.io(tls), svc, &builder, watch);
        });
    }
    drop(listener);
    conns.drain(Duration::from_secs(5)).await;
}

/// Who sent a request, and how long its body may take.
struct Peer {
    addr: SocketAddr,
    caller: Arc<Caller>,
    body_timeout: Duration,
}

async fn route(
    ca: Arc<Authority>,
    peer: Peer,
    stop: CancellationToken,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let rsp = match (req.method(), path) {
        (&Method::POST, "/v1/certificates") => {
            let (parts, body) = req.into_parts();
            let body = sign::read_body(&parts.headers, body, peer.body_timeout).await;
            match sign::sign(ca, &peer.caller, peer.addr, &parts.headers, body).await {
                Ok(json) => json_response(&json),
                Err(e) => e.into_response(),
            }
        }
        (&Method::GET, "/v1/trust-bundle") => {
            // Only sidecars with a certificate may wait for a change: anonymous clients cannot
            // hold the service's connections with waiting requests.
            let certified = matches!(*peer.caller, Caller::Certified(_));
            trust_bundle(&ca, &req, certified, &stop).await
        }
        (&Method::GET, "/healthz") => Response::new(full("ok\n")),
        (_, "/v1/certificates" | "/v1/trust-bundle" | "/healthz") => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "ERR_METHOD_NOT_ALLOWED",
            format!("{} is not allowed on {path}", req.method()),
        )
        .into_response(),
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_NOT_FOUND",
            format!("no route {path}"),
        )
        .into_response(),
    };
    Ok(rsp)
}

/// The roots, or after a wait for them to change, 304.
async fn trust_bundle(
    ca: &Authority,
    req: &Request<Incoming>,
    may_wait: bool,
    stop: &CancellationToken,
) -> Response<Body> {
    let mut bundle = ca.bundle();
    let known = req.headers().get(header::IF_NONE_MATCH).cloned();
    let current = bundle.borrow_and_update().clone();
    let current_known = known
        .as_ref()
        .is_some_and(|k| k.as_bytes() == current.etag.as_bytes());
    if current_known && !may_wait {
        return not_modified(&current.etag);
    }
    if current_known {
        tokio::select! {
            r = tokio::time::timeout(BUNDLE_WAIT, bundle.changed()) => {
                if !matches!(r, Ok(Ok(()))) {
                    return not_modified(&current.etag);
                }
            }
            () = stop.cancelled() => return not_modified(&current.etag),
        }
    }
    let now = bundle.borrow().clone();
    let mut rsp = Response::new(full(now.pem.clone()));
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    if let Ok(v) = HeaderValue::from_str(&now.etag) {
        h.insert(header::ETAG, v);
    }
    rsp
}

fn not_modified(etag: &str) -> Response<Body> {
    let mut rsp = Response::new(crate::net::http::empty());
    *rsp.status_mut() = StatusCode::NOT_MODIFIED;
    if let Ok(v) = HeaderValue::from_str(etag) {
        rsp.headers_mut().insert(header::ETAG, v);
    }
    rsp
}

fn json_response(v: &serde_json::Value) -> Response<Body> {
    let mut rsp = Response::new(full(v.to_string()));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

/// Plain-HTTP `/metrics` (Prometheus) and `/healthz` on `addr`.
async fn metrics_listener(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    stop: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} (--metrics-listen)"))?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let svc = tower::service_fn(move |req: Request<Incoming>| {
        let rsp = match req.uri().path() {
            "/metrics" => Response::new(full(metrics.render())),
            "/healthz" => Response::new(full("ok\n")),
            _ => ApiError::new(
                StatusCode::NOT_FOUND,
                "ERR_NOT_FOUND",
                "try /metrics or /healthz",
            )
            .into_response(),
        };
        async move { Ok::<_, Infallible>(rsp) }
    });
    let admin = serve::Listener::new(tcp, "admin", Limits::with_cap(Limits::ADMIN_CONNECTIONS));
    Ok(serve::serve(
        admin,
        move |_| svc.clone(),
        stop,
        Duration::from_secs(1),
    ))
}
