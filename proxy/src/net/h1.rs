//! HTTP/1.1 client connections to one plain-TCP destination: the app behind a sidecar, or the
//! upstream of `outrider proxy`.
//!
//! A [`Pool`] keeps the connections that finished their last exchange, newest first, and
//! hands the newest out for the next request. With one destination there is no key to hash and
//! no per-destination bookkeeping, which a general-purpose pooled client pays on every request.
//! A connection goes back when its answer's body has been read to its end (or its trailers
//! came): at once if hyper already deems it ready for another request, else once it does (the
//! request body may still be going out after an early answer), within a bound. One whose answer
//! is dropped before its end is closed, since it is in the middle of a message. A request that a
//! kept connection could not take because the destination had just closed it was never
//! written, and goes once more, on another connection. Connections unused for the idle timeout
//! are closed, by a task that runs only while some are kept.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::http::{Body, BoxError};

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection is kept unused before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a connection whose answer ended may take to become ready for another request
/// (its request body still going out) before it is let go.
const READY_PATIENCE: Duration = Duration::from_secs(10);

/// Reusable connections to one destination.
pub(crate) struct Pool {
    authority: Authority,
    /// At most this many unused connections are kept.
    max_idle: usize,
    /// Unused connections and since when, oldest first.
    idle: Mutex<VecDeque<(SendRequest<Body>, Instant)>>,
    /// Whether the task that closes connections past the idle timeout runs.
    reaping: AtomicBool,
}

impl Pool {
    /// Connections to `authority` (`host:port`), keeping at most `max_idle` unused ones.
    pub(crate) fn new(authority: Authority, max_idle: usize) -> Arc<Self> {
        Arc::new(Self {
            authority,
            max_idle,
            idle: Mutex::new(VecDeque::new()),
            reaping: AtomicBool::new(false),
        })
    }

    /// Sends `req`, whose URI is in origin form (path and query), over a kept connection or a
    /// new one. The answer's body gives the connection back when it ends.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Answer>, BoxError> {
        loop {
            let kept = self.take();
            let reused = kept.is_some();
            let mut sender = match kept {
                Some(s) => s,
                None => connect(&self.authority).await?,
            };
            match sender.try_send_request(req).await {
                // Nothing to read (a HEAD, a 204, an empty body): whoever serves the answer
                // may never ask its body for a frame, so the connection goes back now.
                Ok(rsp) if rsp.body().is_end_stream() => {
                    self.give_back(sender);
                    return Ok(rsp.map(|body| Answer { body, home: None }));
                }
                Ok(rsp) => {
                    let pool = Arc::clone(self);
                    return Ok(rsp.map(|body| Answer {
                        body,
                        home: Some((sender, pool)),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The newest unused connection that is still open, ready and within the idle timeout,
    /// dropping the others it meets.
    fn take(&self) -> Option<SendRequest<Body>> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((sender, since)) = idle.pop_back() {
            if now.duration_since(since) >= IDLE_TIMEOUT {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request once it is ready for one.
    fn give_back(self: &Arc<Self>, mut sender: SendRequest<Body>) {
        if sender.is_ready() {
            self.keep(sender);
        } else if !sender.is_closed() {
            // Still finishing its exchange (e.g. sending a request body after an early answer).
            let pool = Arc::downgrade(self);
            tokio::spawn(async move {
                let ready = tokio::time::timeout(READY_PATIENCE, sender.ready()).await;
                if let (Ok(Ok(())), Some(pool)) = (ready, pool.upgrade()) {
                    pool.keep(sender);
                }
            });
        }
    }

    /// Adds a ready connection, letting the oldest go past `max_idle` or the idle timeout.
    fn keep(self: &Arc<Self>, sender: SendRequest<Body>) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        prune(&mut idle, now);
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back((sender, now));
        drop(idle);
        if !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }
}

/// Lets go of the connections at the front of `idle` that closed or passed the idle timeout.
fn prune(idle: &mut VecDeque<(SendRequest<Body>, Instant)>, now: Instant) {
    while idle
        .front()
        .is_some_and(|(s, since)| s.is_closed() || now.duration_since(*since) >= IDLE_TIMEOUT)
    {
        idle.pop_front();
    }
}

/// Closes kept connections as they pass the idle timeout, while any are kept and the pool is.
async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 4).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        prune(&mut idle, Instant::now());
        if idle.is_empty() {
            pool.reaping.store(false, Ordering::Release);
            return;
        }
    }
}

/// Opens a connection to `authority`; its task ends when the connection does.
async fn connect(authority: &Authority) -> Result<SendRequest<Body>, BoxError> {
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(authority.as_str()),
    )
    .await
    .map_err(|_| format!("connecting to {authority} timed out"))??;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "an HTTP/1.1 client connection ended with an error");
        }
    });
    Ok(sender)
}

/// An answer's body, which gives its connection back to the pool once read to its end.
pub(crate) struct Answer {
    body: Incoming,
    home: Option<(SendRequest<Body>, Arc<Pool>)>,
}

impl Answer {
    fn ended(&mut self) {
        if let Some((sender, pool)) = self.home.take() {
            pool.give_back(sender);
        }
    }
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        // The end: no more frames, no more data to come, or the trailers (after which whoever
        // serves the answer may not ask again).
        let last = match &frame {
            None => true,
            Some(Ok(f)) => f.is_trailers() || self.body.is_end_stream(),
            Some(Err(_)) => false,
        };
        if last {
            self.ended();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::net::http::{empty, full};

    /// A server that answers every request with the number of its connection, and counts them.
    async fn numbered() -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = Authority::try_from(listener.local_addr().unwrap().to_string()).unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(n.to_string()))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc),
                );
            }
        });
        (authority, count)
    }

    fn get() -> Request<Body> {
        Request::builder().uri("/").body(empty()).unwrap()
    }

    async fn text(rsp: Response<Answer>) -> String {
        let bytes = rsp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read() {
        let (authority, count) = numbered().await;
        let pool = Pool::new(authority, 4);
        for _ in 0..3 {
            assert_eq!(text(pool.send(get()).await.unwrap()).await, "1");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn requests_at_once_get_connections_of_their_own_and_idle_ones_are_bounded() {
        let (authority, count) = numbered().await;
        let pool = Pool::new(authority, 2);
        // Three answers held unread at once: three connections.
        let held = [
            pool.send(get()).await.unwrap(),
            pool.send(get()).await.unwrap(),
            pool.send(get()).await.unwrap(),
        ];
        assert_eq!(count.load(Ordering::SeqCst), 3);
        for rsp in held {
            text(rsp).await;
        }
        assert_eq!(pool.idle.lock().unwrap().len(), 2, "at most max_idle kept");
        // An answer dropped before its end takes its connection with it.
        let unread = pool.send(Request::new(full("x"))).await.unwrap();
        drop(unread);
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
    }

    /// A request body fed by hand, one chunk per message on the channel, ended when it closes.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for Fed {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    #[tokio::test]
    async fn a_connection_still_sending_its_request_body_is_not_handed_out() {
        // The server answers at once, without waiting for the request body.
        let (authority, count) = numbered().await;
        let pool = Pool::new(authority, 4);
        let (feed, fed) = tokio::sync::mpsc::channel(1);
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .body(crate::net::http::boxed(Fed(fed)))
            .unwrap();
        let early = pool.send(req).await.unwrap();
        assert_eq!(text(early).await, "1");
        // Its connection is still sending the first request's body: the next request gets
        // another one, and its own answer.
        assert_eq!(text(pool.send(get()).await.unwrap()).await, "2");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        drop(feed);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_unused_for_the_idle_timeout_are_let_go() {
        let (authority, count) = numbered().await;
        let pool = Pool::new(authority, 4);
        assert_eq!(text(pool.send(get()).await.unwrap()).await, "1");
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
        tokio::time::sleep(IDLE_TIMEOUT + IDLE_TIMEOUT / 4).await;
        assert_eq!(pool.idle.lock().unwrap().len(), 0, "the reaper let it go");
        assert!(!pool.reaping.load(Ordering::Acquire), "and stopped");
        assert_eq!(text(pool.send(get()).await.unwrap()).await, "2");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
