//! The pub/sub conformance suite: every broker is held to the [`PubSub`] contract by the same
//! checks. Each run uses its own topics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use outrider_blocks::pubsub::{
    Handler, MemoryPubSub, Message, Outcome, PubSub, RedisPubSub, RedisStreamSettings,
    SubscribeRequest, Subscription,
};

/// The topics this test process made, for cleaning up brokers that keep them.
static TOPICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn topic(name: &str) -> String {
    let t = format!("{name}-{}-{}", std::process::id(), uuid_like());
    TOPICS.lock().unwrap().push(t.clone());
    t
}

/// Every consumer group the suite uses.
const GROUPS: &[&str] = &["g", "app-a", "app-b", "instances"];

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn msg(topic: &str, body: &str) -> Message {
    Message {
        topic: topic.into(),
        data: Bytes::copy_from_slice(body.as_bytes()),
        metadata: BTreeMap::new(),
    }
}

/// A handler that records bodies and answers with `decide(body, attempt)`.
fn recorder(
    decide: impl Fn(&str, usize) -> Outcome + Send + Sync + 'static,
) -> (Handler, Arc<Mutex<Vec<String>>>) {
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
    SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        concurrency: 4,
    }
}

/// What a recording handler saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// Subscribes group `g` to fresh topics named after `names` and publishes `one-0` to `one-19`
/// to the first and `two-0` to `two-19` to the second; returns the subscriptions, to be held,
/// and what each topic's handler saw.
async fn twenty_on_two_topics(b: &dyn PubSub, names: [&str; 2]) -> ([Subscription; 2], Seen, Seen) {
    let (t1, t2) = (topic(names[0]), topic(names[1]));
    let (h1, seen1) = recorder(|_, _| Outcome::Success);
    let (h2, seen2) = recorder(|_, _| Outcome::Success);
    let s1 = b.subscribe(sub(&t1, "g"), h1).await.unwrap();
    let s2 = b.subscribe(sub(&t2, "g"), h2).await.unwrap();
    for i in 0..20 {
        b.publish(msg(&t1, &format!("one-{i}"))).await.unwrap();
        b.publish(msg(&t2, &format!("two-{i}"))).await.unwrap();
    }
    ([s1, s2], seen1, seen2)
}

async fn delivers_per_topic_without_cross_talk(b: Arc<dyn PubSub>) {
    let (_subs, seen1, seen2) = twenty_on_two_topics(&*b, ["a", "b"]).await;
    eventually("20 on each topic", || {
        seen1.lock().unwrap().len() == 20 && seen2.lock().unwrap().len() == 20
    })
    .await;
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
        seen.lock()
            .unwrap()
            .iter()
            .filter(|b| *b == "retry-me")
            .count()
            == 3
    })
    .await;
    // A later message proves the dropped one had its chance to come back and did not.
    b.publish(msg(&t, "marker")).await.unwrap();
    eventually("the marker", || {
        seen.lock().unwrap().contains(&"marker".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // longer than the first redelivery delay
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.iter().filter(|b| *b == "drop-me").count(),
        1,
        "a dropped message came back"
    );
    assert_eq!(
        seen.iter().filter(|b| *b == "retry-me").count(),
        3,
        "a succeeded message came back"
    );
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
    eventually("both groups", || {
        seen_a.lock().unwrap().len() == 10 && seen_b.lock().unwrap().len() == 10
    })
    .await;
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
    assert!(
        seen1.lock().unwrap().is_empty(),
        "a stopped subscription still delivered"
    );
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
    let _s = b
        .subscribe(
            SubscribeRequest {
                topic: t.clone(),
                group: "g".into(),
                concurrency: 3,
            },
            h,
        )
        .await
        .unwrap();
    for i in 0..30 {
        b.publish(msg(&t, &i.to_string())).await.unwrap();
    }
    eventually("all handled", || done.load(Ordering::SeqCst) == 30).await;
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak concurrency {peak}, limit 3");
}

/// Two subscriptions of one group (two instances of one app) share the topic: every message is
/// handled exactly once, by one of them, and both take part.
async fn one_group_competes(b: Arc<dyn PubSub>) {
    let t = topic("compete");
    let slow = |_: &str, _: usize| {
        std::thread::sleep(Duration::from_millis(5)); // a handler that takes a moment
        Outcome::Success
    };
    let (h1, seen1) = recorder(slow);
    let (h2, seen2) = recorder(slow);
    let req = |t: &str| SubscribeRequest {
        topic: t.into(),
        group: "instances".into(),
        concurrency: 1,
    };
    let _s1 = b.subscribe(req(&t), h1).await.unwrap();
    let _s2 = b.subscribe(req(&t), h2).await.unwrap();
    for i in 0..60 {
        b.publish(msg(&t, &format!("m{i}"))).await.unwrap();
    }
    let total = || seen1.lock().unwrap().len() + seen2.lock().unwrap().len();
    eventually("all 60 handled", || total() >= 60).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // room for a duplicate to show up
    let (a, b) = (seen1.lock().unwrap().clone(), seen2.lock().unwrap().clone());
    let mut all: Vec<&String> = a.iter().chain(&b).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60, "some message was lost");
    assert_eq!(
        a.len() + b.len(),
        60,
        "some message was handled twice ({} + {})",
        a.len(),
        b.len()
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "one instance did all the work ({} / {})",
        a.len(),
        b.len()
    );
}

/// A `v1` component document named `name`, of `type_`, with `metadata` as literal values.
fn component(name: &str, type_: &str, metadata: &[(&str, &str)]) -> outrider_blocks::Component {
    let md: Vec<serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"type": type_, "version": "v1", "metadata": md},
    }))
    .unwrap()
}

/// Opens a component as a sidecar would, from its type and metadata.
async fn open_component(type_: &str, metadata: &[(&str, &str)]) -> Arc<dyn PubSub> {
    let c = component("conformance", type_, metadata);
    match outrider_blocks::pubsub::open(&c, "conformance", "default").await {
        Ok(c) => c.broker,
        Err(e) => panic!("opening {type_}: {e:?}"),
    }
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
            async fn one_group_competes() {
                let (b, _g) = make().await;
                super::one_group_competes(b).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrency_is_bounded() {
                let (b, _g) = make().await;
                super::concurrency_is_bounded(b).await;
            }
        }
    };
}

/// Redis Streams on `server` for consumer `consumer`, redelivering what was not answered
/// within `processing_timeout` (checked every 100 ms).
fn redis_streams(
    server: &outrider_testkit::RedisServer,
    consumer: &str,
    processing_timeout: Duration,
) -> RedisStreamSettings {
    RedisStreamSettings {
        client: redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap(),
        consumer: consumer.into(),
        processing_timeout,
        redeliver_interval: Duration::from_millis(100),
        queue_depth: 10,
        max_len_approx: None,
        timeout: Duration::from_secs(5),
    }
}

conformance!(memory, || async {
    (
        Arc::new(MemoryPubSub::new()) as Arc<dyn PubSub>,
        Box::new(()) as Box<dyn std::any::Any + Send>,
    )
});
conformance!(redis_streams, || async {
    let server = outrider_testkit::RedisServer::start();
    // Short, so that retried messages come back within the suite's bounds.
    let settings = redis_streams(&server, "conformance", Duration::from_millis(200));
    let broker = RedisPubSub::connect(settings).await.unwrap();
    (
        Arc::new(broker) as Arc<dyn PubSub>,
        Box::new(server) as Box<dyn std::any::Any + Send>,
    )
});

/// Runs `cleanup` to the end on a thread and runtime of its own: guards are dropped inside a
/// test's runtime, which cannot be blocked on.
fn clean_up(cleanup: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(cleanup);
    })
    .join();
}

/// Deletes the streams this test process created on the NATS server when dropped (the shared
/// server outlives the tests; topics carry the process id, so only ours match).
struct NatsStreams {
    server: outrider_testkit::Nats,
}

impl Drop for NatsStreams {
    fn drop(&mut self) {
        use futures_util::StreamExt;
        let (url, marker) = (self.server.url.clone(), format!("-{}-", std::process::id()));
        clean_up(async move {
            let Ok(client) = async_nats::connect(url).await else {
                return;
            };
            let js = async_nats::jetstream::new(client);
            let names: Vec<String> = js
                .stream_names()
                .filter_map(|n| async { n.ok() })
                .collect()
                .await;
            for name in names.into_iter().filter(|n| n.contains(&marker)) {
                let _ = js.delete_stream(&name).await;
            }
        });
    }
}

conformance!(jetstream, || async {
    let server = NatsStreams {
        server: outrider_testkit::Nats::start(),
    };
    let server_url = server.server.url.clone();
    let broker = open_component(
        "pubsub.jetstream",
        &[
            ("natsURL", &server_url),
            ("memoryStorage", "true"),
            ("nakDelay", "100ms"),
            ("queueDepth", "10"),
        ],
    )
    .await;
    (broker, Box::new(server) as Box<dyn std::any::Any + Send>)
});

/// Deletes this process's exchanges and queues from the RabbitMQ broker when dropped (durable
/// ones outlive the test on the shared broker).
struct RabbitTopology {
    server: outrider_testkit::RabbitMq,
}

impl Drop for RabbitTopology {
    fn drop(&mut self) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let url = self.server.url.clone();
        let topics = TOPICS.lock().unwrap().clone();
        clean_up(async move {
            let Ok(conn) =
                lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
            else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            for t in &topics {
                for g in GROUPS {
                    let _ = ch
                        .queue_delete(format!("{g}-{t}").into(), QueueDeleteOptions::default())
                        .await;
                }
                let _ = ch
                    .exchange_delete(t.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = conn.close(200, "done".into()).await;
        });
    }
}

conformance!(rabbitmq, || async {
    let server = RabbitTopology {
        server: outrider_testkit::RabbitMq::start(),
    };
    let url = server.server.url.clone();
    let broker = open_component(
        "pubsub.rabbitmq",
        &[("connectionString", &url), ("requeueDelay", "100ms")],
    )
    .await;
    (broker, Box::new(server) as Box<dyn std::any::Any + Send>)
});

conformance!(mqtt, || async {
    let server = outrider_testkit::Mosquitto::start();
    let broker = open_component("pubsub.mqtt3", &[("url", &server.url)]).await;
    (broker, Box::new(server) as Box<dyn std::any::Any + Send>)
});

#[path = "pubsub/components.rs"]
mod components;
