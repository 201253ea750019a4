//! Request metrics with Dapr's names, labelled only with bounded values (security rule 5): the
//! app id, a known method (else `UNKNOWN`), the route template set by the router (else `other`)
//! and the status code. Never a raw path, Host header or caller-supplied id.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Method, Request, Response};
use metrics::{Counter, Histogram};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::RouteLabel;

/// Which side of the sidecar a [`Metrics`] layer measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Requests the sidecar serves (the app-facing API).
    Server,
    /// Requests the sidecar makes to its app (the app channel).
    Client,
}

impl Side {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Side::Server => ("dapr_http_server_request_count", "dapr_http_server_latency"),
            Side::Client => (
                "dapr_http_client_completed_count",
                "dapr_http_client_roundtrip_latency",
            ),
        }
    }
}

/// Registers the help text of every metric the layers of this crate export, so the exposition
/// carries a `# HELP` line for each. Call once, after installing the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "dapr_http_server_request_count",
        "Requests served on the Dapr HTTP API."
    );
    describe_histogram!(
        "dapr_http_server_latency",
        Unit::Milliseconds,
        "Latency of the Dapr HTTP API until the response head, in ms."
    );
    describe_counter!(
        "dapr_http_client_completed_count",
        "Requests the sidecar made to its app that completed."
    );
    describe_histogram!(
        "dapr_http_client_roundtrip_latency",
        Unit::Milliseconds,
        "Round trip of requests to the app, in ms."
    );
    describe_counter!(
        "dapr_resiliency_activations_total",
        "Resiliency policy activations: retries, timeouts hit, breakers opened."
    );
    describe_gauge!(
        "dapr_resiliency_cb_state",
        "Circuit breaker state: 1 for the current status, 0 for the others."
    );
    for (level, outcome) in [
        ("app", "allowed"),
        ("app", "blocked"),
        ("global", "allowed"),
        ("global", "blocked"),
    ] {
        let name = format!("dapr_runtime_acl_{level}_policy_action_{outcome}_total");
        describe_counter!(
            name,
            format!("Inbound calls {outcome} by the {level} access control action.")
        );
    }
}

/// Dapr's default latency buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0,
    100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0,
    10000.0, 20000.0, 50000.0, 100000.0,
];

/// Counts requests and records their latency until the response head.
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    app_id: Arc<str>,
    side: Side,
}

/// Applies [`Metrics`].
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    app_id: Arc<str>,
    side: Side,
}

impl MetricsLayer {
    /// Metrics for `side`, labelled with this sidecar's `app_id`.
    pub fn new(app_id: &str, side: Side) -> Self {
        Self {
            app_id: app_id.into(),
            side,
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            app_id: self.app_id.clone(),
            side: self.side,
        }
    }
}

/// Handles of metric series, found by their label values. Registering a series with the
/// recorder allocates its labels and hashes its whole key; requests look their series up here
/// instead, and only the first request of a series registers it. Label values are bounded
/// (security rule 5), and so is this map. A handle belongs to the recorder installed when its
/// series was first used, so the recorder must be installed before anything is served.
/// The keys are our own label values, so the map hashes them with a fast hasher rather than
/// the default one, which resists chosen keys and costs several times as much per lookup.
pub struct SeriesCache<K, V> {
    map: LazyLock<RwLock<HashMap<K, V, foldhash::fast::RandomState>>>,
}

impl<K: Hash + Eq, V: Clone> SeriesCache<K, V> {
    /// An empty cache, for a `static`.
    pub const fn new() -> Self {
        Self {
            map: LazyLock::new(Default::default),
        }
    }

    /// The handles of the series `key`, registered by `register` the first time.
    pub fn get(&self, key: K, register: impl FnOnce(&K) -> V) -> V {
        if let Some(v) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return v.clone();
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(key).or_insert_with_key(|k| register(k)).clone()
    }
}

impl<K: Hash + Eq, V: Clone> Default for SeriesCache<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// The label values of one request series.
#[derive(PartialEq, Eq, Hash)]
struct RequestSeries {
    side: Side,
    app_id: Arc<str>,
    method: &'static str,
    route: &'static str,
    status: u16,
}

static REQUEST_SERIES: SeriesCache<RequestSeries, (Counter, Histogram)> = SeriesCache::new();

/// Records one request of `side` that started at `start`: a count and a latency in ms.
/// `status` 0 means no response. The route label is `other` when no route matched.
pub fn record(
    side: Side,
    app_id: &Arc<str>,
    method: &'static str,
    route: Option<RouteLabel>,
    status: u16,
    start: Instant,
) {
    let key = RequestSeries {
        side,
        app_id: app_id.clone(),
        method,
        route: route.map_or("other", |r| r.0),
        status,
    };
    let (count, latency) = REQUEST_SERIES.get(key, |k| {
        let (count, latency) = k.side.names();
        let labels = [
            ("app_id", k.app_id.to_string()),
            ("method", k.method.to_owned()),
            ("path", k.route.to_owned()),
            ("status", k.status.to_string()),
        ];
        (
            metrics::counter!(count, &labels),
            metrics::histogram!(latency, &labels),
        )
    });
    count.increment(1);
    latency.record(start.elapsed().as_secs_f64() * 1000.0);
}

/// A bounded method label.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "UNKNOWN",
    }
}

impl<S, B, RB> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = method_label(req.method());
        let route = req.extensions().get::<RouteLabel>().copied();
        ResponseFuture {
            inner: self.inner.call(req),
            start: Instant::now(),
            labels: Some((self.app_id.clone(), method, route)),
            side: self.side,
        }
    }
}

pin_project! {
    /// Future of [`Metrics`]: records when the response head is ready.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        labels: Option<(Arc<str>, &'static str, Option<RouteLabel>)>,
        side: Side,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some((app_id, method, req_route)) = this.labels.take() {
            let (status, route) = match &out {
                Ok(rsp) => (
                    rsp.status().as_u16(),
                    rsp.extensions().get::<RouteLabel>().copied().or(req_route),
                ),
                Err(_) => (0, req_route),
            };
            record(*this.side, &app_id, method, route, status, *this.start);
        }
        Poll::Ready(out)
    }
}
