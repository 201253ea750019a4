//! Subscriptions through a real sidecar (api.md §4.4–4.6): programmatic and declarative ones,
//! routing rules, and raw payloads.

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, publish};
use serde_json::{Value, json};

#[tokio::test]
async fn programmatic_subscriptions_receive_cloudevents() {
    let subs = json!([
        {"pubsubname": "pubsub", "topic": "orders", "route": "/events"},
        {"pubsubname": "pubsub", "topic": "flaky", "routes": {"default": "status/500"}},
        {"pubsubname": "pubsub", "topic": "gone", "route": "/status/404"},
        {"pubsubname": "pubsub", "topic": "ruled", "routes": {"rules": [{"match": "event.type ==", "path": "/x"}]}},
    ]);
    let app = FakeApp::with_subscriptions("sub", subs).await;
    let mesh = Mesh::new();
    let s = mesh
        .sidecar("subapp")
        .app_port(app.port)
        .start_subscribed(3)
        .await;
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

    let events = app
        .wait_seen(Duration::from_secs(10), "three deliveries", |seen| {
            let got: Vec<_> = seen.into_iter().filter(|r| r.path == "/events").collect();
            (got.len() == 3).then_some(got)
        })
        .await;
    let mut ns = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for e in &events {
        assert_eq!(e.method, "POST");
        assert_eq!(e.headers["content-type"], "application/cloudevents+json");
        assert!(e.headers.contains_key("traceparent"));
        let ce = e.json();
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
    app.wait_at("/status/500", 3, Duration::from_secs(10)).await;
    assert_eq!(
        app.count_at("/status/404"),
        1,
        "a dropped message came back"
    );
}

#[tokio::test]
async fn declarative_subscriptions_deliver_and_yield_to_the_apps_own() {
    let mesh = Mesh::new();
    let docs = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: decl}\nspec:\n  pubsubname: pubsub\n  topic: declared\n  routes: {default: /declared}\n---\n\
apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata: {name: shadowed}\nspec: {pubsubname: pubsub, topic: orders, route: /wrong}\n---\n\
apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata: {name: elsewhere}\nspec: {pubsubname: pubsub, topic: other, route: /other}\nscopes: [some-other-app]\n---\n\
kind: Component\nmetadata: {name: pubsub}\nspec: {type: pubsub.in-memory}\n";
    let res = mesh.resources("res", "subs.yaml", docs);
    let programmatic = json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/events"}]);
    let (app, s) = mesh
        .sidecar("decl-app")
        .resources(&res)
        .start_subscriber_expecting("d", programmatic, 2)
        .await;
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
    app.wait_seen(Duration::from_secs(10), "both deliveries", |seen| {
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
    mesh.resources("res", "subs.yaml", "kind: Subscription\nmetadata: {name: r}\nspec:\n  pubsubname: pubsub\n  topic: t\n  routes: {rules: [{match: 'event.type ==', path: /x}], default: /d}\n");
    let says = ["subs.yaml: spec.routes.rules[0]: event.type =="];
    let bad = mesh.sidecar("decl-bad").resources(&res);
    bad.start_fails(Duration::from_secs(30), 2, &says).await;
}

/// Routing rules pick the route per event, in order, before the default, for the app's own
/// subscriptions and declared ones; an event no rule routes goes to the dead-letter topic.
#[tokio::test]
async fn routing_rules_pick_the_route_per_event() {
    let mesh = Mesh::new();
    let declared = concat!(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: shipping}\nspec:\n",
        "  pubsubname: pubsub\n  topic: shipments\n  deadLetterTopic: unrouted\n  routes:\n    rules:\n",
        "    - {match: 'event.type == \"parcel\"', path: /parcels}\n",
        "    - {match: 'event.data.weight > 30', path: /freight}\n",
        "---\nkind: Component\nmetadata: {name: pubsub}\nspec: {type: pubsub.in-memory}\n",
    );
    let res = mesh.resources("res", "subs.yaml", declared);
    let (app, s) = mesh
        .sidecar("router-app")
        .resources(&res)
        .start_subscriber_expecting(
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
            3,
        )
        .await;
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
    let ce = "application/cloudevents+json";
    let events = [
        ("orders", ce, cloud_event("widget", json!({"price": 1}))),
        ("orders", "application/json", r#"{"price": 500}"#.to_owned()),
        ("orders", "application/json", r#"{"price": 5}"#.to_owned()),
        ("shipments", ce, cloud_event("parcel", json!({"weight": 1}))),
        (
            "shipments",
            "application/json",
            r#"{"weight": 80}"#.to_owned(),
        ),
        (
            "shipments",
            "application/json",
            r#"{"weight": 2}"#.to_owned(),
        ),
    ];
    for (topic, content_type, body) in events {
        assert_eq!(
            publish(&api, topic, content_type, &body).await,
            204,
            "{body}"
        );
    }
    let paths = app
        .wait_seen(Duration::from_secs(15), "six deliveries", |seen| {
            let mut paths: Vec<String> = seen.into_iter().map(|r| r.path).collect();
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
    let letter = app.seen_at("/unrouted")[0].json();
    assert_eq!(
        (letter["topic"].as_str(), &letter["data"]["weight"]),
        (Some("shipments"), &json!(2))
    );
}

/// A raw message reaches a `rawPayload` subscriber wrapped in an envelope of the sidecar's
/// making (`data_base64`); a subscriber that expects CloudEvents cannot take it, so it fails and
/// ends in the dead-letter topic.
#[tokio::test]
async fn raw_payloads_reach_raw_subscribers_and_fail_others() {
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
    let s = mesh
        .sidecar("raw-sub")
        .app_port(app.port)
        .start_subscribed(3)
        .await;
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
    let got = app
        .wait_at("/raw", 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(got.headers["content-type"], "application/cloudevents+json");
    assert_eq!(
        got.headers["x-region"], "eu",
        "publish metadata reaches the app as headers"
    );
    assert!(
        got.headers.get("content-encoding").is_none(),
        "but never headers about the request's own body"
    );
    let e = got.json();
    assert_eq!(e["data_base64"], "AG5vdCBqc29uAQ==", "{e}");
    assert_eq!(
        (e["topic"].as_str(), e["source"].as_str()),
        (Some("raw"), Some("Dapr"))
    );
    let letter = app.wait_at("/rejects", 1, Duration::from_secs(15)).await[0].json();
    assert_eq!(
        letter["data_base64"], "cGxhaW4gYnl0ZXM=",
        "the original bytes went to the dead-letter topic: {letter}"
    );
    assert!(
        !app.seen().iter().any(|r| r.path == "/strict"),
        "a non-JSON message never reaches a CloudEvent route"
    );
}
