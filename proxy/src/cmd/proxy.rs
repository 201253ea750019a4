//! `outrider proxy`: the L7 proxy on its own, forwarding every request to one static upstream.
//!
//! It runs the same server (HTTP/1.1 and h2c on one port, the HTTP/1 framing guard, header
//! limits), the same trace and metrics layers and the same header hygiene as the sidecar's
//! listeners. It is what the benchmarks compare with nginx and haproxy, and a way to put
//! Outrider's observability in front of a plain service.
//!
//! Upstream connections: a downstream HTTP/1 connection carries one request at a time, so it
//! gets an upstream HTTP/1.1 connection of its own (an [`h1::Pool`] of one), opened at its first
//! request and kept as long as both ends keep theirs (haproxy and nginx pair connections the
//! same way): no shared pool to look up and lock per request. A downstream HTTP/2 connection
//! carries many requests at once; those go through a shared pool of upstream connections.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
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

/// Forwards to the upstream.
struct Forward {
    /// The shared pool, for requests of downstream HTTP/2 connections.
    client: Client<HttpConnector, Body>,
    authority: Authority,
    host: HeaderValue,
}

impl Forward {
    /// Forwards `req`; `owned` is the upstream connection of its downstream connection.
    async fn call(
        &self,
        req: Request<Incoming>,
        owned: &Arc<h1::Pool>,
    ) -> Result<Response<Body>, Infallible> {
        if req.method() == Method::CONNECT {
            return Ok(answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not proxied\n",
            ));
        }
        let downstream_h1 = req.version() <= Version::HTTP_11;
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::HOST, self.host.clone());
        let sent = if downstream_h1 {
            // On a connection of its own the request line carries the path alone.
            parts.uri = Uri::from(path);
            owned
                .send(Request::from_parts(parts, boxed(body)))
                .await
                .map(|rsp| rsp.map(boxed))
        } else {
            let mut uri = uri::Parts::default();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(self.authority.clone());
            uri.path_and_query = Some(path);
            let Ok(uri) = Uri::from_parts(uri) else {
                return Ok(answer(
                    StatusCode::BAD_REQUEST,
                    "the request target is not a valid URI\n",
                ));
            };
            parts.uri = uri;
            self.client
                .request(Request::from_parts(parts, boxed(body)))
                .await
                .map(|rsp| rsp.map(boxed))
                .map_err(Into::into)
        };
        match sent {
            // Upgrades are not proxied (`Upgrade` is stripped): a 101 cannot be passed on.
            Ok(rsp) if rsp.status() == StatusCode::SWITCHING_PROTOCOLS => Ok(answer(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols; upgrades are not proxied\n",
            )),
            Ok(mut rsp) => {
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
    let client = crate::to_app::channel::plain_client();
    let authority = Authority::try_from(args.upstream.as_str())
        .context("--upstream is not a valid host:port")?;
    let host = HeaderValue::try_from(args.upstream.as_str())
        .context("--upstream is not a valid host:port")?;
    // Shared, not cloned per request: a clone of the pooled client is several reference counts.
    let forward = Arc::new(Forward {
        client,
        authority,
        host,
    });
    let trace = TraceLayer::new(None);
    let metered = MetricsLayer::new(METRICS_ID, Side::Server);
    // Each downstream connection's service holds that connection's upstream one.
    let make = move |_| {
        let forward = forward.clone();
        let owned = h1::Pool::new(forward.authority.clone(), 1);
        ServiceBuilder::new()
            .layer(trace.clone())
            .layer(metered.clone())
            .service(tower::service_fn(move |req| {
                let (forward, owned) = (forward.clone(), owned.clone());
                async move { forward.call(req, &owned).await }
            }))
    };
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
        make,
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
