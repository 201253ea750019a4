//! Programmatic subscriptions: once the app is reachable, ask it `GET /dapr/subscribe`, subscribe
//! to what it lists, and deliver each message as a `POST` of the CloudEvent to its route
//! (api.md §4.4, §4.6). The app's answer decides the outcome: 2xx with `SUCCESS` (or an empty
//! or unreadable body) acknowledges, `DROP` and 404 drop, anything else is retried by the
//! broker. Routing rules (CEL `match`) are not supported yet: such subscriptions are refused and
//! logged, never routed somewhere else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Limited};
use outrider_blocks::pubsub::{Handler, Message, Outcome, PubSubComponent, SubscribeRequest, Subscription, expired};
use outrider_policy::Caller;
use serde_json::{Value, json};

use crate::app_channel::AppChannel;
use crate::http::{empty, full};
use crate::pubsub_metrics::PubSubMetrics;

/// Deliveries of one subscription in flight at once.
const CONCURRENCY: usize = 10;
/// With a dead-letter topic: attempts before a failing message goes there, and the first delay.
const DEAD_LETTER_ATTEMPTS: u32 = 3;
const DEAD_LETTER_BACKOFF: Duration = Duration::from_millis(100);
/// The largest `/dapr/subscribe` answer read.
const MAX_SUBSCRIBE_BODY: usize = 1 << 20;

/// One subscription as the app declared it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) pubsub: String,
    pub(crate) topic: String,
    /// Where deliveries go, with a leading `/`.
    pub(crate) path: String,
    pub(crate) dead_letter: String,
    pub(crate) metadata: BTreeMap<String, String>,
    /// From a `Subscription` resource rather than the app.
    pub(crate) declarative: bool,
}

impl From<&outrider_blocks::subscription::Declared> for Spec {
    fn from(d: &outrider_blocks::subscription::Declared) -> Self {
        Self {
            pubsub: d.pubsub.clone(),
            topic: d.topic.clone(),
            path: d.path.clone(),
            dead_letter: d.dead_letter.clone(),
            metadata: d.metadata.clone(),
            declarative: true,
        }
    }
}

/// The app's subscriptions replace declared ones for the same pub/sub and topic.
pub(crate) fn merge(programmatic: Vec<Spec>, declared: &[outrider_blocks::subscription::Declared]) -> Vec<Spec> {
    let mut out = programmatic;
    for d in declared {
        if !out.iter().any(|p| p.pubsub == d.pubsub && p.topic == d.topic) {
            out.push(Spec::from(d));
        }
    }
    out
}

impl Spec {
    /// How `/v1.0/metadata` lists it.
    pub(crate) fn to_metadata(&self) -> Value {
        json!({
            "pubsubname": self.pubsub, "topic": self.topic, "metadata": self.metadata,
            "rules": [{"match": "", "path": self.path}], "deadLetterTopic": self.dead_letter,
            "type": if self.declarative { "DECLARATIVE" } else { "PROGRAMMATIC" },
        })
    }
}

/// Parses the app's answer; returns the usable subscriptions and a reason for each refused one.
pub(crate) fn parse(v: &Value) -> (Vec<Spec>, Vec<String>) {
    let (mut specs, mut refused) = (Vec::new(), Vec::new());
    let Some(items) = v.as_array() else {
        return (specs, vec![format!("/dapr/subscribe must answer a JSON array, got {}", short(v))]);
    };
    for (i, item) in items.iter().enumerate() {
        let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (pubsub, topic) = (s("pubsubname"), s("topic"));
        if pubsub.is_empty() || topic.is_empty() {
            refused.push(format!("item {i}: pubsubname and topic are required"));
            continue;
        }
        let routes = item.get("routes");
        let rules = routes.and_then(|r| r.get("rules")).and_then(Value::as_array).map_or(0, Vec::len);
        if rules > 0 {
            refused.push(format!("{pubsub}/{topic}: routing rules (CEL match) are not supported yet"));
            continue;
        }
        let default = routes.and_then(|r| r.get("default")).and_then(Value::as_str).unwrap_or_default();
        let route = if default.is_empty() { s("route") } else { default.to_owned() };
        if route.is_empty() {
            refused.push(format!("{pubsub}/{topic}: no route"));
            continue;
        }
        let path = if route.starts_with('/') { route } else { format!("/{route}") };
        let metadata = item
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
            })
            .unwrap_or_default();
        specs.push(Spec { pubsub, topic, path, dead_letter: s("deadLetterTopic"), metadata, declarative: false });
    }
    (specs, refused)
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(80).collect()
}

/// What the app's answer to a delivery means.
pub(crate) fn decide(status: u16, body: &[u8]) -> Outcome {
    match status {
        200..=299 => match serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("status").cloned()) {
            None => Outcome::Success,
            Some(Value::String(s)) if s.is_empty() || s == "SUCCESS" => Outcome::Success,
            Some(Value::String(s)) if s == "DROP" => Outcome::Drop,
            Some(_) => Outcome::Retry,
        },
        404 => Outcome::Drop,
        _ => Outcome::Retry,
    }
}

/// Asks the app for its subscriptions: 404 means none; other failures are logged and mean none.
pub(crate) async fn fetch(app: &AppChannel, me: &Caller) -> Vec<Spec> {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=3 {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/dapr/subscribe")
            .header(header::CONTENT_TYPE, "application/json")
            .header("dapr-app-id", me.app_id.as_str())
            .body(empty())
            .expect("a static request is valid");
        match app.call(req, me).await {
            Ok(rsp) if rsp.status() == 404 => return Vec::new(),
            Ok(rsp) if rsp.status().is_success() => {
                let body = Limited::new(rsp.into_body(), MAX_SUBSCRIBE_BODY)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                let (specs, refused) = parse(&parsed);
                for r in refused {
                    tracing::warn!("subscription refused: {r}");
                }
                return specs;
            }
            Ok(rsp) => tracing::warn!(status = rsp.status().as_u16(), "/dapr/subscribe failed; no subscriptions"),
            Err(e) if attempt < 3 => {
                tracing::info!(error = %e, attempt, "asking the app for subscriptions failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "asking the app for subscriptions failed; no subscriptions"),
        }
        return Vec::new();
    }
    Vec::new()
}

/// Subscribes to every spec whose pub/sub exists; returns the live subscriptions.
pub(crate) async fn start(
    specs: Vec<Spec>,
    pubsubs: &BTreeMap<String, PubSubComponent>,
    app: AppChannel,
    me: Caller,
    active: &Mutex<Vec<Spec>>,
    metrics: &Arc<PubSubMetrics>,
) -> Vec<Subscription> {
    let mut subs = Vec::new();
    for spec in specs {
        let Some(c) = pubsubs.get(&spec.pubsub) else {
            tracing::warn!(pubsub = %spec.pubsub, topic = %spec.topic, "subscription refused: no such pubsub");
            continue;
        };
        if !c.scopes.may_subscribe(&spec.topic) {
            tracing::warn!(
                pubsub = %spec.pubsub, topic = %spec.topic,
                "subscription to topic '{}' on pubsub '{}' is not allowed", spec.topic, spec.pubsub
            );
            continue;
        }
        let topic = c.broker_topic(&spec.topic);
        let req = SubscribeRequest { topic, group: c.consumer_group.clone(), concurrency: CONCURRENCY };
        let handler = with_dead_letter(deliverer(app.clone(), me.clone(), spec.clone(), metrics.clone()), &spec, c);
        match c.broker.subscribe(req, handler).await {
            Ok(sub) => {
                tracing::info!(pubsub = %spec.pubsub, topic = %spec.topic, route = %spec.path, "subscribed");
                active.lock().unwrap_or_else(|p| p.into_inner()).push(spec);
                subs.push(sub);
            }
            Err(e) => tracing::warn!(pubsub = %spec.pubsub, topic = %spec.topic, error = %e, "subscribing failed"),
        }
    }
    subs
}

/// With a dead-letter topic, a failing message is tried a few times with backoff, then published
/// to that topic on the same pub/sub and acknowledged; dropped messages go there too. Without
/// one, the outcome goes back to the broker, which redelivers.
fn with_dead_letter(deliver: Handler, spec: &Spec, c: &PubSubComponent) -> Handler {
    if spec.dead_letter.is_empty() {
        return deliver;
    }
    if !c.scopes.may_publish(&spec.dead_letter) {
        // The letter can never be written, so every message that would go there stays with the
        // broker instead (as a failed dead-letter publish does).
        tracing::warn!(pubsub = %spec.pubsub, dead_letter_topic = %spec.dead_letter, "the component's scopes do not allow publishing to the dead-letter topic; failing messages will stay unacknowledged");
        return Arc::new(move |msg: Message| {
            let deliver = deliver.clone();
            Box::pin(async move {
                match deliver(msg).await {
                    Outcome::Success => Outcome::Success,
                    Outcome::Retry | Outcome::Drop => Outcome::Retry,
                }
            })
        });
    }
    let (dead, broker) = (c.broker_topic(&spec.dead_letter), c.broker.clone());
    Arc::new(move |msg: Message| {
        let (deliver, dead, broker) = (deliver.clone(), dead.clone(), broker.clone());
        Box::pin(async move {
            let mut delay = DEAD_LETTER_BACKOFF;
            for attempt in 1..=DEAD_LETTER_ATTEMPTS {
                match deliver(msg.clone()).await {
                    Outcome::Success => return Outcome::Success,
                    Outcome::Drop => break,
                    Outcome::Retry if attempt < DEAD_LETTER_ATTEMPTS => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Outcome::Retry => {}
                }
            }
            let letter = Message { topic: dead.clone(), ..msg };
            match tokio::time::timeout(Duration::from_secs(30), broker.publish(letter)).await {
                Ok(Ok(())) => {
                    tracing::info!(dead_letter_topic = %dead, "message moved to the dead-letter topic");
                    Outcome::Success
                }
                // Not acknowledged: the broker keeps it and delivers it again later.
                _ => {
                    tracing::warn!(dead_letter_topic = %dead, "publishing to the dead-letter topic failed; the message stays");
                    Outcome::Retry
                }
            }
        })
    })
}

/// Delivers one message to the app and reads its answer.
fn deliverer(app: AppChannel, me: Caller, spec: Spec, metrics: Arc<PubSubMetrics>) -> Handler {
    let spec = Arc::new(spec);
    Arc::new(move |msg: Message| {
        let (app, me, spec, metrics) = (app.clone(), me.clone(), spec.clone(), metrics.clone());
        Box::pin(async move {
            let start = Instant::now();
            let event: Option<Value> = serde_json::from_slice(&msg.data).ok();
            if event.as_ref().is_some_and(|e| expired(e, SystemTime::now())) {
                tracing::warn!(topic = %msg.topic, "dropping an expired event");
                metrics.ingress(&spec.pubsub, &spec.topic, Outcome::Drop, "", start);
                return Outcome::Drop;
            }
            let mut req = Request::builder()
                .method(Method::POST)
                .uri(spec.path.as_str())
                .header(header::CONTENT_TYPE, "application/cloudevents+json")
                .header("pubsubname", spec.pubsub.as_str());
            if let Some(tp) = event.as_ref().and_then(traceparent_of).and_then(|t| HeaderValue::try_from(t).ok()) {
                req = req.header("traceparent", tp);
            }
            let Ok(req) = req.body(full(msg.data.clone())) else { return Outcome::Drop };
            match app.call(req, &me).await {
                Ok(rsp) => {
                    let status = rsp.status().as_u16();
                    let body = Limited::new(rsp.into_body(), 64 * 1024)
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let outcome = decide(status, &body);
                    if outcome != Outcome::Success {
                        tracing::info!(topic = %msg.topic, status, ?outcome, "delivery not acknowledged by the app");
                    }
                    // A DROP the app answered in its body counts as handled; a 404 does not.
                    let label = if outcome == Outcome::Drop && status != 404 { "success" } else { "" };
                    metrics.ingress(&spec.pubsub, &spec.topic, outcome, label, start);
                    outcome
                }
                Err(e) => {
                    tracing::info!(topic = %msg.topic, error = %e, "delivery failed; it will be retried");
                    metrics.ingress(&spec.pubsub, &spec.topic, Outcome::Retry, "", start);
                    Outcome::Retry
                }
            }
        })
    })
}

/// The event's `traceparent` (or `traceid`), to continue its trace at the app.
fn traceparent_of(v: &Value) -> Option<&str> {
    v.get("traceparent").or_else(|| v.get("traceid")).and_then(Value::as_str)
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
            assert_eq!(decide(status, body), want, "{status} {:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_apps_own_subscriptions_win() {
        use outrider_blocks::subscription::Declared;
        let declared = |topic: &str, path: &str| Declared {
            name: topic.into(),
            pubsub: "pubsub".into(),
            topic: topic.into(),
            path: path.into(),
            dead_letter: String::new(),
            metadata: BTreeMap::new(),
        };
        let (app, _) = parse(&json!([{"pubsubname": "pubsub", "topic": "a", "route": "/from-app"}]));
        let merged = merge(app, &[declared("a", "/declared"), declared("b", "/b")]);
        let got: Vec<(&str, &str, bool)> =
            merged.iter().map(|s| (s.topic.as_str(), s.path.as_str(), s.declarative)).collect();
        assert_eq!(got, [("a", "/from-app", false), ("b", "/b", true)]);
    }

    #[test]
    fn subscribe_answers() {
        let v = json!([
            {"pubsubname": "pubsub", "topic": "a", "route": "orders"},
            {"pubsubname": "pubsub", "topic": "b", "routes": {"default": "/b"}, "deadLetterTopic": "dead", "metadata": {"rawPayload": "true", "n": 1}},
            {"pubsubname": "pubsub", "topic": "c", "routes": {"rules": [{"match": "event.type == \"x\"", "path": "/x"}], "default": "/c"}},
            {"pubsubname": "pubsub", "topic": "d"},
            {"topic": "e", "route": "/e"},
        ]);
        let (specs, refused) = parse(&v);
        assert_eq!(
            specs.iter().map(|s| (s.topic.as_str(), s.path.as_str())).collect::<Vec<_>>(),
            [("a", "/orders"), ("b", "/b")]
        );
        assert_eq!(specs[1].dead_letter, "dead");
        assert_eq!(specs[1].metadata["n"], "1");
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[0].contains("routing rules"));
        assert_eq!(parse(&json!({"not": "an array"})).0, Vec::new());
    }
}
