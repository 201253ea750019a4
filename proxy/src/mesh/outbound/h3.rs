//! The h3 connector: one QUIC connection per endpoint address, mutual TLS 1.3 pinned to the
//! target's SPIFFE id (the same verifier as HTTP/2's), HTTP/3 requests multiplexed on it.
//!
//! A connection is made on first use and kept while it is used (QUIC keep-alives hold it open;
//! a peer whose sidecar died refuses on its socket and ends it at once, one that vanished is
//! noticed by the idle timeout). Requests stream both ways: the request body
//! is sent by a task of its own while the response arrives, and dropping the response (or the
//! call before it) resets the request stream, so the far side stops too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::net::http::{Body, BoxError, boxed, names};
use crate::net::quic;
use crate::net::quic::body::{RecvBody, SendError};

/// How long a QUIC handshake and HTTP/3's setup may take before the attempt is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed attempt is the answer of every request for this long, rather than one attempt each.
const FAILURE_MEMORY: Duration = Duration::from_secs(1);

/// A connection no request used for this long is let go (h3 closes it once its requests in
/// flight end): below the server's idle close, so a request never races the server's GOAWAY.
const IDLE: Duration = Duration::from_secs(90);

/// A peer that takes nothing of a request body for this long has its stream reset.
const STALL: Duration = crate::net::serve::Limits::DEFAULT_STALL_TIMEOUT;

/// The largest response header section accepted, as on TCP.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// A failed QUIC connection attempt: nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("QUIC connection failed: {0}")]
pub(crate) struct ConnectError(BoxError);

/// What went wrong with an HTTP/3 request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H3Error {
    /// No connection: the request was not sent.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The request was (maybe partly) sent, then its stream or connection failed.
    #[error("HTTP/3 request failed: {0}")]
    Stream(#[from] h3::error::StreamError),
    /// The request's body failed while it was being sent; the stream was reset.
    #[error("the request body failed: {0}")]
    Body(BoxError),
}

/// One live HTTP/3 connection.
#[derive(Clone)]
struct Live {
    quic: quinn::Connection,
    send: Handle,
    /// When a request last opened a stream on it.
    used: Arc<Mutex<Instant>>,
}

impl Live {
    /// Open, and used recently enough that the peer has not closed it as idle.
    fn usable(&self) -> bool {
        let used = *self.used.lock().unwrap_or_else(PoisonError::into_inner);
        self.quic.close_reason().is_none() && used.elapsed() < IDLE
    }

    fn touch(&self) {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
}

/// One endpoint's connection, and what serialises the attempts to make it.
#[derive(Default)]
struct Slot {
    live: Mutex<Option<Live>>,
    /// Held while connecting; keeps the latest failure for [`FAILURE_MEMORY`].
    connecting: tokio::sync::Mutex<Option<(Instant, Arc<str>)>>,
}

impl Slot {
    fn usable(&self) -> Option<Live> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.as_ref().filter(|l| l.usable()).cloned()
    }
}

/// The h3 connections of one target, by endpoint address.
#[derive(Clone)]
pub(crate) struct H3Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: quinn::ClientConfig,
    slots: Mutex<HashMap<SocketAddr, Arc<Slot>>>,
}

impl H3Client {
    /// Connections made with `tls` (which checks the target's identity).
    pub(crate) fn new(tls: rustls::ClientConfig) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                config: quic::client_config(tls)?,
                slots: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn slot(&self, addr: SocketAddr) -> Arc<Slot> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr)
            .or_default()
            .clone()
    }

    /// Whether a live connection to `addr` exists now.
    pub(crate) fn is_connected(&self, addr: SocketAddr) -> bool {
        self.slot(addr).usable().is_some()
    }

    /// Lets go of the connections to addresses `keep` refuses (endpoints discovery no longer
    /// gives): each closes once its requests in flight have ended (a peer that stops gracefully
    /// leaves discovery first, then finishes what it has).
    pub(crate) fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|addr, _| keep(addr));
    }

    /// The live connection to `addr`, made now if there is none. Concurrent callers share one
    /// attempt, and its failure for a moment after.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<(), ConnectError> {
        self.live(addr).await.map(drop)
    }

    async fn live(&self, addr: SocketAddr) -> Result<Live, ConnectError> {
        let slot = self.slot(addr);
        if let Some(live) = slot.usable() {
            return Ok(live);
        }
        let mut failed = slot.connecting.lock().await;
        // Another caller may have connected, or failed, while this one waited.
        if let Some(live) = slot.usable() {
            return Ok(live);
        }
        if let Some((at, why)) = failed.as_ref()
            && at.elapsed() < FAILURE_MEMORY
        {
            return Err(ConnectError(format!("{why} (a moment ago)").into()));
        }
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(addr)).await {
            Ok(Ok(live)) => {
                *failed = None;
                *slot.live.lock().unwrap_or_else(PoisonError::into_inner) = Some(live.clone());
                Ok(live)
            }
            Ok(Err(e)) => {
                *failed = Some((Instant::now(), e.0.to_string().into()));
                Err(e)
            }
            Err(_) => {
                let why = format!("no QUIC and HTTP/3 setup within {HANDSHAKE_TIMEOUT:?}");
                *failed = Some((Instant::now(), why.as_str().into()));
                Err(ConnectError(why.into()))
            }
        }
    }

    /// A new connection to `addr`: the QUIC handshake, then HTTP/3's control streams.
    async fn handshake(&self, addr: SocketAddr) -> Result<Live, ConnectError> {
        // A socket of its own, connected to the peer (see `quic::client_to`); the endpoint
        // lives as long as its connection.
        let (endpoint, refusal) = quic::client_to(addr)
            .map_err(|e| ConnectError(format!("no QUIC client socket: {e}").into()))?;
        // Workload certificates carry no DNS name: the peer is checked by its SPIFFE id, and the
        // server name only fills the handshake (as on TCP, by address).
        let connecting = endpoint
            .connect_with(self.inner.config.clone(), addr, &addr.ip().to_string())
            .map_err(|e| ConnectError(e.into()))?;
        let quic = tokio::select! {
            c = connecting => c.map_err(|e| ConnectError(e.into()))?,
            () = refusal.refused() => {
                return Err(ConnectError("the peer refused (nothing listens on its UDP port)".into()));
            }
        };
        // From now on a refusal ends the connection, and with it the requests it carries.
        let watched = quic.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = refusal.refused() => {
                    watched.close(quinn::VarInt::from_u32(0x102), b"the peer refused");
                }
                _ = watched.closed() => {}
            }
        });
        let (mut driver, send) = h3::client::builder()
            .max_field_section_size(MAX_HEADER_BYTES)
            .build(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|e| ConnectError(e.into()))?;
        tokio::spawn(async move {
            let e = driver.wait_idle().await;
            if !e.is_h3_no_error() {
                tracing::debug!(%addr, error = %e, "HTTP/3 connection ended");
            }
        });
        Ok(Live {
            quic,
            send,
            used: Arc::new(Mutex::new(Instant::now())),
        })
    }

    /// Sends `req` (its URI names `addr`) and returns the response head with a streaming body.
    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Body>, H3Error> {
        let (mut parts, body) = req.into_parts();
        let with_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
        quic::body::declare_length(&mut parts.headers, &body, with_body);
        let head = Request::from_parts(parts, ());
        let (stream, handle) = match self.open(addr, head.clone()).await {
            Ok(s) => s,
            // A pooled connection that is closing (GOAWAY, idle timeout) opens no stream and
            // takes no part of the request: one fresh connection is tried before giving up.
            Err(OpenError::Stream(_)) => match self.open(addr, head).await {
                Ok(s) => s,
                // Twice no stream: nothing was sent, so it is as good as no connection.
                Err(OpenError::Stream(e)) => {
                    return Err(ConnectError(format!("no HTTP/3 stream opened: {e}").into()).into());
                }
                Err(OpenError::Connect(e)) => return Err(e.into()),
            },
            Err(OpenError::Connect(e)) => return Err(e.into()),
        };
        let (mut tx, mut rx) = stream.split();
        let mut sending = AbortOnDrop(tokio::spawn(async move {
            quic::body::send(&mut tx, body, STALL).await
        }));
        let head = tokio::select! {
            head = rx.recv_response() => head,
            // The request's own body failed (its limit, say): the exchange is off, as a reset
            // HTTP/2 stream would be, whatever the peer would have answered.
            // (Dropping `rx` on return asks the peer to stop sending.)
            Ok(Err(SendError::Source(e))) = &mut sending.0 => return Err(H3Error::Body(e)),
        };
        let mut head = match head {
            Ok(head) => head,
            Err(e) => return Err(e.into()),
        };
        // The answer goes on over HTTP/1.1 or HTTP/2, and hyper refuses to write a version it
        // does not know.
        *head.version_mut() = http::Version::HTTP_2;
        // A gRPC answer with its status in the head is trailers-only: its body is empty, and the
        // next hop must see that at once to send the head as the end of the stream, as gRPC
        // clients expect.
        if head.headers().contains_key(&names::GRPC_STATUS)
            && crate::net::http::is_grpc(head.headers())
        {
            return Ok(head.map(|()| crate::net::http::empty()));
        }
        // The connection lives while any request uses it: h3 closes it when its last handle goes.
        let body = RecvBody::keeping(rx, head.headers(), (sending, handle));
        Ok(head.map(|()| boxed(body)))
    }

    async fn open(
        &self,
        addr: SocketAddr,
        head: Request<()>,
    ) -> Result<(Stream, Handle), OpenError> {
        let mut live = self.live(addr).await.map_err(OpenError::Connect)?;
        live.touch();
        match live.send.send_request(head).await {
            Ok(s) => Ok((s, live.send)),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "HTTP/3 stream not opened");
                // The next request makes a new connection, unless another already did.
                let slot = self.slot(addr);
                let mut held = slot.live.lock().unwrap_or_else(PoisonError::into_inner);
                if held
                    .as_ref()
                    .is_some_and(|l| l.quic.stable_id() == live.quic.stable_id())
                {
                    *held = None;
                }
                Err(OpenError::Stream(e))
            }
        }
    }
}

type Handle = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

type Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

enum OpenError {
    Connect(ConnectError),
    /// The stream did not open (the connection is closing or gone).
    Stream(h3::error::StreamError),
}

/// Aborts the task when dropped: a request body nobody waits for any more stops being sent (and
/// its stream is reset, see [`quic::body::send`]).
struct AbortOnDrop(JoinHandle<Result<(), SendError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
