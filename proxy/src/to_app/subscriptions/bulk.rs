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
use std::time::Instant;

use base64::Engine as _;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Limited};
use outrider_blocks::pubsub::routing::Router;
use outrider_blocks::pubsub::{Handler, Message, Outcome, raw_event, wants_raw};
use outrider_blocks::subscription::BulkSubscribe;
use outrider_policy::Caller;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::components::metrics::PubSubMetrics;
use crate::net::http::full;
use crate::to_app::channel::AppChannel;
use crate::to_app::deliver::{Said, outcome, route_event};
use crate::to_app::subscriptions::Spec;

/// The largest answer read from the app for one batch.
const MAX_ANSWER: usize = 4 << 20;

type Waiting = (Message, oneshot::Sender<Outcome>);

/// A handler that gathers messages into batches and resolves each with its own outcome.
pub(crate) fn deliverer(
    app: AppChannel,
    me: Caller,
    spec: Spec,
    router: Router,
    metrics: Arc<PubSubMetrics>,
    bulk: BulkSubscribe,
) -> Handler {
    let (tx, rx) = mpsc::channel::<Waiting>(bulk.max_messages.saturating_mul(2).max(16));
    let batch = Arc::new(Batch {
        app,
        me,
        spec,
        router,
        metrics,
    });
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
    app: AppChannel,
    me: Caller,
    spec: Spec,
    router: Router,
    metrics: Arc<PubSubMetrics>,
}

/// One message of a batch on its way to the app.
struct Entry {
    id: String,
    event: Value,
    content_type: &'static str,
    done: oneshot::Sender<Outcome>,
}

impl Batch {
    async fn send(self: Arc<Self>, waiting: Vec<Waiting>) {
        let start = Instant::now();
        let mut by_route: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (msg, done) in waiting {
            // A raw subscriber gets raw entries; others need JSON events (a raw message that is
            // not one still goes, as base64, as the bulk format allows).
            let raw = wants_raw(&self.spec.metadata);
            let parsed: Option<Value> = if raw {
                None
            } else {
                serde_json::from_slice(&msg.data).ok()
            };
            let routed_on = if raw {
                Some(raw_event(
                    &self.spec.pubsub,
                    &self.spec.topic,
                    &msg.data,
                    &msg.metadata,
                ))
            } else {
                None
            };
            match route_event(
                &self.router,
                parsed.as_ref().or(routed_on.as_ref()),
                &msg.topic,
            ) {
                Err(outcome) => {
                    self.metrics
                        .ingress(&self.spec.pubsub, &self.spec.topic, outcome, "", start);
                    let _ = done.send(outcome);
                }
                Ok(path) => {
                    // A CloudEvent goes as its object; anything else (a raw payload) as base64.
                    let (event, content_type) = match parsed.filter(Value::is_object) {
                        Some(e) => (e, "application/cloudevents+json"),
                        None => (
                            Value::String(
                                base64::engine::general_purpose::STANDARD.encode(&msg.data),
                            ),
                            "application/octet-stream",
                        ),
                    };
                    let id = uuid::Uuid::new_v4().to_string();
                    by_route.entry(path.to_owned()).or_default().push(Entry {
                        id,
                        event,
                        content_type,
                        done,
                    });
                }
            }
        }
        for (path, entries) in by_route {
            self.post(&path, entries, start).await;
        }
    }

    /// One call to the app for the entries routed to `path`; each entry gets its outcome.
    async fn post(&self, path: &str, entries: Vec<Entry>, start: Instant) {
        let listed: Vec<Value> = entries
            .iter()
            .map(|e| json!({"entryId": e.id, "event": e.event, "contentType": e.content_type, "metadata": {}}))
            .collect();
        let body = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "type": "com.dapr.event.sent.bulk",
            "topic": self.spec.topic,
            "pubsubname": self.spec.pubsub,
            "metadata": self.spec.metadata,
            "entries": listed,
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header("pubsubname", self.spec.pubsub.as_str())
            .body(full(body.to_string()));
        let answer = match req {
            Ok(req) => self
                .app
                .call(req, &self.me)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (status, statuses) = match answer {
            Ok(rsp) => {
                let status = rsp.status().as_u16();
                let body = Limited::new(rsp.into_body(), MAX_ANSWER)
                    .collect()
                    .await
                    .map(|b| b.to_bytes());
                (
                    Some(status),
                    body.ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
                )
            }
            Err(e) => {
                tracing::info!(topic = %self.spec.topic, error = %e, "bulk delivery failed; it will be retried");
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
            self.metrics
                .ingress(&self.spec.pubsub, &self.spec.topic, outcome, &label, start);
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
