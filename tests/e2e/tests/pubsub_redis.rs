//! Pub/sub on Redis Streams through real sidecars and a private redis-server.

use std::time::Duration;

use nix::sys::signal::Signal;
use outrider_testkit::pubsub::{kill_mid_delivery, numbers};
use outrider_testkit::{FakeApp, JSON, Mesh, RedisServer, TEXT, send, wait_until};
use serde_json::json;

fn resources(mesh: &Mesh, redis: &RedisServer) -> String {
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: processingTimeout\n    value: \"500\"\n  - name: redeliverInterval\n    value: 200ms\n",
        redis.host()
    );
    mesh.resources("res", "pubsub.yaml", &yaml)
}

/// Waits until the app has received anything at all: a delivery has started.
async fn wait_delivery_started(app: &FakeApp) {
    app.wait_seen(Duration::from_secs(10), "the delivery to start", |seen| {
        (!seen.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn redis_streams_deliver_through_sidecars() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    let (app, _sub) = mesh
        .sidecar("rs-sub")
        .resources(&res)
        .start_subscriber(
            "r",
            json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/events"}]),
        )
        .await;
    // Another app publishes: the stream carries it between processes.
    let publisher = mesh.sidecar("rs-pub").resources(&res).start().await;
    for i in 0..20 {
        let r = publisher
            .publish("pubsub", "orders", JSON, &format!("{{\"n\":{i}}}"))
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let got = app.wait_at("/events", 20, Duration::from_secs(15)).await;
    let mut ns = numbers(&got);
    ns.dedup();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
    assert_eq!(got[0].json()["source"], "rs-pub");
}

#[tokio::test]
async fn a_sidecar_killed_mid_delivery_loses_nothing() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    // The app takes its time: the delivery is in flight when the sidecar dies.
    let sidecar = || mesh.sidecar("rs-kill").resources(&res);
    let subs = json!([{"pubsubname": "pubsub", "topic": "jobs", "route": "/slow/800"}]);
    let (app, first) = sidecar().start_subscriber("k", subs).await;
    // The same app id comes back: the unacknowledged message is claimed and delivered again.
    let limit = Duration::from_secs(20);
    let bodies =
        kill_mid_delivery(&app, first, sidecar(), "jobs", "/slow/800", "job-1", limit).await;
    assert!(bodies.iter().all(|b| b == "job-1"), "{bodies:?}");
}

#[tokio::test]
async fn apps_sharing_a_consumer_id_compete_and_other_groups_get_everything() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let consumer_group = |consumer: &str| {
        format!(
            "kind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: consumerID\n    value: \"{consumer}\"\n",
            redis.host()
        )
    };
    let shared = mesh.resources("res-shared", "pubsub.yaml", &consumer_group("workers"));
    let own = mesh.resources("res-own", "pubsub.yaml", &consumer_group(""));
    let subs = json!([{"pubsubname": "pubsub", "topic": "work", "route": "/events"}]);
    let subscriber = |app_id: &str, res: &str, instance: &'static str| {
        mesh.sidecar(app_id)
            .resources(res)
            .start_subscriber(instance, subs.clone())
    };
    let (w1, _s1) = subscriber("worker-a", &shared, "w1").await;
    let (w2, _s2) = subscriber("worker-b", &shared, "w2").await;
    let (auditor, s3) = subscriber("auditor", &own, "au").await;
    for i in 0..40 {
        let r = s3
            .publish("pubsub", "work", JSON, &format!("{{\"n\":{i}}}"))
            .await;
        assert_eq!(r.status, 204);
    }
    let count = |app: &FakeApp| app.count_at("/events");
    wait_until(
        Duration::from_secs(20),
        "every message delivered",
        || async { (count(&w1) + count(&w2) >= 40 && count(&auditor) >= 40).then_some(()) },
    )
    .await;
    let shared: Vec<_> = [&w1, &w2]
        .iter()
        .flat_map(|a| a.seen_at("/events"))
        .collect();
    assert_eq!(
        numbers(&shared),
        (0..40).collect::<Vec<_>>(),
        "the shared group got each message exactly once"
    );
    assert!(
        count(&w1) > 0 && count(&w2) > 0,
        "both members took work: {} and {}",
        count(&w1),
        count(&w2)
    );
}

#[tokio::test]
async fn a_namespace_token_keeps_namespaces_apart_on_one_broker() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let yaml = format!(
        "kind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: consumerID\n    value: \"{{namespace}}\"\n",
        redis.host()
    );
    let res = mesh.resources("res", "pubsub.yaml", &yaml);
    let subs = json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/events"}]);
    let in_namespace = |ns: &'static str, instance: &'static str| {
        mesh.sidecar("orders")
            .resources(&res)
            .args(["--namespace", ns])
            .start_subscriber(instance, subs.clone())
    };
    let (blue_app, blue) = in_namespace("blue", "b").await;
    let (green_app, green) = in_namespace("green", "g").await;
    let events = |app: &FakeApp| -> Vec<String> {
        app.seen_at("/events")
            .iter()
            .map(|r| r.json()["data"].as_str().unwrap().to_owned())
            .collect()
    };
    for (s, app, body) in [
        (&blue, &blue_app, "blue-1"),
        (&green, &green_app, "green-1"),
    ] {
        assert_eq!(s.publish("pubsub", "orders", TEXT, body).await.status, 204);
        wait_until(Duration::from_secs(10), body, || async {
            (!events(app).is_empty()).then_some(())
        })
        .await;
    }
    // green subscribed before blue published: had it shared blue's stream it would have had blue-1 first.
    assert_eq!(events(&blue_app), ["blue-1"]);
    assert_eq!(events(&green_app), ["green-1"]);
    let out = redis.cli(&["KEYS", "*orders"]);
    let mut keys: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["blueorders", "greenorders"],
        "the broker topic carries the namespace"
    );
}

#[tokio::test]
async fn a_bulk_publish_the_broker_refuses_lists_every_failed_entry() {
    // Out of memory with no eviction: Redis refuses every XADD, while reads still work.
    let redis = RedisServer::start_with(&[
        "--save",
        "",
        "--maxmemory",
        "1",
        "--maxmemory-policy",
        "noeviction",
    ]);
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    let s = mesh.sidecar("bulk-oom").resources(&res).start().await;
    let body = json!([
        {"entryId": "a", "event": {"n": 1}, "contentType": "application/json"},
        {"entryId": "b", "event": "two", "contentType": "text/plain"},
    ]);
    let r = s
        .request(
            "POST",
            "/v1.0-alpha1/publish/bulk/pubsub/orders",
            JSON,
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let v = r.json();
    assert_eq!(v["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE");
    let failed = v["failedEntries"].as_array().unwrap();
    let ids: Vec<&str> = failed
        .iter()
        .map(|f| f["entryId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(
        failed
            .iter()
            .all(|f| f["error"].as_str().unwrap().contains("OOM")),
        "{failed:?}"
    );
}

/// A subscription the broker refuses is listed as retrying, with the broker's error, and tried
/// again until it works; then messages flow.
#[tokio::test]
async fn a_refused_subscription_is_retried_and_listed_until_it_works() {
    let redis = RedisServer::start();
    let cli = |args: &[&str]| {
        let status = redis.cli(args);
        assert!(status.status.success(), "{status:?}");
    };
    // The topic's key holds a string, so no consumer group can be made on it (WRONGTYPE).
    cli(&["SET", "blocked", "not a stream"]);
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    let app = FakeApp::with_subscriptions(
        "b",
        json!([{"pubsubname": "pubsub", "topic": "blocked", "route": "/events"}]),
    )
    .await;
    let mut sub = mesh
        .sidecar("rs-blocked")
        .app_port(app.port)
        .resources(&res)
        .start()
        .await;
    sub.wait_ready().await;
    let url = format!("{}/v1.0/metadata", sub.api_url());
    let listed = wait_until(
        Duration::from_secs(15),
        "the subscription to be listed as retrying",
        || async {
            let m = send("GET", &url, &[], "").await.ok()?.json();
            let s = m["subscriptions"].as_array()?.first()?.clone();
            (s["status"] == "RETRYING" && s["error"].as_str()?.contains("WRONGTYPE")).then_some(s)
        },
    )
    .await;
    assert_eq!(listed["topic"], "blocked");
    cli(&["DEL", "blocked"]);
    sub.wait_subscriptions(1).await;
    let r = sub.publish("pubsub", "blocked", &[], "after").await;
    assert_eq!(r.status, 204, "{}", r.text());
    app.wait_at("/events", 1, Duration::from_secs(15)).await;
}

/// On SIGTERM a delivery in flight finishes and is acknowledged before the sidecar exits:
/// nothing is left pending for a redelivery.
#[tokio::test]
async fn a_delivery_in_flight_finishes_before_shutdown() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    let (app, mut sub) = mesh
        .sidecar("rs-drain")
        .resources(&res)
        .start_subscriber(
            "d",
            json!([{"pubsubname": "pubsub", "topic": "jobs", "route": "/slow/1500"}]),
        )
        .await;
    let r = sub.publish("pubsub", "jobs", &[], "job").await;
    assert_eq!(r.status, 204);
    wait_delivery_started(&app).await;
    sub.signal(Signal::SIGTERM);
    assert_eq!(
        sub.wait_exit(Duration::from_secs(20)).await,
        Some(0),
        "{}",
        sub.log()
    );
    let pending = redis.cli(&["XPENDING", "jobs", "rs-drain"]);
    let pending = String::from_utf8_lossy(&pending.stdout);
    assert_eq!(
        pending.lines().next(),
        Some("0"),
        "the finished delivery was acknowledged: {pending}"
    );
    assert_eq!(app.seen().len(), 1);
}
