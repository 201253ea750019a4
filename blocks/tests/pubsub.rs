//! The pub/sub conformance suite: every broker is held to the [`PubSub`] contract by the same
//! checks. Each run uses its own topics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use outrider_blocks::pubsub::{
    Handler, MemoryPubSub, Message, Outcome, PubSub, RedisPubSub, RedisStreamSettings, SubscribeRequest,
};

fn topic(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), uuid_like())
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn msg(topic: &str, body: &str) -> Message {
    Message { topic: topic.into(), data: Bytes::copy_from_slice(body.as_bytes()), metadata: BTreeMap::new() }
}

/// A handler that records bodies and answers with `decide(body, attempt)`.
fn recorder(decide: impl Fn(&str, usize) -> Outcome + Send + Sync + 'static) -> (Handler, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let decide = Arc::new(decide);
    let h: Handler = Arc::new(move |m: Message| {
        let (seen, decide) = (s2.clone(), decide.clone());
        Box::pin(async move {
            let body = String::from_utf8_lossy(&m.data).into_owned();
            let attempt = {
                let mut v = seen.lock().unwrap();
                v.push(body.clone());
                v.iter().filter(|b| **b == body).count()
            };
            decide(&body, attempt)
        })
    });
    (h, seen)
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sub(topic: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest { topic: topic.into(), group: group.into(), concurrency: 4 }
}

async fn delivers_per_topic_without_cross_talk(b: Arc<dyn PubSub>) {
    let (t1, t2) = (topic("a"), topic("b"));
    let (h1, seen1) = recorder(|_, _| Outcome::Success);
    let (h2, seen2) = recorder(|_, _| Outcome::Success);
    let _s1 = b.subscribe(sub(&t1, "g"), h1).await.unwrap();
    let _s2 = b.subscribe(sub(&t2, "g"), h2).await.unwrap();
    for i in 0..20 {
        b.publish(msg(&t1, &format!("one-{i}"))).await.unwrap();
        b.publish(msg(&t2, &format!("two-{i}"))).await.unwrap();
    }
    eventually("20 on each topic", || seen1.lock().unwrap().len() == 20 && seen2.lock().unwrap().len() == 20).await;
    assert!(seen1.lock().unwrap().iter().all(|b| b.starts_with("one-")));
    assert!(seen2.lock().unwrap().iter().all(|b| b.starts_with("two-")));
}

async fn retry_redelivers_and_drop_does_not(b: Arc<dyn PubSub>) {
    let t = topic("r");
    let (h, seen) = recorder(|body, attempt| match (body, attempt) {
        ("retry-me", n) if n < 3 => Outcome::Retry,
        ("drop-me", _) => Outcome::Drop,
        _ => Outcome::Success,
    });
    let _s = b.subscribe(sub(&t, "g"), h).await.unwrap();
    b.publish(msg(&t, "retry-me")).await.unwrap();
    b.publish(msg(&t, "drop-me")).await.unwrap();
    eventually("three attempts of the retried message", || {
        seen.lock().unwrap().iter().filter(|b| *b == "retry-me").count() == 3
    })
    .await;
    // A later message proves the dropped one had its chance to come back and did not.
    b.publish(msg(&t, "marker")).await.unwrap();
    eventually("the marker", || seen.lock().unwrap().contains(&"marker".to_owned())).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // longer than the first redelivery delay
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().filter(|b| *b == "drop-me").count(), 1, "a dropped message came back");
    assert_eq!(seen.iter().filter(|b| *b == "retry-me").count(), 3, "a succeeded message came back");
}

async fn every_group_gets_every_message(b: Arc<dyn PubSub>) {
    let t = topic("g");
    let (ha, seen_a) = recorder(|_, _| Outcome::Success);
    let (hb, seen_b) = recorder(|_, _| Outcome::Success);
    let _a = b.subscribe(sub(&t, "app-a"), ha).await.unwrap();
    let _b = b.subscribe(sub(&t, "app-b"), hb).await.unwrap();
    for i in 0..10 {
        b.publish(msg(&t, &i.to_string())).await.unwrap();
    }
    eventually("both groups", || seen_a.lock().unwrap().len() == 10 && seen_b.lock().unwrap().len() == 10).await;
}

async fn unsubscribing_stops_one_topic_only(b: Arc<dyn PubSub>) {
    let (t1, t2) = (topic("u1"), topic("u2"));
    let (h1, seen1) = recorder(|_, _| Outcome::Success);
    let (h2, seen2) = recorder(|_, _| Outcome::Success);
    let s1 = b.subscribe(sub(&t1, "g"), h1).await.unwrap();
    let _s2 = b.subscribe(sub(&t2, "g"), h2).await.unwrap();
    drop(s1);
    b.publish(msg(&t1, "after-stop")).await.unwrap();
    b.publish(msg(&t2, "still-on")).await.unwrap();
    eventually("the other topic", || seen2.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // a stopped subscription has no queue left to drain
    assert!(seen1.lock().unwrap().is_empty(), "a stopped subscription still delivered");
}

async fn concurrency_is_bounded(b: Arc<dyn PubSub>) {
    let t = topic("c");
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let done = Arc::new(AtomicUsize::new(0));
    let (n2, p2, d2) = (now.clone(), peak.clone(), done.clone());
    let h: Handler = Arc::new(move |_m| {
        let (now, peak, done) = (n2.clone(), p2.clone(), d2.clone());
        Box::pin(async move {
            let cur = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(cur, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
            Outcome::Success
        })
    });
    let _s = b.subscribe(SubscribeRequest { topic: t.clone(), group: "g".into(), concurrency: 3 }, h).await.unwrap();
    for i in 0..30 {
        b.publish(msg(&t, &i.to_string())).await.unwrap();
    }
    eventually("all handled", || done.load(Ordering::SeqCst) == 30).await;
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak concurrency {peak}, limit 3");
}

macro_rules! conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            async fn make() -> (Arc<dyn PubSub>, Box<dyn std::any::Any + Send>) {
                ($make)().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delivers_per_topic_without_cross_talk() {
                let (b, _g) = make().await;
                super::delivers_per_topic_without_cross_talk(b).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retry_redelivers_and_drop_does_not() {
                let (b, _g) = make().await;
                super::retry_redelivers_and_drop_does_not(b).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn every_group_gets_every_message() {
                let (b, _g) = make().await;
                super::every_group_gets_every_message(b).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unsubscribing_stops_one_topic_only() {
                let (b, _g) = make().await;
                super::unsubscribing_stops_one_topic_only(b).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrency_is_bounded() {
                let (b, _g) = make().await;
                super::concurrency_is_bounded(b).await;
            }
        }
    };
}

conformance!(memory, || async {
    (Arc::new(MemoryPubSub::new()) as Arc<dyn PubSub>, Box::new(()) as Box<dyn std::any::Any + Send>)
});
conformance!(redis_streams, || async {
    let server = outrider_testkit::RedisServer::start();
    let settings = RedisStreamSettings {
        client: redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap(),
        consumer: "conformance".into(),
        // Short, so that retried messages come back within the suite's bounds.
        processing_timeout: Duration::from_millis(200),
        redeliver_interval: Duration::from_millis(100),
        queue_depth: 10,
        max_len_approx: None,
        timeout: Duration::from_secs(5),
    };
    let broker = RedisPubSub::connect(settings).await.unwrap();
    (Arc::new(broker) as Arc<dyn PubSub>, Box::new(server) as Box<dyn std::any::Any + Send>)
});

/// A delivery that runs longer than `processingTimeout` keeps its claim: it is not claimed and
/// delivered again while it is still being handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_handlers_keep_their_claim() {
    let server = outrider_testkit::RedisServer::start();
    let settings = RedisStreamSettings {
        client: redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap(),
        consumer: "slow".into(),
        processing_timeout: Duration::from_millis(300),
        redeliver_interval: Duration::from_millis(100),
        queue_depth: 10,
        max_len_approx: None,
        timeout: Duration::from_secs(5),
    };
    let broker = RedisPubSub::connect(settings).await.unwrap();
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s2, f2) = (started.clone(), finished.clone());
    let h: Handler = Arc::new(move |_m| {
        let (s, f) = (s2.clone(), f2.clone());
        Box::pin(async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1200)).await; // four processing timeouts
            f.fetch_add(1, Ordering::SeqCst);
            Outcome::Success
        })
    });
    let t = topic("slow");
    let _s = broker.subscribe(sub(&t, "g"), h).await.unwrap();
    broker.publish(msg(&t, "long job")).await.unwrap();
    eventually("the slow delivery to finish", || finished.load(Ordering::SeqCst) == 1).await;
    assert_eq!(started.load(Ordering::SeqCst), 1, "the message was delivered again while still being handled");
}
