//! One delivery path from the sidecar to its app, shared by subscriptions (single and bulk)
//! and input bindings:
//! the stack every message goes through (trace span, Dapr's ingress metrics, the component's
//! inbound resiliency policies), the routing of an event to the app's path, and the one table
//! that turns the app's answer into an outcome for the broker.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};
use outrider_blocks::pubsub::routing::Router;
use outrider_blocks::pubsub::{Handler, Message, Outcome, expired, raw_event, wants_raw};
use outrider_filters::resiliency::classify::{Classify, Failed as _, Failure, StackError, Verdict};
use outrider_filters::resiliency::{Labels, Policies, Stack};
use outrider_filters::spans::{SpanKind, SpanRecord, Spans, is_sampled};
use outrider_filters::trace::TraceContext;
use outrider_policy::Caller;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::components::metrics::PubSubMetrics;
use crate::net::http::{collect_within, full};
use crate::to_app::channel::AppChannel;
use crate::to_app::channel::grpc::TopicDelivery;
use crate::to_app::subscriptions::Spec;

/// What an app said about one message in its answer's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Said<'a> {
    /// Nothing: no body, no status, or not JSON.
    Nothing,
    /// A status word: `SUCCESS`, `RETRY`, `DROP` (or anything else).
    Word(&'a str),
    /// A status that is not a word.
    Unreadable,
}

/// What the app's answer means for one message: its status code, what it said of the message,
/// and what a 2xx that says nothing (or an empty word) means. Single deliveries read silence as
/// success, bulk ones as "not handled yet".
pub(crate) fn outcome(status: u16, said: Said<'_>, silence: Outcome) -> Outcome {
    match (status, said) {
        (200..=299, Said::Nothing | Said::Word("")) => silence,
        (200..=299, Said::Word("SUCCESS")) => Outcome::Success,
        (200..=299, Said::Word("DROP")) => Outcome::Drop,
        (200..=299, Said::Word(_) | Said::Unreadable) => Outcome::Retry,
        (404, _) => Outcome::Drop,
        _ => Outcome::Retry,
    }
}

/// What the app's answer to a single delivery means.
pub(crate) fn decide(status: u16, body: &[u8]) -> Outcome {
    let answer = serde_json::from_slice::<Value>(body).ok();
    let said = match answer.as_ref().and_then(|v| v.get("status")) {
        None => Said::Nothing,
        Some(Value::String(s)) => Said::Word(s),
        Some(_) => Said::Unreadable,
    };
    outcome(status, said, Outcome::Success)
}

/// The parts of one delivery that do not change between messages.
pub(crate) struct Delivery {
    pub(crate) app: AppChannel,
    pub(crate) me: Caller,
    pub(crate) spec: Spec,
    pub(crate) router: Router,
    pub(crate) metrics: Arc<PubSubMetrics>,
    pub(crate) spans: Option<Spans>,
}

/// Delivers each message to the app through the component's `inbound` resiliency policies, with
/// the same layers as any other call: retry(timeout(delivery)). A failed delivery is tried again
/// as the retry policy says (statuses it matches; every failing status when it lists none, as
/// Dapr does for deliveries) before the failure goes back to the broker or the dead-letter topic;
/// the timeout bounds each attempt. Circuit breakers are not applied to deliveries: an open
/// breaker would send every message to the dead-letter topic instead of pausing.
pub(crate) fn deliverer(delivery: Delivery, policies: Policies) -> Handler {
    let (me, pubsub) = (delivery.me.clone(), delivery.spec.pubsub.clone());
    let delivery = Arc::new(delivery);
    let once = tower::service_fn(move |msg: Message| {
        let delivery = delivery.clone();
        async move { Ok::<_, Infallible>(delivery.once(&msg).await) }
    });
    let stack = delivery_stack(&me, &pubsub, policies, DeliveryClassify).around_cloned(once);
    Arc::new(move |msg: Message| {
        let call = stack.clone().oneshot(msg);
        Box::pin(async move {
            match call.await {
                Ok((outcome, _)) => outcome,
                Err(e) => {
                    tracing::info!(error = %e, "delivery failed; it will be retried");
                    Outcome::Retry
                }
            }
        })
    })
}

/// The stack of a component's `inbound` policies around one attempt of a delivery (single or
/// bulk): retry(timeout(attempt)). Without `matching.httpStatusCodes`, a retry policy retries
/// every failing status, as Dapr does for deliveries.
pub(crate) fn delivery_stack<C>(
    me: &Caller,
    pubsub: &str,
    policies: Policies,
    classify: C,
) -> Stack<C> {
    let labels = Labels::component(&me.app_id, pubsub, "inbound");
    let mut stack = Stack::from_policies(labels, classify, policies);
    // Deliveries get no breaker: an open one would dead-letter every message instead of pausing.
    stack.breaker = None;
    if let Some(r) = stack.retry.as_mut() {
        r.policy.http_codes.get_or_insert_with(|| vec![100..=599]);
    }
    stack
}

/// Judges a delivery: SUCCESS and DROP are done, RETRY (with the app's status, if it answered
/// one) failed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeliveryClassify;

impl Classify<(Outcome, Option<u16>), StackError<Infallible>> for DeliveryClassify {
    fn verdict(&self, result: &Result<(Outcome, Option<u16>), StackError<Infallible>>) -> Verdict {
        match result {
            Ok((Outcome::Success | Outcome::Drop, _)) => Verdict::Success,
            Ok((Outcome::Retry, status)) => Verdict::Failure(Failure::answer(*status)),
            Err(e) => Verdict::Failure(Failure::error(e.kind())),
        }
    }
}

impl Delivery {
    /// One attempt: the outcome and, when the app answered, its status code.
    async fn once(&self, msg: &Message) -> (Outcome, Option<u16>) {
        let (spec, metrics) = (&self.spec, &self.metrics);
        let start = Instant::now();
        // A wildcard subscription's messages say which topic they were published on.
        let topic = if spec.topic.contains(['+', '#', '*', '>']) {
            msg.topic.as_str()
        } else {
            spec.topic.as_str()
        };
        // A raw subscriber gets every message wrapped here; anyone else needs a JSON event.
        let (body, event) = if wants_raw(&spec.metadata) {
            let e = raw_event(&spec.pubsub, topic, &msg.data, &msg.metadata);
            (Bytes::from(e.to_string()), Some(e))
        } else {
            match serde_json::from_slice::<Value>(&msg.data) {
                Ok(e) => (msg.data.clone(), Some(e)),
                Err(_) => {
                    tracing::warn!(topic = %msg.topic, "the message is not a CloudEvent (JSON) and the subscription does not ask for rawPayload; it fails");
                    metrics.ingress(&spec.pubsub, &spec.topic, Outcome::Retry, "", start);
                    return (Outcome::Retry, None);
                }
            }
        };
        let path = match route_event(&self.router, event.as_ref(), &msg.topic) {
            Ok(path) => path,
            Err(outcome) => {
                metrics.ingress(&spec.pubsub, &spec.topic, outcome, "", start);
                return (outcome, None);
            }
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/cloudevents+json")
            .header("pubsubname", spec.pubsub.as_str())
            .extension(TopicDelivery {
                pubsub: spec.pubsub.clone(),
                topic: topic.to_owned(),
            });
        // The delivery is a span of the publisher's trace: the app gets it as its parent.
        let parent = event.as_ref().and_then(trace_of);
        let span = parent.map(|p| (p, p.child(), SystemTime::now()));
        if let Some((_, child, _)) = span {
            req = req.header("traceparent", child.to_string());
        }
        // The message's metadata travels as headers, never replacing the ones set above.
        if let Some(headers) = req.headers_mut() {
            for (k, v) in &msg.metadata {
                let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(k.as_str()),
                    HeaderValue::try_from(v.as_str()),
                ) else {
                    continue;
                };
                if !headers.contains_key(&name) && !describes_the_body_or_connection(&name) {
                    headers.insert(name, value);
                }
            }
        }
        let Ok(req) = req.body(full(body)) else {
            return (Outcome::Drop, None);
        };
        let result = self.call_app(req, msg, start).await;
        if let (Some(spans), Some((parent, child, started))) = (&self.spans, span) {
            let span = Span {
                name: "pubsub delivery",
                parent,
                child,
                started,
                route: path,
            };
            span.record(spans, &self.me, spec, result.0);
        }
        result
    }

    /// Sends the delivery and reads the app's answer.
    async fn call_app(
        &self,
        req: Request<crate::net::http::Body>,
        msg: &Message,
        start: Instant,
    ) -> (Outcome, Option<u16>) {
        let (spec, metrics) = (&self.spec, &self.metrics);
        match self.app.call(req, &self.me).await {
            Ok(rsp) => {
                let status = rsp.status().as_u16();
                let body = collect_within(rsp.into_body(), 64 * 1024)
                    .await
                    .unwrap_or_default();
                let outcome = decide(status, &body);
                if outcome != Outcome::Success {
                    tracing::info!(topic = %msg.topic, status, ?outcome, "delivery not acknowledged by the app");
                }
                // A DROP the app answered in its body counts as handled; a 404 does not.
                let label = if outcome == Outcome::Drop && status != 404 {
                    "success"
                } else {
                    ""
                };
                metrics.ingress(&spec.pubsub, &spec.topic, outcome, label, start);
                // A 2xx RETRY carries no failing status: it is retried whatever the matching.
                (outcome, (!(200..300).contains(&status)).then_some(status))
            }
            Err(e) => {
                tracing::info!(topic = %msg.topic, error = %e, "delivery failed; it will be retried");
                metrics.ingress(&spec.pubsub, &spec.topic, Outcome::Retry, "", start);
                (Outcome::Retry, None)
            }
        }
    }
}

/// The app route for one message, or the outcome when it is not delivered: an expired event or
/// one no rule routes is dropped; one a rule cannot evaluate is retried.
pub(crate) fn route_event<'r>(
    router: &'r Router,
    event: Option<&Value>,
    topic: &str,
) -> Result<&'r str, Outcome> {
    if event.is_some_and(|e| expired(e, SystemTime::now())) {
        tracing::warn!(%topic, "dropping an expired event");
        return Err(Outcome::Drop);
    }
    let routed = match event {
        Some(e) => router.route(e),
        None if router.has_conditions() => Err("the message is not a JSON event".to_owned()),
        None => router.route(&Value::Null),
    };
    match routed {
        Ok(Some(path)) => Ok(path),
        Ok(None) => {
            tracing::info!(%topic, "no routing rule matched the event; dropping it");
            Err(Outcome::Drop)
        }
        Err(e) => {
            tracing::warn!(%topic, "routing the event failed: {e}; it will be retried");
            Err(Outcome::Retry)
        }
    }
}

/// A delivery as a span of the publisher's trace.
pub(crate) struct Span<'a> {
    pub(crate) name: &'static str,
    pub(crate) parent: TraceContext,
    pub(crate) child: TraceContext,
    pub(crate) started: SystemTime,
    pub(crate) route: &'a str,
}

impl Span<'_> {
    /// Records the span, ended now with `outcome`, if its trace is sampled.
    pub(crate) fn record(self, spans: &Spans, me: &Caller, spec: &Spec, outcome: Outcome) {
        if !is_sampled(&self.child) {
            return;
        }
        spans.record(SpanRecord {
            trace_id: self.child.trace_id,
            span_id: self.child.span_id,
            parent_span_id: self.parent.span_id,
            name: format!("{} {}/{}", self.name, spec.pubsub, spec.topic).into(),
            kind: SpanKind::Consumer,
            start: self.started,
            end: SystemTime::now(),
            attributes: vec![
                ("app_id", me.app_id.clone()),
                ("messaging.system", spec.pubsub.clone()),
                ("messaging.destination", spec.topic.clone()),
                ("pubsub.route", self.route.to_owned()),
                ("pubsub.outcome", format!("{outcome:?}")),
            ],
            error: outcome != Outcome::Success,
        });
    }
}

/// The trace an event belongs to, from its `traceparent` (or `traceid`).
pub(crate) fn trace_of(event: &Value) -> Option<TraceContext> {
    traceparent_of(event).and_then(TraceContext::parse)
}

/// Headers about the request's own body or connection: never set from a message's metadata.
pub(crate) fn describes_the_body_or_connection(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("content-")
        || matches!(
            n,
            "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "te"
                | "trailer"
                | "upgrade"
                | "host"
                | "expect"
        )
}

/// The event's `traceparent` (or `traceid`), to continue its trace at the app.
fn traceparent_of(v: &Value) -> Option<&str> {
    v.get("traceparent")
        .or_else(|| v.get("traceid"))
        .and_then(Value::as_str)
}

/// Counts each delivery as in flight while it runs.
pub(crate) fn track(
    deliver: Handler,
    in_flight: tokio_util::task::TaskTracker,
    gauge: Option<metrics::Gauge>,
) -> Handler {
    Arc::new(move |msg: Message| {
        let (deliver, token) = (deliver.clone(), in_flight.token());
        let gauge = gauge.clone();
        Box::pin(async move {
            let _counted = gauge.map(InFlight::new);
            let outcome = deliver(msg).await;
            drop(token);
            outcome
        })
    })
}

/// One delivery counted on a gauge while it runs (also when its future is dropped).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let cases: [(u16, &[u8], Outcome); 11] = [
            (200, b"", Outcome::Success),
            (200, b"not json", Outcome::Success),
            (204, b"", Outcome::Success),
            (200, br#"{"status":"SUCCESS"}"#, Outcome::Success),
            (200, br#"{"status":""}"#, Outcome::Success),
            (200, br#"{"status":"RETRY"}"#, Outcome::Retry),
            (200, br#"{"status":"DROP"}"#, Outcome::Drop),
            (200, br#"{"status":"drop"}"#, Outcome::Retry),
            (404, b"", Outcome::Drop),
            (500, br#"{"status":"SUCCESS"}"#, Outcome::Retry),
            (302, b"", Outcome::Retry),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                decide(status, body),
                want,
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
