//! The load generator: open-loop at a fixed rate, or closed-loop as fast as the server answers.
//!
//! At a fixed rate, request `i` has an intended send time `start + i / rate`, and requests are
//! dealt to the connections in turn. A connection sends a request when it is due, or as soon as
//! it is free if the previous answer came late. Latency is counted from when the request could
//! have gone out: the intended time if the connection was still busy then (so a stalled server
//! is charged for every request it held up: no coordinated omission), else the moment it was
//! sent (the timer's own lateness is the generator's, not the server's). On HTTP/2 requests are
//! never held up by earlier ones: each goes out on its own stream when due.
//!
//! In max mode each connection sends the next request as soon as the previous answer is read,
//! and latency is counted from the send.
//!
//! Operations: an HTTP request (HTTP/1.1 or h2c), or a Redis `GET`/`SET` over RESP, so that a
//! state store call through the sidecar and the same call straight to Redis are measured alike.

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
}

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
    /// Answers per second.
    pub rps: f64,
    /// The rate asked for, if any.
    pub target_rps: Option<f64>,
    /// Latency of successful requests.
    pub latency_us: Percentiles,
    /// The latency at each of a fixed list of percentiles (for plots): `(percentile, µs)`.
    pub spectrum: Vec<(f64, f64)>,
}

/// The percentiles a spectrum lists.
pub const SPECTRUM: [f64; 14] =
    [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0];

/// Latencies are recorded in nanoseconds, from 1 µs to 100 s, to 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("static histogram bounds")
}

/// The shared tally of one run.
struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    /// Successful answers including the warm-up's.
    all_ok: u64,
}

impl Tally {
    fn record(&mut self, ok: bool, latency: Duration, measured: bool) {
        self.all_ok += u64::from(ok);
        if !measured {
            return;
        }
        if ok {
            self.ok += 1;
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).clamp(1_000, 100_000_000_000);
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
    /// Time between two requests of one connection; `None` in max mode.
    period: Option<Duration>,
    /// Offset of this connection's first request.
    offset: Duration,
}

impl Schedule {
    fn due(&self, n: u64) -> Option<Instant> {
        let period = self.period?;
        let at = self.start + self.offset + period.mul_f64(n as f64);
        Some(at)
    }
}

/// Runs `plan` and reports.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(plan.connections > 0, "at least one connection is needed");
    if let Some(rate) = plan.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "the rate must be positive");
    }
    let tally = Arc::new(Mutex::new(Tally { hist: histogram(), ok: 0, errors: 0, all_ok: 0 }));
    // Connections are opened before the clock starts.
    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        conns.push(Conn::open(plan.addr, &plan.op).await?);
    }
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let c = plan.connections as f64;
    let mut tasks = Vec::new();
    for (k, conn) in conns.into_iter().enumerate() {
        let schedule = Schedule {
            start,
            measure_from,
            end,
            period: plan.rate.map(|r| Duration::from_secs_f64(c / r)),
            offset: plan.rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(k as f64 / r)),
        };
        tasks.push(tokio::spawn(drive(conn, plan.clone(), schedule, tally.clone())));
    }
    for t in tasks {
        t.await??;
    }
    let tally = Arc::into_inner(tally).map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner));
    let tally = tally.ok_or_else(|| anyhow::anyhow!("a request outlived the run"))?;
    let seconds = plan.duration.as_secs_f64();
    Ok(Report {
        ok: tally.ok,
        errors: tally.errors,
        all_ok: tally.all_ok,
        seconds,
        rps: tally.ok as f64 / seconds,
        target_rps: plan.rate,
        latency_us: percentiles(&tally.hist),
        spectrum: SPECTRUM.iter().map(|p| (*p, tally.hist.value_at_percentile(*p) as f64 / 1e3)).collect(),
    })
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
async fn drive(mut conn: Conn, plan: Plan, schedule: Schedule, tally: Arc<Mutex<Tally>>) -> anyhow::Result<()> {
    let mut inflight = Vec::new();
    for n in 0u64.. {
        let now = Instant::now();
        let (sent_at, counted_from) = match schedule.due(n) {
            None => (now, now),
            Some(due) if due >= schedule.end => break,
            Some(due) if due > now => {
                tokio::time::sleep_until(due).await;
                let at = Instant::now();
                (at, at)
            }
            // Late because the previous answer was: the server is charged from when it was due.
            Some(due) => (now, due),
        };
        if schedule.period.is_none() && sent_at >= schedule.end {
            break;
        }
        let measured = counted_from >= schedule.measure_from;
        match &mut conn {
            Conn::H2(sender) if schedule.period.is_some() => {
                // Its own stream, not held up by the ones before.
                let (sender, plan, tally) = (sender.clone(), plan.clone(), tally.clone());
                inflight.push(tokio::spawn(async move {
                    let ok = http_once(&mut Conn::H2(sender), &plan).await;
                    tally.lock().unwrap_or_else(PoisonError::into_inner).record(ok, counted_from.elapsed(), measured);
                }));
            }
            _ => {
                let ok = once(&mut conn, &plan).await;
                tally.lock().unwrap_or_else(PoisonError::into_inner).record(ok, counted_from.elapsed(), measured);
                if !ok && conn.broken() {
                    conn = Conn::open(plan.addr, &plan.op).await?;
                }
            }
        }
    }
    for t in inflight {
        let _ = t.await;
    }
    Ok(())
}

/// A connection to the server.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Redis(BufReader<TcpStream>),
}

impl Conn {
    async fn open(addr: SocketAddr, op: &Op) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
        tcp.set_nodelay(true)?;
        Ok(match op {
            Op::Http { http2: false, .. } => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                Conn::H1(sender)
            }
            Op::Http { http2: true, .. } => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                Conn::H2(sender)
            }
            Op::RedisGet { .. } | Op::RedisSet { .. } => Conn::Redis(BufReader::new(tcp)),
        })
    }

    fn broken(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
            // A Redis connection that failed mid-reply cannot be trusted.
            Conn::Redis(_) => true,
        }
    }
}

/// One request and its whole answer; whether it succeeded.
async fn once(conn: &mut Conn, plan: &Plan) -> bool {
    match conn {
        Conn::Redis(stream) => redis_once(stream, &plan.op).await.is_ok(),
        _ => http_once(conn, plan).await,
    }
}

async fn http_once(conn: &mut Conn, plan: &Plan) -> bool {
    let Op::Http { method, path, headers, body, .. } = &plan.op else { return false };
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = method.clone();
    *req.headers_mut() = headers.clone();
    let result = match conn {
        Conn::H1(sender) => {
            *req.uri_mut() = match path.parse() {
                Ok(u) => u,
                Err(_) => return false,
            };
            req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("bench"));
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
        Conn::Redis(_) => return false,
    };
    match result {
        Ok(rsp) => {
            let ok = rsp.status().as_u16() < 400;
            rsp.into_body().collect().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

/// Writes one command and reads its reply (a simple string, bulk string or nil; an error
/// reply fails).
async fn redis_once(stream: &mut BufReader<TcpStream>, op: &Op) -> anyhow::Result<()> {
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
        Op::Http { .. } => anyhow::bail!("not a Redis operation"),
    }
    stream.get_mut().write_all(&cmd).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    match line.as_bytes().first() {
        Some(b'+') => Ok(()),
        Some(b'$') => {
            let len: i64 = line[1..].trim().parse()?;
            if len >= 0 {
                let mut buf = vec![0; len as usize + 2];
                stream.read_exact(&mut buf).await?;
            }
            Ok(())
        }
        _ => anyhow::bail!("unexpected reply {line:?}"),
    }
}
