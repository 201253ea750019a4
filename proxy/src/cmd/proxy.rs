//! `outrider proxy`: the L7 proxy on its own, forwarding every request to one static upstream.
//!
//! It runs the same server (HTTP/1.1 and h2c on one port, the HTTP/1 framing guard, header
//! limits), the same trace and metrics layers and the same header hygiene as the sidecar's
//! listeners. It is what the benchmarks compare with nginx and haproxy, and a way to put
//! Outrider's observability in front of a plain service.
//!
//! Upstream connections come from one [`h1::Pool`]: a request takes the newest unused one (or
//! opens one), and gives it back when its answer has been read. With a single upstream there is
//! no key to hash per request, as a general-purpose pooled client would.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_filters::metrics::{MetricsLayer, Side};
use outrider_filters::trace::TraceLayer;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::cli::ProxyArgs;
use crate::net::h1;
use crate::net::http::{Body, boxed, full, strip_hop_by_hop};
use crate::net::serve::{self, Limits};

/// The label the metrics carry in place of an app id.
const METRICS_ID: &str = "proxy";

/// Unused upstream connections kept at most.
const MAX_IDLE: usize = 128;

/// Forwards to the upstream.
struct Forward {
    pool: Arc<h1::Pool>,
    authority: Authority,
    host: HeaderValue,
}

impl Forward {
    async fn call(&self, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if req.method() == Method::CONNECT {
            return Ok(answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not proxied\n",
            ));
        }
        let (mut parts, body) = req.into_parts();
        // A connection to the upstream alone: the request line carries the path and query.
        parts.uri = Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::HOST, self.host.clone());
        match self
            .pool
            .send(Request::from_parts(parts, boxed(body)))
            .await
        {
            // Upgrades are not proxied (`Upgrade` is stripped): a 101 cannot be passed on.
            Ok(rsp) if rsp.status() == StatusCode::SWITCHING_PROTOCOLS => Ok(answer(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols; upgrades are not proxied\n",
            )),
            Ok(rsp) => {
                let mut rsp = rsp.map(boxed);
                strip_hop_by_hop(rsp.headers_mut());
                Ok(rsp)
            }
            Err(e) => {
                tracing::debug!(error = %e, upstream = %self.authority, "forwarding failed");
                Ok(answer(
                    StatusCode::BAD_GATEWAY,
                    "the upstream did not answer\n",
                ))
            }
        }
    }
}

fn answer(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut rsp = Response::new(full(text));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    rsp
}

/// Serves until SIGTERM or SIGINT, then drains for at most 5 s.
pub(crate) async fn run(args: ProxyArgs, metrics: PrometheusHandle) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let fd_limit = serve::raise_fd_limit();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {} (--listen)", args.listen))?;
    let authority = Authority::try_from(args.upstream.as_str())
        .context("--upstream is not a valid host:port")?;
    let host = HeaderValue::try_from(args.upstream.as_str())
        .context("--upstream is not a valid host:port")?;
    // Shared, not cloned per request.
    let forward = Arc::new(Forward {
        pool: h1::Pool::new(authority.clone(), MAX_IDLE),
        authority,
        host,
    });
    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new(None))
        .layer(MetricsLayer::new(METRICS_ID, Side::Server))
        .service(tower::service_fn(move |req| {
            let forward = forward.clone();
            async move { forward.call(req).await }
        }));
    // The recorder folds samples into histograms only when told to: without this, every
    // request's latency would stay in memory.
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let stop = CancellationToken::new();
    let listener = serve::Listener::new(
        listener,
        "proxy",
        Limits::with_cap(Limits::default_cap(fd_limit)),
    );
    let mut tasks = vec![tokio::spawn(serve::serve(
        listener,
        move |_| svc.clone(),
        stop.clone(),
        Duration::from_secs(5),
    ))];
    if let Some(addr) = args.metrics_listen {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr} (--metrics-listen)"))?;
        let metrics_svc = tower::service_fn(move |_req: Request<Incoming>| {
            let text = metrics.render();
            async move { Ok::<_, Infallible>(Response::new(full(text))) }
        });
        let admin =
            serve::Listener::new(admin, "admin", Limits::with_cap(Limits::ADMIN_CONNECTIONS));
        tasks.push(tokio::spawn(serve::serve(
            admin,
            move |_| metrics_svc.clone(),
            stop.clone(),
            Duration::from_secs(1),
        )));
    }
    tracing::info!(listen = %args.listen, upstream = %args.upstream, "proxying");
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
