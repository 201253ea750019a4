//! The publish API through a real sidecar (api.md §4.1, §1.4, §4.7): its answers, the topics a
//! component's scopes allow, and events that expire before delivery. Subscriptions, bulk calls
//! and dead letters have files of their own (`pubsub_subscriptions`, `pubsub_bulk`,
//! `pubsub_dead_letters`).

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, Recorded, TEXT, publish, send, sum_metric, wait_until};
use serde_json::{Value, json};

#[tokio::test]
async fn publish_answers_dapr_codes() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("pub").start().await;
    let url = |rest: &str| format!("{}/v1.0/publish/{rest}", s.api_url());
    let ok = [
        ("pubsub/orders", "text/plain", "hello"),
        (
            "pubsub/orders/nested/topic",
            "application/json",
            "{\"a\":1}",
        ),
        (
            "pubsub/orders?metadata.rawPayload=true",
            "application/octet-stream",
            "raw",
        ),
        (
            "pubsub/orders",
            "application/cloudevents+json",
            "{\"id\":\"x\",\"data\":1}",
        ),
    ];
    for (path, ct, body) in ok {
        let r = send("POST", &url(path), &[("content-type", ct)], body)
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{path}: {}", r.text());
    }
    let put = s
        .request("PUT", "/v1.0/publish/pubsub/orders", &[], "x")
        .await;
    assert_eq!(put.status, 204);
    let bad = [
        (
            "nopubsub/orders",
            "text/plain",
            "x",
            404,
            "ERR_PUBSUB_NOT_FOUND",
        ),
        ("pubsub", "text/plain", "x", 404, "ERR_TOPIC_NAME_EMPTY"),
        (
            "pubsub/orders?metadata.rawPayload=maybe",
            "text/plain",
            "x",
            400,
            "ERR_PUBSUB_REQUEST_METADATA",
        ),
        (
            "pubsub/orders",
            "application/cloudevents+json",
            "not json",
            500,
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
        ),
        (
            "pubsub/orders",
            "application/cloudevents+json",
            "[1,2]",
            500,
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
        ),
    ];
    for (path, ct, body, status, code) in bad {
        let r = send("POST", &url(path), &[("content-type", ct)], body)
            .await
            .unwrap();
        r.assert_error(status, code, path);
    }
    let comps = s.components().await;
    let pubsub = ("pubsub".to_owned(), "pubsub.in-memory".to_owned());
    assert!(comps.contains(&pubsub), "{comps:?}");
}

#[tokio::test]
async fn publishing_without_any_pubsub_is_not_configured() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "state.yaml",
        "kind: Component\nmetadata: {name: statestore}\nspec: {type: state.in-memory}\n",
    );
    let s = mesh.sidecar("nopub").resources(&res).start().await;
    let r = s.publish("pubsub", "t", &[], "x").await;
    r.assert_error(400, "ERR_PUBSUB_NOT_CONFIGURED", "no pub/sub component");
}

#[tokio::test]
async fn component_scopes_limit_topics_per_app() {
    let mesh = Mesh::new();
    let component = concat!(
        "kind: Component\nmetadata: {name: pubsub}\nspec:\n  type: pubsub.in-memory\n  metadata:\n",
        "  - {name: allowedTopics, value: 'public, audit, private'}\n",
        "  - {name: PublishingScopes, value: 'scoped-app=public,private;other-app=audit'}\n",
        "  - {name: subscriptionScopes, value: 'scoped-app=public, audit'}\n",
    );
    let res = mesh.resources("res", "pubsub.yaml", component);
    let route =
        |topic: &str| json!({"pubsubname": "pubsub", "topic": topic, "route": format!("/{topic}")});
    let app = FakeApp::with_subscriptions(
        "sc",
        json!(["public", "audit", "private", "elsewhere"].map(route)),
    )
    .await;
    let mut s = mesh
        .sidecar("scoped-app")
        .app_port(app.port)
        .resources(&res)
        .start()
        .await;
    s.wait_ready().await;
    // Subscriptions start in the app's order; the warning for the last one means all are done.
    wait_until(
        Duration::from_secs(10),
        "every subscription handled",
        || async {
            s.log()
                .contains("subscription to topic 'elsewhere' on pubsub 'pubsub' is not allowed")
                .then_some(())
        },
    )
    .await;
    assert!(
        s.log()
            .contains("subscription to topic 'private' on pubsub 'pubsub' is not allowed"),
        "{}",
        s.log()
    );
    let mut topics: Vec<String> = s
        .wait_subscriptions(2)
        .await
        .iter()
        .map(|s| s["topic"].as_str().unwrap().to_owned())
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        ["audit", "public"],
        "only topics in the app's subscription scope are subscribed"
    );
    // The refused ones are listed as failed, with the reason.
    let meta = s.metadata().await;
    let mut failed: Vec<(String, String)> = meta["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "FAILED")
        .map(|s| {
            (
                s["topic"].as_str().unwrap().to_owned(),
                s["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    failed.sort();
    assert_eq!(failed.len(), 2, "{meta}");
    assert_eq!(failed[0].0, "elsewhere");
    assert!(
        failed[1].0 == "private" && failed[1].1.contains("is not allowed"),
        "{failed:?}"
    );

    let api = s.api_url();
    for denied in ["audit", "elsewhere"] {
        let r = s.publish("pubsub", denied, TEXT, "no").await;
        r.assert_error(403, "ERR_PUBSUB_FORBIDDEN", denied);
        assert_eq!(
            r.json()["message"],
            format!("topic {denied} is not allowed for app id scoped-app")
        );
    }
    assert_eq!(
        publish(&api, "private", "text/plain", "p").await,
        204,
        "publishing needs no subscription"
    );
    assert_eq!(publish(&api, "public", "text/plain", "hello").await, 204);
    app.wait_at("/public", 1, Duration::from_secs(10)).await;
    let paths: Vec<String> = app
        .seen()
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p != "/dapr/subscribe")
        .collect();
    assert_eq!(
        paths,
        ["/public"],
        "the refused publish to audit wrote nothing"
    );
}

#[tokio::test]
async fn events_past_their_ttl_are_never_delivered() {
    let subs = json!([{"pubsubname": "pubsub", "topic": "timed", "route": "/timed"}]);
    let mesh = Mesh::new();
    let (app, s) = mesh.sidecar("ttl-app").start_subscriber("ttl", subs).await;
    for bad in ["0", "-1", "soon"] {
        let topic = format!("timed?metadata.ttlInSeconds={bad}");
        let r = s.publish("pubsub", &topic, &[], "x").await;
        r.assert_error(400, "ERR_PUBSUB_REQUEST_METADATA", bad);
    }
    let r = s
        .publish("pubsub", "timed?metadata.ttlInSeconds=60", TEXT, "fresh")
        .await;
    assert_eq!(r.status, 204);
    // An event whose expiration has passed, however it got one, is dropped: counted, never
    // delivered.
    let old = json!({"specversion": "1.0", "id": "old", "source": "s", "type": "t", "data": "stale", "expiration": "2001-01-01T00:00:00Z"});
    let cloud_event = [("content-type", "application/cloudevents+json")];
    let r = s
        .publish("pubsub", "timed", &cloud_event, &old.to_string())
        .await;
    assert_eq!(r.status, 204);
    let (s, app) = (&s, &app);
    wait_until(
        Duration::from_secs(10),
        "the stale event dropped and the fresh one delivered",
        || async move {
            let text = s.metrics().await;
            let dropped = sum_metric(
                &text,
                "dapr_component_pubsub_ingress_count",
                &["topic=\"timed\"", "process_status=\"drop\""],
            );
            (dropped == 1.0 && app.seen().iter().any(|r| r.path == "/timed")).then_some(())
        },
    )
    .await;
    let timed: Vec<Value> = app.seen_at("/timed").iter().map(Recorded::json).collect();
    assert_eq!(
        timed.len(),
        1,
        "only the fresh event reached the app: {timed:?}"
    );
    assert_eq!(timed[0]["data"], "fresh");
    let (time, expiration) = (
        timed[0]["time"].as_str().unwrap(),
        timed[0]["expiration"].as_str().unwrap(),
    );
    assert!(
        expiration.ends_with('Z') && expiration > time,
        "{time} then {expiration}"
    );
}
