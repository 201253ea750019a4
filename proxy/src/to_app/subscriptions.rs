//! Programmatic subscriptions: once the app is reachable, ask it `GET /dapr/subscribe`, subscribe
//! to what it lists, and deliver each message as a `POST` of the CloudEvent to its route
//! (api.md §4.4, §4.6). The app's answer decides the outcome: 2xx with `SUCCESS` (or an empty
//! or unreadable body) acknowledges, `DROP` and 404 drop, anything else is retried by the
//! broker. Routing rules (CEL `match` over the CloudEvent) pick the route per event, in order,
//! before the default; an event no rule routes is dropped (dead-lettered when a topic is set),
//! and one a rule cannot evaluate fails and is retried.

pub(crate) mod bulk;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Limited};
use outrider_blocks::pubsub::routing::{RouteRule, Router, parse_rules};
use outrider_blocks::pubsub::{
    Handler, Message, Outcome, PubSubComponent, SubscribeRequest, Subscription, expired, raw_event,
    wants_raw,
};
use outrider_blocks::subscription::{BulkSubscribe, parse_bulk};
use outrider_policy::Caller;
use serde_json::{Value, json};

use outrider_filters::resiliency::classify::{Classify, Failure, FailureKind, Verdict, error_kind};
use outrider_filters::resiliency::{
    Cloned, Direction, Labels, Policies, Resiliency, RetryLayer, Retrying, TimeoutLayer,
    component_policies,
};
use outrider_filters::spans::{SpanKind, SpanRecord, Spans, is_sampled};
use outrider_filters::trace::TraceContext;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

use crate::components::metrics::PubSubMetrics;
use crate::net::http::{empty, full};
use crate::to_app::channel::AppChannel;

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
    /// The default route, with a leading `/`; empty when only rules route.
    pub(crate) path: String,
    /// Routing rules tried before the default.
    pub(crate) rules: Vec<RouteRule>,
    pub(crate) dead_letter: String,
    pub(crate) metadata: BTreeMap<String, String>,
    /// From a `Subscription` resource rather than the app.
    pub(crate) declarative: bool,
    /// Batched delivery, when enabled.
    pub(crate) bulk: Option<BulkSubscribe>,
}

impl From<&outrider_blocks::subscription::Declared> for Spec {
    fn from(d: &outrider_blocks::subscription::Declared) -> Self {
        Self {
            pubsub: d.pubsub.clone(),
            topic: d.topic.clone(),
            path: d.path.clone(),
            rules: d.rules.clone(),
            dead_letter: d.dead_letter.clone(),
            metadata: d.metadata.clone(),
            declarative: true,
            bulk: d.bulk,
        }
    }
}

/// The app's subscriptions replace declared ones for the same pub/sub and topic.
pub(crate) fn merge(
    programmatic: Vec<Spec>,
    declared: &[outrider_blocks::subscription::Declared],
) -> Vec<Spec> {
    let mut out = programmatic;
    for d in declared {
        if !out
            .iter()
            .any(|p| p.pubsub == d.pubsub && p.topic == d.topic)
        {
            out.push(Spec::from(d));
        }
    }
    out
}

impl Spec {
    /// Every rule in the order tried: the rules, then the default route (if any) matching all.
    fn all_rules(&self) -> Vec<RouteRule> {
        let default = (!self.path.is_empty()).then(|| RouteRule {
            condition: String::new(),
            path: self.path.clone(),
        });
        self.rules.iter().cloned().chain(default).collect()
    }

    /// How `/v1.0/metadata` lists it.
    pub(crate) fn to_metadata(&self) -> Value {
        let rules: Vec<Value> = self
            .all_rules()
            .into_iter()
            .map(|r| json!({"match": r.condition, "path": r.path}))
            .collect();
        json!({
            "pubsubname": self.pubsub, "topic": self.topic, "metadata": self.metadata,
            "rules": rules, "deadLetterTopic": self.dead_letter,
            "type": if self.declarative { "DECLARATIVE" } else { "PROGRAMMATIC" },
        })
    }
}

/// Parses the app's answer; returns the usable subscriptions and a reason for each refused one.
pub(crate) fn parse(v: &Value) -> (Vec<Spec>, Vec<String>) {
    let (mut specs, mut refused) = (Vec::new(), Vec::new());
    let Some(items) = v.as_array() else {
        return (
            specs,
            vec![format!(
                "/dapr/subscribe must answer a JSON array, got {}",
                short(v)
            )],
        );
    };
    for (i, item) in items.iter().enumerate() {
        let s = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (pubsub, topic) = (s("pubsubname"), s("topic"));
        if pubsub.is_empty() || topic.is_empty() {
            refused.push(format!("item {i}: pubsubname and topic are required"));
            continue;
        }
        let routes = item.get("routes");
        let written = routes
            .and_then(|r| r.get("rules"))
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let rules = match parse_rules(written) {
            Ok(rules) => rules,
            Err(e) => {
                refused.push(format!(
                    "{pubsub}/{topic}: routes.rules[{}]: {}: {}",
                    e.index, e.expression, e.message
                ));
                continue;
            }
        };
        let default = routes
            .and_then(|r| r.get("default"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let route = if default.is_empty() {
            s("route")
        } else {
            default.to_owned()
        };
        if route.is_empty() && rules.is_empty() {
            refused.push(format!("{pubsub}/{topic}: no route"));
            continue;
        }
        let path = if route.is_empty() || route.starts_with('/') {
            route
        } else {
            format!("/{route}")
        };
        let metadata = item
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let bulk = match parse_bulk(item.get("bulkSubscribe")) {
            Ok(bulk) => bulk,
            Err(e) => {
                refused.push(format!("{pubsub}/{topic}: bulkSubscribe: {e}"));
                continue;
            }
        };
        let dead_letter = s("deadLetterTopic");
        specs.push(Spec {
            pubsub,
            topic,
            path,
            rules,
            dead_letter,
            metadata,
            declarative: false,
            bulk,
        });
    }
    (specs, refused)
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(80).collect()
}

/// What the app's answer to a delivery means.
pub(crate) fn decide(status: u16, body: &[u8]) -> Outcome {
    match status {
        200..=299 => match serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("status").cloned())
        {
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
            Ok(rsp) => tracing::warn!(
                status = rsp.status().as_u16(),
                "/dapr/subscribe failed; no subscriptions"
            ),
            Err(e) if attempt < 3 => {
                tracing::info!(error = %e, attempt, "asking the app for subscriptions failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "asking the app for subscriptions failed; no subscriptions")
            }
        }
        return Vec::new();
    }
    Vec::new()
}

/// Where a subscription stands, as `/v1.0/metadata` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SubState {
    /// Receiving messages.
    Active,
    /// The broker refused or failed; trying again (the last error).
    Retrying(String),
    /// Never going to work as configured (the reason).
    Failed(String),
}

/// A subscription and its state.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub(crate) spec: Spec,
    pub(crate) state: SubState,
}

impl Listed {
    /// How `/v1.0/metadata` lists it: daprd's fields, plus `status` and, unless active, `error`.
    pub(crate) fn to_metadata(&self) -> Value {
        let mut v = self.spec.to_metadata();
        let (status, error) = match &self.state {
            SubState::Active => ("ACTIVE", None),
            SubState::Retrying(e) => ("RETRYING", Some(e)),
            SubState::Failed(e) => ("FAILED", Some(e)),
        };
        v["status"] = json!(status);
        if let Some(e) = error {
            v["error"] = json!(e);
        }
        v
    }
}

/// First and longest wait before subscribing again after the broker failed.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(500);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(30);

/// Starts subscriptions and keeps them: a subscription the broker refuses is tried again with
/// backoff until it works or the sidecar stops; one that can never work is listed as failed.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) pubsubs: Arc<BTreeMap<String, PubSubComponent>>,
    pub(crate) app: AppChannel,
    pub(crate) me: Caller,
    pub(crate) metrics: Arc<PubSubMetrics>,
    /// Every subscription with its state, for `/v1.0/metadata`.
    pub(crate) listed: Arc<Mutex<Vec<Listed>>>,
    /// The running subscriptions; clearing it stops deliveries.
    pub(crate) live: Arc<Mutex<Vec<Subscription>>>,
    /// Cancelled at shutdown: no more (re)subscribing.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// Deliveries in flight, so that shutdown can wait for them.
    pub(crate) in_flight: tokio_util::task::TaskTracker,
    /// `Resiliency` documents for this app: the inbound retry policy of each component.
    pub(crate) resiliency: Arc<Vec<Resiliency>>,
    /// Where delivery spans go, when exported.
    pub(crate) spans: Option<Spans>,
}

impl Subscriber {
    fn set_state(&self, index: usize, state: SubState) {
        if let Some(l) = self
            .listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(index)
        {
            l.state = state;
        }
    }

    /// Lists every spec and starts each that can work.
    pub(crate) async fn start(&self, specs: Vec<Spec>) {
        for spec in specs {
            let index = {
                let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
                let state = SubState::Retrying("starting".into());
                listed.push(Listed {
                    spec: spec.clone(),
                    state,
                });
                listed.len() - 1
            };
            match self.prepare(&spec) {
                Ok((req, handler)) => {
                    let me = self.clone();
                    // The first attempt is awaited, so that subscriptions are in place in order.
                    if let Err(e) = me
                        .subscribe_once(index, &spec, req.clone(), handler.clone())
                        .await
                    {
                        self.set_state(index, SubState::Retrying(e));
                        tokio::spawn(
                            async move { me.keep_trying(index, spec, req, handler).await },
                        );
                    }
                }
                Err(reason) => {
                    tracing::warn!(pubsub = %spec.pubsub, topic = %spec.topic, "subscription refused: {reason}");
                    self.set_state(index, SubState::Failed(reason));
                }
            }
        }
    }

    /// The broker request and the delivery handler, or why the subscription cannot work.
    fn prepare(&self, spec: &Spec) -> Result<(SubscribeRequest, Handler), String> {
        let Some(c) = self.pubsubs.get(&spec.pubsub) else {
            return Err(format!("no pub/sub component named {:?}", spec.pubsub));
        };
        if !c.scopes.may_subscribe(&spec.topic) {
            return Err(format!(
                "subscription to topic '{}' on pubsub '{}' is not allowed",
                spec.topic, spec.pubsub
            ));
        }
        // Checked when the subscription was read; kept as a guard, never routed elsewhere.
        let router = Router::compile(&spec.all_rules()).map_err(|e| e.to_string())?;
        let topic = c.broker_topic(&spec.topic);
        let (app, me, metrics) = (self.app.clone(), self.me.clone(), self.metrics.clone());
        let policies =
            component_policies(&self.resiliency, &spec.pubsub, &c.type_, Direction::Inbound);
        let retried_here = policies.retry.is_some();
        let (deliver, concurrency) = match spec.bulk {
            // A batch fills only if the broker may hand over that many messages at once.
            Some(bulk) => (
                bulk::deliverer(app, me, spec.clone(), router, metrics, bulk),
                bulk.max_messages.max(c.concurrency),
            ),
            None => {
                let d = Delivery {
                    app,
                    me,
                    spec: spec.clone(),
                    router,
                    metrics,
                    spans: self.spans.clone(),
                };
                (deliverer(d, policies), c.concurrency)
            }
        };
        let req = SubscribeRequest {
            topic,
            group: c.consumer_group.clone(),
            concurrency,
        };

        // With a policy the retries already happened (single deliveries only); without one, the
        // dead-letter path tries a few times itself before giving up.
        let attempts = if retried_here && spec.bulk.is_none() {
            1
        } else {
            DEAD_LETTER_ATTEMPTS
        };
        // The dead-letter tries and publish count as in flight too: shutdown waits for them.
        Ok((
            req,
            track(
                with_dead_letter(deliver, spec, c, attempts),
                self.in_flight.clone(),
            ),
        ))
    }

    async fn subscribe_once(
        &self,
        index: usize,
        spec: &Spec,
        req: SubscribeRequest,
        handler: Handler,
    ) -> Result<(), String> {
        let c = &self.pubsubs[&spec.pubsub];
        match c.broker.subscribe(req, handler).await {
            Ok(sub) => {
                let rules = spec.rules.len();
                tracing::info!(pubsub = %spec.pubsub, topic = %spec.topic, route = %spec.path, rules, "subscribed");
                if self.stop.is_cancelled() {
                    return Ok(()); // stopping: dropping it unsubscribes
                }
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(sub);
                self.set_state(index, SubState::Active);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(pubsub = %spec.pubsub, topic = %spec.topic, error = %e, "subscribing failed; will retry");
                Err(e.to_string())
            }
        }
    }

    async fn keep_trying(self, index: usize, spec: Spec, req: SubscribeRequest, handler: Handler) {
        let mut delay = RESUBSCRIBE_MIN;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            match self
                .subscribe_once(index, &spec, req.clone(), handler.clone())
                .await
            {
                Ok(()) => return,
                Err(e) => self.set_state(index, SubState::Retrying(e)),
            }
            delay = (delay * 2).min(RESUBSCRIBE_MAX);
        }
    }

    /// Stops deliveries: no new ones start; those in flight get up to `grace` to finish. What
    /// was not acknowledged stays with the broker, which delivers it again.
    pub(crate) async fn shut_down(&self, grace: Duration) {
        self.stop.cancel();
        let live: Vec<Subscription> =
            std::mem::take(&mut *self.live.lock().unwrap_or_else(|p| p.into_inner()));
        self.in_flight.close();
        // Each broker waits for its deliveries and their acknowledgements; all within one grace.
        let stopped = futures_util::future::join_all(live.into_iter().map(|s| s.stop(grace)));
        let all_done = async {
            let done = stopped.await;
            let _ = tokio::time::timeout(grace, self.in_flight.wait()).await;
            done.into_iter().all(|d| d)
        };
        match tokio::time::timeout(grace, all_done).await {
            Ok(true) => {}
            _ => tracing::warn!(
                in_flight = self.in_flight.len(),
                "deliveries still running at the end of the grace period"
            ),
        }
    }
}

/// Counts each delivery as in flight while it runs.
fn track(deliver: Handler, in_flight: tokio_util::task::TaskTracker) -> Handler {
    Arc::new(move |msg: Message| {
        let (deliver, token) = (deliver.clone(), in_flight.token());
        Box::pin(async move {
            let outcome = deliver(msg).await;
            drop(token);
            outcome
        })
    })
}

/// With a dead-letter topic, a failing message is tried a few times with backoff, then published
/// to that topic on the same pub/sub and acknowledged; dropped messages go there too. Without
/// one, the outcome goes back to the broker, which redelivers.
fn with_dead_letter(deliver: Handler, spec: &Spec, c: &PubSubComponent, attempts: u32) -> Handler {
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
            for attempt in 1..=attempts {
                match deliver(msg.clone()).await {
                    Outcome::Success => return Outcome::Success,
                    Outcome::Drop => break,
                    Outcome::Retry if attempt < attempts => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Outcome::Retry => {}
                }
            }
            let letter = Message {
                topic: dead.clone(),
                ..msg
            };
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
/// The parts of one delivery that do not change between messages.
struct Delivery {
    app: AppChannel,
    me: Caller,
    spec: Spec,
    router: Router,
    metrics: Arc<PubSubMetrics>,
    spans: Option<Spans>,
}

/// Delivers each message to the app through the component's `inbound` resiliency policies, with
/// the same layers as any other call: retry(timeout(delivery)). A failed delivery is tried again
/// as the retry policy says (statuses it matches; every failing status when it lists none, as
/// Dapr does for deliveries) before the failure goes back to the broker or the dead-letter topic;
/// the timeout bounds each attempt. Circuit breakers are not applied to deliveries: an open
/// breaker would send every message to the dead-letter topic instead of pausing.
fn deliverer(delivery: Delivery, policies: Policies) -> Handler {
    let labels = Labels {
        app_id: delivery.me.app_id.clone(),
        target: format!("component_{}", delivery.spec.pubsub),
        flow_direction: "inbound",
    };
    let delivery = Arc::new(delivery);
    let once = tower::service_fn(move |msg: Message| {
        let delivery = delivery.clone();
        async move { Ok::<_, BoxError>(delivery.once(&msg).await) }
    });
    let retry = policies.retry.map(|(name, mut policy)| {
        if policy.http_codes.is_none() {
            policy.http_codes = Some(vec![100..=599]);
        }
        RetryLayer::new(
            Retrying {
                name,
                policy,
                builtin: false,
            },
            DeliveryClassify,
            labels.clone(),
        )
    });
    let stack = ServiceBuilder::new()
        .map_request(Cloned)
        .option_layer(retry)
        .option_layer(
            policies
                .timeout
                .map(|(name, d)| TimeoutLayer::new(&name, d, labels)),
        )
        .map_request(|Cloned(m): Cloned<Message>| m)
        .service(once)
        .map_err(|e: BoxError| e);
    let stack = BoxCloneSyncService::new(stack);
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

/// Judges a delivery: SUCCESS and DROP are done, RETRY (with the app's status, if it answered
/// one) failed.
#[derive(Clone, Copy, Debug)]
struct DeliveryClassify;

impl Classify<(Outcome, Option<u16>)> for DeliveryClassify {
    fn verdict(&self, result: &Result<(Outcome, Option<u16>), BoxError>) -> Verdict {
        match result {
            Ok((Outcome::Success | Outcome::Drop, _)) => Verdict::Success,
            Ok((Outcome::Retry, status)) => Verdict::Failure(Failure {
                kind: FailureKind::Sent,
                status: *status,
                retry_after: None,
            }),
            Err(e) => Verdict::Failure(Failure {
                kind: error_kind(e.as_ref(), |_| false),
                status: None,
                retry_after: None,
            }),
        }
    }
}

impl Delivery {
    /// One attempt: the outcome and, when the app answered, its status code.
    async fn once(&self, msg: &Message) -> (Outcome, Option<u16>) {
        let (spec, metrics) = (&self.spec, &self.metrics);
        let start = Instant::now();
        // A raw subscriber gets every message wrapped here; anyone else needs a JSON event.
        let (body, event) = if wants_raw(&spec.metadata) {
            let e = raw_event(&spec.pubsub, &spec.topic, &msg.data, &msg.metadata);
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
            .header("pubsubname", spec.pubsub.as_str());
        // The delivery is a span of the publisher's trace: the app gets it as its parent.
        let parent = event
            .as_ref()
            .and_then(traceparent_of)
            .and_then(TraceContext::parse);
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
        if let (Some(spans), Some((parent, child, started))) = (&self.spans, span)
            && is_sampled(&child)
        {
            spans.record(SpanRecord {
                trace_id: child.trace_id,
                span_id: child.span_id,
                parent_span_id: parent.span_id,
                name: format!("pubsub delivery {}/{}", spec.pubsub, spec.topic).into(),
                kind: SpanKind::Consumer,
                start: started,
                end: SystemTime::now(),
                attributes: vec![
                    ("app_id", self.me.app_id.clone()),
                    ("messaging.system", spec.pubsub.clone()),
                    ("messaging.destination", spec.topic.clone()),
                    ("pubsub.route", path.to_string()),
                    ("pubsub.outcome", format!("{:?}", result.0)),
                ],
                error: result.0 != Outcome::Success,
            });
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

/// Headers about the request's own body or connection: never set from a message's metadata.
fn describes_the_body_or_connection(name: &HeaderName) -> bool {
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

    #[test]
    fn the_apps_own_subscriptions_win() {
        use outrider_blocks::subscription::Declared;
        let declared = |topic: &str, path: &str| Declared {
            name: topic.into(),
            pubsub: "pubsub".into(),
            topic: topic.into(),
            path: path.into(),
            rules: Vec::new(),
            dead_letter: String::new(),
            metadata: BTreeMap::new(),
            bulk: None,
        };
        let (app, _) =
            parse(&json!([{"pubsubname": "pubsub", "topic": "a", "route": "/from-app"}]));
        let merged = merge(app, &[declared("a", "/declared"), declared("b", "/b")]);
        let got: Vec<(&str, &str, bool)> = merged
            .iter()
            .map(|s| (s.topic.as_str(), s.path.as_str(), s.declarative))
            .collect();
        assert_eq!(got, [("a", "/from-app", false), ("b", "/b", true)]);
    }

    #[test]
    fn subscribe_answers() {
        let v = json!([
            {"pubsubname": "pubsub", "topic": "a", "route": "orders"},
            {"pubsubname": "pubsub", "topic": "b", "routes": {"default": "/b"}, "deadLetterTopic": "dead", "metadata": {"rawPayload": "true", "n": 1}},
            {"pubsubname": "pubsub", "topic": "c", "routes": {"rules": [{"match": "event.type == \"x\"", "path": "/x"}], "default": "/c"}},
            {"pubsubname": "pubsub", "topic": "r", "routes": {"rules": [{"match": "event.type == \"x\"", "path": "x"}]}},
            {"pubsubname": "pubsub", "topic": "d"},
            {"topic": "e", "route": "/e"},
            {"pubsubname": "pubsub", "topic": "f", "routes": {"rules": [{"match": "event.type ===", "path": "/x"}], "default": "/f"}},
        ]);
        let (specs, refused) = parse(&v);
        assert_eq!(
            specs
                .iter()
                .map(|s| (s.topic.as_str(), s.path.as_str(), s.rules.len()))
                .collect::<Vec<_>>(),
            [
                ("a", "/orders", 0),
                ("b", "/b", 0),
                ("c", "/c", 1),
                ("r", "", 1)
            ]
        );
        assert_eq!(specs[1].dead_letter, "dead");
        assert_eq!(specs[1].metadata["n"], "1");
        assert_eq!(specs[3].rules[0].path, "/x");
        // Listed as daprd lists them: the rules, then the default matching everything.
        let listed = &specs[2].to_metadata()["rules"];
        assert_eq!(
            listed,
            &json!([{"match": "event.type == \"x\"", "path": "/x"}, {"match": "", "path": "/c"}])
        );
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(
            refused[2].contains("routes.rules[0]") && refused[2].contains("CEL"),
            "{refused:?}"
        );
        assert_eq!(parse(&json!({"not": "an array"})).0, Vec::new());
    }
}
