//! The publish API through a real sidecar (api.md §4.1, §1.4).

use outrider_testkit::{Mesh, send, sum_metric};

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
    assert_eq!(
        send("PUT", &url("pubsub/orders"), &[], "x")
            .await
            .unwrap()
            .status,
        204
    );
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
        assert_eq!(
            (r.status, r.json()["errorCode"].as_str()),
            (status, Some(code)),
            "{path}: {}",
            r.text()
        );
    }
    let meta = send("GET", &format!("{}/v1.0/metadata", s.api_url()), &[], "")
        .await
        .unwrap()
        .json();
    let comps: Vec<(&str, &str)> = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert!(comps.contains(&("pubsub", "pubsub.in-memory")), "{comps:?}");
}

#[tokio::test]
async fn publishing_without_any_pubsub_is_not_configured() {
    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("state.yaml"),
        "kind: Component\nmetadata: {name: statestore}\nspec: {type: state.in-memory}\n",
    )
    .unwrap();
    let s = mesh
        .sidecar("nopub")
        .args(["--resources-path", dir.to_str().unwrap()])
        .start()
        .await;
    let r = send(
        "POST",
        &format!("{}/v1.0/publish/pubsub/t", s.api_url()),
        &[],
        "x",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (400, Some("ERR_PUBSUB_NOT_CONFIGURED"))
    );
}

#[tokio::test]
async fn programmatic_subscriptions_receive_cloudevents() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let subs = json!([
        {"pubsubname": "pubsub", "topic": "orders", "route": "/events"},
        {"pubsubname": "pubsub", "topic": "flaky", "routes": {"default": "status/500"}},
        {"pubsubname": "pubsub", "topic": "gone", "route": "/status/404"},
        {"pubsubname": "pubsub", "topic": "ruled", "routes": {"rules": [{"match": "event.type ==", "path": "/x"}]}},
    ]);
    let app = FakeApp::with_subscriptions("sub", subs).await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("subapp").app_port(app.port).start().await;
    s.wait_ready().await;
    let listed = s.wait_subscriptions(3).await;
    let topics: Vec<&str> = listed
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        ["orders", "flaky", "gone"],
        "a rule that is not CEL is refused, not routed elsewhere"
    );
    assert!(listed.iter().all(|s| s["type"] == "PROGRAMMATIC"));
    assert_eq!(
        app.subscribe_calls(),
        1,
        "the sidecar asks for subscriptions once"
    );

    let api = s.api_url();
    for i in 0..3 {
        assert_eq!(
            publish(
                &api,
                "orders",
                "application/json",
                &format!("{{\"n\":{i}}}")
            )
            .await,
            204
        );
    }
    assert_eq!(publish(&api, "flaky", "text/plain", "again").await, 204);
    assert_eq!(publish(&api, "gone", "text/plain", "once").await, 204);

    let events = wait_until(Duration::from_secs(10), "three deliveries", || async {
        let got: Vec<_> = app
            .seen()
            .into_iter()
            .filter(|r| r.path == "/events")
            .collect();
        (got.len() == 3).then_some(got)
    })
    .await;
    let mut ns = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for e in &events {
        assert_eq!(e.method, "POST");
        assert_eq!(e.headers["content-type"], "application/cloudevents+json");
        assert!(e.headers.contains_key("traceparent"));
        let ce: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(
            (
                ce["topic"].as_str(),
                ce["pubsubname"].as_str(),
                ce["source"].as_str()
            ),
            (Some("orders"), Some("pubsub"), Some("subapp"))
        );
        assert_eq!(
            (ce["specversion"].as_str(), ce["type"].as_str()),
            (Some("1.0"), Some("com.dapr.event.sent"))
        );
        ids.insert(ce["id"].as_str().unwrap().to_owned());
        ns.push(ce["data"]["n"].as_u64().unwrap());
    }
    ns.sort_unstable();
    assert_eq!((ns, ids.len()), (vec![0, 1, 2], 3));
    // 500 is retried by the broker; 404 is dropped after one delivery.
    wait_until(
        Duration::from_secs(10),
        "redeliveries of the failing message",
        || async {
            (app.seen()
                .iter()
                .filter(|r| r.path == "/status/500")
                .count()
                >= 3)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        app.seen()
            .iter()
            .filter(|r| r.path == "/status/404")
            .count(),
        1,
        "a dropped message came back"
    );
}

async fn publish(api: &str, topic: &str, content_type: &str, body: &str) -> u16 {
    let url = format!("{api}/v1.0/publish/pubsub/{topic}");
    send(
        "POST",
        &url,
        &[("content-type", content_type)],
        body.to_owned(),
    )
    .await
    .unwrap()
    .status
}

#[tokio::test]
async fn exhausted_messages_go_to_the_dead_letter_topic() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let subs = json!([
        {"pubsubname": "pubsub", "topic": "work", "route": "/status/500", "deadLetterTopic": "poison"},
        {"pubsubname": "pubsub", "topic": "gone", "route": "/status/404", "deadLetterTopic": "poison"},
        {"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
    ]);
    let app = FakeApp::with_subscriptions("dl", subs).await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("dl-app").app_port(app.port).start().await;
    s.wait_ready().await;
    s.wait_subscriptions(3).await;
    let api = s.api_url();
    assert_eq!(
        publish(&api, "work", "application/json", r#"{"job":1}"#).await,
        204
    );
    assert_eq!(
        publish(&api, "gone", "text/plain", "unknown route").await,
        204
    );
    let letters = wait_until(Duration::from_secs(15), "two dead letters", || async {
        let got: Vec<_> = app
            .seen()
            .into_iter()
            .filter(|r| r.path == "/poison")
            .collect();
        (got.len() == 2).then_some(got)
    })
    .await;
    assert_eq!(
        app.seen()
            .iter()
            .filter(|r| r.path == "/status/500")
            .count(),
        3,
        "tried three times before giving up"
    );
    assert_eq!(
        app.seen()
            .iter()
            .filter(|r| r.path == "/status/404")
            .count(),
        1,
        "a drop is not retried"
    );
    let mut original_topics: Vec<String> = letters
        .iter()
        .map(|l| {
            serde_json::from_slice::<Value>(&l.body).unwrap()["topic"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    original_topics.sort();
    assert_eq!(
        original_topics,
        ["gone", "work"],
        "the dead letter is the original event, untouched"
    );

    // Dapr's component metrics count each delivery by outcome and each publish by result. A
    // delivery is counted once the app's answer is back, a moment after the app saw it.
    let count = |text: &str, topic: &str, process_status: &str| {
        let (t, p) = (
            format!("topic=\"{topic}\""),
            format!("process_status=\"{process_status}\""),
        );
        let labels = [
            "app_id=\"dl-app\"",
            "component=\"pubsub\"",
            "namespace=\"default\"",
            &t,
            &p,
        ];
        (
            sum_metric(text, "dapr_component_pubsub_ingress_count", &labels),
            sum_metric(
                text,
                "dapr_component_pubsub_ingress_latencies_count",
                &labels,
            ),
        )
    };
    let text = wait_until(
        Duration::from_secs(10),
        "the dead letters' deliveries to be counted",
        || async {
            let text = s.metrics().await;
            (count(&text, "poison", "success") == (2.0, 2.0)).then_some(text)
        },
    )
    .await;
    let ingress = |topic: &str, process_status: &str| count(&text, topic, process_status);
    assert_eq!(ingress("work", "retry"), (3.0, 3.0), "{text}");
    assert_eq!(ingress("gone", "drop"), (1.0, 1.0), "{text}");
    assert_eq!(ingress("poison", "success"), (2.0, 2.0), "{text}");
    assert_eq!(ingress("work", "success").0, 0.0);
    let bucket = sum_metric(
        &text,
        "dapr_component_pubsub_ingress_latencies_bucket",
        &["topic=\"poison\"", "le=\"+Inf\""],
    );
    assert_eq!(
        bucket, 2.0,
        "latencies are histograms with Dapr's buckets: {text}"
    );
    for topic in ["work", "gone"] {
        let t = format!("topic=\"{topic}\"");
        let n = sum_metric(
            &text,
            "dapr_component_pubsub_egress_count",
            &[&t, "success=\"true\"", "component=\"pubsub\""],
        );
        assert_eq!(n, 1.0, "{topic}: {text}");
    }
}

#[tokio::test]
async fn declarative_subscriptions_deliver_and_yield_to_the_apps_own() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::json;
    use std::time::Duration;

    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let docs = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: decl}\nspec:\n  pubsubname: pubsub\n  topic: declared\n  routes: {default: /declared}\n---\n\
apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata: {name: shadowed}\nspec: {pubsubname: pubsub, topic: orders, route: /wrong}\n---\n\
apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata: {name: elsewhere}\nspec: {pubsubname: pubsub, topic: other, route: /other}\nscopes: [some-other-app]\n---\n\
kind: Component\nmetadata: {name: pubsub}\nspec: {type: pubsub.in-memory}\n";
    std::fs::write(dir.join("subs.yaml"), docs).unwrap();
    let app = FakeApp::with_subscriptions(
        "d",
        json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/events"}]),
    )
    .await;
    let mut s = mesh
        .sidecar("decl-app")
        .app_port(app.port)
        .args(["--resources-path", dir.to_str().unwrap()])
        .start()
        .await;
    s.wait_ready().await;
    let listed = s.wait_subscriptions(2).await;
    let kinds: Vec<(&str, &str)> = listed
        .iter()
        .map(|s| (s["topic"].as_str().unwrap(), s["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("orders", "PROGRAMMATIC"), ("declared", "DECLARATIVE")]
    );
    let api = s.api_url();
    assert_eq!(publish(&api, "declared", "text/plain", "d1").await, 204);
    assert_eq!(publish(&api, "orders", "text/plain", "o1").await, 204);
    wait_until(Duration::from_secs(10), "both deliveries", || async {
        let seen = app.seen();
        (seen.iter().any(|r| r.path == "/declared") && seen.iter().any(|r| r.path == "/events"))
            .then_some(())
    })
    .await;
    assert!(
        !app.seen()
            .iter()
            .any(|r| r.path == "/wrong" || r.path == "/other"),
        "{:?}",
        app.seen()
    );

    // A rule that is not CEL is refused at start, naming file, field and expression.
    std::fs::write(dir.join("subs.yaml"), "kind: Subscription\nmetadata: {name: r}\nspec:\n  pubsubname: pubsub\n  topic: t\n  routes: {rules: [{match: 'event.type ==', path: /x}], default: /d}\n").unwrap();
    let mut bad = mesh
        .sidecar("decl-bad")
        .args(["--resources-path", dir.to_str().unwrap()])
        .spawn();
    assert_eq!(bad.wait_exit(Duration::from_secs(30)).await, Some(2));
    assert!(
        bad.log()
            .contains("subs.yaml: spec.routes.rules[0]: event.type =="),
        "{}",
        bad.log()
    );
}

/// Routing rules pick the route per event, in order, before the default, for the app's own
/// subscriptions and declared ones; an event no rule routes goes to the dead-letter topic.
#[tokio::test]
async fn routing_rules_pick_the_route_per_event() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let declared = concat!(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: shipping}\nspec:\n",
        "  pubsubname: pubsub\n  topic: shipments\n  deadLetterTopic: unrouted\n  routes:\n    rules:\n",
        "    - {match: 'event.type == \"parcel\"', path: /parcels}\n",
        "    - {match: 'event.data.weight > 30', path: /freight}\n",
        "---\nkind: Component\nmetadata: {name: pubsub}\nspec: {type: pubsub.in-memory}\n",
    );
    std::fs::write(dir.join("subs.yaml"), declared).unwrap();
    let app = FakeApp::with_subscriptions(
        "rr",
        json!([
            {"pubsubname": "pubsub", "topic": "orders", "routes": {
                "rules": [
                    {"match": "event.type == \"widget\"", "path": "/widgets"},
                    {"match": "event.data.price > 100", "path": "/expensive"},
                ],
                "default": "/orders"}},
            {"pubsubname": "pubsub", "topic": "unrouted", "route": "/unrouted"},
        ]),
    )
    .await;
    let mut s = mesh
        .sidecar("router-app")
        .app_port(app.port)
        .args(["--resources-path", dir.to_str().unwrap()])
        .start()
        .await;
    s.wait_ready().await;
    let listed = s.wait_subscriptions(3).await;
    let orders = listed.iter().find(|l| l["topic"] == "orders").unwrap();
    assert_eq!(
        orders["rules"].as_array().unwrap().len(),
        3,
        "two rules and the default: {orders}"
    );
    let api = s.api_url();
    let cloud_event = |ty: &str, data: Value| {
        json!({"specversion": "1.0", "id": ty, "source": "t", "type": ty, "data": data}).to_string()
    };
    assert_eq!(
        publish(
            &api,
            "orders",
            "application/cloudevents+json",
            &cloud_event("widget", json!({"price": 1}))
        )
        .await,
        204
    );
    assert_eq!(
        publish(&api, "orders", "application/json", r#"{"price": 500}"#).await,
        204
    );
    assert_eq!(
        publish(&api, "orders", "application/json", r#"{"price": 5}"#).await,
        204
    );
    assert_eq!(
        publish(
            &api,
            "shipments",
            "application/cloudevents+json",
            &cloud_event("parcel", json!({"weight": 1}))
        )
        .await,
        204
    );
    assert_eq!(
        publish(&api, "shipments", "application/json", r#"{"weight": 80}"#).await,
        204
    );
    assert_eq!(
        publish(&api, "shipments", "application/json", r#"{"weight": 2}"#).await,
        204
    );
    let paths = wait_until(Duration::from_secs(15), "six deliveries", || async {
        let mut paths: Vec<String> = app.seen().into_iter().map(|r| r.path).collect();
        paths.sort();
        (paths.len() >= 6).then_some(paths)
    })
    .await;
    assert_eq!(
        paths,
        [
            "/expensive",
            "/freight",
            "/orders",
            "/parcels",
            "/unrouted",
            "/widgets"
        ]
    );
    let letter = app
        .seen()
        .into_iter()
        .find(|r| r.path == "/unrouted")
        .unwrap();
    let letter: Value = serde_json::from_slice(&letter.body).unwrap();
    assert_eq!(
        (letter["topic"].as_str(), &letter["data"]["weight"]),
        (Some("shipments"), &json!(2))
    );
}

#[tokio::test]
async fn component_scopes_limit_topics_per_app() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::json;
    use std::time::Duration;

    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let component = concat!(
        "kind: Component\nmetadata: {name: pubsub}\nspec:\n  type: pubsub.in-memory\n  metadata:\n",
        "  - {name: allowedTopics, value: 'public, audit, private'}\n",
        "  - {name: PublishingScopes, value: 'scoped-app=public,private;other-app=audit'}\n",
        "  - {name: subscriptionScopes, value: 'scoped-app=public, audit'}\n",
    );
    std::fs::write(dir.join("pubsub.yaml"), component).unwrap();
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
        .args(["--resources-path", dir.to_str().unwrap()])
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
    let meta = send("GET", &format!("{}/v1.0/metadata", s.api_url()), &[], "")
        .await
        .unwrap()
        .json();
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
        let url = format!("{api}/v1.0/publish/pubsub/{denied}");
        let r = send("POST", &url, &[("content-type", "text/plain")], "no")
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{denied}");
        assert_eq!(r.json()["errorCode"], "ERR_PUBSUB_FORBIDDEN");
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
    wait_until(Duration::from_secs(10), "the allowed delivery", || async {
        app.seen().iter().any(|r| r.path == "/public").then_some(())
    })
    .await;
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
async fn bulk_publish_checks_every_entry_then_publishes_them_all() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let app = FakeApp::with_subscriptions(
        "bk",
        json!([{"pubsubname": "pubsub", "topic": "batch", "route": "/batch"}]),
    )
    .await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("bulk-app").app_port(app.port).start().await;
    s.wait_ready().await;
    s.wait_subscriptions(1).await;
    let bulk = |prefix: &str, body: Value| {
        let url = format!("{}/{prefix}/publish/bulk/pubsub/batch", s.api_url());
        async move {
            send(
                "POST",
                &url,
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await
            .unwrap()
        }
    };

    // Refused batches publish nothing, not even their valid entries.
    let good = json!({"entryId": "ok", "event": "fine", "contentType": "text/plain"});
    for (why, body) in [
        ("not an array", json!({"entryId": "1"})),
        ("duplicate id", json!([good, good])),
        (
            "missing id",
            json!([good, {"event": "x", "contentType": "text/plain"}]),
        ),
        (
            "no content type",
            json!([good, {"entryId": "2", "event": "x"}]),
        ),
        (
            "text that is not a string",
            json!([good, {"entryId": "2", "event": {"a": 1}, "contentType": "text/plain"}]),
        ),
        (
            "bad base64",
            json!([good, {"entryId": "2", "event": "%%%", "contentType": "application/octet-stream"}]),
        ),
    ] {
        let r = bulk("v1.0-alpha1", body).await;
        assert_eq!(r.status, 400, "{why}: {}", r.text());
        assert_eq!(r.json()["errorCode"], "ERR_PUBSUB_EVENTS_SER", "{why}");
    }
    let url = format!("{}/v1.0-alpha1/publish/bulk/nopubsub/batch", s.api_url());
    let r = send("POST", &url, &[], json!([good]).to_string())
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].clone()),
        (400, json!("ERR_PUBSUB_NOT_FOUND")),
        "400 for bulk, as daprd"
    );
    let url = format!(
        "{}/v1.0-alpha1/publish/bulk/pubsub/batch?metadata.rawPayload=maybe",
        s.api_url()
    );
    let r = send("POST", &url, &[], json!([good]).to_string())
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].clone()),
        (400, json!("ERR_PUBSUB_REQUEST_METADATA"))
    );

    // A good batch: field names in any case (the JavaScript SDK sends `entryID`), each entry
    // wrapped by its own content type; the /v1.0 path works too.
    let r = bulk(
        "v1.0-alpha1",
        json!([
            {"entryID": "j", "event": {"n": 1}, "contentType": "application/json", "metadata": {"k": "v"}},
            {"entryId": "t", "event": "two", "contentType": "text/plain"},
            {"entryId": "b", "event": "dGhyZWU=", "contentType": "application/octet-stream"},
        ]),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = bulk(
        "v1.0",
        json!([{"entryId": "c", "event": {"specversion": "1.0", "id": "ce-4", "source": "s", "type": "t", "data": 4}, "contentType": "application/cloudevents+json"}]),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let events: Vec<Value> = wait_until(Duration::from_secs(10), "four deliveries", || async {
        let got: Vec<Value> = app
            .seen()
            .iter()
            .filter(|r| r.path == "/batch")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        (got.len() >= 4).then_some(got)
    })
    .await;
    assert_eq!(
        events.len(),
        4,
        "only the good batches were published: {events:?}"
    );
    let find = |f: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .find(|e| f(e))
            .cloned()
            .unwrap_or_else(|| panic!("{events:?}"))
    };
    assert_eq!(
        find(&|e| e["data"] == json!({"n": 1}))["datacontenttype"],
        "application/json"
    );
    assert_eq!(
        find(&|e| e["data"] == "two")["datacontenttype"],
        "text/plain"
    );
    assert_eq!(
        find(&|e| e.get("data_base64").is_some())["data_base64"],
        "dGhyZWU="
    );
    let ce = find(&|e| e["id"] == "ce-4");
    assert_eq!(
        (
            ce["data"].clone(),
            ce["topic"].clone(),
            ce["pubsubname"].clone()
        ),
        (json!(4), json!("batch"), json!("pubsub"))
    );

    let text = s.metrics().await;
    let labels = ["topic=\"batch\"", "success=\"true\""];
    assert_eq!(
        sum_metric(&text, "dapr_component_pubsub_egress_bulk_count", &labels),
        2.0,
        "{text}"
    );
    assert_eq!(
        sum_metric(
            &text,
            "dapr_component_pubsub_egress_bulk_event_count",
            &labels
        ),
        4.0,
        "{text}"
    );
    assert_eq!(
        sum_metric(
            &text,
            "dapr_component_pubsub_egress_bulk_latencies_count",
            &labels
        ),
        2.0,
        "{text}"
    );
}

#[tokio::test]
async fn events_past_their_ttl_are_never_delivered() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let subs = json!([{"pubsubname": "pubsub", "topic": "timed", "route": "/timed"}]);
    let app = FakeApp::with_subscriptions("ttl", subs).await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("ttl-app").app_port(app.port).start().await;
    s.wait_ready().await;
    s.wait_subscriptions(1).await;
    let url = |query: &str| format!("{}/v1.0/publish/pubsub/timed{query}", s.api_url());
    for bad in ["0", "-1", "soon"] {
        let r = send(
            "POST",
            &url(&format!("?metadata.ttlInSeconds={bad}")),
            &[],
            "x",
        )
        .await
        .unwrap();
        assert_eq!(
            (r.status, r.json()["errorCode"].clone()),
            (400, json!("ERR_PUBSUB_REQUEST_METADATA")),
            "{bad}"
        );
    }
    let r = send(
        "POST",
        &url("?metadata.ttlInSeconds=60"),
        &[("content-type", "text/plain")],
        "fresh",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    // An event whose expiration has passed, however it got one, is dropped: counted, never
    // delivered.
    let old = json!({"specversion": "1.0", "id": "old", "source": "s", "type": "t", "data": "stale", "expiration": "2001-01-01T00:00:00Z"});
    let r = send(
        "POST",
        &url(""),
        &[("content-type", "application/cloudevents+json")],
        old.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let body = |r: &outrider_testkit::Recorded| serde_json::from_slice::<Value>(&r.body).unwrap();
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
    let timed: Vec<Value> = app
        .seen()
        .iter()
        .filter(|r| r.path == "/timed")
        .map(body)
        .collect();
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

#[tokio::test]
async fn a_dead_letter_topic_out_of_scope_keeps_failing_messages() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::json;
    use std::time::Duration;

    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let component = concat!(
        "kind: Component\nmetadata: {name: pubsub}\nspec:\n  type: pubsub.in-memory\n  metadata:\n",
        "  - {name: publishingScopes, value: 'dlq-app=work'}\n",
    );
    std::fs::write(dir.join("pubsub.yaml"), component).unwrap();
    let subs = json!([
        {"pubsubname": "pubsub", "topic": "work", "route": "/status/404", "deadLetterTopic": "poison"},
        {"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
    ]);
    let app = FakeApp::with_subscriptions("dq", subs).await;
    let mut s = mesh
        .sidecar("dlq-app")
        .app_port(app.port)
        .args(["--resources-path", dir.to_str().unwrap()])
        .start()
        .await;
    s.wait_ready().await;
    s.wait_subscriptions(2).await;
    assert_eq!(
        publish(&s.api_url(), "work", "text/plain", "undeliverable").await,
        204
    );
    // Without the dead-letter topic the drop would be final; here the message must stay.
    wait_until(
        Duration::from_secs(15),
        "the message offered again",
        || async {
            (app.seen()
                .iter()
                .filter(|r| r.path == "/status/404")
                .count()
                >= 2)
                .then_some(())
        },
    )
    .await;
    assert!(
        !app.seen().iter().any(|r| r.path == "/poison"),
        "nothing was written to the forbidden topic"
    );
}

/// Bulk subscriptions gather events into batches for one call each; every event's own status
/// decides its fate (a DROP goes to the dead-letter topic, the others are acknowledged).
#[tokio::test]
async fn bulk_subscriptions_deliver_batches_and_honour_each_status() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let app = FakeApp::with_subscriptions(
        "bulk",
        json!([
            {"pubsubname": "pubsub", "topic": "batch", "route": "/bulk/SUCCESS", "deadLetterTopic": "rejects",
             "bulkSubscribe": {"enabled": true, "maxMessagesCount": 5, "maxAwaitDurationMs": 300}},
            {"pubsubname": "pubsub", "topic": "rejects", "route": "/rejects"},
            {"pubsubname": "pubsub", "topic": "broken", "route": "/bulk/SUCCESS",
             "bulkSubscribe": {"enabled": true, "maxMessagesCount": 0}},
        ]),
    )
    .await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("bulk-sub").app_port(app.port).start().await;
    s.wait_ready().await;
    s.wait_subscriptions(2).await;
    assert!(
        s.log().contains("broken: bulkSubscribe: maxMessagesCount"),
        "{}",
        s.log()
    );
    let api = s.api_url();
    for i in 0..12 {
        let body = if i == 7 {
            json!({"n": i, "answer": "DROP"})
        } else {
            json!({"n": i})
        };
        assert_eq!(
            publish(&api, "batch", "application/json", &body.to_string()).await,
            204
        );
    }
    let batches = wait_until(
        Duration::from_secs(15),
        "every event in a batch",
        || async {
            let batches: Vec<Value> = app
                .seen()
                .into_iter()
                .filter(|r| r.path == "/bulk/SUCCESS")
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect();
            let n: usize = batches
                .iter()
                .map(|b| b["entries"].as_array().unwrap().len())
                .sum();
            (n >= 12).then_some(batches)
        },
    )
    .await;
    assert!(
        batches.len() >= 3 && batches.len() < 12,
        "12 events in {} calls: batched, at most 5 each",
        batches.len()
    );
    for b in &batches {
        assert_eq!(
            (
                b["type"].as_str(),
                b["topic"].as_str(),
                b["pubsubname"].as_str()
            ),
            (
                Some("com.dapr.event.sent.bulk"),
                Some("batch"),
                Some("pubsub")
            )
        );
        let entries = b["entries"].as_array().unwrap();
        assert!((1..=5).contains(&entries.len()), "{b}");
        for e in entries {
            assert_eq!(e["contentType"], "application/cloudevents+json");
            assert_eq!(
                e["event"]["topic"], "batch",
                "each entry is the CloudEvent: {e}"
            );
            assert!(e["entryId"].as_str().is_some_and(|id| !id.is_empty()));
        }
    }
    let mut ns: Vec<u64> = batches
        .iter()
        .flat_map(|b| b["entries"].as_array().unwrap().clone())
        .map(|e| e["event"]["data"]["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..12).collect::<Vec<_>>(), "each event once");
    let letter = wait_until(
        Duration::from_secs(10),
        "the dropped event's dead letter",
        || async { app.seen().into_iter().find(|r| r.path == "/rejects") },
    )
    .await;
    let letter: Value = serde_json::from_slice(&letter.body).unwrap();
    assert_eq!(letter["data"]["n"], 7);
    assert_eq!(
        app.seen().iter().filter(|r| r.path == "/rejects").count(),
        1
    );
}

/// A `Resiliency` retry policy for the pub/sub component's inbound direction decides how often a
/// failing delivery is tried before it goes to the dead-letter topic, and which statuses it
/// retries at all.
#[tokio::test]
async fn resiliency_policies_drive_delivery_retries() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::json;
    use std::time::Duration;

    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let docs = concat!(
        "kind: Component\nmetadata: {name: pubsub}\nspec: {type: pubsub.in-memory}\n---\n",
        "kind: Component\nmetadata: {name: picky}\nspec: {type: pubsub.in-memory}\n---\n",
        "kind: Component\nmetadata: {name: hasty}\nspec: {type: pubsub.in-memory}\n---\n",
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: delivery}\nspec:\n",
        "  policies:\n    timeouts: {quick: 200ms}\n    retries:\n",
        "      five: {policy: constant, duration: 20ms, maxRetries: 5}\n",
        "      only503: {policy: constant, duration: 20ms, maxRetries: 5, matching: {httpStatusCodes: '503'}}\n",
        "      two: {policy: constant, duration: 20ms, maxRetries: 2}\n",
        "  targets:\n    components:\n",
        "      pubsub: {inbound: {retry: five}}\n",
        "      picky: {inbound: {retry: only503}}\n",
        "      hasty: {inbound: {timeout: quick, retry: two}}\n",
    );
    std::fs::write(dir.join("res.yaml"), docs).unwrap();
    let app = FakeApp::with_subscriptions(
        "rs",
        json!([
            {"pubsubname": "pubsub", "topic": "work", "route": "/status/500", "deadLetterTopic": "poison"},
            {"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
            {"pubsubname": "picky", "topic": "work", "route": "/status/500", "deadLetterTopic": "poison"},
            {"pubsubname": "picky", "topic": "poison", "route": "/picky-poison"},
            {"pubsubname": "hasty", "topic": "work", "route": "/slow/5000", "deadLetterTopic": "poison"},
            {"pubsubname": "hasty", "topic": "poison", "route": "/hasty-poison"},
        ]),
    )
    .await;
    let mut s = mesh
        .sidecar("resilient-app")
        .app_port(app.port)
        .args(["--resources-path", dir.to_str().unwrap()])
        .start()
        .await;
    s.wait_ready().await;
    s.wait_subscriptions(6).await;
    assert_eq!(
        publish(&s.api_url(), "work", "application/json", r#"{"job":1}"#).await,
        204
    );
    let url = format!("{}/v1.0/publish/hasty/work", s.api_url());
    let r = send(
        "POST",
        &url,
        &[("content-type", "application/json")],
        r#"{"job":3}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let url = format!("{}/v1.0/publish/picky/work", s.api_url());
    let r = send(
        "POST",
        &url,
        &[("content-type", "application/json")],
        r#"{"job":2}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    wait_until(
        Duration::from_secs(15),
        "the three dead letters",
        || async {
            let seen = app.seen();
            let at = |p: &str| seen.iter().any(|r| r.path == p);
            (at("/poison") && at("/picky-poison") && at("/hasty-poison")).then_some(())
        },
    )
    .await;
    // A hanging app: each attempt timed out after 200 ms, three attempts, then the dead letter,
    // long before the app's 5 s answer.
    assert_eq!(
        app.seen().iter().filter(|r| r.path == "/slow/5000").count(),
        3
    );
    let timeouts = s
        .metric_sum(
            "dapr_resiliency_activations_total",
            &["policy=\"timeout\"", "target=\"component_hasty\""],
        )
        .await;
    assert_eq!(timeouts, 3.0);
    let tries = |job: u64| {
        app.seen()
            .iter()
            .filter(|r| r.path == "/status/500")
            .filter(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["data"]["job"] == job
            })
            .count()
    };
    assert_eq!(
        tries(1),
        6,
        "the first attempt and the policy's five retries"
    );
    assert_eq!(
        tries(2),
        1,
        "500 is not among the policy's matching codes: no retry"
    );

    // A policy the document does not define is refused at start, naming file and field.
    std::fs::write(
        dir.join("res.yaml"),
        "kind: Resiliency\nmetadata: {name: r}\nspec:\n  targets:\n    components:\n      pubsub: {inbound: {retry: nowhere}}\n",
    )
    .unwrap();
    let mut bad = mesh
        .sidecar("resilient-bad")
        .args(["--resources-path", dir.to_str().unwrap()])
        .spawn();
    assert_eq!(bad.wait_exit(Duration::from_secs(30)).await, Some(2));
    assert!(
        bad.log()
            .contains("res.yaml: spec.targets.components.pubsub.inbound.retry"),
        "{}",
        bad.log()
    );
}

/// A raw message reaches a `rawPayload` subscriber wrapped in an envelope of the sidecar's
/// making (`data_base64`); a subscriber that expects CloudEvents cannot take it, so it fails and
/// ends in the dead-letter topic.
#[tokio::test]
async fn raw_payloads_reach_raw_subscribers_and_fail_others() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let app = FakeApp::with_subscriptions(
        "raw",
        json!([
            {"pubsubname": "pubsub", "topic": "raw", "route": "/raw", "metadata": {"rawPayload": "true"}},
            {"pubsubname": "pubsub", "topic": "strict", "route": "/strict", "deadLetterTopic": "rejects"},
            {"pubsubname": "pubsub", "topic": "rejects", "route": "/rejects", "metadata": {"rawPayload": "true"}},
        ]),
    )
    .await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("raw-sub").app_port(app.port).start().await;
    s.wait_ready().await;
    s.wait_subscriptions(3).await;
    let api = s.api_url();
    let raw = |topic: &str| format!("{topic}?metadata.rawPayload=true");
    let with_metadata = format!(
        "{}&metadata.x-region=eu&metadata.content-encoding=gzip",
        raw("raw")
    );
    assert_eq!(
        publish(
            &api,
            &with_metadata,
            "application/octet-stream",
            "\u{0}not json\u{1}"
        )
        .await,
        204
    );
    assert_eq!(
        publish(&api, &raw("strict"), "text/plain", "plain bytes").await,
        204
    );
    let got = wait_until(Duration::from_secs(10), "the raw delivery", || async {
        app.seen().into_iter().find(|r| r.path == "/raw")
    })
    .await;
    assert_eq!(got.headers["content-type"], "application/cloudevents+json");
    assert_eq!(
        got.headers["x-region"], "eu",
        "publish metadata reaches the app as headers"
    );
    assert!(
        got.headers.get("content-encoding").is_none(),
        "but never headers about the request's own body"
    );
    let e: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(e["data_base64"], "AG5vdCBqc29uAQ==", "{e}");
    assert_eq!(
        (e["topic"].as_str(), e["source"].as_str()),
        (Some("raw"), Some("Dapr"))
    );
    let letter = wait_until(
        Duration::from_secs(15),
        "the dead letter of the raw message",
        || async { app.seen().into_iter().find(|r| r.path == "/rejects") },
    )
    .await;
    let letter: Value = serde_json::from_slice(&letter.body).unwrap();
    assert_eq!(
        letter["data_base64"], "cGxhaW4gYnl0ZXM=",
        "the original bytes went to the dead-letter topic: {letter}"
    );
    assert!(
        !app.seen().iter().any(|r| r.path == "/strict"),
        "a non-JSON message never reaches a CloudEvent route"
    );
}
