//! The load generator: open-loop at a fixed rate, or closed-loop as fast as the server answers.
//!
//! At a fixed rate, request `i` has an intended send time `start + i / rate`, and requests are
//! dealt to the connections in turn. A connection sends a request when it is due, or as soon as
//! it is free if the previous answer came late. Latency is counted from when the request could
//! have gone out: the intended time if the previous answer on the connection came after it (so
//! a stalled server is charged for every request it held up: no coordinated omission), else the
//! moment it was sent (the timer's own lateness is the generator's, not the server's). On
//! HTTP/2 requests are never held up by earlier ones: each goes out on its own stream when due.
//! Requests due in the measured window count toward the percentiles; throughput counts answers
//! that arrive within the window, so a server slower than the rate shows a lower rate. Requests
//! still unsent [`DRAIN`] after the window are given up and counted as errors, and every request
//! has a [`REQUEST_TIMEOUT`].
//!
//! In max mode each connection sends the next request as soon as the previous answer is read,
//! and latency is counted from the send.
//!
//! Operations: an HTTP request (HTTP/1.1 or h2c), or a Redis `GET`/`SET`/`XADD` over RESP, so
//! that a state store call or a publish through the sidecar and the same call straight to Redis
//! are measured alike. HTTP requests may also be publishes whose deliveries are awaited
//! ([`crate::deliveries`]).

mod conn;
mod drive;
pub mod grpc;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, Method};
use serde::Serialize;
use tokio::time::Instant;

use crate::deliveries::{Deliveries, Times};
use conn::Conn;
use drive::{Schedule, drive};

/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the window requests that were due in it may still go out.
pub const DRAIN: Duration = Duration::from_secs(2);

/// What each request does.
#[derive(Clone, Debug)]
pub enum Op {
    /// An HTTP request to `path` (with query), carrying `body`.
    Http {
        /// GET, POST, …
        method: Method,
        /// Path and query.
        path: String,
        /// Extra headers.
        headers: HeaderMap,
        /// The request body (empty for none).
        body: Bytes,
        /// h2c with prior knowledge instead of HTTP/1.1.
        http2: bool,
        /// What replaces `{id}` in the path, request by request.
        ids: Option<Arc<Ids>>,
    },
    /// Redis `GET key`.
    RedisGet {
        /// The key.
        key: String,
    },
    /// Redis `SET key value`.
    RedisSet {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Redis `XADD stream * data value`: what publishing to a Redis Streams topic costs.
    RedisXadd {
        /// The stream.
        stream: String,
        /// The message.
        value: Bytes,
    },
}

/// The ids a path's `{id}` takes, one per request: in turn among `cycle` ids, or a new one for
/// every request (`cycle` 0). Each run's ids carry a prefix of their own, so a run never meets
/// an id (an actor, say) an earlier run left behind.
#[derive(Debug)]
pub struct Ids {
    prefix: String,
    cycle: u64,
    next: AtomicU64,
}

impl Ids {
    /// Ids for one run.
    pub fn new(cycle: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ids {
            prefix: format!("{:x}{nanos:x}", std::process::id()),
            cycle,
            next: AtomicU64::new(0),
        }
    }

    /// `path` with its `{id}` replaced by the next id.
    pub fn fill(&self, path: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let n = if self.cycle == 0 { n } else { n % self.cycle };
        path.replace("{id}", &format!("{}-{n}", self.prefix))
    }
}

/// One run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The server.
    pub addr: SocketAddr,
    /// What to send.
    pub op: Op,
    /// Connections, each used by one request at a time (HTTP/1.1, Redis) or shared by streams
    /// (h2).
    pub connections: usize,
    /// Requests per second over all connections; `None`: as fast as answers come.
    pub rate: Option<f64>,
    /// How long to measure.
    pub duration: Duration,
    /// How long to send before measuring (connections warm, pools filled).
    pub warmup: Duration,
    /// Publish → delivery: stamp each HTTP body and measure until it is delivered to these
    /// (see [`crate::deliveries`]) instead of until the answer.
    pub deliveries: Option<Arc<Deliveries>>,
}

/// How long after publishing ends deliveries of the measured window may still arrive.
pub const DELIVERY_PATIENCE: Duration = Duration::from_secs(15);

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Requests answered successfully in the measured window.
    pub ok: u64,
    /// Requests that failed (transport error, or status ≥ 400, or a Redis error).
    pub errors: u64,
    /// Successful answers including the warm-up's (for CPU per request over the whole run).
    pub all_ok: u64,
    /// The measured window, in seconds.
    pub seconds: f64,
    /// Answers that arrived within the window, per second.
    pub rps: f64,
    /// The rate asked for, if any.
    pub target_rps: Option<f64>,
    /// Latency of successful requests.
    pub latency_us: Percentiles,
    /// The latency at each of a fixed list of percentiles (for plots): `(percentile, µs)`.
    pub spectrum: Vec<(f64, f64)>,
    /// Publish → delivery: messages published in the window and accepted that did not arrive
    /// within [`DELIVERY_PATIENCE`] (also counted in `errors`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Publish → delivery: messages delivered more than once (counted once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
    /// Publish → delivery: deliveries of other runs, not counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign: Option<u64>,
}

/// The percentiles a spectrum lists.
pub const SPECTRUM: [f64; 14] = [
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

/// Latencies are recorded in nanoseconds, from 1 µs to 100 s, to 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("static histogram bounds")
}

/// The shared tally of one run.
struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    /// Successful answers including the warm-up's.
    all_ok: u64,
    /// Successful answers that arrived within the window.
    in_window: u64,
    window: (Instant, Instant),
}

impl Tally {
    fn record(&mut self, ok: bool, latency: Duration, measured: bool) {
        self.all_ok += u64::from(ok);
        let now = Instant::now();
        if ok && now >= self.window.0 && now < self.window.1 {
            self.in_window += 1;
        }
        if !measured {
            return;
        }
        if ok {
            self.ok += 1;
            let ns = u64::try_from(latency.as_nanos())
                .unwrap_or(u64::MAX)
                .clamp(1_000, 100_000_000_000);
            self.hist.saturating_record(ns);
        } else {
            self.errors += 1;
        }
    }
}

/// Runs `plan` and reports.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(plan.connections > 0, "at least one connection is needed");
    if let Some(rate) = plan.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "the rate must be positive");
    }
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let tally = Arc::new(Mutex::new(Tally {
        hist: histogram(),
        ok: 0,
        errors: 0,
        all_ok: 0,
        in_window: 0,
        window: (measure_from, end),
    }));
    if let Some(d) = &plan.deliveries {
        d.begin(Times {
            start,
            measure_from,
            end,
        });
    }
    // Connections are opened before the clock starts.
    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        conns.push(Conn::open(plan.addr, &plan.op).await?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (k, conn) in conns.into_iter().enumerate() {
        let schedule = Schedule {
            start,
            measure_from,
            end,
            rate: plan.rate,
            connections: plan.connections as f64,
            index: k as f64,
        };
        tasks.spawn(drive(conn, plan.clone(), schedule, tally.clone()));
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    let tally =
        Arc::into_inner(tally).map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner));
    let tally = tally.ok_or_else(|| anyhow::anyhow!("a request outlived the run"))?;
    Ok(report(plan, tally).await)
}

/// Sends exactly `n` requests of `plan.op` over `plan.connections` connections, closed loop:
/// each connection sends its next request once the previous answer is read, and the requests
/// are dealt to the connections evenly. Any failed request is an error. This is a fixed amount
/// of work rather than a fixed time, for counting what the server under test spends on it
/// (instructions per request under callgrind); `plan.rate`, `duration` and `warmup` are unused.
pub async fn count(plan: &Plan, n: u64) -> anyhow::Result<()> {
    anyhow::ensure!(plan.connections > 0, "at least one connection is needed");
    let conns = plan.connections as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..conns {
        let share = n / conns + u64::from(k < n % conns);
        let mut conn = Conn::open(plan.addr, &plan.op).await?;
        let plan = plan.clone();
        tasks.spawn(async move {
            let body = match &plan.op {
                Op::Http { body, .. } => body.clone(),
                _ => Bytes::new(),
            };
            for i in 0..share {
                let ok = conn::timed(async {
                    conn::once(&mut conn, &plan, body.clone()).await == Ok(true)
                })
                .await;
                anyhow::ensure!(ok, "request {} of {share} on connection {k} failed", i + 1);
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// What a run measured: the answers, or (publish → delivery) the deliveries.
async fn report(plan: &Plan, tally: Tally) -> Report {
    let seconds = plan.duration.as_secs_f64();
    let report = Report {
        ok: tally.ok,
        errors: tally.errors,
        all_ok: tally.all_ok,
        seconds,
        rps: tally.in_window as f64 / seconds,
        target_rps: plan.rate,
        latency_us: percentiles(&tally.hist),
        spectrum: spectrum(&tally.hist),
        lost: None,
        duplicates: None,
        foreign: None,
    };
    let Some(d) = &plan.deliveries else {
        return report;
    };
    // Every message published in the window and accepted should arrive; what does not within
    // the patience is lost, and counted with the failed publishes.
    let s = d.settle(tally.ok, DELIVERY_PATIENCE).await;
    let lost = tally.ok.saturating_sub(s.measured);
    Report {
        ok: s.measured,
        errors: tally.errors + lost,
        all_ok: s.delivered,
        rps: s.in_window as f64 / seconds,
        latency_us: percentiles(&s.hist),
        spectrum: spectrum(&s.hist),
        lost: Some(lost),
        duplicates: Some(s.duplicates),
        foreign: Some(s.foreign),
        ..report
    }
}

fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    SPECTRUM
        .iter()
        .map(|p| (*p, h.value_at_percentile(*p) as f64 / 1e3))
        .collect()
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let us = |ns: u64| (ns as f64 / 1e3 * 10.0).round() / 10.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
        mean: (h.mean() / 1e3 * 10.0).round() / 10.0,
    }
}

#[cfg(test)]
mod tests {
    use super::Ids;

    #[test]
    fn ids_cycle_or_never_repeat() {
        let (a, b) = (Ids::new(2), Ids::new(0));
        let cycled: Vec<_> = (0..4).map(|_| a.fill("/x/{id}/y")).collect();
        assert_eq!(cycled[0], cycled[2]);
        assert_eq!(cycled[1], cycled[3]);
        assert_ne!(cycled[0], cycled[1]);
        assert!(cycled[0].starts_with("/x/") && cycled[0].ends_with("-0/y"));
        let fresh: std::collections::HashSet<_> = (0..100).map(|_| b.fill("{id}")).collect();
        assert_eq!(fresh.len(), 100);
    }
}
