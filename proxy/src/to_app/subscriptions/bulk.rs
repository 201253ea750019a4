//! Bulk subscriptions: the broker delivers messages one at a time; they wait here until
//! `maxMessagesCount` are gathered or `maxAwaitDurationMs` passed since the first, then go to
//! the app in one `POST` per route (api.md §4.6):
//! `{"id", "type": "com.dapr.event.sent.bulk", "topic", "pubsubname", "metadata", "entries":
//! [{"entryId", "event", "contentType", "metadata"}]}`. The app answers
//! `{"statuses": [{"entryId", "status"}]}`; each message's outcome comes from its own status
//! (an entry left out, or with an empty status, is retried), a 404 drops the whole batch and any
//! other failure retries it. Every message is acknowledged to the broker on its own outcome, so
//! dead letters and redelivery work per message as in single delivery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, header};
use outrider_blocks::pubsub::{Handler, Message, Outcome, raw_event, wants_raw};
use outrider_blocks::subscription::BulkSubscribe;
use outrider_filters::resiliency::classify::{Classify, Failure, StackError, Verdict};
use outrider_filters::resiliency::{Policies, Stacked};
use outrider_filters::trace::TraceContext;
use outrider_policy::Caller;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tower::{BoxError, ServiceExt as _};

use crate::net::http::full;
use crate::to_app::channel::AppChannel;
use crate::to_app::deliver::{
    Delivery, Said, Span, delivery_stack, outcome, route_event, trace_of,
};

/// The largest answer read from the app for one batch.
const MAX_ANSWER: usize = 4 << 20;

type Waiting = (Message, oneshot::Sender<Outcome>);

/// A handler that gathers messages into batches and resolves each with its own outcome. Each
/// batch's call to the app goes through the component's `inbound` policies.
pub(crate) fn deliverer(parts: Delivery, policies: Policies, bulk: BulkSubscribe) -> Handler {
    let (tx, rx) = mpsc::channel::<Waiting>(bulk.max_messages.saturating_mul(2).max(16));
    let (app, me) = (parts.app.clone(), parts.me.clone());
    let pubsub: Arc<str> = parts.spec.pubsub.as_str().into();
    let attempt = tower::service_fn(move |(path, body): (String, Bytes)| {
        let (app, me, pubsub) = (app.clone(), me.clone(), pubsub.clone());
        async move { post_once(&app, &me, &pubsub, &path, body).await }
    });
    let post = delivery_stack(&parts.me, &parts.spec.pubsub, policies, BulkClassify)
        .around_cloned(attempt);
    let batch = Arc::new(Batch { parts, post });
    // Ends when the last handler clone is dropped (the subscription is gone).
    tokio::spawn(gather(rx, bulk, batch));
    Arc::new(move |msg: Message| {
        let tx = tx.clone();
        Box::pin(async move {
            let (done, outcome) = oneshot::channel();
            if tx.send((msg, done)).await.is_err() {
                return Outcome::Retry;
            }
            outcome.await.unwrap_or(Outcome::Retry)
        })
    })
}

/// The app's answer to one batch: its status and, when it could be read, its body.
struct Answer {
    status: u16,
    body: Option<Value>,
}

/// One call to the app with a batch.
async fn post_once(
    app: &AppChannel,
    me: &Caller,
    pubsub: &str,
    path: &str,
    body: Bytes,
) -> Result<Answer, BoxError> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header("pubsubname", pubsub)
        .extension(crate::to_app::channel::grpc::BulkDelivery)
        .body(full(body))?;
    let rsp = app.call(req, me).await?;
    let status = rsp.status().as_u16();
    let body = crate::net::http::collect_within(rsp.into_body(), MAX_ANSWER)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    Ok(Answer { status, body })
}

/// Judges a batch's call: any 2xx (each entry has its own status) and a 404 (the batch is
/// dropped) are answers; other statuses and errors are failures the policy may retry.
#[derive(Clone, Copy, Debug)]
struct BulkClassify;

impl Classify<Answer, StackError<BoxError>> for BulkClassify {
    fn verdict(&self, result: &Result<Answer, StackError<BoxError>>) -> Verdict {
        match result {
            Ok(a) if (200..300).contains(&a.status) || a.status == 404 => Verdict::Success,
            Ok(a) => Verdict::Failure(Failure::answer(Some(a.status))),
            Err(e) => Verdict::Failure(Failure::error(e.kind_if_sent())),
        }
    }
}

/// Collects batches: the first message starts the clock, a full batch or the deadline sends it.
async fn gather(mut rx: mpsc::Receiver<Waiting>, bulk: BulkSubscribe, batch: Arc<Batch>) {
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + bulk.max_await;
        let mut waiting = vec![first];
        while waiting.len() < bulk.max_messages {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => waiting.push(m),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        tokio::spawn(batch.clone().send(waiting));
    }
}

struct Batch {
    parts: Delivery,
    /// One call to the app with a batch, through the component's policies.
    post: Stacked<(String, Bytes), Answer, BoxError>,
}

/// One message of a batch on its way to the app.
struct Entry {
    id: String,
    event: Value,
    content_type: &'static str,
    /// The trace the event belongs to, if it carries one.
    trace: Option<TraceContext>,
    done: oneshot::Sender<Outcome>,
}

impl Batch {
    async fn send(self: Arc<Self>, waiting: Vec<Waiting>) {
        let start = Instant::now();
        let mut by_route: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (msg, done) in waiting {
            if let Some((path, entry)) = self.entry(&msg, done, start) {
                by_route.entry(path).or_default().push(entry);
            }
        }
        for (path, entries) in by_route {
            self.post(&path, entries, start).await;
        }
    }

    /// The entry for `msg` and the path it is routed to; a message no rule routes (or an
    /// expired one) gets its outcome here instead.
    fn entry(
        &self,
        msg: &Message,
        done: oneshot::Sender<Outcome>,
        start: Instant,
    ) -> Option<(String, Entry)> {
        let spec = &self.parts.spec;
        // A raw subscriber gets raw entries; others need JSON events (a raw message that is not
        // one still goes, as base64, as the bulk format allows).
        let raw = wants_raw(&spec.metadata);
        let parsed: Option<Value> = (!raw)
            .then(|| serde_json::from_slice(&msg.data).ok())
            .flatten();
        let routed_on = raw.then(|| raw_event(&spec.pubsub, &spec.topic, &msg.data, &msg.metadata));
        let routed = parsed.as_ref().or(routed_on.as_ref());
        let path = match route_event(&self.parts.router, routed, &msg.topic) {
            Ok(path) => path.to_owned(),
            Err(outcome) => {
                let metrics = &self.parts.metrics;
                metrics.ingress(&spec.pubsub, &spec.topic, outcome, "", start);
                let _ = done.send(outcome);
                return None;
            }
        };
        let trace = parsed.as_ref().and_then(trace_of);
        // A CloudEvent goes as its object; anything else (a raw payload) as base64.
        let (event, content_type) = match parsed.filter(Value::is_object) {
            Some(e) => (e, "application/cloudevents+json"),
            None => (
                Value::String(base64::engine::general_purpose::STANDARD.encode(&msg.data)),
                "application/octet-stream",
            ),
        };
        let entry = Entry {
            id: uuid::Uuid::new_v4().to_string(),
            event,
            content_type,
            trace,
            done,
        };
        Some((path, entry))
    }

    /// One call to the app for the entries routed to `path` (through the component's
    /// policies); each entry gets its outcome and, when its event carries a trace, a span.
    async fn post(&self, path: &str, entries: Vec<Entry>, start: Instant) {
        let (spec, metrics) = (&self.parts.spec, &self.parts.metrics);
        let listed: Vec<Value> = entries
            .iter()
            .map(|e| json!({"entryId": e.id, "event": e.event, "contentType": e.content_type, "metadata": {}}))
            .collect();
        let body = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "type": "com.dapr.event.sent.bulk",
            "topic": spec.topic,
            "pubsubname": spec.pubsub,
            "metadata": spec.metadata,
            "entries": listed,
        });
        let started = SystemTime::now();
        // A route no request can carry fails at once rather than through the policy's retries.
        let call = match http::Uri::try_from(path) {
            Ok(_) => {
                let batch = (path.to_owned(), Bytes::from(body.to_string()));
                self.post.clone().oneshot(batch).await
            }
            Err(e) => Err(StackError::Call(e.into())),
        };
        let (status, statuses) = match call {
            Ok(answer) => (Some(answer.status), answer.body),
            Err(e) => {
                tracing::info!(topic = %spec.topic, error = %e, "bulk delivery failed; it will be retried");
                (None, None)
            }
        };
        let answered = statuses_by_id(statuses.as_ref());
        let label = status.map_or_else(String::new, |s| s.to_string());
        for e in entries {
            // An entry the app left out, or gave an empty status, is not handled yet.
            let said = answered
                .get(e.id.as_str())
                .map_or(Said::Nothing, |w| Said::Word(w));
            let outcome = status.map_or(Outcome::Retry, |s| outcome(s, said, Outcome::Retry));
            metrics.ingress(&spec.pubsub, &spec.topic, outcome, &label, start);
            if let (Some(spans), Some(parent)) = (&self.parts.spans, e.trace) {
                let span = Span {
                    name: "pubsub bulk delivery",
                    parent,
                    child: parent.child(),
                    started,
                    route: path,
                };
                span.record(spans, &self.parts.me, spec, outcome);
            }
            let _ = e.done.send(outcome);
        }
    }
}

/// `{"statuses": [{"entryId", "status"}]}` as a map; anything unreadable is left out.
fn statuses_by_id(v: Option<&Value>) -> BTreeMap<&str, String> {
    v.and_then(|v| v.get("statuses"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|s| {
                    Some((
                        s.get("entryId")?.as_str()?,
                        s.get("status")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_per_entry() {
        let v = json!({"statuses": [
            {"entryId": "a", "status": "SUCCESS"},
            {"entryId": "b", "status": "drop"},
            {"entryId": "c"},
            {"status": "SUCCESS"},
            "nonsense",
        ]});
        let m = statuses_by_id(Some(&v));
        assert_eq!(m.len(), 2);
        // Compared exactly, as single deliveries are: "drop" is not DROP, so it is retried.
        assert_eq!((m["a"].as_str(), m["b"].as_str()), ("SUCCESS", "drop"));
        assert!(statuses_by_id(Some(&json!({"statuses": "x"}))).is_empty());
        assert!(statuses_by_id(None).is_empty());
    }
}
