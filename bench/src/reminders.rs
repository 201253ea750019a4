//! `outrider-bench reminders`: how many actor reminders a sidecar fires per second.
//!
//! `count` one-shot reminders are registered through the sidecar's HTTP API, spread over
//! [`ACTORS`] actors of a type its app hosts (the echo app with `--actor-type`), all due at one
//! instant `lead` ahead, so registering them is not what is measured. The app counts the
//! reminders it is called for (each once); polled every few milliseconds, the figure is the
//! reminders that fired after the first poll that saw any, divided by the time from that poll
//! to the one that saw the last. Registration must end before the due instant, else the run
//! fails (a larger lead is needed): the rate would be the registration's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The actors the reminders are spread over.
pub const ACTORS: u64 = 64;
/// How long the firings may take in all before the run fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// One run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The sidecar's HTTP API.
    pub api: SocketAddr,
    /// The app, which answers `GET /bench/reminders` with the reminder calls it got.
    pub app: SocketAddr,
    /// The actor type the app hosts.
    pub actor_type: String,
    /// Reminders registered.
    pub count: u64,
    /// How far ahead of the start they are due.
    pub lead: Duration,
    /// Connections registering at once.
    pub connections: u64,
}

/// Registers the reminders, waits for every firing, and returns the firings per second.
pub async fn run(r: &Run) -> anyhow::Result<f64> {
    let (before, calls_before) = fired(&mut connect(r.app).await?).await?;
    let due = chrono::Utc::now() + chrono::TimeDelta::from_std(r.lead)?;
    let due_at = Instant::now() + r.lead;
    let due = due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let run_id = format!(
        "{:x}{:x}",
        std::process::id(),
        chrono::Utc::now().timestamp_subsec_nanos()
    );
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..r.connections.max(1) {
        let (r, due, run_id, next) = (r.clone(), due.clone(), run_id.clone(), next.clone());
        tasks.spawn(async move {
            let mut sender = connect(r.api).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= r.count {
                    return anyhow::Ok(());
                }
                let path = format!(
                    "/v1.0/actors/{}/rem-{run_id}-{}/reminders/r{i}",
                    r.actor_type,
                    i % ACTORS
                );
                let body = serde_json::json!({"dueTime": due, "data": i}).to_string();
                let status = send(&mut sender, http::Method::POST, &path, body.into()).await?;
                anyhow::ensure!(status.is_success(), "registering {path} answered {status}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    anyhow::ensure!(
        Instant::now() < due_at,
        "registering {} reminders took longer than the lead of {:?}: give a larger --lead",
        r.count,
        r.lead
    );
    let deadline = due_at + PATIENCE;
    let mut app = connect(r.app).await?;
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let (n, calls) = fired(&mut app).await?;
        let n = n.saturating_sub(before);
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n));
        }
        if let Some((t0, n0)) = first.filter(|_| n >= r.count) {
            anyhow::ensure!(
                n0 < n && now > t0,
                "all {n} reminders fired between two polls: too few to time; give a larger --count"
            );
            // A firing the app was called for more than once (tried again after a lost answer).
            let repeated = calls.saturating_sub(calls_before).saturating_sub(n);
            if repeated > 0 {
                eprintln!("{repeated} reminder calls repeated a firing already counted");
            }
            return Ok((n - n0) as f64 / (now - t0).as_secs_f64());
        }
        anyhow::ensure!(
            now < deadline,
            "{n} of {} reminders fired within {PATIENCE:?} of their due time",
            r.count
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: http::Method,
    path: &str,
    body: Bytes,
) -> anyhow::Result<http::StatusCode> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "bench")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    sender.ready().await?;
    let rsp = sender.send_request(req).await?;
    let status = rsp.status();
    rsp.into_body().collect().await?;
    Ok(status)
}

/// The reminders the app has counted and its reminder calls, asked over `app`.
async fn fired(app: &mut SendRequest<Full<Bytes>>) -> anyhow::Result<(u64, u64)> {
    let req = http::Request::builder()
        .uri("/bench/reminders")
        .header(http::header::HOST, "bench")
        .body(Full::new(Bytes::new()))?;
    app.ready().await?;
    let rsp = app.send_request(req).await?;
    anyhow::ensure!(
        rsp.status().is_success(),
        "the app answered {}",
        rsp.status()
    );
    let body = rsp.into_body().collect().await?.to_bytes();
    let text = std::str::from_utf8(&body)?;
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(n)), Some(Ok(calls))) => Ok((n, calls)),
        _ => anyhow::bail!("the app's reminder counts are not two numbers: {text:?}"),
    }
}
