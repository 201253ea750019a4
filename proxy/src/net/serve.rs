//! Accept loops shared by the listeners: HTTP/1.1 and HTTP/2 on one port, limits on header size,
//! streams and resets, and a graceful drain when asked to stop.
//!
//! No listener can be starved (security rule 11): each has its own cap on open connections
//! (past it a new connection is closed at once), and every connection is watched by
//! [`conn::Watch`] — a deadline for the first complete request head, an idle timeout between
//! requests and a stall timeout for responses the peer stops reading. Accept errors are logged
//! at a bounded rate, so running out of descriptors neither spins nor floods the log.

pub(crate) mod conn;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::net::guard::Guarded;
use crate::net::http::Body;
use conn::{Tracked, Watch};

/// Request headers that carry credentials.
pub(crate) const SENSITIVE_HEADERS: [http::HeaderName; 5] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    http::HeaderName::from_static("dapr-api-token"),
    http::HeaderName::from_static("x-api-key"),
];

/// The largest request head accepted on HTTP/1.1, and header list on HTTP/2.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How often an HTTP/2 peer is pinged, and how long its answer may take before the connection
/// is closed: a peer that vanished without a FIN does not hold a connection for good.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Descriptors kept free for everything that is not an accepted connection: outbound mesh
/// connections, the app channel, components, files.
const RESERVED_FDS: u64 = 256;

/// What a listener allows each of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Open connections at most; a new one past it is closed at once.
    pub(crate) max_connections: usize,
    /// From accept (TLS handshake and protocol sniffing included) to the first complete request
    /// head; on HTTP/1 also from the first byte of every later head to its end.
    pub(crate) head_timeout: Duration,
    /// With no request in flight, a connection is closed gracefully after this long.
    pub(crate) idle_timeout: Duration,
    /// A response the peer takes no bytes of for this long closes the connection.
    pub(crate) stall_timeout: Duration,
    /// The peer multiplexes many callers on one connection (the mesh): a stalled response closes
    /// the connection only if nothing at all was sent for the stall timeout.
    pub(crate) multiplexed: bool,
}

impl Limits {
    pub(crate) const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
    /// Longer than the pooled clients' idle timeout (90 s, ours included), so that a client
    /// closes an idle connection before the server does and never races a request against it.
    pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
    pub(crate) const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
    /// Prometheus and a health checker or two need no more on the admin listener.
    pub(crate) const ADMIN_CONNECTIONS: usize = 32;

    /// The default deadlines with a cap of `max_connections`.
    pub(crate) const fn with_cap(max_connections: usize) -> Self {
        Self {
            max_connections,
            head_timeout: Self::DEFAULT_HEAD_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            stall_timeout: Self::DEFAULT_STALL_TIMEOUT,
            multiplexed: false,
        }
    }

    /// The default cap of the API and mesh listeners under a descriptor limit of `fd_limit`:
    /// each may take a quarter of what is left after the reserve.
    pub(crate) fn default_cap(fd_limit: u64) -> usize {
        let share = fd_limit.saturating_sub(RESERVED_FDS) / 4;
        usize::try_from(share.clamp(16, 16_384)).unwrap_or(16_384)
    }
}

/// Raises the soft limit on open descriptors to the hard limit (as daprd does), and returns the
/// limit in force.
pub(crate) fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// A server builder with the limits every listener shares (security rule 6; the deadlines are
/// each connection's [`Watch`]'s).
pub(crate) fn builder(h2_only: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Head deadlines are the connection watch's (`Watch::run`): from accept, and for each
        // later head from its first byte. hyper's own timer would start afresh at every request
        // (a timer set and cancelled per request) and run on idle keep-alive connections too,
        // which the watch closes gracefully on its idle timeout instead.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADER_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(32)
        .max_local_error_reset_streams(1024)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    if h2_only { b.http2_only() } else { b }
}

/// The service type each connection runs.
pub(crate) trait ConnService:
    tower::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> ConnService for S where
    S: tower::Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A bound listener with its name (for logs and metrics), its limits and its connection slots.
pub(crate) struct Listener {
    tcp: TcpListener,
    name: &'static str,
    limits: Limits,
    slots: Arc<Semaphore>,
    log: AcceptLog,
}

/// A connection within the listener's cap.
pub(crate) struct Accepted {
    pub(crate) tcp: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Watches the connection and holds its slot until it ends.
    pub(crate) watch: Watch,
}

impl Listener {
    pub(crate) fn new(tcp: TcpListener, name: &'static str, limits: Limits) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        Self {
            tcp,
            name,
            limits,
            slots,
            log: AcceptLog::default(),
        }
    }

    /// The listener's connection slots, for another transport on the same port to share.
    pub(crate) fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    /// The next connection within the cap. A connection past it is closed at once: refusing is
    /// cheaper than serving, and it keeps this listener's descriptors bounded.
    pub(crate) async fn accept(&mut self) -> Accepted {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, peer)) => match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let _ = tcp.set_nodelay(true);
                        return Accepted {
                            tcp,
                            peer,
                            watch: Watch::new(self.name, self.limits, slot),
                        };
                    }
                    Err(_) => {
                        drop(tcp);
                        crate::telemetry::metrics::CONNECTIONS_REFUSED
                            .counter(&[("listener", self.name.to_owned())])
                            .increment(1);
                        self.log.refused(self.name, self.limits.max_connections);
                    }
                },
                Err(e) => self.log.failed(self.name, e).await,
            }
        }
    }
}

/// The connections of one listener: stopped together, drained together.
#[derive(Default)]
pub(crate) struct Conns {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Conns {
    /// Serves one accepted stream (plain or after a TLS handshake) until it ends, its watch
    /// closes it, or the listener drains.
    /// `io` is expected to read and write through [`Watch::io`].
    pub(crate) fn spawn<I, S>(
        &self,
        io: I,
        svc: S,
        builder: &auto::Builder<TokioExecutor>,
        watch: Watch,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ConnService,
    {
        let svc = ServiceBuilder::new()
            // A panic below answers 500 for its request; the connection and the process go on.
            .layer(CatchPanicLayer::custom(crate::errors::panic_response))
            // Credentials are marked sensitive: whatever prints a header map prints no secret.
            .layer(SetSensitiveRequestHeadersLayer::new(SENSITIVE_HEADERS))
            .service(svc);
        let svc = Tracked::new(svc, watch.activity());
        let conn = builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
            .into_owned();
        self.tracker.spawn(watch.run(conn, self.stop.clone()));
    }

    /// Asks every connection to finish (HTTP/2 GOAWAY, HTTP/1 close after the current
    /// response) and waits for them, at most `grace`.
    pub(crate) async fn drain(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "in-flight requests did not finish within the grace period"
            );
        }
    }
}

/// Serves plain-text connections from `listener` until `stop`, then drains in-flight requests
/// for at most `grace`. `make` builds the service of a connection from the peer's address.
pub(crate) async fn serve<S: ConnService>(
    mut listener: Listener,
    make: impl Fn(SocketAddr) -> S,
    stop: CancellationToken,
    grace: Duration,
) {
    let builder = builder(false);
    let conns = Conns::default();
    loop {
        let a = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        // HTTP/1 framing is checked below hyper; see `guard`. The watch sees the raw bytes.
        let io = Guarded::watched(a.watch.io(a.tcp), a.watch.activity());
        conns.spawn(io, make(a.peer), &builder, a.watch);
    }
    drop(listener);
    conns.drain(grace).await;
}

/// The TLS handshake of an accepted connection, within its deadline for the first request
/// head; `None`, logged as `refused` or closed on the deadline, when it does not complete.
pub(crate) async fn tls_handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    watch: &Watch,
    refused: &'static str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout_at(watch.handshake_deadline(), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "{refused}");
            None
        }
        Err(_) => {
            watch.closed("the TLS handshake did not complete in time");
            None
        }
    }
}

/// Logs accept failures and refusals at most once per interval, with how many were not logged.
#[derive(Default)]
struct AcceptLog {
    last: Option<Instant>,
    quiet: u64,
}

impl AcceptLog {
    const INTERVAL: Duration = Duration::from_secs(5);

    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::INTERVAL)
        {
            self.quiet += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.quiet))
    }

    fn refused(&mut self, listener: &'static str, cap: usize) {
        if let Some(not_logged) = self.due() {
            tracing::warn!(
                listener,
                cap,
                not_logged,
                "connection cap reached; closing new connections"
            );
        }
    }

    /// Running out of descriptors must not spin the accept loop either.
    async fn failed(&mut self, listener: &'static str, e: std::io::Error) {
        crate::telemetry::metrics::ACCEPT_ERRORS
            .counter(&[("listener", listener.to_owned())])
            .increment(1);
        if let Some(not_logged) = self.due() {
            tracing::warn!(listener, error = %e, not_logged, "accept failed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_leave_room_for_everything_else() {
        assert_eq!(Limits::default_cap(1024), 192);
        assert_eq!(Limits::default_cap(100), 16);
        assert_eq!(Limits::default_cap(1 << 20), 16_384);
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_connection_serves_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let svc = tower::service_fn(|req: Request<Incoming>| async move {
            assert!(req.uri().path() != "/panic", "a handler bug");
            Ok::<_, Infallible>(Response::new(crate::net::http::full("fine")))
        });
        let listener = Listener::new(tcp, "test", Limits::with_cap(4));
        tokio::spawn(serve(
            listener,
            move |_| svc,
            stop.clone(),
            Duration::from_secs(1),
        ));
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        async fn answer(conn: &mut tokio::net::TcpStream, path: &str) -> String {
            conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
        let first = answer(&mut conn, "/panic").await;
        assert!(first.starts_with("HTTP/1.1 500"), "{first}");
        assert!(
            first.contains(r#"{"errorCode":"ERR_INTERNAL","message":"internal error"}"#),
            "{first}"
        );
        let second = answer(&mut conn, "/ok").await;
        assert!(
            second.starts_with("HTTP/1.1 200") && second.ends_with("fine"),
            "{second}"
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn accept_log_is_bounded() {
        let mut log = AcceptLog::default();
        assert_eq!(log.due(), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.due(), None);
        }
        tokio::time::advance(AcceptLog::INTERVAL).await;
        assert_eq!(log.due(), Some(1000));
    }
}
