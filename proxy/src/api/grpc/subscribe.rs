//! Streaming subscriptions: `SubscribeTopicEventsAlpha1`, a stream the app holds open to receive
//! a topic's events and answer each with SUCCESS, RETRY or DROP — a subscription without an app
//! port or `/dapr/subscribe`.
//!
//! The first message names the pub/sub and topic (checked in daprd's order, with its errors);
//! then the broker subscription starts, `initial_response` goes out, and each message becomes a
//! `TopicEventRequest` (the CloudEvent's fields, its data, the other attributes as extensions)
//! that waits for the `event_processed` answer with its id. The answer is the delivery's outcome;
//! with a dead-letter topic an event the app answers RETRY or DROP goes there. At most
//! [`MAX_STREAMS`] are open at once, and the first message must come within the API's pause
//! bound. A stream joins its app's consumer group on the broker, like the app's other
//! subscriptions. The stream ends when the app closes its side (`UNKNOWN "EOF"`, as daprd says),
//! sends a second initial request, goes away, or the sidecar stops; the broker subscription ends
//! with it and what was not answered stays with the broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use outrider_blocks::pubsub::{
    Handler, Message, Outcome, SubscribeRequest, Subscription, expired, raw_event, wants_raw,
};
use outrider_proto::runtime::v1 as rt;
use rt::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as RequestType;
use rt::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as Outgoing;
use rt::topic_event_response::TopicEventResponseStatus;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};

use super::status::from_api_for;
use crate::api::ApiState;
use crate::errors::ApiError;
use crate::to_app::channel::grpc::topic_event;
use crate::to_app::subscriptions::{Kind, Spec};

/// The answer stream of one subscription.
pub(super) type Events = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<rt::SubscribeTopicEventsResponseAlpha1, Status>>
            + Send,
    >,
>;

/// Events waiting for the app's answer, by id.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>;

/// Streams open at once, at most: each holds a broker subscription.
const MAX_STREAMS: usize = 64;

/// Numbers the open streams, for the metadata listing.
static STREAMS: AtomicU64 = AtomicU64::new(0);

/// Opens the subscription the first message asks for; the answer stream carries its events.
pub(super) async fn subscribe(
    s: &Arc<ApiState>,
    mut inbound: Streaming<rt::SubscribeTopicEventsRequestAlpha1>,
) -> Result<Events, Status> {
    let initial = opening(s, &mut inbound).await?;
    let name = initial.pubsub_name.clone();
    let Some(c) = s.pubsubs.get(&name) else {
        let e = ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_NOT_FOUND",
            format!("pubsub {name} is not found"),
        );
        return Err(from_api_for(e, &name));
    };
    let for_topic = format!("{name}||{}", initial.topic);
    if !c.scopes.may_subscribe(&initial.topic) {
        return Err(Status::unknown(format!(
            "failed to create subscription for {for_topic}: subscription to topic '{}' on pubsub '{name}' is not allowed",
            initial.topic
        )));
    }
    let spec = Spec {
        pubsub: name.clone(),
        topic: initial.topic.clone(),
        path: "/".into(),
        rules: Vec::new(),
        dead_letter: initial.dead_letter_topic.clone().unwrap_or_default(),
        metadata: initial.metadata.clone(),
        kind: Kind::Streaming,
        bulk: None,
    };
    // One event at a time per stream: the next waits for the answer to the last.
    let (events, rx) = mpsc::channel(1);
    let dead =
        (!spec.dead_letter.is_empty() && c.scopes.may_publish(&spec.dead_letter)).then(|| {
            DeadLetter {
                topic: c.broker_topic(&spec.dead_letter),
                broker: c.broker.clone(),
            }
        });
    let handler = handler(spec.clone(), events, dead);
    let req = SubscribeRequest {
        topic: c.broker_topic(&spec.topic),
        group: c.consumer_group.clone(),
        concurrency: 1,
    };
    let subscription = c.broker.subscribe(req, handler).await.map_err(|e| {
        Status::unknown(format!(
            "failed to create subscription for {for_topic}: failed to subscribe to topic {}: {e}",
            spec.topic
        ))
    })?;
    tracing::info!(pubsub = %spec.pubsub, topic = %spec.topic, "streaming subscription opened");
    let id = STREAMS.fetch_add(1, Ordering::Relaxed);
    lock(&s.streams).insert(id, spec);
    let open = Open {
        s: s.clone(),
        id,
        _subscription: subscription,
    };
    Ok(answer_stream(open, inbound, rx))
}

/// The first message of a stream, checked in daprd's order (the open streams' bound first).
async fn opening(
    s: &ApiState,
    inbound: &mut Streaming<rt::SubscribeTopicEventsRequestAlpha1>,
) -> Result<rt::SubscribeTopicEventsRequestInitialAlpha1, Status> {
    if lock(&s.streams).len() >= MAX_STREAMS {
        return Err(Status::resource_exhausted(format!(
            "at most {MAX_STREAMS} streaming subscriptions are open at once"
        )));
    }
    let first = tokio::time::timeout(s.body_idle_timeout, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no initial request within {:?}",
                s.body_idle_timeout
            ))
        })?;
    let initial = match first? {
        None => return Err(Status::unknown("EOF")),
        Some(rt::SubscribeTopicEventsRequestAlpha1 {
            subscribe_topic_events_request_type: Some(RequestType::InitialRequest(i)),
        }) => i,
        Some(_) => return Err(Status::unknown("initial request is required")),
    };
    if initial.pubsub_name.is_empty() {
        return Err(Status::unknown("pubsubName is required"));
    }
    if initial.topic.is_empty() {
        return Err(Status::unknown("topic is required"));
    }
    Ok(initial)
}

/// An open stream's hold on its broker subscription and listing: dropped, both end.
struct Open {
    s: Arc<ApiState>,
    id: u64,
    _subscription: Subscription,
}

impl Drop for Open {
    fn drop(&mut self) {
        lock(&self.s.streams).remove(&self.id);
        tracing::info!("streaming subscription closed");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a stream's failing events go: the dead-letter topic, on the same pub/sub.
struct DeadLetter {
    topic: String,
    broker: Arc<dyn outrider_blocks::pubsub::PubSub>,
}

/// Delivers each message as an event on the stream and waits for the app's answer. An event
/// the app answers RETRY or DROP goes to the dead-letter topic when there is one; a stream that
/// is gone answers nothing, and the message stays with the broker (never dead-lettered).
fn handler(
    spec: Spec,
    events: mpsc::Sender<(rt::TopicEventRequest, oneshot::Sender<Outcome>)>,
    dead: Option<DeadLetter>,
) -> Handler {
    let (spec, dead) = (Arc::new(spec), dead.map(Arc::new));
    Arc::new(move |msg: Message| {
        let (spec, events, dead) = (spec.clone(), events.clone(), dead.clone());
        Box::pin(async move {
            let event = match event_of(&spec, &msg) {
                Ok(e) => e,
                Err(outcome) => return outcome,
            };
            let (ack, answered) = oneshot::channel();
            if events.send((event, ack)).await.is_err() {
                return Outcome::Retry;
            }
            let Ok(outcome) = answered.await else {
                return Outcome::Retry;
            };
            match (outcome, dead.as_deref()) {
                (Outcome::Success, _) | (_, None) => outcome,
                (_, Some(d)) => {
                    let letter = Message {
                        topic: d.topic.clone(),
                        ..msg
                    };
                    let published = tokio::time::timeout(
                        std::time::Duration::from_secs(30),
                        d.broker.publish(letter),
                    )
                    .await;
                    if let Ok(Ok(())) = published {
                        tracing::info!(dead_letter_topic = %d.topic, "event moved to the dead-letter topic");
                        Outcome::Success
                    } else {
                        tracing::warn!(dead_letter_topic = %d.topic, "publishing to the dead-letter topic failed; the event stays");
                        Outcome::Retry
                    }
                }
            }
        })
    })
}

/// The event of a message: its CloudEvent (wrapped here for a raw subscription), or the outcome
/// when there is none to deliver.
fn event_of(spec: &Spec, msg: &Message) -> Result<rt::TopicEventRequest, Outcome> {
    let event = if wants_raw(&spec.metadata) {
        raw_event(&spec.pubsub, &spec.topic, &msg.data, &msg.metadata)
    } else {
        serde_json::from_slice::<Value>(&msg.data).map_err(|_| {
            tracing::warn!(topic = %msg.topic, "the message is not a CloudEvent (JSON) and the subscription does not ask for rawPayload; it fails");
            Outcome::Retry
        })?
    };
    if expired(&event, std::time::SystemTime::now()) {
        return Err(Outcome::Drop);
    }
    topic_event(event, &spec.pubsub, &spec.topic, &spec.path)
}

/// Reads the app's answers and hands each to the delivery waiting for it; `ended` gets how the
/// app's side ended.
async fn read_answers(
    mut inbound: Streaming<rt::SubscribeTopicEventsRequestAlpha1>,
    answers: Pending,
    ended_tx: oneshot::Sender<Status>,
) {
    let end = loop {
        match inbound.message().await {
            Ok(Some(rt::SubscribeTopicEventsRequestAlpha1 {
                subscribe_topic_events_request_type: Some(RequestType::EventProcessed(p)),
            })) => {
                let outcome = match p
                    .status
                    .map(|s| TopicEventResponseStatus::try_from(s.status))
                {
                    Some(Ok(TopicEventResponseStatus::Success)) | None => Outcome::Success,
                    Some(Ok(TopicEventResponseStatus::Drop)) => Outcome::Drop,
                    Some(Ok(TopicEventResponseStatus::Retry) | Err(_)) => Outcome::Retry,
                };
                match lock(&answers).remove(&p.id) {
                    Some(ack) => {
                        let _ = ack.send(outcome);
                    }
                    None => tracing::debug!(id = %p.id, "an answer for no event in flight"),
                }
            }
            Ok(Some(rt::SubscribeTopicEventsRequestAlpha1 {
                subscribe_topic_events_request_type: Some(RequestType::InitialRequest(_)),
            })) => break Status::unknown("duplicate initial request received"),
            Ok(Some(_)) => {}
            Ok(None) => break Status::unknown("EOF"),
            Err(status) => break status,
        }
    };
    let _ = ended_tx.send(end);
}

/// What the answer stream holds between two items.
struct Answering {
    first: Option<rt::SubscribeTopicEventsResponseAlpha1>,
    _open: Open,
    rx: mpsc::Receiver<(rt::TopicEventRequest, oneshot::Sender<Outcome>)>,
    /// How the app's side ended, once it has.
    ended: oneshot::Receiver<Status>,
    pending: Pending,
    reader: tokio::task::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
    done: bool,
}

impl Drop for Answering {
    /// The answers of a stream no one reads any more are not read either: pending deliveries
    /// end (and their messages stay with the broker).
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The answer stream: `initial_response`, then each event, while a task reads the app's answers
/// and hands each to the delivery waiting for it.
fn answer_stream(
    open: Open,
    inbound: Streaming<rt::SubscribeTopicEventsRequestAlpha1>,
    rx: mpsc::Receiver<(rt::TopicEventRequest, oneshot::Sender<Outcome>)>,
) -> Events {
    let pending: Pending = Arc::default();
    let (ended_tx, ended) = oneshot::channel::<Status>();
    let reader = tokio::spawn(read_answers(inbound, pending.clone(), ended_tx));
    let first = rt::SubscribeTopicEventsResponseAlpha1 {
        subscribe_topic_events_response_type: Some(Outgoing::InitialResponse(
            rt::SubscribeTopicEventsResponseInitialAlpha1 {},
        )),
    };
    let state = Answering {
        stop: open.s.shutdown.clone(),
        first: Some(first),
        _open: open,
        rx,
        ended,
        pending,
        reader,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(first) = st.first.take() {
            return Some((Ok(first), st));
        }
        let item = tokio::select! {
            next = st.rx.recv() => match next {
                Some((event, ack)) => {
                    lock(&st.pending).insert(event.id.clone(), ack);
                    Ok(rt::SubscribeTopicEventsResponseAlpha1 {
                        subscribe_topic_events_response_type: Some(Outgoing::EventMessage(event)),
                    })
                }
                None => Err(Status::unknown("stream closed")),
            },
            end = &mut st.ended => Err(end.unwrap_or_else(|_| Status::unknown("stream closed"))),
            () = st.stop.cancelled() => Err(Status::unknown("stream closed")),
        };
        if item.is_err() {
            st.done = true;
            st.reader.abort();
        }
        Some((item, st))
    });
    Box::pin(stream)
}
