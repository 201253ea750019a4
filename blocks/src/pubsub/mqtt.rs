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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AckMode, AsyncClient, Event, EventLoop, MqttOptions, Packet, PublishOptions, QoS,
    SubscribeReasonCode,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::broker::{
    Handler, Message, Metadata, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::state::BoxFuture;

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
}

/// The largest message either side sends (the broker may allow less).
const MAX_PACKET: usize = 16 * 1024 * 1024;
/// First and longest delay before a retried message is handed to the app again.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The MQTT broker.
#[derive(Clone)]
pub struct MqttPubSub {
    settings: Arc<MqttSettings>,
    publisher: AsyncClient,
    _publisher_loop: Arc<DropGuard>,
}

/// What a subscription's connection subscribes to.
struct Filter {
    /// The filter sent to the broker (`$share/<group>/<topic>` or the topic).
    filter: String,
    /// The topic messages must carry.
    topic: String,
    qos: QoS,
}

/// A message as it arrived, with the connection (generation) it arrived on.
struct Incoming {
    publish: rumqttc::Publish,
    generation: u64,
}

/// Where a connection stands, as its event loop sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LinkState {
    Connecting,
    Ready,
    Failed(String),
}

fn broker_error(what: &str, e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Broker(format!("mqtt: {what}: {e}"))
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
        tokio::spawn(drive(
            events,
            client.clone(),
            None,
            None,
            state,
            stop.clone(),
            Arc::default(),
        ));
        wait_ready(&mut watch, settings.timeout, "connecting").await?;
        Ok(Self {
            settings: Arc::new(settings),
            publisher: client,
            _publisher_loop: Arc::new(stop.drop_guard()),
        })
    }
}

/// FNV-1a: stable across builds, for client ids derived from names.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
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
        Err(_) => Err(PubSubError::Broker(format!(
            "mqtt: {what}: no answer within {timeout:?}"
        ))),
        Ok(Err(_)) => Err(PubSubError::Broker(format!(
            "mqtt: {what}: the connection ended"
        ))),
        Ok(Ok(s)) => match &*s {
            LinkState::Failed(e) => Err(broker_error(what, e)),
            _ => Ok(()),
        },
    }
}

/// Polls one connection's event loop until stopped: reconnects with backoff, subscribes again
/// when a new session starts, and hands incoming publishes on.
async fn drive(
    mut events: EventLoop,
    client: AsyncClient,
    filter: Option<Filter>,
    incoming: Option<mpsc::Sender<Incoming>>,
    state: watch::Sender<LinkState>,
    stop: CancellationToken,
    generation: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            e = events.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                // Acks of messages from an earlier connection must not be sent on this one:
                // the client forgot them, and their packet ids may name new messages.
                generation.fetch_add(1, Ordering::SeqCst);
                match &filter {
                    // A new session has no subscription: make it (ready once the SUBACK is in).
                    Some(Filter { filter: f, qos, .. }) if !ack.session_present => {
                        if let Err(e) = client.try_subscribe(f.clone(), *qos) {
                            state.send_replace(LinkState::Failed(e.to_string()));
                        }
                    }
                    _ => {
                        state.send_replace(LinkState::Ready);
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure));
                state.send_replace(if refused {
                    LinkState::Failed("the broker refused the subscription".into())
                } else {
                    LinkState::Ready
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(tx) = &incoming else { continue };
                if filter
                    .as_ref()
                    .is_some_and(|f| p.topic.as_ref() != f.topic.as_bytes())
                {
                    // A session kept from another configuration: not this subscription's message.
                    tracing::warn!(topic = %String::from_utf8_lossy(&p.topic), "ignoring a message for a topic this subscription does not have");
                    let _ = client.try_ack(&p);
                    continue;
                }
                // Once stopping, nothing takes messages any more: they stay unacknowledged.
                let _ = tx
                    .send(Incoming {
                        publish: p,
                        generation: generation.load(Ordering::SeqCst),
                    })
                    .await;
            }
            // The connection is closing after our DISCONNECT: done.
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                // Deliveries of the lost connection must not be acknowledged on the next one.
                generation.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(error = %e, "the MQTT connection failed; reconnecting");
                state.send_replace(LinkState::Failed(e.to_string()));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl PubSub for MqttPubSub {
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>> {
        let (client, s) = (self.publisher.clone(), self.settings.clone());
        Box::pin(async move {
            check_topic(&msg.topic)?;
            let publish = async {
                let notice = client
                    .publish_tracked(
                        msg.topic.clone(),
                        msg.data.to_vec(),
                        PublishOptions::new(s.qos),
                    )
                    .await
                    .map_err(|e| broker_error("publishing", e))?;
                if s.qos == QoS::AtMostOnce {
                    return Ok(()); // nothing to wait for
                }
                notice
                    .wait_completion_async()
                    .await
                    .map_err(|e| broker_error("waiting for the broker's ack", e))
            };
            match tokio::time::timeout(s.timeout, publish).await {
                Ok(r) => r,
                Err(_) => Err(PubSubError::Broker(format!(
                    "mqtt: publishing: no ack within {:?}",
                    s.timeout
                ))),
            }
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>> {
        let s = self.settings.clone();
        Box::pin(async move {
            check_topic(&req.topic)?;
            let filter = if s.shared {
                // A share name may not hold topic separators or wildcards.
                let share: String = req
                    .group
                    .chars()
                    .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
                    .collect();
                format!("$share/{share}/{}", req.topic)
            } else {
                req.topic.clone()
            };
            // Each subscription has a session of its own: a fixed `clientID` is a prefix, made
            // distinct (and stable across restarts) per group and topic.
            let id = match &s.client_id {
                Some(prefix) => format!(
                    "{prefix}-{:016x}",
                    fnv(&format!("{}/{}", req.group, req.topic))
                ),
                None => format!("{}-{}", req.group, short_id()),
            };
            let mut o = options(&s, id);
            o.set_ack_mode(AckMode::Manual);
            // Unbounded requests: an ack must never wait behind a stalled event loop (the loop may
            // itself be waiting for a delivery slot those acks free).
            let (client, events) = AsyncClient::builder(o).unbounded().build();
            // `stop` ends deliveries; `close` ends the connection once they have finished.
            let (stop, close) = (CancellationToken::new(), CancellationToken::new());
            let (state, mut watch) = watch::channel(LinkState::Connecting);
            // Publishes wait here for a delivery slot; the broker's in-flight window bounds it.
            let (tx, rx) = mpsc::channel(1024);
            let generation = Arc::new(AtomicU64::new(0));
            let share_filter = filter.clone();
            let filter = Filter {
                filter,
                topic: req.topic.clone(),
                qos: s.qos,
            };
            // The connection, the dispatcher, the deliveries and the stop sequence: a stop waits
            // for all of them.
            let tasks = TaskTracker::new();
            let driving = tasks.spawn(drive(
                events,
                client.clone(),
                Some(filter),
                Some(tx),
                state,
                close.clone(),
                generation.clone(),
            ));
            if let Err(e) = wait_ready(
                &mut watch,
                s.timeout,
                &format!("subscribing to {:?}", req.topic),
            )
            .await
            {
                close.cancel();
                return Err(e);
            }
            let concurrency = req.concurrency.max(1);
            let sub = Arc::new(Sub {
                client,
                topic: req.topic,
                handler,
                limit: Arc::new(Semaphore::new(concurrency)),
                stop: stop.clone(),
                generation,
                tasks: tasks.clone(),
            });
            tasks.spawn(sub.clone().dispatch_loop(rx));
            // On stop: unsubscribe (no new messages), let deliveries in flight finish and queue
            // their acks, then DISCONNECT, which goes out after them; `close` is the fallback.
            let (limit, stopped, client, filter) = (
                sub.limit.clone(),
                stop.clone(),
                sub.client.clone(),
                share_filter,
            );
            tasks.spawn(async move {
                stopped.cancelled().await;
                let _ = client.try_unsubscribe(filter);
                let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
                let _ =
                    tokio::time::timeout(Duration::from_secs(30), limit.acquire_many(all)).await;
                let _ = client.try_disconnect();
                if tokio::time::timeout(Duration::from_secs(5), driving)
                    .await
                    .is_err()
                {
                    close.cancel();
                }
            });
            Ok(Subscription::tracked(stop, tasks))
        })
    }
}

/// One running subscription.
struct Sub {
    client: AsyncClient,
    topic: String,
    handler: Handler,
    limit: Arc<Semaphore>,
    stop: CancellationToken,
    /// The current connection's generation.
    generation: Arc<AtomicU64>,
    tasks: TaskTracker,
}

impl Sub {
    async fn dispatch_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Incoming>) {
        loop {
            let next = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                p = rx.recv() => p,
            };
            let Some(p) = next else { return };
            let permit = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                p = self.limit.clone().acquire_owned() => p,
            };
            let Ok(permit) = permit else { return };
            self.tasks.spawn(self.clone().handle(p, permit));
        }
    }

    /// Delivers until the app's answer is final, then acknowledges; unacknowledged if stopped.
    async fn handle(
        self: Arc<Self>,
        incoming: Incoming,
        mut permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let p = incoming.publish;
        let msg = Message {
            topic: self.topic.clone(),
            data: Bytes::clone(&p.payload),
            metadata: Metadata::new(),
        };
        let mut delay = RETRY_MIN;
        loop {
            let outcome = (self.handler)(msg.clone()).await;
            if outcome != Outcome::Retry {
                if self.generation.load(Ordering::SeqCst) != incoming.generation {
                    // Reconnected meanwhile: the broker resends it on a kept session.
                    tracing::debug!(topic = %self.topic, "not acknowledging a message from an earlier connection");
                } else if let Err(e) = self.client.ack(&p).await {
                    tracing::warn!(topic = %self.topic, error = %e, "acknowledging failed");
                }
                drop(permit); // held until the ack is queued, so that a stop waits for it
                return;
            }
            drop(permit);
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
            permit = tokio::select! {
                () = self.stop.cancelled() => return,
                p = self.limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
        }
    }
}
