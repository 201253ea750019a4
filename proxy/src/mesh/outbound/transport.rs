//! The choice of transport per endpoint: HTTP/2 over TLS (TCP) or HTTP/3 over QUIC (UDP).
//!
//! `--mesh-transport h2` or `h3` forces one. `auto` (the default) uses HTTP/3 with an endpoint
//! that advertises it, and HTTP/2 otherwise. Before the first QUIC connection to such an
//! endpoint exists, its handshake gets a head start of [`HEAD_START`]: done by then, the request
//! goes over QUIC; not done (UDP dropped on the way, say), the request goes over TCP at once while
//! the handshake goes on by itself, and whichever transport got through is remembered for the
//! endpoint for a while (`--mesh-transport-memory`). So a network that drops UDP costs one head
//! start per endpoint and memory period, not one per request; once the memory expires, QUIC is
//! tried again.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::Client;
use outrider_discovery::EndpointSet;
use tokio::sync::watch;
use tokio::time::Instant;

use super::h3::{H3Client, H3Error};
use crate::net::http::{Body, BoxError, boxed};

/// How long a first QUIC handshake may take before the request goes over TCP instead: about
/// what Happy Eyeballs gives the preferred address family.
pub(crate) const HEAD_START: Duration = Duration::from_millis(300);

/// Which transport outbound mesh requests use: `--mesh-transport`, or the Configuration's
/// `spec.meshTransport`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum MeshTransport {
    /// HTTP/3 with endpoints that advertise it, raced against HTTP/2 the first time.
    #[default]
    Auto,
    /// HTTP/2 over TLS only; the mesh port does not listen on UDP.
    H2,
    /// HTTP/3 over QUIC only, whatever endpoints advertise.
    H3,
}

impl MeshTransport {
    /// The name as written in flags and files.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MeshTransport::Auto => "auto",
            MeshTransport::H2 => "h2",
            MeshTransport::H3 => "h3",
        }
    }
}

impl FromStr for MeshTransport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(MeshTransport::Auto),
            "h2" => Ok(MeshTransport::H2),
            "h3" => Ok(MeshTransport::H3),
            other => Err(format!(
                "{other:?} is not a mesh transport (auto, h2 or h3)"
            )),
        }
    }
}

/// The HTTP/2 client of a target (pooled, mutual TLS, requests coalesced).
pub(crate) type H2Client = Client<crate::net::coalesce::MeshConnector, Body>;

/// A transport an attempt used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    H2,
    H3,
}

impl Transport {
    /// The metric label and metadata value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::H2 => "h2",
            Transport::H3 => "h3",
        }
    }
}

/// A failed attempt, and whether it failed before anything was sent (safe to send again).
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub(crate) struct MeshError {
    connect: bool,
    pub(crate) source: BoxError,
}

impl MeshError {
    /// The connection failed: nothing was sent.
    pub(crate) fn is_connect(&self) -> bool {
        self.connect
    }
}

/// What a target's sidecars are reached with: both transports and the choice between them.
#[derive(Clone)]
pub(crate) struct MeshClient {
    inner: Arc<Inner>,
}

struct Inner {
    mode: MeshTransport,
    h2: H2Client,
    h3: H3Client,
    endpoints: watch::Receiver<Arc<EndpointSet>>,
    memory: Duration,
    remembered: Mutex<HashMap<SocketAddr, (Transport, Instant)>>,
    /// Ends the task that follows the endpoint set when the client goes.
    _following: Option<tokio_util::sync::DropGuard>,
}

impl MeshClient {
    /// The client of one target: `endpoints` tell which of its endpoints offer HTTP/3.
    pub(crate) fn new(
        mode: MeshTransport,
        h2: H2Client,
        h3: H3Client,
        endpoints: watch::Receiver<Arc<EndpointSet>>,
        memory: Duration,
    ) -> Self {
        let following = (mode != MeshTransport::H2).then(|| follow_departures(&h3, &endpoints));
        let inner = Arc::new(Inner {
            mode,
            h2,
            h3,
            endpoints,
            memory,
            remembered: Mutex::new(HashMap::new()),
            _following: following,
        });
        Self { inner }
    }

    /// The HTTP/2 client, for what rides HTTP/2 only (tunnels).
    pub(crate) fn h2(&self) -> &H2Client {
        &self.inner.h2
    }

    /// The transport requests to `addr` use now, for the metadata API and the admin page.
    pub(crate) fn transport_of(&self, addr: SocketAddr) -> Transport {
        match self.inner.mode {
            MeshTransport::H2 => Transport::H2,
            MeshTransport::H3 => Transport::H3,
            MeshTransport::Auto => {
                if self.inner.h3.is_connected(addr) {
                    Transport::H3
                } else {
                    self.recalled(addr).unwrap_or(Transport::H2)
                }
            }
        }
    }

    fn offers_h3(&self, addr: SocketAddr) -> bool {
        self.inner.endpoints.borrow().offers_h3(addr)
    }

    fn recalled(&self, addr: SocketAddr) -> Option<Transport> {
        let mut map = self
            .inner
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match map.get(&addr) {
            Some((t, until)) if *until > Instant::now() => Some(*t),
            Some(_) => {
                map.remove(&addr);
                None
            }
            None => None,
        }
    }

    fn remember(&self, addr: SocketAddr, t: Transport) {
        let until = Instant::now() + self.inner.memory;
        let mut map = self
            .inner
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Bounded by the endpoints the resolver gives: forget addresses no longer among them.
        if map.len() > 1024 {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
        }
        map.insert(addr, (t, until));
    }

    /// The transport for a request to `addr`, giving a first QUIC handshake its head start.
    async fn choose(&self, addr: SocketAddr) -> Transport {
        match self.inner.mode {
            MeshTransport::H2 => return Transport::H2,
            MeshTransport::H3 => return Transport::H3,
            MeshTransport::Auto => {}
        }
        if !self.offers_h3(addr) {
            return Transport::H2;
        }
        if self.inner.h3.is_connected(addr) {
            return Transport::H3;
        }
        if self.recalled(addr) == Some(Transport::H2) {
            return Transport::H2;
        }
        // The handshake runs by itself, so that one that finishes after the head start still
        // leaves a connection (and its memory) for the next request.
        let (this, h3) = (self.clone(), self.inner.h3.clone());
        let mut handshake = tokio::spawn(async move {
            let got = h3.connect(addr).await;
            let t = if got.is_ok() {
                Transport::H3
            } else {
                Transport::H2
            };
            if let Err(e) = &got {
                tracing::info!(%addr, error = %e, "no QUIC to this endpoint: HTTP/2 for a while");
            }
            this.remember(addr, t);
            t
        });
        match tokio::time::timeout(HEAD_START, &mut handshake).await {
            Ok(Ok(Transport::H3)) => Transport::H3,
            // Failed, or not done within the head start: this request goes over TCP, and so do
            // the next ones until the memory expires (unless the handshake still succeeds).
            Ok(_) | Err(_) => {
                self.remember(addr, Transport::H2);
                crate::telemetry::metrics::record_transport_fallback();
                Transport::H2
            }
        }
    }

    async fn send(self, req: Request<Body>) -> Result<Response<Body>, MeshError> {
        let addr = req
            .uri()
            .authority()
            .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
            .ok_or_else(|| MeshError {
                connect: true,
                source: "the request does not name an endpoint address".into(),
            })?;
        let transport = self.choose(addr).await;
        crate::telemetry::metrics::record_mesh_request("outbound", transport.as_str());
        match transport {
            Transport::H2 => match self.inner.h2.request(req).await {
                Ok(rsp) => Ok(rsp.map(boxed)),
                Err(e) => Err(MeshError {
                    connect: e.is_connect(),
                    source: Box::new(e),
                }),
            },
            // Boxed: HTTP/3's future is several kilobytes, and inline it would make every
            // request's future that size, HTTP/2's included, copied whole at each move.
            Transport::H3 => match Box::pin(self.inner.h3.send(addr, req)).await {
                Ok(rsp) => Ok(rsp),
                Err(e) => Err(MeshError {
                    connect: matches!(e, H3Error::Connect(_)),
                    source: Box::new(e),
                }),
            },
        }
    }
}

/// Lets go of the QUIC connections of endpoints that leave the set, until the guard returned
/// is dropped (with the client: a target that never resolves leaves no task behind).
fn follow_departures(
    h3: &H3Client,
    endpoints: &watch::Receiver<Arc<EndpointSet>>,
) -> tokio_util::sync::DropGuard {
    let stop = tokio_util::sync::CancellationToken::new();
    let (h3, mut endpoints, stopped) = (h3.clone(), endpoints.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = endpoints.changed() => if changed.is_err() { return },
                () = stopped.cancelled() => return,
            }
            let set = endpoints.borrow_and_update().clone();
            h3.retain(|a| set.addrs.binary_search(a).is_ok());
        }
    });
    stop.drop_guard()
}

impl tower::Service<Request<Body>> for MeshClient {
    type Response = Response<Body>;
    type Error = MeshError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, MeshError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(req))
    }
}
