//! Publish → delivery: the load generator is also the subscribing app.
//!
//! Each published message carries the run's id, a sequence number, the moment its latency
//! counts from (the same intended-or-sent time as any other request, as nanoseconds since the
//! run's start) and whether the publisher counts it in the measured window. The generator serves the app's side on a listener of its own: a delivery of
//! this run is recorded once, with the latency from that moment to its arrival, so the clock
//! of both ends is the same. Deliveries of other runs (a redelivery from an earlier cell) are
//! answered with success and not counted.
//!
//! At a fixed rate the publisher is open loop. In max mode it keeps at most `in_flight`
//! messages published and not yet delivered, so the figure is the rate publish and delivery
//! sustain together rather than how fast a backlog can grow.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// The run's clock: when it started and which deliveries fall in the measured window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    pub(crate) start: Instant,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
}

/// What arrived so far.
#[derive(Debug)]
struct Tally {
    times: Option<Times>,
    hist: Histogram<u64>,
    seen: HashSet<u64>,
    /// Deliveries of messages published in the measured window.
    measured: u64,
    /// Deliveries that arrived within the window.
    in_window: u64,
    /// Second deliveries of the same message.
    duplicates: u64,
    /// Deliveries of other runs, bodies that are not this generator's, and messages whose
    /// publish was counted as failed.
    foreign: u64,
    /// Messages whose publish failed (an error answer or no answer in time).
    failed: HashSet<u64>,
}

/// One run's deliveries.
#[derive(Debug)]
pub struct Deliveries {
    run: u64,
    next_seq: AtomicU64,
    in_flight: Option<Semaphore>,
    tally: Mutex<Tally>,
    arrived: Notify,
}

/// The counts of a finished run.
#[derive(Clone, Debug)]
pub(crate) struct Summary {
    pub(crate) hist: Histogram<u64>,
    pub(crate) measured: u64,
    pub(crate) in_window: u64,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) foreign: u64,
}

#[derive(Deserialize)]
struct Event {
    data: Stamp,
}

#[derive(Deserialize)]
struct Stamp {
    run: u64,
    seq: u64,
    at: u64,
    /// Measured: published in the window, by the publisher's reckoning.
    m: bool,
}

impl Deliveries {
    /// A run tagged `run`; in max mode at most `in_flight` messages await delivery.
    pub fn new(run: u64, in_flight: Option<usize>) -> Self {
        Self {
            run,
            next_seq: AtomicU64::new(0),
            in_flight: in_flight.map(Semaphore::new),
            tally: Mutex::new(Tally {
                times: None,
                hist: crate::load::histogram(),
                seen: HashSet::new(),
                measured: 0,
                in_window: 0,
                duplicates: 0,
                foreign: 0,
                failed: HashSet::new(),
            }),
            arrived: Notify::new(),
        }
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn begin(&self, times: Times) {
        self.tally().times = Some(times);
    }

    /// The body of the next message and its sequence number: its stamp, padded with `x` to at
    /// least `size` bytes.
    pub(crate) fn body(
        &self,
        counted_from: Instant,
        start: Instant,
        measured: bool,
        size: usize,
    ) -> (Bytes, u64) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let at = counted_from.saturating_duration_since(start).as_nanos();
        let head = format!(
            r#"{{"run":{},"seq":{seq},"at":{at},"m":{measured},"pad":""#,
            self.run
        );
        let pad = size.saturating_sub(head.len() + 2);
        let mut body = Vec::with_capacity(head.len() + pad + 2);
        body.extend_from_slice(head.as_bytes());
        body.resize(head.len() + pad, b'x');
        body.extend_from_slice(b"\"}");
        (Bytes::from(body), seq)
    }

    /// In max mode, waits until fewer than `in_flight` messages await delivery (false: `until`
    /// passed first). At a fixed rate, always true at once.
    pub(crate) async fn admit(&self, until: Instant) -> bool {
        let Some(limit) = &self.in_flight else {
            return true;
        };
        match tokio::time::timeout_at(until, limit.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                true
            }
            _ => false,
        }
    }

    /// A publish failed, or never went out (`None`). The message is not awaited any more; should
    /// it arrive anyway, it is not counted.
    pub(crate) fn failed(&self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.tally().failed.insert(seq);
        }
        if let Some(limit) = &self.in_flight {
            limit.add_permits(1);
        }
    }

    /// Records one delivered body.
    fn arrive(&self, body: &[u8]) {
        let now = Instant::now();
        let stamp = serde_json::from_slice::<Event>(body).map(|e| e.data);
        let mut t = self.tally();
        let (Ok(stamp), Some(times)) = (stamp, t.times) else {
            t.foreign += 1;
            return;
        };
        if stamp.run != self.run {
            t.foreign += 1;
            return;
        }
        if !t.seen.insert(stamp.seq) {
            t.duplicates += 1;
            return;
        }
        if t.failed.contains(&stamp.seq) {
            // Counted as an error when its publish failed, and its permit was returned then.
            t.foreign += 1;
            return;
        }
        if let Some(limit) = &self.in_flight {
            limit.add_permits(1);
        }
        if now >= times.measure_from && now < times.end {
            t.in_window += 1;
        }
        // The publisher's own verdict on the window, so both sides count the same messages.
        if stamp.m {
            let from = times.start + Duration::from_nanos(stamp.at);
            t.measured += 1;
            let ns =
                u64::try_from(now.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX);
            t.hist.saturating_record(ns.clamp(1_000, 100_000_000_000));
        }
        drop(t);
        self.arrived.notify_waiters();
    }

    /// Waits until `expected` messages of the measured window arrived, at most `patience`.
    pub(crate) async fn settle(&self, expected: u64, patience: Duration) -> Summary {
        let deadline = Instant::now() + patience;
        loop {
            let arrived = self.arrived.notified();
            if self.tally().measured >= expected {
                break;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        let t = self.tally();
        Summary {
            hist: t.hist.clone(),
            measured: t.measured,
            in_window: t.in_window,
            delivered: t.seen.len() as u64,
            duplicates: t.duplicates,
            foreign: t.foreign,
        }
    }
}

/// Serves the subscribing app on `listener` until the returned task is aborted: deliveries to
/// any path are recorded and acknowledged; `GET /dapr/subscribe` lists no subscriptions (the
/// sidecar's come from its resources).
pub fn serve(
    listener: TcpListener,
    deliveries: std::sync::Arc<Deliveries>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let deliveries = deliveries.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let deliveries = deliveries.clone();
                async move { Ok::<_, Infallible>(answer(req, &deliveries).await) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    })
}

async fn answer(req: Request<Incoming>, deliveries: &Deliveries) -> Response<Full<Bytes>> {
    let json = |status: StatusCode, body: &'static str| {
        let mut rsp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *rsp.status_mut() = status;
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        rsp
    };
    if req.method() == Method::GET && req.uri().path() == "/dapr/subscribe" {
        return json(StatusCode::OK, "[]");
    }
    if req.method() != Method::POST {
        return json(StatusCode::OK, "{}");
    }
    match req.into_body().collect().await {
        Ok(body) => {
            deliveries.arrive(&body.to_bytes());
            json(StatusCode::OK, r#"{"status":"SUCCESS"}"#)
        }
        // The sidecar gets a retryable answer; the message comes again.
        Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, r#"{"status":"RETRY"}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &Bytes) -> Vec<u8> {
        let data: serde_json::Value = serde_json::from_slice(body).unwrap();
        serde_json::to_vec(&serde_json::json!({"specversion": "1.0", "id": "x", "data": data}))
            .unwrap()
    }

    #[tokio::test]
    async fn counts_each_message_of_its_run_once_and_measures_from_its_stamp() {
        let d = Deliveries::new(7, Some(2));
        // The run started 50 ms ago, and the first message was due then.
        let start = Instant::now() - Duration::from_millis(50);
        d.begin(Times {
            start,
            measure_from: start,
            end: start + Duration::from_secs(60),
        });
        assert!(d.admit(start + Duration::from_secs(1)).await);
        let (first, _) = d.body(start, start, true, 100);
        assert_eq!(first.len(), 100);
        d.arrive(&event(&first));
        d.arrive(&event(&first));
        d.arrive(&event(
            &Deliveries::new(8, None).body(start, start, true, 10).0,
        ));
        // Published in the warm-up: delivered, not measured.
        d.arrive(&event(&d.body(start, start, false, 10).0));
        d.arrive(b"not json");
        let s = d.settle(1, Duration::from_secs(1)).await;
        assert_eq!(
            (s.measured, s.delivered, s.duplicates, s.foreign),
            (1, 2, 1, 2)
        );
        // Measured from the stamp (the run's start), not from when the body was made.
        assert!(s.hist.min() >= 50_000_000, "{} ns", s.hist.min());
        assert!(s.hist.max() < 10_000_000_000, "{} ns", s.hist.max());
    }

    #[tokio::test]
    async fn max_mode_holds_the_publisher_until_deliveries_arrive() {
        let d = Deliveries::new(1, Some(1));
        let start = Instant::now();
        d.begin(Times {
            start,
            measure_from: start,
            end: start + Duration::from_secs(60),
        });
        assert!(d.admit(Instant::now() + Duration::from_secs(1)).await);
        let (body, _) = d.body(start, start, true, 0);
        assert!(
            !d.admit(Instant::now() + Duration::from_millis(50)).await,
            "one message in flight"
        );
        d.arrive(&event(&body));
        assert!(d.admit(Instant::now() + Duration::from_secs(1)).await);
    }
}
