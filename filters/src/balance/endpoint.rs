//! One endpoint of a balancer: its service wrapped in tower's peak-EWMA load measure, its
//! health (see [`super::eject`]), and the [`Attempt`] through which a request reports how the
//! connection went. The choice between endpoints is the balancer's, not this module's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tower::Service;
use tower::load::completion::TrackCompletionFuture;
use tower::load::peak_ewma::{Cost, Handle};
use tower::load::{CompleteOnResponse, Load, PeakEwma};

use super::eject::Health;

/// The latency assumed for an endpoint before its first answer, and how fast the estimate
/// forgets a slow answer (Linkerd's defaults).
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY: Duration = Duration::from_secs(10);

/// The future of [`Endpoint::call`]: the service's own, measured until the response arrives.
pub type ResponseFuture<F> = TrackCompletionFuture<F, CompleteOnResponse, Handle>;

/// One endpoint: its address, its service with the load measured, and its health.
pub struct Endpoint<S> {
    addr: SocketAddr,
    load: Mutex<PeakEwma<S, CompleteOnResponse>>,
    health: Mutex<Health>,
}

/// One request's use of an endpoint. Send the request with [`Endpoint::call`], then report how
/// the connection went with [`Attempt::connected`] or [`Attempt::unreachable`]. Dropped without
/// an outcome (the caller gave up), a probe lets the next request probe instead.
pub struct Attempt<S> {
    /// The endpoint picked.
    pub endpoint: Arc<Endpoint<S>>,
    probe: bool,
    settled: bool,
}

impl<S> Endpoint<S> {
    pub(super) fn new(addr: SocketAddr, service: S) -> Self {
        let load = PeakEwma::new(
            service,
            DEFAULT_RTT,
            DECAY.as_nanos() as f64,
            CompleteOnResponse::default(),
        );
        Self {
            addr,
            load: Mutex::new(load),
            health: Mutex::new(Health::Up),
        }
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `req` through this endpoint's service, measuring its latency and counting it in
    /// flight until the response arrives.
    ///
    /// Contract: the service is always ready (`poll_ready` is not called), as a pooled client
    /// is that waits for its connection inside the response future.
    pub fn call<Req>(&self, req: Req) -> ResponseFuture<S::Future>
    where
        S: Service<Req>,
    {
        self.load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call(req)
    }

    /// Takes this endpoint for one request if it may have one: always when up; when its
    /// ejection is over (or the last probe went stale), as the one probe. Atomic, so a burst of
    /// requests sends a single probe.
    pub(super) fn try_take(self: &Arc<Self>, now: Instant) -> Option<Attempt<S>> {
        let probe = self.health().take(now)?;
        Some(self.attempt(probe))
    }

    /// Takes it whatever its state; if it is not up, the request is its probe.
    pub(super) fn force(self: &Arc<Self>, now: Instant) -> Attempt<S> {
        let probe = self.health().force(now);
        self.attempt(probe)
    }

    fn attempt(self: &Arc<Self>, probe: bool) -> Attempt<S> {
        Attempt {
            endpoint: self.clone(),
            probe,
            settled: false,
        }
    }

    /// Latency estimate times requests in flight (lower is better).
    pub(super) fn load(&self) -> Cost {
        self.load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .load()
    }

    pub(super) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn available(&self, now: Instant) -> bool {
        self.health().available(now)
    }

    pub(super) fn state(&self, now: Instant) -> &'static str {
        self.health().state(now)
    }

    fn succeeded(&self, probe: bool) {
        if self.health().succeeded(probe) {
            tracing::info!(endpoint = %self.addr, "endpoint answers again; back in rotation");
        }
    }

    pub(super) fn failed(&self, probe: bool) {
        let Some((failures, backoff)) = self.health().failed(probe, Instant::now()) else {
            return;
        };
        tracing::warn!(endpoint = %self.addr, failures, backoff_ms = backoff.as_millis() as u64,
            "connection failed; endpoint ejected");
    }
}

impl<S> Attempt<S> {
    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }

    /// A connection to the endpoint worked (whatever the answer): a probe readmits it.
    pub fn connected(mut self) {
        self.settled = true;
        self.endpoint.succeeded(self.probe);
    }

    /// No connection could be made: the endpoint is ejected (a probed one for longer).
    /// Failures of requests picked before an ejection do not count again.
    pub fn unreachable(mut self) {
        self.settled = true;
        self.endpoint.failed(self.probe);
    }
}

impl<S> Drop for Attempt<S> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.endpoint.health().abandoned(Instant::now());
        }
    }
}
