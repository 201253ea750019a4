//! The concrete stage's balancer: which of a target's endpoints gets the next attempt.
//!
//! Two strategies over the live endpoint set the `discovery` crate publishes:
//! - round-robin (the default, Dapr's): endpoints in turn;
//! - power of two choices over peak-EWMA load (Linkerd's): two endpoints drawn at random, the
//!   one with the lower load wins, load being `tower::load::PeakEwma`'s cost (a latency estimate
//!   that jumps up at once on a slow answer and decays slowly, times the requests in flight).
//!
//! Both skip *ejected* endpoints (outlier detection, in `eject`): an endpoint whose connection
//! attempt failed is left out for a backoff (1 s, doubling per failure in a row, at most 30 s);
//! when the backoff ends, one request goes there as a probe, and its outcome readmits the
//! endpoint or ejects it again for longer. An attempt also avoids the endpoint the previous
//! attempt of the same request went to, so a retry reaches another instance whenever one
//! exists. When every candidate is ejected, one is tried anyway: a request is never refused just
//! because all endpoints failed a while ago.
//!
//! The balancer is generic over the endpoint service `S` (the proxy's is a pooled HTTP client
//! whose request URI names the address) and keeps time with `tokio::time`. It does not send
//! anything itself: [`Balancer::pick`] hands out an [`Attempt`], the caller sends through
//! [`Endpoint::call`] and reports whether a connection could be made; what counts as a
//! connection failure is the caller's to say.
//!
//! It does not use `tower::balance::p2c::Balance`: that service owns its endpoint set behind
//! `&mut self`, so it would need a `Buffer` (a task hop per request) to be shared, and it cannot
//! leave out a particular endpoint for one request, which retries need. The load measure is
//! tower's.
//!
//! Endpoint state (load, health) is kept across changes of the set for endpoints that stay;
//! removed ones are dropped from the table at once (their services finish what they carry).

mod draw;
mod eject;
mod endpoint;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use outrider_discovery::{Balancing, EndpointSet};
use tokio::sync::watch;
use tokio::time::Instant;

use self::draw::Draw;
pub use self::endpoint::{Attempt, Endpoint, ResponseFuture};

/// Picks endpoints of one target, over services of type `S`.
pub struct Balancer<S> {
    strategy: Balancing,
    endpoints: watch::Receiver<Arc<EndpointSet>>,
    table: Mutex<Arc<Table<S>>>,
    new_endpoint: Box<dyn Fn(SocketAddr) -> S + Send + Sync>,
    next: AtomicUsize,
    draw: Draw,
}

/// The endpoints of one version of the set, in its order.
struct Table<S> {
    set: Arc<EndpointSet>,
    endpoints: Vec<Arc<Endpoint<S>>>,
}

/// What the metadata API and the admin page show of an endpoint.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    /// The endpoint's address.
    pub address: String,
    /// `up`, `ejected`, `due for a probe` or `probing`.
    pub state: &'static str,
}

impl<S: Clone + Send + Sync + 'static> Balancer<S> {
    /// A balancer over the set `endpoints` holds, in which every endpoint gets a clone of
    /// `service` (a pooled client, say, whose request URI names the endpoint).
    pub fn new(
        strategy: Balancing,
        endpoints: watch::Receiver<Arc<EndpointSet>>,
        service: S,
    ) -> Self {
        Self::with_new_endpoint(strategy, endpoints, move |_| service.clone())
    }
}

impl<S> Balancer<S> {
    /// A balancer over the set `endpoints` holds, in which each endpoint's service is made by
    /// `new_endpoint` when the address joins the set.
    pub fn with_new_endpoint(
        strategy: Balancing,
        endpoints: watch::Receiver<Arc<EndpointSet>>,
        new_endpoint: impl Fn(SocketAddr) -> S + Send + Sync + 'static,
    ) -> Self {
        let table = Arc::new(Table {
            set: Arc::default(),
            endpoints: Vec::new(),
        });
        Self {
            strategy,
            endpoints,
            table: Mutex::new(table),
            new_endpoint: Box::new(new_endpoint),
            next: AtomicUsize::new(0),
            draw: Draw::seeded(),
        }
    }

    /// The live endpoint set.
    pub fn endpoints(&self) -> watch::Receiver<Arc<EndpointSet>> {
        self.endpoints.clone()
    }

    /// The table for the current set, rebuilt (keeping the state of endpoints that stay) when
    /// the set changed.
    fn table(&self) -> Arc<Table<S>> {
        let current = self.endpoints.borrow().clone();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&table.set, &current) {
            let mut old: HashMap<SocketAddr, Arc<Endpoint<S>>> = table
                .endpoints
                .iter()
                .map(|e| (e.addr(), e.clone()))
                .collect();
            let endpoints = current
                .addrs
                .iter()
                .map(|a| {
                    old.remove(a)
                        .unwrap_or_else(|| Arc::new(Endpoint::new(*a, (self.new_endpoint)(*a))))
                })
                .collect();
            *table = Arc::new(Table {
                set: current,
                endpoints,
            });
        }
        table.clone()
    }

    /// The endpoint for the next attempt, avoiding `avoid` (the previous attempt's) when
    /// another exists; `None` while the set is empty. Report its outcome on the [`Attempt`].
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<Attempt<S>> {
        let table = self.table();
        let eps = &table.endpoints;
        let now = Instant::now();
        let taken = match eps.len() {
            0 => return None,
            1 => None,
            _ => match self.strategy {
                Balancing::RoundRobin => self.round_robin(eps, avoid, now),
                Balancing::P2cPeakEwma => self.p2c(eps, avoid, now),
            },
        };
        // Nothing else is available (one endpoint, or all others ejected): try one anyway, as
        // a probe, rather than refuse the request.
        Some(taken.unwrap_or_else(|| {
            let mut turn = self.in_turn(eps);
            let other = turn.find(|e| Some(e.addr()) != avoid);
            other.unwrap_or(&eps[0]).force(now)
        }))
    }

    /// The next available endpoint in turn other than `avoid`.
    fn round_robin(
        &self,
        eps: &[Arc<Endpoint<S>>],
        avoid: Option<SocketAddr>,
        now: Instant,
    ) -> Option<Attempt<S>> {
        self.in_turn(eps)
            .filter(|e| Some(e.addr()) != avoid)
            .find_map(|e| e.try_take(now))
    }

    /// The less loaded of two available endpoints other than `avoid`, drawn at random.
    fn p2c(
        &self,
        eps: &[Arc<Endpoint<S>>],
        avoid: Option<SocketAddr>,
        now: Instant,
    ) -> Option<Attempt<S>> {
        let candidates: Vec<&Arc<Endpoint<S>>> = eps
            .iter()
            .filter(|e| Some(e.addr()) != avoid && e.available(now))
            .collect();
        let (first, second) = match candidates.len() {
            0 => (None, None),
            1 => (Some(candidates[0]), None),
            k => {
                let (i, j) = self.draw.two_of(k);
                let (a, b) = (candidates[i], candidates[j]);
                if b.load() < a.load() {
                    (Some(b), Some(a))
                } else {
                    (Some(a), Some(b))
                }
            }
        };
        // Taking may fail when another request just took the one probe.
        first
            .and_then(|e| e.try_take(now))
            .or_else(|| second.and_then(|e| e.try_take(now)))
    }

    /// All of `eps`, starting at the next one's turn.
    fn in_turn<'a>(
        &self,
        eps: &'a [Arc<Endpoint<S>>],
    ) -> impl Iterator<Item = &'a Arc<Endpoint<S>>> + use<'a, S> {
        let n = eps.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(move |i| &eps[(start + i) % n])
    }

    /// The current endpoints and their state.
    pub fn view(&self) -> Vec<EndpointView> {
        let now = Instant::now();
        self.table()
            .endpoints
            .iter()
            .map(|e| EndpointView {
                address: e.addr().to_string(),
                state: e.state(now),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
