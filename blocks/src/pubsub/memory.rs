//! `pubsub.in-memory`: a process-local broker, the default `pubsub` of a sidecar started without
//! resources. Each subscription has a bounded queue; a full queue makes publishers wait
//! (backpressure, not loss). Retried messages come back after a growing delay. Subscriptions of
//! one consumer group take turns (round robin); each group gets every message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::broker::{Handler, Message, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription};
use crate::state::BoxFuture;

/// Messages a subscription may have queued before publishers wait.
const QUEUE: usize = 1024;
/// First and longest redelivery delay.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

type Queue = mpsc::Sender<(Message, u32)>;

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
            for q in queues {
                // A subscription that has just stopped is no loss: nobody is listening.
                let _ = q.send((msg.clone(), 0)).await;
            }
            Ok(())
        })
    }

    fn subscribe(&self, req: SubscribeRequest, handler: Handler) -> BoxFuture<Result<Subscription, PubSubError>> {
        let (tx, mut rx) = mpsc::channel::<(Message, u32)>(QUEUE);
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        let (topics, stop, topic, group) = (self.topics.clone(), token.clone(), req.topic, req.group);
        let limit = Arc::new(Semaphore::new(req.concurrency.max(1)));
        tokio::spawn(async move {
            loop {
                // Stopping wins over a queued message: nothing is delivered after unsubscribe.
                let next = tokio::select! {
                    biased;
                    () = stop.cancelled() => None,
                    m = rx.recv() => m,
                };
                let Some((msg, attempt)) = next else { break };
                let Ok(permit) = limit.clone().acquire_owned().await else { break };
                if stop.is_cancelled() {
                    break;
                }
                let (handler, again, stop) = (handler.clone(), tx.clone(), stop.clone());
                tokio::spawn(async move {
                    let outcome = handler(msg.clone()).await;
                    drop(permit);
                    if outcome == Outcome::Retry && !stop.is_cancelled() {
                        let delay = (RETRY_MIN * 2u32.saturating_pow(attempt.min(16))).min(RETRY_MAX);
                        tokio::time::sleep(delay).await;
                        let _ = again.send((msg, attempt + 1)).await;
                    }
                });
            }
            if let Some(g) =
                topics.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&topic).and_then(|t| t.get_mut(&group))
            {
                g.members.retain(|(sid, _)| *sid != id);
            }
        });
        Box::pin(async move { Ok(Subscription::new(token)) })
    }
}
