//! The concrete stage's balancer: which of a target's endpoints gets the next attempt.
//!
//! Two strategies over the live endpoint set:
//! - round-robin (the default, Dapr's): endpoints in turn;
//! - power of two choices over peak-EWMA load (Linkerd's): two endpoints drawn at random, the
//!   one with the lower load wins, load being `tower::load::PeakEwma`'s cost (a latency estimate
//!   that jumps up at once on a slow answer and decays slowly, times the requests in flight).
//!
//! Both skip *ejected* endpoints (outlier detection): an endpoint whose connection attempt
//! failed is left out for a backoff (1 s, doubling per failure in a row, at most 30 s); when the
//! backoff ends, one request goes there as a probe, and its outcome readmits the endpoint or
//! ejects it again for longer. An attempt also avoids the endpoint the previous attempt of the
//! same request went to, so a retry reaches another instance whenever one exists. When every
//! candidate is ejected, one is tried anyway: a request is never refused just because all
//! endpoints failed a while ago.
//!
//! The balancer does not use `tower::balance::p2c::Balance` itself: that service owns its
//! endpoint set behind `&mut self`, so it would need a `Buffer` (a task hop per request) to be
//! shared, and it cannot leave out a particular endpoint for one request, which retries need.
//! The load measure is tower's.
//!
//! Endpoint state (load, health) is kept across changes of the set for endpoints that stay;
//! removed ones are dropped from the table at once, and their pooled connections finish what
//! they carry and then idle out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, ResponseFuture};
use outrider_discovery::{Balancing, EndpointSet};
use tokio::sync::watch;
use tower::Service;
use tower::load::{CompleteOnResponse, Load, PeakEwma};

use crate::net::http::Body;

/// The first ejection's length; each failure in a row doubles it, up to [`EJECT_MAX`].
const EJECT_BASE: Duration = Duration::from_secs(1);
const EJECT_MAX: Duration = Duration::from_secs(30);
/// A probe that has not finished after this long (its caller gave up) lets another one go.
const PROBE_STALE: Duration = Duration::from_secs(10);

/// The latency assumed for an endpoint before its first answer, and how fast the estimate
/// forgets a slow answer (Linkerd's defaults).
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY: Duration = Duration::from_secs(10);

pub(crate) type MeshClient = Client<crate::net::coalesce::MeshConnector, Body>;

/// Picks endpoints of one target.
pub(crate) struct Balancer {
    strategy: Balancing,
    endpoints: watch::Receiver<Arc<EndpointSet>>,
    table: Mutex<Arc<Table>>,
    client: MeshClient,
    next: AtomicUsize,
    rng: AtomicU64,
}

/// The endpoints of one version of the set, in its order.
struct Table {
    set: Arc<EndpointSet>,
    endpoints: Vec<Arc<Endpoint>>,
}

/// One endpoint: its load and its health.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    load: Mutex<PeakEwma<Send, CompleteOnResponse>>,
    health: Mutex<Health>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Health {
    Up,
    /// Left out until `until`, after `failures` connection failures in a row.
    Ejected {
        until: Instant,
        failures: u32,
    },
    /// One request is finding out whether it is back.
    Probing {
        since: Instant,
        failures: u32,
    },
}

/// Sends a request over the shared pooled client (the URI names the endpoint).
struct Send(MeshClient);

impl Service<http::Request<Body>> for Send {
    type Response = http::Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pool waits for a connection inside the response future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> ResponseFuture {
        self.0.request(req)
    }
}

/// One request's use of an endpoint; report how the connection went. Dropped without an
/// outcome (the caller gave up), a probe lets the next request probe instead.
pub(crate) struct Attempt {
    pub(crate) endpoint: Arc<Endpoint>,
    probe: bool,
    settled: bool,
}

impl Attempt {
    /// The endpoint's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }

    /// A connection to the endpoint worked (whatever the answer).
    pub(crate) fn connected(mut self) {
        self.settled = true;
        self.endpoint.succeeded(self.probe);
    }

    /// No connection could be made.
    pub(crate) fn unreachable(mut self) {
        self.settled = true;
        self.endpoint.failed(self.probe);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.endpoint.abandoned();
        }
    }
}

/// What the metadata API and the admin page show of an endpoint.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointView {
    pub(crate) address: String,
    pub(crate) state: &'static str,
}

impl Balancer {
    pub(crate) fn new(
        strategy: Balancing,
        endpoints: watch::Receiver<Arc<EndpointSet>>,
        client: MeshClient,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            | 1;
        let table = Arc::new(Table {
            set: Arc::default(),
            endpoints: Vec::new(),
        });
        Self {
            strategy,
            endpoints,
            table: Mutex::new(table),
            client,
            next: AtomicUsize::new(0),
            rng: AtomicU64::new(seed),
        }
    }

    /// The live endpoint set.
    pub(crate) fn endpoints(&self) -> watch::Receiver<Arc<EndpointSet>> {
        self.endpoints.clone()
    }

    /// The table for the current set, rebuilt (keeping the state of endpoints that stay) when
    /// the set changed.
    fn table(&self) -> Arc<Table> {
        let current = self.endpoints.borrow().clone();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&table.set, &current) {
            let mut old: HashMap<SocketAddr, Arc<Endpoint>> = table
                .endpoints
                .iter()
                .map(|e| (e.addr, e.clone()))
                .collect();
            let endpoints = current
                .addrs
                .iter()
                .map(|a| {
                    old.remove(a)
                        .unwrap_or_else(|| Arc::new(Endpoint::new(*a, self.client.clone())))
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
    pub(crate) fn pick(&self, avoid: Option<SocketAddr>) -> Option<Attempt> {
        let table = self.table();
        let eps = &table.endpoints;
        let n = eps.len();
        let now = Instant::now();
        let taken = match n {
            0 => return None,
            1 => None,
            _ => {
                let other = |e: &Arc<Endpoint>| Some(e.addr) != avoid;
                match self.strategy {
                    Balancing::RoundRobin => {
                        let start = self.next.fetch_add(1, Ordering::Relaxed);
                        (0..n)
                            .map(|i| &eps[(start + i) % n])
                            .find_map(|e| other(e).then(|| e.try_take(now)).flatten())
                    }
                    Balancing::P2cPeakEwma => {
                        let candidates: Vec<&Arc<Endpoint>> = eps
                            .iter()
                            .filter(|e| other(e) && e.available(now))
                            .collect();
                        let (first, second) = match candidates.len() {
                            0 => (None, None),
                            1 => (Some(candidates[0]), None),
                            k => {
                                let (i, j) = self.two_of(k);
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
                }
            }
        };
        Some(taken.unwrap_or_else(|| {
            // Nothing else is available (one endpoint, or all others ejected): try one anyway,
            // as a probe, rather than refuse the request.
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let e = (0..n)
                .map(|i| &eps[(start + i) % n])
                .find(|e| Some(e.addr) != avoid)
                .unwrap_or(&eps[0]);
            e.force(now)
        }))
    }

    /// Two distinct indices below `k` (k ≥ 2), uniformly.
    fn two_of(&self, k: usize) -> (usize, usize) {
        let i = self.below(k);
        let j = self.below(k - 1);
        (i, if j >= i { j + 1 } else { j })
    }

    /// A random index below `n`, from the high bits of a xorshift64* draw (its low bits are
    /// weak); plenty for drawing endpoints.
    fn below(&self, n: usize) -> usize {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        let high = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        ((high * n as u64) >> 32) as usize
    }

    /// The current endpoints and their state.
    pub(crate) fn view(&self) -> Vec<EndpointView> {
        let now = Instant::now();
        self.table()
            .endpoints
            .iter()
            .map(|e| EndpointView {
                address: e.addr.to_string(),
                state: e.state(now),
            })
            .collect()
    }
}

impl Endpoint {
    fn new(addr: SocketAddr, client: MeshClient) -> Self {
        let load = PeakEwma::new(
            Send(client),
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

    /// Takes this endpoint for one request if it may have one: always when up; when its
    /// ejection is over (or the last probe went stale), as the one probe. Atomic, so a burst of
    /// requests sends a single probe.
    fn try_take(self: &Arc<Self>, now: Instant) -> Option<Attempt> {
        let mut h = self.health();
        let probe = match *h {
            Health::Up => false,
            Health::Ejected { until, failures } if now >= until => {
                *h = Health::Probing {
                    since: now,
                    failures,
                };
                true
            }
            Health::Probing { since, failures } if now.duration_since(since) >= PROBE_STALE => {
                *h = Health::Probing {
                    since: now,
                    failures,
                };
                true
            }
            Health::Ejected { .. } | Health::Probing { .. } => return None,
        };
        Some(Attempt {
            endpoint: self.clone(),
            probe,
            settled: false,
        })
    }

    /// Takes it whatever its state; if it is not up, the request is its probe.
    fn force(self: &Arc<Self>, now: Instant) -> Attempt {
        let mut h = self.health();
        let probe = match *h {
            Health::Up => false,
            Health::Ejected { failures, .. } | Health::Probing { failures, .. } => {
                *h = Health::Probing {
                    since: now,
                    failures,
                };
                true
            }
        };
        Attempt {
            endpoint: self.clone(),
            probe,
            settled: false,
        }
    }

    /// Sends `req` (its URI already names this endpoint), measuring its latency.
    pub(crate) fn call(
        &self,
        req: http::Request<Body>,
    ) -> impl Future<Output = Result<http::Response<Incoming>, hyper_util::client::legacy::Error>> + use<>
    {
        self.load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .call(req)
    }

    fn load(&self) -> tower::load::peak_ewma::Cost {
        self.load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .load()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn available(&self, now: Instant) -> bool {
        match *self.health() {
            Health::Up => true,
            Health::Ejected { until, .. } => now >= until,
            Health::Probing { since, .. } => now.duration_since(since) >= PROBE_STALE,
        }
    }

    /// A connection worked: a probe readmits the endpoint. (The outcome of a request picked
    /// before an ejection says nothing new.)
    fn succeeded(&self, probe: bool) {
        let mut h = self.health();
        if probe && matches!(*h, Health::Probing { .. }) {
            tracing::info!(endpoint = %self.addr, "endpoint answers again; back in rotation");
            *h = Health::Up;
        }
    }

    /// A connection failed: eject an endpoint that was up, or eject a probed one for longer.
    /// Failures of requests picked before the ejection do not count again.
    fn failed(&self, probe: bool) {
        let mut h = self.health();
        let failures = match *h {
            Health::Up => 1,
            Health::Probing { failures, .. } if probe => failures.saturating_add(1),
            Health::Ejected { .. } | Health::Probing { .. } => return,
        };
        let backoff = EJECT_BASE
            .saturating_mul(1 << (failures - 1).min(5))
            .min(EJECT_MAX);
        tracing::warn!(endpoint = %self.addr, failures, backoff_ms = backoff.as_millis() as u64, "connection failed; endpoint ejected");
        *h = Health::Ejected {
            until: Instant::now() + backoff,
            failures,
        };
    }

    /// A probe ended without an outcome (its caller gave up): the next request may probe.
    fn abandoned(&self) {
        let mut h = self.health();
        if let Health::Probing { failures, .. } = *h {
            *h = Health::Ejected {
                until: Instant::now(),
                failures,
            };
        }
    }

    fn state(&self, now: Instant) -> &'static str {
        match *self.health() {
            Health::Up => "up",
            Health::Ejected { until, .. } if now < until => "ejected",
            Health::Ejected { .. } => "due for a probe",
            Health::Probing { .. } => "probing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> MeshClient {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http2()
            .wrap_connector(hyper_util::client::legacy::connect::HttpConnector::new());
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(crate::net::coalesce::mesh_connector(https))
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn balancer(strategy: Balancing, ports: &[u16]) -> (Balancer, watch::Sender<Arc<EndpointSet>>) {
        let tx = watch::Sender::new(Arc::new(EndpointSet::new(
            ports.iter().map(|p| addr(*p)).collect(),
        )));
        (Balancer::new(strategy, tx.subscribe(), client()), tx)
    }

    fn picks(b: &Balancer, n: usize, avoid: Option<SocketAddr>) -> Vec<u16> {
        (0..n)
            .map(|_| b.pick(avoid).expect("an endpoint").addr().port())
            .collect()
    }

    fn endpoint(b: &Balancer, port: u16) -> Arc<Endpoint> {
        b.table()
            .endpoints
            .iter()
            .find(|e| e.addr.port() == port)
            .expect("listed")
            .clone()
    }

    #[test]
    fn round_robin_takes_turns() {
        let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2, 3]);
        let mut seen = picks(&b, 6, None);
        assert_eq!(seen[..3], seen[3..], "{seen:?}");
        seen.sort_unstable();
        assert_eq!(seen, [1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn an_attempt_never_goes_where_the_previous_one_went_when_another_exists() {
        for strategy in [Balancing::RoundRobin, Balancing::P2cPeakEwma] {
            let (b, _tx) = balancer(strategy, &[1, 2, 3]);
            let seen = picks(&b, 200, Some(addr(2)));
            assert!(!seen.contains(&2), "{strategy:?}: {seen:?}");
            if strategy == Balancing::RoundRobin {
                assert!(seen.contains(&1) && seen.contains(&3), "{seen:?}");
            }
            // With a single endpoint there is nowhere else to go.
            let (one, _tx) = balancer(strategy, &[7]);
            assert_eq!(picks(&one, 3, Some(addr(7))), [7, 7, 7]);
        }
    }

    /// Picks until endpoint `port` comes up; returns that attempt and the ports picked before.
    fn pick_until(b: &Balancer, port: u16) -> (Attempt, Vec<u16>) {
        let mut before = Vec::new();
        for _ in 0..50 {
            let a = b.pick(None).expect("an endpoint");
            if a.addr().port() == port {
                return (a, before);
            }
            before.push(a.addr().port());
        }
        panic!("{port} never picked: {before:?}");
    }

    #[test]
    fn a_failed_endpoint_is_ejected_then_probed_once_then_readmitted() {
        for strategy in [Balancing::RoundRobin, Balancing::P2cPeakEwma] {
            let (b, _tx) = balancer(strategy, &[1, 2]);
            let e1 = endpoint(&b, 1);
            pick_until(&b, 1).0.unreachable();
            assert!(
                !picks(&b, 50, None).contains(&1),
                "{strategy:?}: picked while ejected"
            );
            // The backoff ends: exactly one request probes it, the others stay away meanwhile.
            *e1.health() = Health::Ejected {
                until: Instant::now(),
                failures: 1,
            };
            let (probe, _) = pick_until(&b, 1);
            assert!(
                !picks(&b, 50, None).contains(&1),
                "{strategy:?}: a second probe"
            );
            assert_eq!(e1.state(Instant::now()), "probing");
            probe.connected();
            assert!(
                picks(&b, 50, None).contains(&1),
                "{strategy:?}: not readmitted"
            );
        }
    }

    #[test]
    fn outcomes_of_requests_from_before_an_ejection_do_not_count() {
        let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2]);
        let e1 = endpoint(&b, 1);
        let (early, _) = pick_until(&b, 1);
        let (late, _) = pick_until(&b, 1);
        late.unreachable();
        let Health::Ejected { until, failures: 1 } = *e1.health() else {
            panic!("not ejected once")
        };
        // A second failure of the same outage neither lengthens the ejection nor counts twice,
        // and a stale success does not readmit it.
        let (stale, _) = (b.pick(None).expect("an endpoint"), ());
        drop(stale);
        early.connected();
        assert_eq!(*e1.health(), Health::Ejected { until, failures: 1 });
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_request_probe() {
        let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2]);
        let e1 = endpoint(&b, 1);
        *e1.health() = Health::Ejected {
            until: Instant::now(),
            failures: 2,
        };
        let (probe, _) = pick_until(&b, 1);
        drop(probe);
        assert_eq!(e1.state(Instant::now()), "due for a probe");
        let (again, _) = pick_until(&b, 1);
        again.unreachable();
        let Health::Ejected { failures: 3, .. } = *e1.health() else {
            panic!("{:?}", *e1.health())
        };
    }

    #[test]
    fn a_failed_probe_ejects_for_longer_up_to_a_limit() {
        let (b, _tx) = balancer(Balancing::RoundRobin, &[1, 2]);
        let e1 = endpoint(&b, 1);
        let mut lengths = Vec::new();
        for _ in 0..8 {
            e1.failed(true);
            let Health::Ejected { until, failures } = *e1.health() else {
                panic!("not ejected")
            };
            lengths.push(
                until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    .round() as u64,
            );
            // The ejection ends and the next failure is its probe's.
            *e1.health() = Health::Probing {
                since: Instant::now(),
                failures,
            };
        }
        assert_eq!(lengths, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn with_every_endpoint_ejected_one_is_tried_anyway() {
        let (b, _tx) = balancer(Balancing::P2cPeakEwma, &[1, 2]);
        endpoint(&b, 1).failed(false);
        endpoint(&b, 2).failed(false);
        assert_eq!(picks(&b, 5, Some(addr(1))), [2, 2, 2, 2, 2]);
    }

    #[test]
    fn state_survives_a_change_of_the_set_and_new_endpoints_get_traffic() {
        let (b, tx) = balancer(Balancing::RoundRobin, &[1, 2]);
        endpoint(&b, 1).failed(false);
        tx.send_replace(Arc::new(EndpointSet::new(vec![addr(1), addr(3)])));
        let seen = picks(&b, 10, None);
        assert_eq!(
            seen, [3; 10],
            "the ejection was forgotten, or 2 is still used"
        );
        assert_eq!(
            b.view()
                .iter()
                .map(|v| (v.address.as_str(), v.state))
                .collect::<Vec<_>>(),
            [("127.0.0.1:1", "ejected"), ("127.0.0.1:3", "up")]
        );
        tx.send_replace(Arc::default());
        assert!(b.pick(None).is_none());
    }

    #[test]
    fn two_of_draws_distinct_indices_covering_all_pairs() {
        let (b, _tx) = balancer(Balancing::P2cPeakEwma, &[1]);
        let mut pairs = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let (i, j) = b.two_of(4);
            assert!(i != j && i < 4 && j < 4);
            pairs.insert((i, j));
        }
        assert_eq!(pairs.len(), 12, "{pairs:?}");
    }
}
