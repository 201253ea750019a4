//! The in-memory broker's bounds: a subscriber that does not handle what it is sent fills its
//! room in messages or bytes, and publishes then fail after a short wait instead of hanging.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use outrider_blocks::pubsub::memory::{PUBLISH_WAIT, QUEUE, QUEUE_BYTES};
use outrider_blocks::pubsub::{
    Handler, MemoryPubSub, Message, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

fn msg(size: usize) -> Message {
    Message {
        topic: "t".into(),
        data: Bytes::from(vec![7u8; size]),
        metadata: BTreeMap::new(),
    }
}

/// Subscribes group `g` to `topic` with a handler that takes a permit of a gate holding
/// `permits` per message before answering SUCCESS; returns the subscription, the gate and how
/// many deliveries started.
async fn gated(
    b: &MemoryPubSub,
    topic: &str,
    concurrency: usize,
    permits: usize,
) -> (Subscription, Arc<Semaphore>, Arc<AtomicUsize>) {
    let (gate, started) = (
        Arc::new(Semaphore::new(permits)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (g, s) = (gate.clone(), started.clone());
    let handler: Handler = Arc::new(move |_m: Message| {
        let (gate, started) = (g.clone(), s.clone());
        Box::pin(async move {
            started.fetch_add(1, Ordering::Relaxed);
            gate.acquire().await.unwrap().forget();
            Outcome::Success
        })
    });
    let req = SubscribeRequest {
        topic: topic.into(),
        group: "g".into(),
        concurrency,
    };
    (b.subscribe(req, handler).await.unwrap(), gate, started)
}

/// Publishes `size`-byte messages until one is refused; returns how many were taken.
async fn fill(b: &MemoryPubSub, size: usize, at_most: usize) -> usize {
    for taken in 0..=at_most {
        match b.publish(msg(size)).await {
            Ok(()) => {}
            Err(PubSubError::Full(why)) => {
                assert!(why.contains("topic t"), "{why}");
                return taken;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    panic!("more than {at_most} messages were taken");
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_never_answers_holds_at_most_its_bytes() {
    let b = MemoryPubSub::new();
    let (_sub, _gate, started) = gated(&b, "t", 2, 0).await;
    // 1 MiB each: the ones being delivered count too.
    assert_eq!(fill(&b, 1 << 20, 1000).await, QUEUE_BYTES >> 20);
    assert_eq!(started.load(Ordering::Relaxed), 2);
    // A refusal comes after the wait, not sooner and not much later.
    let t = Instant::now();
    assert!(matches!(b.publish(msg(1)).await, Err(PubSubError::Full(_))));
    let waited = t.elapsed();
    assert!(
        waited >= PUBLISH_WAIT && waited < PUBLISH_WAIT * 2,
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn small_messages_are_bounded_by_count() {
    let b = MemoryPubSub::new();
    let (_sub, _gate, _started) = gated(&b, "t", 1, 0).await;
    assert_eq!(fill(&b, 10, 10 * QUEUE).await, QUEUE);
}

#[tokio::test(start_paused = true)]
async fn room_comes_back_as_messages_are_handled_and_a_full_subscriber_blocks_no_other_topic() {
    let b = MemoryPubSub::new();
    let (_sub, gate, started) = gated(&b, "t", 1, 0).await;
    let taken = fill(&b, 4 << 20, 1000).await;
    assert_eq!(taken, QUEUE_BYTES / (4 << 20));
    // Another topic's subscriber is unaffected.
    let (_other, _open_gate, _other_started) = gated(&b, "elsewhere", 1, 100).await;
    for _ in 0..5 {
        b.publish(Message {
            topic: "elsewhere".into(),
            ..msg(4 << 20)
        })
        .await
        .expect("another topic has room");
    }
    // Handling three messages makes room for three more.
    gate.add_permits(3);
    for _ in 0..3 {
        b.publish(msg(4 << 20)).await.expect("room was given back");
    }
    assert!(matches!(
        b.publish(msg(4 << 20)).await,
        Err(PubSubError::Full(_))
    ));
    assert!(started.load(Ordering::Relaxed) >= 4);
}
