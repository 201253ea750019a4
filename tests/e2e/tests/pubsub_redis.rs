//! Pub/sub on Redis Streams through real sidecars and a private redis-server.

use std::time::Duration;

use nix::sys::signal::Signal;
use outrider_testkit::{FakeApp, Mesh, RedisServer, send, wait_until};
use serde_json::{Value, json};

fn resources(mesh: &Mesh, redis: &RedisServer) -> String {
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: processingTimeout\n    value: \"500\"\n  - name: redeliverInterval\n    value: 200ms\n",
        redis.host()
    );
    std::fs::write(dir.join("pubsub.yaml"), yaml).unwrap();
    dir.to_string_lossy().into_owned()
}

#[tokio::test]
async fn redis_streams_deliver_through_sidecars() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    let app = FakeApp::with_subscriptions(
        "r",
        json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/events"}]),
    )
    .await;
    let mut sub = mesh
        .sidecar("rs-sub")
        .app_port(app.port)
        .args(["--resources-path", &res])
        .start()
        .await;
    sub.wait_ready().await;
    sub.wait_subscriptions(1).await;
    // Another app publishes: the stream carries it between processes.
    let publisher = mesh
        .sidecar("rs-pub")
        .args(["--resources-path", &res])
        .start()
        .await;
    for i in 0..20 {
        let r = send(
            "POST",
            &format!("{}/v1.0/publish/pubsub/orders", publisher.api_url()),
            &[("content-type", "application/json")],
            format!("{{\"n\":{i}}}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let got = wait_until(Duration::from_secs(15), "20 deliveries", || async {
        let got: Vec<_> = app
            .seen()
            .into_iter()
            .filter(|r| r.path == "/events")
            .collect();
        (got.len() >= 20).then_some(got)
    })
    .await;
    let mut ns: Vec<u64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ns.sort_unstable();
    ns.dedup();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
    let src = serde_json::from_slice::<Value>(&got[0].body).unwrap()["source"].clone();
    assert_eq!(src, "rs-pub");
}

#[tokio::test]
async fn a_sidecar_killed_mid_delivery_loses_nothing() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    // The app takes its time: the delivery is in flight when the sidecar dies.
    let app = FakeApp::with_subscriptions(
        "k",
        json!([{"pubsubname": "pubsub", "topic": "jobs", "route": "/slow/800"}]),
    )
    .await;
    let mut first = mesh
        .sidecar("rs-kill")
        .app_port(app.port)
        .args(["--resources-path", &res])
        .start()
        .await;
    first.wait_ready().await;
    first.wait_subscriptions(1).await;
    let r = send(
        "POST",
        &format!("{}/v1.0/publish/pubsub/jobs", first.api_url()),
        &[],
        "job-1",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    wait_until(Duration::from_secs(10), "the delivery to start", || async {
        (!app.seen().is_empty()).then_some(())
    })
    .await;
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10)).await;
    // The same app id comes back: the unacknowledged message is claimed and delivered again.
    let mut second = mesh
        .sidecar("rs-kill")
        .app_port(app.port)
        .args(["--resources-path", &res])
        .start()
        .await;
    second.wait_ready().await;
    wait_until(
        Duration::from_secs(20),
        "redelivery after the kill",
        || async {
            (app.seen().iter().filter(|r| r.path == "/slow/800").count() >= 2).then_some(())
        },
    )
    .await;
    let bodies: Vec<String> = app
        .seen()
        .iter()
        .filter(|r| r.path == "/slow/800")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["data"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(bodies.iter().all(|b| b == "job-1"), "{bodies:?}");
}

#[tokio::test]
async fn apps_sharing_a_consumer_id_compete_and_other_groups_get_everything() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let component = |name: &str, consumer: &str| {
        let dir = mesh.home().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = format!(
            "kind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: consumerID\n    value: \"{consumer}\"\n",
            redis.host()
        );
        std::fs::write(dir.join("pubsub.yaml"), yaml).unwrap();
        dir.to_string_lossy().into_owned()
    };
    let shared = component("res-shared", "workers");
    let own = component("res-own", "");
    let subs = json!([{"pubsubname": "pubsub", "topic": "work", "route": "/events"}]);
    let (w1, w2, auditor) = (
        FakeApp::with_subscriptions("w1", subs.clone()).await,
        FakeApp::with_subscriptions("w2", subs.clone()).await,
        FakeApp::with_subscriptions("au", subs).await,
    );
    let mut s1 = mesh
        .sidecar("worker-a")
        .app_port(w1.port)
        .args(["--resources-path", &shared])
        .start()
        .await;
    let mut s2 = mesh
        .sidecar("worker-b")
        .app_port(w2.port)
        .args(["--resources-path", &shared])
        .start()
        .await;
    let mut s3 = mesh
        .sidecar("auditor")
        .app_port(auditor.port)
        .args(["--resources-path", &own])
        .start()
        .await;
    for s in [&mut s1, &mut s2, &mut s3] {
        s.wait_ready().await;
        s.wait_subscriptions(1).await;
    }
    for i in 0..40 {
        let r = send(
            "POST",
            &format!("{}/v1.0/publish/pubsub/work", s3.api_url()),
            &[("content-type", "application/json")],
            format!("{{\"n\":{i}}}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 204);
    }
    let count = |app: &FakeApp| app.seen().iter().filter(|r| r.path == "/events").count();
    wait_until(
        Duration::from_secs(20),
        "every message delivered",
        || async { (count(&w1) + count(&w2) >= 40 && count(&auditor) >= 40).then_some(()) },
    )
    .await;
    let mut ns: Vec<u64> = [&w1, &w2]
        .iter()
        .flat_map(|a| a.seen())
        .filter(|r| r.path == "/events")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
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
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "kind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  metadata:\n  - name: redisHost\n    value: {}\n  - name: consumerID\n    value: \"{{namespace}}\"\n",
        redis.host()
    );
    std::fs::write(dir.join("pubsub.yaml"), yaml).unwrap();
    let res = dir.to_string_lossy().into_owned();
    let subs = json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/events"}]);
    let (blue_app, green_app) = (
        FakeApp::with_subscriptions("b", subs.clone()).await,
        FakeApp::with_subscriptions("g", subs).await,
    );
    let sidecar = |ns: &'static str, port: u16| {
        mesh.sidecar("orders")
            .app_port(port)
            .args(["--resources-path", &res, "--namespace", ns])
            .start()
    };
    let (mut blue, mut green) = (
        sidecar("blue", blue_app.port).await,
        sidecar("green", green_app.port).await,
    );
    for s in [&mut blue, &mut green] {
        s.wait_ready().await;
        s.wait_subscriptions(1).await;
    }
    let events = |app: &FakeApp| -> Vec<String> {
        app.seen()
            .iter()
            .filter(|r| r.path == "/events")
            .map(|r| {
                serde_json::from_slice::<Value>(&r.body).unwrap()["data"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    for (s, app, body) in [
        (&blue, &blue_app, "blue-1"),
        (&green, &green_app, "green-1"),
    ] {
        let url = format!("{}/v1.0/publish/pubsub/orders", s.api_url());
        assert_eq!(
            send("POST", &url, &[("content-type", "text/plain")], body)
                .await
                .unwrap()
                .status,
            204
        );
        wait_until(Duration::from_secs(10), body, || async {
            (!events(app).is_empty()).then_some(())
        })
        .await;
    }
    // green subscribed before blue published: had it shared blue's stream it would have had blue-1 first.
    assert_eq!(events(&blue_app), ["blue-1"]);
    assert_eq!(events(&green_app), ["green-1"]);
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "KEYS", "*orders"])
        .output();
    let mut keys: Vec<String> = String::from_utf8(out.unwrap().stdout)
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
    let s = mesh
        .sidecar("bulk-oom")
        .args(["--resources-path", &res])
        .start()
        .await;
    let url = format!("{}/v1.0-alpha1/publish/bulk/pubsub/orders", s.api_url());
    let body = json!([
        {"entryId": "a", "event": {"n": 1}, "contentType": "application/json"},
        {"entryId": "b", "event": "two", "contentType": "text/plain"},
    ]);
    let r = send(
        "POST",
        &url,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
    .unwrap();
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
        let status = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output()
            .unwrap();
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
        .args(["--resources-path", &res])
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
    let r = send(
        "POST",
        &format!("{}/v1.0/publish/pubsub/blocked", sub.api_url()),
        &[],
        "after",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    wait_until(Duration::from_secs(15), "the delivery", || async {
        app.seen().iter().any(|r| r.path == "/events").then_some(())
    })
    .await;
}

/// On SIGTERM a delivery in flight finishes and is acknowledged before the sidecar exits:
/// nothing is left pending for a redelivery.
#[tokio::test]
async fn a_delivery_in_flight_finishes_before_shutdown() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = resources(&mesh, &redis);
    let app = FakeApp::with_subscriptions(
        "d",
        json!([{"pubsubname": "pubsub", "topic": "jobs", "route": "/slow/1500"}]),
    )
    .await;
    let mut sub = mesh
        .sidecar("rs-drain")
        .app_port(app.port)
        .args(["--resources-path", &res])
        .start()
        .await;
    sub.wait_ready().await;
    sub.wait_subscriptions(1).await;
    let r = send(
        "POST",
        &format!("{}/v1.0/publish/pubsub/jobs", sub.api_url()),
        &[],
        "job",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    wait_until(Duration::from_secs(10), "the delivery to start", || async {
        (!app.seen().is_empty()).then_some(())
    })
    .await;
    sub.signal(Signal::SIGTERM);
    assert_eq!(
        sub.wait_exit(Duration::from_secs(20)).await,
        Some(0),
        "{}",
        sub.log()
    );
    let pending = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "XPENDING",
            "jobs",
            "rs-drain",
        ])
        .output()
        .unwrap();
    let pending = String::from_utf8_lossy(&pending.stdout);
    assert_eq!(
        pending.lines().next(),
        Some("0"),
        "the finished delivery was acknowledged: {pending}"
    );
    assert_eq!(app.seen().len(), 1);
}
