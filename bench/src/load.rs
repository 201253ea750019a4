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

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::deliveries::{Deliveries, Times};

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

/// When to send request `n` of `conn`, and whether it is measured.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Requests per second over all connections; `None` in max mode.
    rate: Option<f64>,
    /// How many connections, and which one this is.
    connections: f64,
    index: f64,
}

impl Schedule {
    fn due(&self, n: u64) -> Option<Instant> {
        let rate = self.rate?;
        // Request n of connection k is request n·C + k overall, due at (n·C + k) / rate.
        Some(
            self.start + Duration::from_secs_f64((n as f64 * self.connections + self.index) / rate),
        )
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
        return Ok(report);
    };
    // Every message published in the window and accepted should arrive; what does not within
    // the patience is lost, and counted with the failed publishes.
    let s = d.settle(tally.ok, DELIVERY_PATIENCE).await;
    let lost = tally.ok.saturating_sub(s.measured);
    Ok(Report {
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
    })
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

/// One connection's requests until the end of the run.
async fn drive(mut conn: Conn, plan: Plan, schedule: Schedule, tally: Arc<Mutex<Tally>>) {
    let record = |ok: bool, from: Instant, measured: bool| {
        tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(ok, from.elapsed(), measured);
    };
    // A publish that failed (`Some` sequence) or never went out: not awaited any more.
    let failed = |seq: Option<u64>| {
        if let Some(d) = &plan.deliveries {
            d.failed(seq);
        }
    };
    let mut streams = tokio::task::JoinSet::new();
    // When the previous answer on this connection arrived.
    let mut free_since = schedule.start;
    for n in 0u64.. {
        if let Some(d) = &plan.deliveries
            && !d.admit(schedule.end).await
        {
            break;
        }
        let now = Instant::now();
        let (counted_from, measured) = match schedule.due(n) {
            None if now >= schedule.end => break,
            None => (now, now >= schedule.measure_from),
            Some(due) if due >= schedule.end => break,
            Some(due) => {
                if now >= schedule.end + DRAIN {
                    // Too far behind: given up, and counted against the server.
                    record(false, due, due >= schedule.measure_from);
                    failed(None);
                    continue;
                }
                if due > now {
                    tokio::time::sleep_until(due).await;
                }
                // Held up by the previous answer: the server is charged from when it was due.
                // Held up only by this generator's timer or turn: from when it left.
                let from = if free_since > due && !conn.is_h2() {
                    due
                } else {
                    Instant::now()
                };
                (from, due >= schedule.measure_from)
            }
        };
        if conn.broken() {
            match Conn::open(plan.addr, &plan.op).await {
                Ok(c) => conn = c,
                Err(_) => {
                    record(false, counted_from, measured);
                    failed(None);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let (body, seq) = match (&plan.deliveries, &plan.op) {
            (Some(d), Op::Http { body, .. }) => {
                let (body, seq) = d.body(counted_from, schedule.start, measured, body.len());
                (body, Some(seq))
            }
            (_, Op::Http { body, .. }) => (body.clone(), None),
            _ => (Bytes::new(), None),
        };
        match &mut conn {
            Conn::H2(sender) if schedule.rate.is_some() => {
                // Its own stream, not held up by the ones before.
                let (sender, plan, tally) = (sender.clone(), plan.clone(), tally.clone());
                streams.spawn(async move {
                    let ok = timed(http_once(&mut Conn::H2(sender), &plan, body)).await;
                    tally.lock().unwrap_or_else(PoisonError::into_inner).record(
                        ok,
                        counted_from.elapsed(),
                        measured,
                    );
                    if let (false, Some(d)) = (ok, &plan.deliveries) {
                        d.failed(seq);
                    }
                });
                while streams.try_join_next().is_some() {}
            }
            _ => {
                let outcome =
                    tokio::time::timeout(REQUEST_TIMEOUT, once(&mut conn, &plan, body)).await;
                let ok = matches!(outcome, Ok(Ok(true)));
                record(ok, counted_from, measured);
                if !ok {
                    failed(seq);
                }
                if !matches!(outcome, Ok(Ok(_))) {
                    // Timed out with a request in flight, or out of step: unusable.
                    conn = Conn::Broken;
                }
                free_since = Instant::now();
            }
        }
    }
    while streams.join_next().await.is_some() {}
}

/// A request's outcome, or failure after [`REQUEST_TIMEOUT`].
async fn timed(work: impl Future<Output = bool>) -> bool {
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .unwrap_or(false)
}

/// A connection to the server.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Redis(BufReader<TcpStream>),
    /// Failed; opened again before the next request.
    Broken,
}

impl Conn {
    async fn open(addr: SocketAddr, op: &Op) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
        tcp.set_nodelay(true)?;
        Ok(match op {
            Op::Http { http2: false, .. } => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                Conn::H1(sender)
            }
            Op::Http { http2: true, .. } => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                        .await?;
                tokio::spawn(conn);
                Conn::H2(sender)
            }
            Op::RedisGet { .. } | Op::RedisSet { .. } | Op::RedisXadd { .. } => {
                Conn::Redis(BufReader::new(tcp))
            }
        })
    }

    fn broken(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
            Conn::Redis(_) => false,
            Conn::Broken => true,
        }
    }

    fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }
}

/// One request and its whole answer; whether it succeeded.
/// `Err`: the connection cannot be used again (a Redis stream out of step). HTTP connections
/// tell by themselves whether they closed.
async fn once(conn: &mut Conn, plan: &Plan, body: Bytes) -> Result<bool, ()> {
    match conn {
        Conn::Redis(stream) => redis_once(stream, &plan.op).await.map_err(|_| ()),
        _ => Ok(http_once(conn, plan, body).await),
    }
}

async fn http_once(conn: &mut Conn, plan: &Plan, body: Bytes) -> bool {
    let Op::Http {
        method,
        path,
        headers,
        ..
    } = &plan.op
    else {
        return false;
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method.clone();
    *req.headers_mut() = headers.clone();
    let result = match conn {
        Conn::H1(sender) => {
            *req.uri_mut() = match path.parse() {
                Ok(u) => u,
                Err(_) => return false,
            };
            req.headers_mut()
                .insert(http::header::HOST, http::HeaderValue::from_static("bench"));
            if sender.ready().await.is_err() {
                return false;
            }
            sender.send_request(req).await
        }
        Conn::H2(sender) => {
            *req.uri_mut() = match format!("http://bench{path}").parse() {
                Ok(u) => u,
                Err(_) => return false,
            };
            if sender.ready().await.is_err() {
                return false;
            }
            sender.send_request(req).await
        }
        Conn::Redis(_) | Conn::Broken => return false,
    };
    match result {
        Ok(rsp) => {
            let ok = rsp.status().as_u16() < 400;
            rsp.into_body().collect().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

/// The largest bulk reply read (a bigger one means the stream is out of step).
const MAX_BULK: usize = 64 * 1024 * 1024;

/// Writes one command and reads its reply. `Ok(true)`: the expected answer (`+OK`, or a value
/// for GET); `Ok(false)`: a well-formed answer that is a failure (an error reply, or nil for
/// GET), the stream still in step; `Err`: the stream cannot be trusted any more.
async fn redis_once(stream: &mut BufReader<TcpStream>, op: &Op) -> anyhow::Result<bool> {
    let mut cmd = Vec::with_capacity(64);
    let arg = |cmd: &mut Vec<u8>, a: &[u8]| {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a);
        cmd.extend_from_slice(b"\r\n");
    };
    match op {
        Op::RedisGet { key } => {
            cmd.extend_from_slice(b"*2\r\n");
            arg(&mut cmd, b"GET");
            arg(&mut cmd, key.as_bytes());
        }
        Op::RedisSet { key, value } => {
            cmd.extend_from_slice(b"*3\r\n");
            arg(&mut cmd, b"SET");
            arg(&mut cmd, key.as_bytes());
            arg(&mut cmd, value);
        }
        Op::RedisXadd { stream, value } => {
            cmd.extend_from_slice(b"*5\r\n");
            arg(&mut cmd, b"XADD");
            arg(&mut cmd, stream.as_bytes());
            arg(&mut cmd, b"*");
            arg(&mut cmd, b"data");
            arg(&mut cmd, value);
        }
        Op::Http { .. } => anyhow::bail!("not a Redis operation"),
    }
    stream.get_mut().write_all(&cmd).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    anyhow::ensure!(line.ends_with("\r\n"), "truncated reply {line:?}");
    match line.as_bytes().first() {
        Some(b'+') => Ok(true),
        Some(b'-') => Ok(false),
        Some(b'$') => {
            let len: i64 = line[1..].trim().parse()?;
            if len < 0 {
                // Nil: the key is missing, which a GET cell must not count as a success.
                return Ok(false);
            }
            let len = usize::try_from(len)?;
            anyhow::ensure!(len <= MAX_BULK, "a {len}-byte reply");
            let mut buf = vec![0; len + 2];
            stream.read_exact(&mut buf).await?;
            anyhow::ensure!(buf.ends_with(b"\r\n"), "a bulk reply without its CRLF");
            // A value for GET, the new entry's id for XADD.
            Ok(matches!(op, Op::RedisGet { .. } | Op::RedisXadd { .. }))
        }
        _ => anyhow::bail!("unexpected reply {line:?}"),
    }
}
