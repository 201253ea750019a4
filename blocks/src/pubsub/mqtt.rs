//! `pubsub.mqtt3`: MQTT 3.1.1 (Mosquitto and other brokers).
//!
//! A topic is an MQTT topic. Publish is QoS 1 by default and returns once the broker's PUBACK
//! arrived. Each subscription has a connection of its own and subscribes to the shared
//! subscription `$share/<group>/<topic>`, so instances of one consumer group compete and every
//! group gets every message. Acknowledgement is manual: the PUBACK goes out only with the app's
//! final answer (success or drop). MQTT has no negative acknowledgement, so a message answered
//! with retry is kept and handed to the app again here, with a growing delay, until it
//! succeeds or is dropped.
//!
//! Redelivery after a crash: MQTT 3.1.1 resends unacknowledged messages only to the same
//! session. With a fixed `clientID` (a prefix: each subscription's id adds a stable suffix) and
//! `cleanSession: false`, a restarted sidecar resumes its sessions and gets them again; with the
//! default clean sessions, messages in flight when a sidecar dies, or held for a retry when a
//! subscription stops, are lost. On stop, the subscription unsubscribes, deliveries in flight
//! finish and their acks go out before the DISCONNECT. Metadata does not travel (MQTT 3.1.1 has no message properties).
//!
//! Ordering: per topic in publish order on one connection; retried messages come after later ones.
//!
//! A subscription's topic may be a filter with MQTT's wildcards, as in daprd: `+` for one level
//! (`sensors/+/temperature`), `#` for every level below (`sensors/#`). Each message is delivered
//! with the topic it was published on. A filter that breaks MQTT's rules (`a/#/b`, `a+`) is
//! refused when subscribing: it can never work.

mod link;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AckMode, AsyncClient, MqttOptions, PublishOptions, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::broker::{
    Handler, Message, Metadata, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
    broker_error,
};
use super::consumer::{Answered, Consumer, Delivery};
use super::fnv1a;
use crate::deadline;
use crate::fault::Fault;
use crate::state::BoxFuture;
use link::{Driver, Filter, Incoming, LinkState};

/// How to reach the broker.
#[derive(Clone, Debug)]
pub struct MqttSettings {
    /// The broker's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// User name and password, if the broker asks for them.
    pub credentials: Option<(String, String)>,
    /// The quality of service of publishes and subscriptions.
    pub qos: QoS,
    /// A fixed client id for subscriptions (needed for sessions that outlive a restart); by
    /// default each connection gets `<group>-<random>`.
    pub client_id: Option<String>,
    /// Start each connection with a fresh session.
    pub clean_session: bool,
    /// Subscribe through `$share/<group>/` so instances of a group compete.
    pub shared: bool,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// The deadline of connecting, publishing and subscribing.
    pub timeout: Duration,
    /// On stop, disconnect without unsubscribing: with a kept session (`clean_session` false)
    /// the broker then holds what is published until the subscription comes back.
    pub keep_subscribed: bool,
}

/// The largest message either side sends (the broker may allow less).
const MAX_PACKET: usize = 16 * 1024 * 1024;
/// The name its errors start with.
const BROKER: &str = "mqtt";

/// The MQTT broker.
#[derive(Clone)]
pub struct MqttPubSub {
    settings: Arc<MqttSettings>,
    publisher: AsyncClient,
    _publisher_loop: Arc<DropGuard>,
}

/// A subscription's topic: a topic, or a filter with `+` (a whole level) and `#` (the last
/// level); no leading `$` (shared subscriptions are made here).
fn check_filter(filter: &str) -> Result<(), PubSubError> {
    let levels: Vec<&str> = filter.split('/').collect();
    let bad_level = levels.iter().enumerate().any(|(i, l)| {
        (l.contains('+') && *l != "+") || (l.contains('#') && (*l != "#" || i + 1 != levels.len()))
    });
    if filter.is_empty()
        || filter.starts_with('$')
        || filter.contains('\0')
        || filter.len() > 65_535
        || bad_level
    {
        return Err(PubSubError::BadRequest(format!(
            "{filter:?} is not an MQTT topic filter: '+' must be a whole level, '#' the last \
             level, and no leading '$'"
        )));
    }
    Ok(())
}

/// Whether `topic` is one `filter` takes, by MQTT's rules (a topic starting with `$` is never
/// matched by a leading wildcard).
fn matches_filter(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn check_topic(topic: &str) -> Result<(), PubSubError> {
    if topic.is_empty()
        || topic.starts_with('$')
        || topic.contains(['+', '#', '\0'])
        || topic.len() > 65_535
    {
        return Err(PubSubError::BadRequest(format!(
            "{topic:?} is not an MQTT topic to publish or share (no wildcards, no leading $)"
        )));
    }
    Ok(())
}

impl MqttPubSub {
    /// Connects the publishing client (the broker must answer now; later outages are ridden
    /// out by reconnecting).
    pub async fn connect(settings: MqttSettings) -> Result<Self, PubSubError> {
        let id = format!("outrider-pub-{}", short_id());
        let (client, events) = AsyncClient::builder(options(&settings, id)).build();
        let stop = CancellationToken::new();
        let (state, mut watch) = watch::channel(LinkState::Connecting);
        let driver = Driver {
            client: client.clone(),
            filter: None,
            incoming: None,
            state,
            generation: Arc::default(),
        };
        tokio::spawn(driver.drive(events, stop.clone()));
        wait_ready(&mut watch, settings.timeout, "connecting").await?;
        Ok(Self {
            settings: Arc::new(settings),
            publisher: client,
            _publisher_loop: Arc::new(stop.drop_guard()),
        })
    }
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn options(s: &MqttSettings, client_id: String) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, (s.host.clone(), s.port));
    o.set_keep_alive(u16::try_from(s.keep_alive.as_secs()).unwrap_or(60).max(5))
        .set_clean_session(s.clean_session)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some((user, password)) = &s.credentials {
        o.set_credentials(user.clone(), password.clone().into_bytes());
    }
    o
}

/// Waits until the connection (and its subscription, if any) is acknowledged.
async fn wait_ready(
    watch: &mut watch::Receiver<LinkState>,
    timeout: Duration,
    what: &str,
) -> Result<(), PubSubError> {
    let settled =
        tokio::time::timeout(timeout, watch.wait_for(|s| *s != LinkState::Connecting)).await;
    match settled {
        Err(_) => Err(PubSubError::Broker(Fault::new(format!(
            "mqtt: {what}: no answer within {timeout:?}"
        )))),
        Ok(Err(_)) => Err(PubSubError::Broker(Fault::new(format!(
            "mqtt: {what}: the connection ended"
        )))),
        Ok(Ok(s)) => match &*s {
            LinkState::Failed(e) => Err(broker_error(BROKER, what, e.clone())),
            _ => Ok(()),
        },
    }
}

impl PubSub for MqttPubSub {
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>> {
        let (client, s) = (self.publisher.clone(), self.settings.clone());
        Box::pin(async move {
            check_topic(&msg.topic)?;
            let publish = async {
                let options = PublishOptions::new(s.qos);
                let notice = client
                    .publish_tracked(msg.topic.clone(), msg.data.to_vec(), options)
                    .await
                    .map_err(|e| broker_error(BROKER, "publishing", e))?;
                if s.qos == QoS::AtMostOnce {
                    return Ok(()); // nothing to wait for
                }
                let acked = notice.wait_completion_async().await;
                acked.map_err(|e| broker_error(BROKER, "waiting for the broker's ack", e))
            };
            deadline::bounded(s.timeout, publish, |t| {
                PubSubError::Broker(Fault::new(format!("mqtt: publishing: no ack within {t:?}")))
            })
            .await
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>> {
        let s = self.settings.clone();
        Box::pin(async move {
            check_filter(&req.topic)?;
            let filter = share_filter(&s, &req);
            let mut o = options(&s, subscriber_id(&s, &req));
            o.set_ack_mode(AckMode::Manual);
            // Unbounded requests: an ack must never wait behind a stalled event loop (the loop may
            // itself be waiting for a delivery slot those acks free).
            let (client, events) = AsyncClient::builder(o).unbounded().build();
            // The consumer's stop ends deliveries; `close` ends the connection once they have
            // finished. A stop waits for the connection, the dispatcher, the deliveries and the
            // stop sequence.
            let (consumer, close) = (
                Consumer::new(handler, req.concurrency),
                CancellationToken::new(),
            );
            let (state, mut watch) = watch::channel(LinkState::Connecting);
            // Publishes wait here for a delivery slot; the broker's in-flight window bounds it.
            let (tx, rx) = mpsc::channel(1024);
            let generation = Arc::new(AtomicU64::new(0));
            let driver = Driver {
                client: client.clone(),
                filter: Some(Filter {
                    filter: filter.clone(),
                    topic: req.topic.clone(),
                    qos: s.qos,
                }),
                incoming: Some(tx),
                state,
                generation: generation.clone(),
            };
            let driving = consumer.spawn(driver.drive(events, close.clone()));
            let what = format!("subscribing to {:?}", req.topic);
            if let Err(e) = wait_ready(&mut watch, s.timeout, &what).await {
                close.cancel();
                return Err(e);
            }
            let sub = Arc::new(Sub {
                client,
                keep_subscribed: s.keep_subscribed,
                topic: req.topic,
                consumer,
                generation,
            });
            sub.consumer.spawn(sub.clone().dispatch_loop(rx));
            let stopping = sub.clone().stop_sequence(filter, driving, close);
            sub.consumer.spawn(stopping);
            Ok(sub.consumer.subscription())
        })
    }
}

/// The filter a subscription sends: `$share/<group>/<topic>` when shared, else the topic.
fn share_filter(s: &MqttSettings, req: &SubscribeRequest) -> String {
    if !s.shared {
        return req.topic.clone();
    }
    // A share name may not hold topic separators or wildcards.
    let share: String = req
        .group
        .chars()
        .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
        .collect();
    format!("$share/{share}/{}", req.topic)
}

/// A subscription's client id. Each subscription has a session of its own: a fixed `clientID`
/// is a prefix, made distinct (and stable across restarts) per group and topic.
fn subscriber_id(s: &MqttSettings, req: &SubscribeRequest) -> String {
    match &s.client_id {
        Some(prefix) => format!(
            "{prefix}-{:016x}",
            fnv1a(&format!("{}/{}", req.group, req.topic))
        ),
        None => format!("{}-{}", req.group, short_id()),
    }
}

/// One running subscription.
struct Sub {
    client: AsyncClient,
    /// Stop without unsubscribing (see [`MqttSettings::keep_subscribed`]).
    keep_subscribed: bool,
    topic: String,
    /// Its connection, dispatcher, deliveries and stop sequence.
    consumer: Consumer,
    /// The current connection's generation.
    generation: Arc<AtomicU64>,
}

/// A message handed to the app.
struct Received {
    sub: Arc<Sub>,
    incoming: Incoming,
    message: Message,
}

impl Sub {
    async fn dispatch_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Incoming>) {
        loop {
            let next = tokio::select! {
                biased;
                () = self.consumer.stop().cancelled() => return,
                p = rx.recv() => p,
            };
            let Some(incoming) = next else { return };
            let Some(slot) = self.consumer.slot().await else {
                return;
            };
            // The topic it was published on, which a wildcard filter does not name.
            let topic = match std::str::from_utf8(&incoming.publish.topic) {
                Ok(t) => t.to_owned(),
                Err(_) => self.topic.clone(),
            };
            let message = Message {
                topic,
                data: Bytes::clone(&incoming.publish.payload),
                metadata: Metadata::new(),
            };
            let sub = self.clone();
            self.consumer.deliver(
                slot,
                Received {
                    sub,
                    incoming,
                    message,
                },
            );
        }
    }

    /// On stop: unsubscribe (no new messages), let deliveries in flight finish and queue their
    /// acks, then DISCONNECT, which goes out after them; `close` is the fallback.
    async fn stop_sequence(
        self: Arc<Self>,
        filter: String,
        driving: tokio::task::JoinHandle<()>,
        close: CancellationToken,
    ) {
        self.consumer.stop().cancelled().await;
        if !self.keep_subscribed {
            let _ = self.client.try_unsubscribe(filter);
        }
        self.consumer.drain(Duration::from_secs(30)).await;
        let _ = self.client.try_disconnect();
        if tokio::time::timeout(Duration::from_secs(5), driving)
            .await
            .is_err()
        {
            close.cancel();
        }
    }
}

impl Delivery for Received {
    async fn handle(&self, handler: &Handler) -> Outcome {
        handler(self.message.clone()).await
    }

    /// Acknowledges a final answer. MQTT has no negative acknowledgement: a retry is handed to
    /// the app again here.
    async fn answer(&self, outcome: Outcome) -> Answered {
        if outcome == Outcome::Retry {
            return Answered::Again;
        }
        let sub = &self.sub;
        if sub.generation.load(Ordering::SeqCst) != self.incoming.generation {
            // Reconnected meanwhile: the broker resends it on a kept session.
            tracing::debug!(topic = %sub.topic, "not acknowledging a message from an earlier connection");
        } else if let Err(e) = sub.client.ack(&self.incoming.publish).await {
            tracing::warn!(topic = %sub.topic, error = %e, "acknowledging failed");
        }
        Answered::Done
    }
}

#[cfg(test)]
mod tests {
    use super::{check_filter, matches_filter};

    #[test]
    fn filters_follow_mqtts_rules() {
        for ok in ["a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/a"] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a+", "a/b#", "$SYS/x", "a\0b", "#/a"] {
            assert!(check_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topics_match_as_brokers_match_them() {
        let cases = [
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
            ("a/+/c", "a/b/c/d", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "x/y", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("a/b", "a/b", true),
            ("a/b", "a/bc", false),
            ("+", "a/b", false),
        ];
        for (filter, topic, want) in cases {
            assert_eq!(matches_filter(filter, topic), want, "{filter} {topic}");
        }
    }
}
