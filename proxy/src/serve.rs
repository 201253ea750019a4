//! Accept loops shared by the listeners: HTTP/1.1 and HTTP/2 on one port, limits on header size,
//! streams and resets, and a graceful drain when asked to stop.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::guard::Guarded;
use crate::http::Body;

/// The largest request head accepted on HTTP/1.1, and header list on HTTP/2.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A server builder with the limits every listener shares (security rule 6).
pub(crate) fn builder(h2_only: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10)).max_buf_size(MAX_HEADER_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(32)
        .max_local_error_reset_streams(1024)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    if h2_only { b.http2_only() } else { b }
}

/// The service type each connection runs.
pub(crate) trait ConnService:
    tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> ConnService for S where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// Serves plain-text connections from `listener` until `stop`, then drains in-flight requests
/// for at most `grace`.
pub(crate) async fn serve<S: ConnService>(listener: TcpListener, svc: S, stop: CancellationToken, grace: Duration) {
    let builder = builder(false);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    // HTTP/1 framing is checked below hyper; see `guard`.
                    let io = TokioIo::new(Guarded::new(tcp));
                    let conn = builder.serve_connection(io, TowerToHyperService::new(svc.clone())).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => accept_error(e).await,
            },
            () = stop.cancelled() => break,
        }
    }
    drop(listener);
    drain(graceful, grace).await;
}

/// Serves one already-accepted stream (e.g. after a TLS handshake) under `watcher`.
pub(crate) fn spawn_conn<I, S>(
    io: I,
    svc: S,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ConnService,
{
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc)).into_owned();
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// Waits for watched connections to finish, at most `grace`.
pub(crate) async fn drain(graceful: GracefulShutdown, grace: Duration) {
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish within the grace period");
    }
}

/// Running out of file descriptors must not spin the accept loop.
pub(crate) async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
