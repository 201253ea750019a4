//! Pub/sub through real sidecars on NATS JetStream, RabbitMQ and MQTT: bulk publish from one
//! app, delivery as CloudEvents to another, dead letters after exhausted retries, and no loss
//! when the subscriber's sidecar is killed mid-delivery. Every run uses its own topics; brokers
//! that would keep state (JetStream streams) are private to the test.

use std::time::Duration;

use outrider_testkit::pubsub::{kill_mid_delivery, numbers};
use outrider_testkit::{JSON, Mesh, Mosquitto, Nats, RabbitMq};
use serde_json::{Value, json};

/// A broker for one test: its component metadata, and the server kept alive alongside.
struct Broker {
    type_: &'static str,
    metadata: Vec<(String, String)>,
    _server: Box<dyn std::any::Any>,
}

fn jetstream() -> Broker {
    let nats = Nats::private();
    Broker {
        type_: "pubsub.jetstream",
        metadata: vec![
            ("natsURL".into(), nats.url.clone()),
            ("ackWait".into(), "1s".into()),
        ],
        _server: Box::new(nats),
    }
}

fn rabbitmq() -> Broker {
    let rabbit = RabbitMq::start();
    Broker {
        type_: "pubsub.rabbitmq",
        // Nothing outlives the test on a shared broker: queues and exchanges go with the sidecars.
        metadata: vec![
            ("connectionString".into(), rabbit.url.clone()),
            ("durable".into(), "false".into()),
            ("deletedWhenUnused".into(), "true".into()),
        ],
        _server: Box::new(rabbit),
    }
}

fn mqtt() -> Broker {
    let mosquitto = Mosquitto::start();
    Broker {
        type_: "pubsub.mqtt3",
        metadata: vec![("url".into(), mosquitto.url.clone())],
        _server: Box::new(mosquitto),
    }
}

/// Writes the component into `<home>/<dir>/pubsub.yaml`, with `extra` metadata, and returns the
/// directory for `--resources-path`.
fn resources(mesh: &Mesh, dir: &str, broker: &Broker, extra: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: {}\n  version: v1\n  metadata:\n",
        broker.type_
    );
    let all = broker
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().copied());
    for (k, v) in all {
        yaml.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    mesh.resources(dir, "pubsub.yaml", &yaml)
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

async fn deliver_bulk_and_dead_letters(broker: Broker) {
    let (orders, work, poison) = (unique("orders"), unique("work"), unique("poison"));
    let mesh = Mesh::new();
    let res = resources(&mesh, "res", &broker, &[]);
    let (app, _sub) = mesh
        .sidecar("brk-sub")
        .resources(&res)
        .start_subscriber(
            "sub",
            json!([
                {"pubsubname": "pubsub", "topic": orders, "route": "/events"},
                {"pubsubname": "pubsub", "topic": work, "route": "/status/500", "deadLetterTopic": poison},
                {"pubsubname": "pubsub", "topic": poison, "route": "/poison"},
            ]),
        )
        .await;
    let publisher = mesh.sidecar("brk-pub").resources(&res).start().await;

    let entries: Vec<Value> = (0..10)
        .map(|i| json!({"entryId": i.to_string(), "event": {"n": i}, "contentType": "application/json"}))
        .collect();
    let path = format!("/v1.0-alpha1/publish/bulk/pubsub/{orders}");
    let r = publisher
        .request("POST", &path, JSON, Value::from(entries).to_string())
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = publisher
        .publish("pubsub", &work, JSON, r#"{"job":1}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());

    let got = app.wait_at("/events", 10, Duration::from_secs(20)).await;
    let mut ns = numbers(&got);
    ns.dedup();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());
    let e = got[0].json();
    assert_eq!(
        (
            e["source"].as_str(),
            e["topic"].as_str(),
            e["pubsubname"].as_str()
        ),
        (Some("brk-pub"), Some(orders.as_str()), Some("pubsub"))
    );
    assert_eq!(e["specversion"], "1.0");
    assert!(e["id"].as_str().is_some_and(|id| !id.is_empty()), "{e}");
    assert_eq!(
        got[0].headers.get("content-type").unwrap(),
        "application/cloudevents+json"
    );

    let letters = app.wait_at("/poison", 1, Duration::from_secs(20)).await;
    assert_eq!(
        letters[0].json()["topic"].as_str(),
        Some(work.as_str()),
        "the dead letter is the original event"
    );
    assert_eq!(letters[0].json()["data"]["job"], 1);
    assert_eq!(
        app.count_at("/status/500"),
        3,
        "three tries before giving up"
    );
}

/// The subscriber's sidecar dies (SIGKILL) while the app handles a message; the same app id
/// comes back and the message is delivered again.
async fn killed_mid_delivery_loses_nothing(broker: Broker, extra: &[(&str, &str)]) {
    let jobs = unique("jobs");
    let mesh = Mesh::new();
    let res = resources(&mesh, "res", &broker, extra);
    let sidecar = || mesh.sidecar("brk-kill").resources(&res);
    let subs = json!([{"pubsubname": "pubsub", "topic": jobs, "route": "/slow/1500"}]);
    let (app, first) = sidecar().start_subscriber("k", subs).await;
    let limit = Duration::from_secs(30);
    let bodies =
        kill_mid_delivery(&app, first, sidecar(), &jobs, "/slow/1500", "job-1", limit).await;
    assert!(bodies.iter().all(|b| b == "job-1"), "{bodies:?}");
}

#[tokio::test]
async fn jetstream_delivers_bulk_and_dead_letters() {
    deliver_bulk_and_dead_letters(jetstream()).await;
}

#[tokio::test]
async fn rabbitmq_delivers_bulk_and_dead_letters() {
    deliver_bulk_and_dead_letters(rabbitmq()).await;
}

#[tokio::test]
async fn mqtt_delivers_bulk_and_dead_letters() {
    deliver_bulk_and_dead_letters(mqtt()).await;
}

#[tokio::test]
async fn jetstream_killed_mid_delivery_loses_nothing() {
    killed_mid_delivery_loses_nothing(jetstream(), &[]).await;
}

#[tokio::test]
async fn rabbitmq_killed_mid_delivery_loses_nothing() {
    // Durable here (the queue must outlive the killed consumer); the private broker goes with the test.
    let rabbit = RabbitMq::private();
    let broker = Broker {
        type_: "pubsub.rabbitmq",
        metadata: vec![("connectionString".into(), rabbit.url.clone())],
        _server: Box::new(rabbit),
    };
    killed_mid_delivery_loses_nothing(broker, &[]).await;
}

#[tokio::test]
async fn mqtt_with_a_kept_session_loses_nothing_when_killed() {
    // MQTT resends unacknowledged messages only to the same session: a fixed client id and a
    // kept session let the restarted sidecar find them.
    let client_id = unique("brk-kill");
    // A private broker: the kept session would otherwise stay on the shared one.
    let mosquitto = Mosquitto::private();
    let broker = Broker {
        type_: "pubsub.mqtt3",
        metadata: vec![("url".into(), mosquitto.url.clone())],
        _server: Box::new(mosquitto),
    };
    killed_mid_delivery_loses_nothing(
        broker,
        &[("clientID", &client_id), ("cleanSession", "false")],
    )
    .await;
}
