//! `outrider proxy`: the L7 proxy on its own, forwarding every request to one static upstream.
//!
//! It runs the same server (HTTP/1.1 and h2c on one port, the HTTP/1 framing guard, header
//! limits), the same trace and metrics layers and the same header hygiene as the sidecar's
//! listeners. It is what the benchmarks compare with nginx and haproxy, and a way to put
//! Outrider's observability in front of a plain service.
//!
//! Upstream connections: a downstream HTTP/1 connection carries one request at a time, so it
//! gets an upstream HTTP/1.1 connection of its own, opened at its first request and kept as long
//! as both ends keep theirs (haproxy and nginx pair connections the same way). There is no pool
//! to look up, lock and give back to per request. A downstream HTTP/2 connection carries many
//! requests at once; those go through a shared pool of upstream connections.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_filters::metrics::{MetricsLayer, Side};
use outrider_filters::trace::TraceLayer;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::cli::ProxyArgs;
use crate::net::http::{Body, BoxError, boxed, full, strip_hop_by_hop};
use crate::net::serve::{self, Limits};

/// The label the metrics carry in place of an app id.
const METRICS_ID: &str = "proxy";

/// How long opening an upstream connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Forwards to the upstream.
struct Forward {
    /// The shared pool, for requests of downstream HTTP/2 connections.
    client: Client<HttpConnector, Body>,
    authority: Authority,
    host: HeaderValue,
}

/// The upstream connection of one downstream HTTP/1 connection, while it has one.
#[derive(Default)]
struct Owned(Mutex<Option<SendRequest<Body>>>);

impl Owned {
    fn take(&self) -> Option<SendRequest<Body>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn keep(&self, sender: SendRequest<Body>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
    }
}

impl Forward {
    async fn call(
        &self,
        req: Request<Incoming>,
        owned: &Owned,
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
            self.send_owned(Request::from_parts(parts, boxed(body)), owned)
                .await
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
                .map_err(Into::into)
        };
        match sent {
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

    /// Sends `req` on the downstream connection's own upstream connection, opening one if it
    /// has none or its last one closed. A request that a kept connection could not take
    /// because it had just closed (the upstream ended it while idle) was never written, and
    /// goes once more on a new connection.
    async fn send_owned(
        &self,
        mut req: Request<Body>,
        owned: &Owned,
    ) -> Result<Response<Incoming>, BoxError> {
        let mut kept = owned.take().filter(|s| !s.is_closed());
        loop {
            let reused = kept.is_some();
            let mut sender = match kept.take() {
                Some(s) => s,
                None => self.connect().await?,
            };
            // Ready once the previous answer on the connection has been read to its end.
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(e.into());
            }
            match sender.try_send_request(req).await {
                Ok(rsp) => {
                    owned.keep(sender);
                    return Ok(rsp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// A new upstream HTTP/1.1 connection; its task ends when the connection does.
    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(self.authority.as_str()),
        )
        .await
        .map_err(|_| "connecting to the upstream timed out")??;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
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
        let owned = Arc::new(Owned::default());
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
