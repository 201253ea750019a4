//! Checks beyond the shared contract: slow handlers keeping their claim, opening broker
//! components from their documents (errors naming field and value, concurrency) and
//! broker-specific session handling.

use super::*;

/// A delivery that runs longer than the broker's redelivery timeout keeps its claim: it is not
/// delivered again while it is still being handled.
async fn slow_handler_keeps_its_claim(broker: Arc<dyn PubSub>) {
    let (started, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s2, f2) = (started.clone(), finished.clone());
    let h: Handler = Arc::new(move |_m| {
        let (s, f) = (s2.clone(), f2.clone());
        Box::pin(async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1200)).await; // four redelivery timeouts
            f.fetch_add(1, Ordering::SeqCst);
            Outcome::Success
        })
    });
    let t = topic("slow");
    let _s = broker.subscribe(sub(&t, "g"), h).await.unwrap();
    broker.publish(msg(&t, "long job")).await.unwrap();
    eventually("the slow delivery to finish", || {
        finished.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // past another timeout: an ack that failed would show
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the message was delivered again while or after being handled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_handlers_keep_their_claim() {
    let server = outrider_testkit::RedisServer::start();
    let settings = redis_streams(&server, "slow", Duration::from_millis(300));
    slow_handler_keeps_its_claim(Arc::new(RedisPubSub::connect(settings).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_slow_handlers_keep_their_claim() {
    let server = NatsStreams {
        server: outrider_testkit::Nats::start(),
    };
    let broker = open_component(
        "pubsub.jetstream",
        &[
            ("natsURL", &server.server.url),
            ("ackWait", "300ms"),
            ("memoryStorage", "true"),
        ],
    )
    .await;
    slow_handler_keeps_its_claim(broker).await;
}

/// A bad broker component fails to open with the field and value named, before any traffic.
#[tokio::test]
async fn broker_component_errors_name_field_and_value() {
    async fn error_of(type_: &str, metadata: &[(&str, &str)]) -> String {
        let c = component("broken", type_, metadata);
        match outrider_blocks::pubsub::open(&c, "app", "default").await {
            Ok(_) => panic!("{type_} {metadata:?} opened"),
            Err(e) => e
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
    let nats = outrider_testkit::Nats::start();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "pubsub.jetstream",
            vec![],
            "spec.metadata.natsURL: is required",
        ),
        (
            "pubsub.jetstream",
            vec![("natsURL", &nats.url), ("deliverPolicy", "oldest")],
            "\"oldest\"",
        ),
        (
            "pubsub.jetstream",
            vec![("natsURL", &nats.url), ("deliverPolicy", "sequence")],
            "startSequence",
        ),
        (
            "pubsub.jetstream",
            vec![("natsURL", &nats.url), ("ackWait", "soon")],
            "spec.metadata.ackWait: \"soon\"",
        ),
        (
            "pubsub.jetstream",
            vec![("natsURL", &nats.url), ("jwt", "eyJ")],
            "spec.metadata.seedKey",
        ),
        (
            "pubsub.jetstream",
            vec![("natsURL", "nats://127.0.0.1:1")],
            "spec.metadata.natsURL: nats://127.0.0.1:1",
        ),
        (
            "pubsub.in-memory",
            vec![("concurrency", "0")],
            "spec.metadata.concurrency: \"0\"",
        ),
        (
            "pubsub.in-memory",
            vec![("concurrency", "lots")],
            "spec.metadata.concurrency: \"lots\"",
        ),
        ("pubsub.mqtt3", vec![], "spec.metadata.url: is required"),
        (
            "pubsub.mqtt3",
            vec![("url", "ssl://b:8883")],
            "not supported",
        ),
        (
            "pubsub.mqtt3",
            vec![("url", "tcp://b"), ("qos", "3")],
            "spec.metadata.qos: 3",
        ),
        (
            "pubsub.mqtt3",
            vec![("url", "tcp://u:hunter2@127.0.0.1:1")],
            "spec.metadata.url: 127.0.0.1:1",
        ),
        (
            "pubsub.rabbitmq",
            vec![],
            "spec.metadata.connectionString: is required",
        ),
        (
            "pubsub.rabbitmq",
            vec![
                ("connectionString", "amqp://a:b@h"),
                ("exchangeKind", "topic"),
            ],
            "\"topic\"",
        ),
        (
            "pubsub.rabbitmq",
            vec![("connectionString", "amqp://a:b@h"), ("deliveryMode", "5")],
            "deliveryMode: 5",
        ),
        (
            "pubsub.rabbitmq",
            vec![("connectionString", "amqp://a:b@h"), ("durable", "maybe")],
            "durable: \"maybe\"",
        ),
        (
            "pubsub.rabbitmq",
            vec![("connectionString", "amqp://u:hunter2@127.0.0.1:1")],
            "connectionString: amqp://***@127.0.0.1:1",
        ),
        (
            "pubsub.rabbitmq",
            vec![("connectionString", "amqp:u:hunter2@h")],
            "connectionString",
        ),
        (
            "pubsub.jetstream",
            vec![("natsURL", "nats://u:hunter2@127.0.0.1:1")],
            "natsURL: nats://***@127.0.0.1:1",
        ),
        (
            "pubsub.jetstream",
            vec![("natsURL", "nats://u:hunter2@[bad")],
            "spec.metadata",
        ),
        (
            "pubsub.mqtt3",
            vec![("url", "ssl://u:hunter2@h:8883")],
            "not supported",
        ),
    ];
    for (type_, md, expected) in cases {
        let e = error_of(type_, &md).await;
        assert!(
            e.contains(expected),
            "{type_} {md:?}: {e:?} does not mention {expected:?}"
        );
        assert!(!e.contains("hunter2"), "a password reached the error: {e}");
    }
}

/// `concurrency` bounds each subscription's deliveries in flight (daprd's default: 10).
#[tokio::test]
async fn concurrency_comes_from_the_component() {
    let open = |value: Option<&'static str>| async move {
        let md: Vec<(&str, &str)> = value.map(|v| ("concurrency", v)).into_iter().collect();
        let c = component("p", "pubsub.in-memory", &md);
        outrider_blocks::pubsub::open(&c, "app", "default")
            .await
            .unwrap()
            .concurrency
    };
    assert_eq!(open(None).await, 10);
    assert_eq!(open(Some("single")).await, 1);
    assert_eq!(open(Some("parallel")).await, 10);
    assert_eq!(open(Some("25")).await, 25);
}

/// With a fixed `clientID` and kept sessions, each subscription still has a session of its own:
/// two topics on one component both receive, neither connection knocks the other off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_subscriptions_with_a_fixed_client_id_do_not_share_a_session() {
    let server = outrider_testkit::Mosquitto::private(); // kept sessions stay on the broker
    let broker = open_component(
        "pubsub.mqtt3",
        &[
            ("url", &server.url),
            ("clientID", "fixed"),
            ("cleanSession", "false"),
        ],
    )
    .await;
    let (_subs, seen1, seen2) = twenty_on_two_topics(&*broker, ["one", "two"]).await;
    eventually("20 on each topic", || {
        seen1.lock().unwrap().len() >= 20 && seen2.lock().unwrap().len() >= 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // room for a misrouted or repeated message
    let (a, b) = (seen1.lock().unwrap().clone(), seen2.lock().unwrap().clone());
    assert!(
        a.iter().all(|m| m.starts_with("one-")) && b.iter().all(|m| m.starts_with("two-")),
        "{a:?} {b:?}"
    );
    assert_eq!((a.len(), b.len()), (20, 20));
}
