//! The dashboard's history. Every [`EVERY`] the sidecar reads its own metrics back (the text
//! `/metrics` serves, so the plots show what a Prometheus server would) and keeps, for each key
//! of its traffic, the rates of the last [`POINTS`] intervals: five minutes. It also keeps the
//! reading of a minute ago, for exact per-minute figures in the tables.
//!
//! Memory is bounded: at most [`traffic::MAX_KEYS`] keys, [`POINTS`] points of 16 bytes each, and
//! [`MINUTE`] readings.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::telemetry::exposition;
use crate::telemetry::traffic::{self, Key, Rates, Scrape};

/// How often the metrics are read.
pub(crate) const EVERY: Duration = Duration::from_secs(2);
/// Points kept per key.
pub(crate) const POINTS: usize = 150;
/// Readings kept for the per-minute figures: a minute's worth, and the one before it.
const MINUTE: usize = 31;

/// One interval of one key. NaN for "none" (no latency without requests; no data before the
/// key was first seen), which the JSON shows as `null`.
#[derive(Clone, Copy, Debug)]
struct Point {
    rps: f32,
    errors: f32,
    p50: f32,
    p99: f32,
}

impl Point {
    const NONE: Point = Point {
        rps: f32::NAN,
        errors: f32::NAN,
        p50: f32::NAN,
        p99: f32::NAN,
    };

    fn of(r: &Rates, secs: f64) -> Self {
        let secs = secs.max(f64::EPSILON);
        Point {
            rps: r.rps as f32,
            errors: (r.errors / secs) as f32,
            p50: r.p50.map_or(f32::NAN, |v| v as f32),
            p99: r.p99.map_or(f32::NAN, |v| v as f32),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Unix time (ms) of each point.
    times: VecDeque<u64>,
    series: BTreeMap<Key, VecDeque<Point>>,
    /// The last readings, oldest first.
    readings: VecDeque<(Instant, Arc<Scrape>)>,
    truncated: bool,
    gauges: Gauges,
}

/// What the last reading said now, rather than over time.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Gauges {
    /// Per `(pubsub, topic)` of a subscription: messages in delivery now, and moved to the
    /// dead-letter topic so far.
    pub(crate) subscriptions: BTreeMap<(String, String), (f64, f64)>,
    /// Per target app called under a circuit breaker: its state as last recorded (`closed`,
    /// `open`, `half-open`; an open breaker shows as open until a call finds it half-open).
    pub(crate) breakers: BTreeMap<String, String>,
}

impl Gauges {
    fn read(text: &str, app_id: &str) -> Self {
        let mut g = Gauges::default();
        let wanted = |n: &str| {
            matches!(
                n,
                "outrider_pubsub_ingress_in_flight"
                    | "outrider_pubsub_dead_letters_total"
                    | "dapr_resiliency_cb_state"
            )
        };
        exposition::samples(text, wanted, |s| {
            if s.label("app_id") != Some(app_id) {
                return;
            }
            if s.name == "dapr_resiliency_cb_state" {
                let target = s.label("target").and_then(|t| t.strip_prefix("app_"));
                if let (Some(target), Some(state), true) =
                    (target, s.label("status"), s.value == 1.0)
                    && (g.breakers.contains_key(target) || g.breakers.len() < traffic::MAX_KEYS)
                {
                    // Several breakers (policies, directions) on one target: the worst shows.
                    let rank =
                        |s: &str| ["closed", "half-open", "open"].iter().position(|r| *r == s);
                    let shown = g.breakers.get(target).and_then(|c| rank(c));
                    if shown.is_none() || rank(state) > shown {
                        g.breakers.insert(target.to_owned(), state.to_owned());
                    }
                }
                return;
            }
            let (Some(pubsub), Some(topic)) = (s.label("component"), s.label("topic")) else {
                return;
            };
            let key = (pubsub.to_owned(), topic.to_owned());
            if !g.subscriptions.contains_key(&key) && g.subscriptions.len() >= traffic::MAX_KEYS {
                return;
            }
            let entry = g.subscriptions.entry(key).or_default();
            if s.name == "outrider_pubsub_ingress_in_flight" {
                entry.0 += s.value;
            } else {
                entry.1 += s.value;
            }
        });
        g
    }
}

/// The history of one sidecar's traffic.
pub(crate) struct History {
    app_id: String,
    inner: Mutex<Inner>,
    /// Bumped after each reading: the dashboard's event streams wait on it.
    ticks: watch::Sender<u64>,
}

impl History {
    pub(crate) fn new(app_id: &str) -> Self {
        Self {
            app_id: app_id.to_owned(),
            inner: Mutex::default(),
            ticks: watch::Sender::new(0),
        }
    }

    /// Takes one reading of `exposition`, made at `now`.
    pub(crate) fn record(&self, exposition: &str, now: Instant, wall: SystemTime) {
        let scrape = Arc::new(Scrape::read(exposition, &self.app_id));
        let gauges = Gauges::read(exposition, &self.app_id);
        let mut inner = self.lock();
        if let Some((then, _)) = inner.readings.back()
            && now.duration_since(*then) < EVERY / 2
        {
            // Too close to the last one (a late tick): its rates would be noise.
            return;
        }
        inner.gauges = gauges;
        if let Some((then, last)) = inner.readings.back().cloned() {
            let secs = now.duration_since(then).as_secs_f64();
            let rates = scrape.since(&last, secs);
            push_points(&mut inner, &rates, secs, wall);
        }
        inner.truncated = scrape.truncated || inner.series.len() >= traffic::MAX_KEYS;
        if inner.readings.len() == MINUTE {
            inner.readings.pop_front();
        }
        inner.readings.push_back((now, scrape));
        drop(inner);
        self.ticks.send_modify(|t| *t += 1);
    }

    /// Waits for readings.
    pub(crate) fn ticks(&self) -> watch::Receiver<u64> {
        self.ticks.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every point kept: `{every, times, series: [{group, name, rps, errors, p50, p99}]}`.
    pub(crate) fn all(&self) -> Value {
        let inner = self.lock();
        let series: Vec<Value> = (inner.series.iter())
            .map(|(k, points)| series_json(k, points.iter()))
            .collect();
        json!({
            "every": EVERY.as_secs(),
            "times": inner.times,
            "series": series,
            "truncated": inner.truncated,
        })
    }

    /// The newest point of every key, in the same form (one time).
    pub(crate) fn latest(&self) -> Value {
        let inner = self.lock();
        let series: Vec<Value> = (inner.series.iter())
            .map(|(k, points)| series_json(k, points.back().into_iter()))
            .collect();
        json!({
            "every": EVERY.as_secs(),
            "times": inner.times.back().into_iter().collect::<Vec<_>>(),
            "series": series,
            "truncated": inner.truncated,
        })
    }

    /// What the last reading said now.
    pub(crate) fn gauges(&self) -> Gauges {
        self.lock().gauges.clone()
    }

    /// Each key's rates over the last minute (or since the first reading, if later).
    pub(crate) fn minute(&self) -> BTreeMap<Key, Rates> {
        let inner = self.lock();
        match (inner.readings.front(), inner.readings.back()) {
            (Some((then, old)), Some((now, new))) if now > then => {
                new.since(old, now.duration_since(*then).as_secs_f64())
            }
            _ => BTreeMap::new(),
        }
    }
}

fn push_points(inner: &mut Inner, rates: &BTreeMap<Key, Rates>, secs: f64, wall: SystemTime) {
    if inner.times.len() == POINTS {
        inner.times.pop_front();
        for points in inner.series.values_mut() {
            points.pop_front();
        }
        // A key with no data left in the window is forgotten.
        inner
            .series
            .retain(|_, points| points.iter().any(|p| !p.rps.is_nan()));
    }
    let ms = wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    inner.times.push_back(u64::try_from(ms).unwrap_or(u64::MAX));
    let len = inner.times.len();
    for (key, r) in rates {
        if !inner.series.contains_key(key) {
            if inner.series.len() >= traffic::MAX_KEYS {
                inner.truncated = true;
                continue;
            }
            // A key first seen now had no data before.
            let before = std::iter::repeat_n(Point::NONE, len - 1).collect();
            inner.series.insert(key.clone(), before);
        }
        if let Some(points) = inner.series.get_mut(key) {
            points.push_back(Point::of(r, secs));
        }
    }
    // Keys that are gone (a reading truncated) keep their alignment.
    for points in inner.series.values_mut() {
        while points.len() < len {
            points.push_back(Point::NONE);
        }
    }
}

fn series_json<'a>(key: &Key, points: impl Iterator<Item = &'a Point> + Clone) -> Value {
    let col = |f: fn(&Point) -> f32| -> Vec<Value> {
        points
            .clone()
            .map(|p| {
                let v = f(p);
                if v.is_nan() {
                    Value::Null
                } else {
                    json!((f64::from(v) * 1000.0).round() / 1000.0)
                }
            })
            .collect()
    };
    json!({
        "group": key.group,
        "name": key.name,
        "rps": col(|p| p.rps),
        "errors": col(|p| p.errors),
        "p50": col(|p| p.p50),
        "p99": col(|p| p.p99),
    })
}

#[cfg(test)]
mod tests;
