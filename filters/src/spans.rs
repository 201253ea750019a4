//! Finished spans, handed from the trace layer to an exporter.
//!
//! The trace layer owns the ids (it mints each hop's span id and propagates it in `traceparent`);
//! when a request completes it sends a [`SpanRecord`] through [`Spans`] to the exporter task of the
//! proxy, which batches records and ships them (OTLP, Zipkin). The channel is bounded: when the
//! exporter falls behind, records are dropped and counted, never queued without limit and never
//! slowing a request down.
//!
//! Sampling follows the trace: a request carrying a `traceparent` keeps its sampled flag, a new
//! trace is sampled with the configured rate (decided from the trace id, so every hop that starts
//! a trace decides the same way).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::trace::TraceContext;

/// The role of a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// A request this sidecar served.
    Server,
    /// A request this sidecar made.
    Client,
    /// A message this sidecar delivered to its app.
    Consumer,
}

/// A finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    /// The trace.
    pub trace_id: u128,
    /// This span.
    pub span_id: u64,
    /// The parent span; 0 for a root.
    pub parent_span_id: u64,
    /// A low-cardinality name (`GET /v1.0/state/{store}/{key}`).
    pub name: Cow<'static, str>,
    /// Its role.
    pub kind: SpanKind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Attributes: app id, route template, peer identity, status. Never headers or tokens.
    pub attributes: Vec<(&'static str, String)>,
    /// Whether the request failed (a 5xx or an error).
    pub error: bool,
}

/// The sending side of span export, with the sampling rate.
#[derive(Clone, Debug)]
pub struct Spans {
    tx: mpsc::Sender<SpanRecord>,
    rate: f64,
    app_id: Arc<str>,
}

impl Spans {
    /// A sink keeping at most `capacity` unexported records, sampling new traces at `rate`
    /// (0 to 1), for spans of `app_id`.
    pub fn new(capacity: usize, rate: f64, app_id: &str) -> (Self, mpsc::Receiver<SpanRecord>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tx,
                rate: rate.clamp(0.0, 1.0),
                app_id: app_id.into(),
            },
            rx,
        )
    }

    /// The app id spans are recorded for.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Whether a new trace with this id is sampled.
    pub fn samples_new(&self, trace_id: u128) -> bool {
        sampled_by_rate(trace_id, self.rate)
    }

    /// Hands a finished span to the exporter, or drops it (counted) when the exporter is behind.
    pub fn record(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            metrics::counter!("outrider_spans_dropped_total").increment(1);
        }
    }
}

/// Whether a trace is sampled at `rate`, decided from its id (the low 56 bits, uniformly random
/// in W3C trace ids) so that every decision on one trace agrees.
pub fn sampled_by_rate(trace_id: u128, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let bits = (trace_id & ((1 << 56) - 1)) as f64 / (1u64 << 56) as f64;
    bits < rate
}

/// Whether `ctx` is sampled.
pub fn is_sampled(ctx: &TraceContext) -> bool {
    ctx.flags & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert!(sampled_by_rate(12345, 1.0));
        assert!(!sampled_by_rate(12345, 0.0));
        // About a tenth of uniformly spread ids are sampled at 0.1.
        let ids =
            (0..10_000u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
        let n = ids.filter(|id| sampled_by_rate(*id, 0.1)).count();
        assert!((800..1200).contains(&n), "{n}");
    }

    #[test]
    fn a_full_exporter_drops_instead_of_waiting() {
        let (spans, mut rx) = Spans::new(1, 1.0, "a");
        let span = SpanRecord {
            trace_id: 1,
            span_id: 2,
            parent_span_id: 0,
            name: "x".into(),
            kind: SpanKind::Server,
            start: SystemTime::now(),
            end: SystemTime::now(),
            attributes: vec![],
            error: false,
        };
        spans.record(span.clone());
        spans.record(span.clone());
        assert_eq!(rx.try_recv().unwrap(), span);
        assert!(rx.try_recv().is_err(), "the second was dropped");
    }
}
