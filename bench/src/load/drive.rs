//! One connection's share of a run: when each of its requests is due, from when its latency
//! counts, and sending it (on its own h2 stream at a fixed rate, else awaiting the answer). The
//! rules are the ones [`super`] describes; the tally is shared by all connections.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::conn::{Conn, http_once, once, timed};
use super::{DRAIN, Op, Plan, REQUEST_TIMEOUT, Tally};

/// When to send request `n` of `conn`, and whether it is measured.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub(super) start: Instant,
    pub(super) measure_from: Instant,
    pub(super) end: Instant,
    /// Requests per second over all connections; `None` in max mode.
    pub(super) rate: Option<f64>,
    /// How many connections, and which one this is.
    pub(super) connections: f64,
    pub(super) index: f64,
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

/// One connection's requests until the end of the run.
pub(super) async fn drive(conn: Conn, plan: Plan, schedule: Schedule, tally: Arc<Mutex<Tally>>) {
    let mut d = Driver {
        conn,
        plan,
        schedule,
        tally,
        streams: tokio::task::JoinSet::new(),
        free_since: schedule.start,
    };
    for n in 0u64.. {
        if let Some(deliveries) = &d.plan.deliveries
            && !deliveries.admit(schedule.end).await
        {
            break;
        }
        let (counted_from, measured) = match turn(&schedule, n, d.free_since, d.conn.is_h2()).await
        {
            Turn::Stop => break,
            Turn::GiveUp { due, measured } => {
                // Too far behind: given up, and counted against the server.
                d.record(false, due, measured);
                d.failed(None);
                continue;
            }
            Turn::Send { from, measured } => (from, measured),
        };
        if d.conn.broken() {
            match Conn::open(d.plan.addr, &d.plan.op).await {
                Ok(c) => d.conn = c,
                Err(_) => {
                    d.record(false, counted_from, measured);
                    d.failed(None);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        d.send(counted_from, measured).await;
    }
    while d.streams.join_next().await.is_some() {}
}

/// One connection's state while it drives requests.
struct Driver {
    conn: Conn,
    plan: Plan,
    schedule: Schedule,
    tally: Arc<Mutex<Tally>>,
    /// h2 requests in flight, each on its own stream.
    streams: tokio::task::JoinSet<()>,
    /// When the previous answer on this connection arrived.
    free_since: Instant,
}

impl Driver {
    fn record(&self, ok: bool, from: Instant, measured: bool) {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(ok, from.elapsed(), measured);
    }

    /// A publish that failed (`Some` sequence) or never went out: not awaited any more.
    fn failed(&self, seq: Option<u64>) {
        if let Some(d) = &self.plan.deliveries {
            d.failed(seq);
        }
    }

    /// Sends the next request, whose latency counts from `counted_from`. On h2 at a fixed rate it
    /// goes out on a stream of its own; otherwise its answer is awaited.
    async fn send(&mut self, counted_from: Instant, measured: bool) {
        let (body, seq) = body_for(&self.plan, &self.schedule, counted_from, measured);
        match &mut self.conn {
            Conn::H2(sender) if self.schedule.rate.is_some() => {
                // Its own stream, not held up by the ones before.
                let (sender, plan, tally) = (sender.clone(), self.plan.clone(), self.tally.clone());
                self.streams.spawn(async move {
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
                while self.streams.try_join_next().is_some() {}
            }
            _ => {
                let outcome =
                    tokio::time::timeout(REQUEST_TIMEOUT, once(&mut self.conn, &self.plan, body))
                        .await;
                let ok = matches!(outcome, Ok(Ok(true)));
                self.record(ok, counted_from, measured);
                if !ok {
                    self.failed(seq);
                }
                if !matches!(outcome, Ok(Ok(_))) {
                    // Timed out with a request in flight, or out of step: unusable.
                    self.conn = Conn::Broken;
                }
                self.free_since = Instant::now();
            }
        }
    }
}

/// What a connection does with its request `n`.
enum Turn {
    /// The run is over for this connection.
    Stop,
    /// It was due at `due` and is too late to send.
    GiveUp { due: Instant, measured: bool },
    /// Send it now; its latency counts from `from`.
    Send { from: Instant, measured: bool },
}

/// Waits until request `n` is due, and says from when its latency counts. `free_since` is when
/// the previous answer on the connection arrived.
async fn turn(schedule: &Schedule, n: u64, free_since: Instant, h2: bool) -> Turn {
    let now = Instant::now();
    match schedule.due(n) {
        None if now >= schedule.end => Turn::Stop,
        None => Turn::Send {
            from: now,
            measured: now >= schedule.measure_from,
        },
        Some(due) if due >= schedule.end => Turn::Stop,
        Some(due) => {
            let measured = due >= schedule.measure_from;
            if now >= schedule.end + DRAIN {
                return Turn::GiveUp { due, measured };
            }
            if due > now {
                tokio::time::sleep_until(due).await;
            }
            // Held up by the previous answer: the server is charged from when it was due.
            // Held up only by this generator's timer or turn: from when it left.
            let from = if free_since > due && !h2 {
                due
            } else {
                Instant::now()
            };
            Turn::Send { from, measured }
        }
    }
}

/// The body of the next request and, for a publish whose delivery is awaited, its sequence.
fn body_for(
    plan: &Plan,
    schedule: &Schedule,
    counted_from: Instant,
    measured: bool,
) -> (Bytes, Option<u64>) {
    match (&plan.deliveries, &plan.op) {
        (Some(d), Op::Http { body, .. }) => {
            let (body, seq) = d.body(counted_from, schedule.start, measured, body.len());
            (body, Some(seq))
        }
        (_, Op::Http { body, .. }) => (body.clone(), None),
        _ => (Bytes::new(), None),
    }
}
