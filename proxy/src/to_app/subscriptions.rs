//! Programmatic subscriptions: once the app is reachable, ask it `GET /dapr/subscribe`, subscribe
//! to what it lists, and deliver each message as a `POST` of the CloudEvent to its route
//! (api.md §4.4, §4.6). The app's answer decides the outcome: 2xx with `SUCCESS` (or an empty
//! or unreadable body) acknowledges, `DROP` and 404 drop, anything else is retried by the
//! broker. Routing rules (CEL `match` over the CloudEvent) pick the route per event, in order,
//! before the default; an event no rule routes is dropped (dead-lettered when a topic is set),
//! and one a rule cannot evaluate fails and is retried.

pub(crate) mod bulk;
mod dead_letter;
mod listed;
mod pause;
mod source;

use dead_letter::{DEAD_LETTER_ATTEMPTS, with_dead_letter};
pub(crate) use listed::{Listed, SubState};
pub(crate) use source::Source;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, header};
use outrider_blocks::pubsub::routing::{RouteRule, Router};
use outrider_blocks::pubsub::{Handler, PubSubComponent, SubscribeRequest, Subscription};
use outrider_blocks::subscription::BulkSubscribe;
use outrider_filters::resiliency::{Direction, Resiliency, component_policies};
use outrider_filters::spans::Spans;
use outrider_policy::Caller;
use serde_json::{Value, json};

use crate::components::metrics::PubSubMetrics;
use crate::net::http::empty;
use crate::to_app::channel::AppChannel;
use crate::to_app::deliver::{Delivery, deliverer, track};

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
    /// Where it comes from.
    pub(crate) kind: Kind,
    /// Batched delivery, when enabled.
    pub(crate) bulk: Option<BulkSubscribe>,
}

/// Where a subscription comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `Subscription` resource.
    Declarative,
    /// The app's answer to `GET /dapr/subscribe`.
    Programmatic,
    /// A stream the app holds open on the gRPC API (`SubscribeTopicEventsAlpha1`).
    Streaming,
}

impl Kind {
    /// Its name in the metadata API.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Declarative => "DECLARATIVE",
            Kind::Programmatic => "PROGRAMMATIC",
            Kind::Streaming => "STREAMING",
        }
    }
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
            kind: Kind::Declarative,
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
    pub(crate) fn all_rules(&self) -> Vec<RouteRule> {
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
            "type": self.kind.name(),
        })
    }
}

/// Parses the app's answer; returns the usable subscriptions and a reason for each refused one.
pub(crate) fn parse(v: &Value) -> (Vec<Spec>, Vec<String>) {
    let (usable, refused) = outrider_blocks::subscription::programmatic(v);
    let specs = usable
        .iter()
        .map(|d| Spec {
            kind: Kind::Programmatic,
            ..Spec::from(d)
        })
        .collect();
    (specs, refused)
}

/// Asks the app for its subscriptions: 404 means none; other failures are logged and mean none.
pub(crate) async fn fetch(app: &AppChannel, me: &Caller) -> Vec<Spec> {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=3 {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/dapr/subscribe")
            .extension(crate::to_app::channel::grpc::SubscriptionsQuery)
            .header(header::CONTENT_TYPE, "application/json")
            .header("dapr-app-id", me.app_id.as_str())
            .body(empty())
            .expect("a static request is valid");
        match app.call(req, me).await {
            Ok(rsp) if rsp.status() == 404 => return Vec::new(),
            Ok(rsp) if rsp.status().is_success() => {
                let body = crate::net::http::collect_within(rsp.into_body(), MAX_SUBSCRIBE_BODY)
                    .await
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
    /// Every subscription that can work, to start again after a pause.
    pub(crate) prepared: Arc<Mutex<Vec<Prepared>>>,
    /// Moved on by every pause and resume: a subscription made for an earlier one is dropped
    /// (compared under the `live` lock).
    pub(crate) epoch: Arc<AtomicU64>,
    /// Paused (the app is unhealthy, or the shutdown is blocked): nothing subscribes until a
    /// resume. Read and written under the `live` lock.
    pub(crate) paused: Arc<std::sync::atomic::AtomicBool>,
    /// Paused for good: no resume (a blocked shutdown).
    pub(crate) held: Arc<std::sync::atomic::AtomicBool>,
}

/// Why a subscription was not made.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The broker failed: trying again may work.
    ForNow(String),
    /// The broker refuses it as written.
    Never(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::ForNow(e) | Refused::Never(e) => f.write_str(e),
        }
    }
}

/// A subscription ready to be made: where it is listed (input bindings are not), what it is,
/// where its events come from and the handler they go to.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) index: Option<usize>,
    /// Names it in logs: `pubsub "p" topic "t"`, `binding "b"`.
    pub(crate) what: Arc<str>,
    pub(crate) source: Source,
    pub(crate) handler: Handler,
}

impl Subscriber {
    fn set_state(&self, index: Option<usize>, state: SubState) {
        let Some(index) = index else {
            return;
        };
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
                Ok((source, handler)) => {
                    let what = format!("pubsub {:?} topic {:?}", spec.pubsub, spec.topic);
                    let p = Prepared {
                        index: Some(index),
                        what: what.into(),
                        source,
                        handler,
                    };
                    // The first attempt is awaited, so that subscriptions are in place in order.
                    self.add(p).await;
                }
                Err(reason) => {
                    tracing::warn!(pubsub = %spec.pubsub, topic = %spec.topic, "subscription refused: {reason}");
                    self.set_state(Some(index), SubState::Failed(reason));
                }
            }
        }
    }

    /// Keeps `p` (paused and resumed with the others) and makes it now.
    pub(crate) async fn add(&self, p: Prepared) {
        self.prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(p.clone());
        self.subscribe(p, self.epoch.load(Ordering::Acquire)).await;
    }

    /// The broker request and the delivery handler, or why the subscription cannot work.
    fn prepare(&self, spec: &Spec) -> Result<(Source, Handler), String> {
        let Some(c) = self.pubsubs.get(&spec.pubsub) else {
            return Err(format!("no pub/sub component named {:?}", spec.pubsub));
        };
        if spec.topic.contains(['+', '#', '*', '>']) && c.scopes.restricts_subscribing() {
            return Err(format!(
                "the wildcard topic '{}' cannot be checked against the topic scopes of pubsub \
                 '{}'; subscribe to the topics by name",
                spec.topic, spec.pubsub
            ));
        }
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
        let parts = Delivery {
            app,
            me,
            spec: spec.clone(),
            router,
            metrics,
            spans: self.spans.clone(),
        };
        let (deliver, concurrency) = match spec.bulk {
            // A batch fills only if the broker may hand over that many messages at once.
            Some(bulk) => (
                bulk::deliverer(parts, policies, bulk),
                bulk.max_messages.max(c.concurrency),
            ),
            None => (deliverer(parts, policies), c.concurrency),
        };
        let req = SubscribeRequest {
            topic,
            group: c.consumer_group.clone(),
            concurrency,
        };

        // With a policy, a single delivery's retries already happened; without one, the
        // dead-letter path tries a few times itself before giving up. A batch's call is retried
        // by the policy too, but an entry the app answers RETRY in a successful batch is not a
        // failed call: the dead-letter path's own tries are what give it another chance, so
        // bulk keeps them (a failing call can thus be posted attempts × the policy's tries).
        let attempts = if retried_here && spec.bulk.is_none() {
            1
        } else {
            DEAD_LETTER_ATTEMPTS
        };
        let source = Source::Topic {
            broker: c.broker.clone(),
            req,
        };
        let moved = self.metrics.dead_letters(&spec.pubsub, &spec.topic);
        // The dead-letter tries and publish count as in flight too: shutdown waits for them.
        Ok((
            source,
            track(
                with_dead_letter(deliver, spec, c, attempts, moved),
                self.in_flight.clone(),
                Some(self.metrics.in_flight(&spec.pubsub, &spec.topic)),
            ),
        ))
    }

    /// Subscribes once for `epoch`; on failure, keeps trying in the background.
    async fn subscribe(&self, p: Prepared, epoch: u64) {
        if let Err(e) = self.subscribe_once(&p, epoch).await {
            if let Refused::Never(why) = e {
                self.set_state(p.index, SubState::Failed(why));
                return;
            }
            if self.epoch.load(Ordering::Acquire) != epoch {
                return; // paused meanwhile: the resume reports afresh
            }
            self.set_state(p.index, SubState::Retrying(e.to_string()));
            let me = self.clone();
            tokio::spawn(async move { me.keep_trying(p, epoch).await });
        }
    }

    async fn subscribe_once(&self, p: &Prepared, epoch: u64) -> Result<(), Refused> {
        match p.source.start(p.handler.clone()).await {
            Ok(sub) => {
                let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
                // Stopping, paused, or paused and resumed meanwhile: dropping it unsubscribes.
                if self.paused.load(Ordering::Acquire) && !self.stop.is_cancelled() {
                    self.set_state(p.index, SubState::Paused);
                    return Ok(());
                }
                if self.stop.is_cancelled() || self.epoch.load(Ordering::Acquire) != epoch {
                    return Ok(());
                }
                tracing::info!(what = %p.what, "subscribed");
                live.push(sub);
                // Under the lock: a pause cannot come between and leave it listed active.
                self.set_state(p.index, SubState::Active);
                Ok(())
            }
            Err(Refused::Never(e)) => {
                tracing::error!(what = %p.what, error = %e, "subscription refused; it is marked FAILED");
                Err(Refused::Never(e))
            }
            Err(Refused::ForNow(e)) => {
                tracing::warn!(what = %p.what, error = %e, "subscribing failed; will retry");
                Err(Refused::ForNow(e))
            }
        }
    }

    async fn keep_trying(self, p: Prepared, epoch: u64) {
        let mut delay = RESUBSCRIBE_MIN;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            if self.epoch.load(Ordering::Acquire) != epoch {
                return; // paused since: the resume subscribes afresh
            }
            match self.subscribe_once(&p, epoch).await {
                Ok(()) => return,
                Err(Refused::Never(why)) => return self.set_state(p.index, SubState::Failed(why)),
                // Paused meanwhile: the resume reports afresh.
                Err(_) if self.epoch.load(Ordering::Acquire) != epoch => return,
                Err(e) => self.set_state(p.index, SubState::Retrying(e.to_string())),
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

#[cfg(test)]
mod tests;
