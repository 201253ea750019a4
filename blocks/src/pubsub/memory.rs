//! `pubsub.in-memory`: a process-local broker, the default `pubsub` of a sidecar started without
//! resources. Each subscription holds at most [`QUEUE`] messages and [`QUEUE_BYTES`] bytes,
//! counting every message until its outcome is final (queued, being delivered or waiting to be
//! retried). A publish waits at most [`PUBLISH_WAIT`] for room, then fails with
//! [`PubSubError::Full`]: backpressure the publisher sees, never a hang and never a silent drop.
//! Retried messages come back after a growing delay. Subscriptions of one consumer group take
//! turns (round robin); each group gets every message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::broker::{
    Handler, Message, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::state::BoxFuture;

/// Messages a subscription may hold before publishers wait.
pub const QUEUE: usize = 1024;
/// Bytes of message data a subscription may hold before publishers wait.
pub const QUEUE_BYTES: usize = 64 << 20;
/// How long a publish waits for room in a full subscription.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(1);
/// First and longest redelivery delay.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A message, the attempts made so far, and the room it takes in its subscription.
type Queued = (Message, u32, Room);

/// Room taken in a subscription: one message slot and its bytes, given back when dropped.
struct Room {
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// A subscription's queue: unbounded as a channel, bounded by the room its senders must take.
#[derive(Clone)]
struct Queue {
    tx: mpsc::UnboundedSender<Queued>,
    slots: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

impl Queue {
    fn new() -> (Self, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let q = Self {
            tx,
            slots: Arc::new(Semaphore::new(QUEUE)),
            bytes: Arc::new(Semaphore::new(QUEUE_BYTES)),
        };
        (q, rx)
    }

    /// Room for `msg`, waiting until `deadline` at most.
    async fn room(&self, msg: &Message, deadline: tokio::time::Instant) -> Option<Room> {
        // A message larger than the whole budget takes all of it, and so waits for an empty queue.
        let need = u32::try_from(msg.data.len().clamp(1, QUEUE_BYTES)).unwrap_or(u32::MAX);
        let take = async {
            let slot = self.slots.clone().acquire_owned().await.ok()?;
            let bytes = self.bytes.clone().acquire_many_owned(need).await.ok()?;
            Some(Room {
                _slot: slot,
                _bytes: bytes,
            })
        };
        tokio::time::timeout_at(deadline, take).await.ok().flatten()
    }
}

/// The subscriptions of one consumer group to one topic.
#[derive(Default)]
struct Group {
    /// (subscription id, its queue)
    members: Vec<(u64, Queue)>,
    /// Whose turn is next.
    turn: usize,
}

/// topic → group name → its members
type Topics = HashMap<String, HashMap<String, Group>>;

/// The in-memory broker.
#[derive(Clone, Default)]
pub struct MemoryPubSub {
    topics: Arc<Mutex<Topics>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl MemoryPubSub {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The broker of the component `name`: a new one, or, once [`share_in_process`] was called,
    /// the one every sidecar of this process shares under that name.
    pub fn named(name: &str) -> Self {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        match shared.as_mut() {
            Some(brokers) => brokers.entry(name.to_owned()).or_default().clone(),
            None => Self::new(),
        }
    }
}

/// The in-memory brokers of this process by component name, when they are shared.
static SHARED: Mutex<Option<HashMap<String, MemoryPubSub>>> = Mutex::new(None);

/// From now on, the sidecars of this process share one in-memory broker per component name,
/// as apps sharing a real broker do (each consumer group gets every message): what lets the
/// apps of a multi-app run, each behind its own sidecar in one process, reach each other
/// through the built-in `pubsub` with nothing installed.
pub fn share_in_process() {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    shared.get_or_insert_with(HashMap::new);
}

impl PubSub for MemoryPubSub {
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>> {
        let queues: Vec<Queue> = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&msg.topic)
            .map(|groups| {
                groups
                    .values_mut()
                    .filter(|g| !g.members.is_empty())
                    .map(|g| {
                        g.turn = (g.turn + 1) % g.members.len();
                        g.members[g.turn].1.clone()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(async move {
            // Room in every subscription first, so that a full one fails the publish for all.
            let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
            let mut rooms = Vec::with_capacity(queues.len());
            for q in &queues {
                match q.room(&msg, deadline).await {
                    Some(room) => rooms.push(room),
                    None => {
                        return Err(PubSubError::Full(format!(
                            "a subscriber of topic {} holds {QUEUE} messages or {QUEUE_BYTES} bytes \
                             it has not handled yet",
                            msg.topic
                        )));
                    }
                }
            }
            for (q, room) in queues.iter().zip(rooms) {
                // A subscription that has just stopped is no loss: nobody is listening.
                let _ = q.tx.send((msg.clone(), 0, room));
            }
            Ok(())
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>> {
        let (tx, mut rx) = Queue::new();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(req.topic.clone())
            .or_default()
            .entry(req.group.clone())
            .or_default()
            .members
            .push((id, tx.clone()));
        let token = CancellationToken::new();
        let (topics, stop, topic, group) =
            (self.topics.clone(), token.clone(), req.topic, req.group);
        let limit = Arc::new(Semaphore::new(req.concurrency.max(1)));
        tokio::spawn(async move {
            loop {
                // Stopping wins over a queued message: nothing is delivered after unsubscribe.
                let next = tokio::select! {
                    biased;
                    () = stop.cancelled() => None,
                    m = rx.recv() => m,
                };
                let Some((msg, attempt, room)) = next else {
                    break;
                };
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                if stop.is_cancelled() {
                    break;
                }
                let (handler, again, stop) = (handler.clone(), tx.tx.clone(), stop.clone());
                tokio::spawn(async move {
                    let outcome = handler(msg.clone()).await;
                    drop(permit);
                    if outcome == Outcome::Retry && !stop.is_cancelled() {
                        let delay =
                            (RETRY_MIN * 2u32.saturating_pow(attempt.min(16))).min(RETRY_MAX);
                        tokio::time::sleep(delay).await;
                        let _ = again.send((msg, attempt + 1, room));
                    }
                });
            }
            if let Some(g) = topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&topic)
                .and_then(|t| t.get_mut(&group))
            {
                g.members.retain(|(sid, _)| *sid != id);
            }
        });
        Box::pin(async move { Ok(Subscription::new(token)) })
    }
}
