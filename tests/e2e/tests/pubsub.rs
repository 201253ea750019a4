//! The publish API through a real sidecar (api.md §4.1, §1.4).

use outrider_testkit::{Mesh, send, sum_metric};

#[tokio::test]
async fn publish_answers_dapr_codes() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("pub").start().await;
    let url = |rest: &str| format!("{}/v1.0/publish/{rest}", s.api_url());
    let ok = [
        ("pubsub/orders", "text/plain", "hello"),
        ("pubsub/orders/nested/topic", "application/json", "{\"a\":1}"),
        ("pubsub/orders?metadata.rawPayload=true", "application/octet-stream", "raw"),
        ("pubsub/orders", "application/cloudevents+json", "{\"id\":\"x\",\"data\":1}"),
    ];
    for (path, ct, body) in ok {
        let r = send("POST", &url(path), &[("content-type", ct)], body).await.unwrap();
        assert_eq!(r.status, 204, "{path}: {}", r.text());
    }
    assert_eq!(send("PUT", &url("pubsub/orders"), &[], "x").await.unwrap().status, 204);
    let bad = [
        ("nopubsub/orders", "text/plain", "x", 404, "ERR_PUBSUB_NOT_FOUND"),
        ("pubsub", "text/plain", "x", 404, "ERR_TOPIC_NAME_EMPTY"),
        ("pubsub/orders?metadata.rawPayload=maybe", "text/plain", "x", 400, "ERR_PUBSUB_REQUEST_METADATA"),
        ("pubsub/orders", "application/cloudevents+json", "not json", 500, "ERR_PUBSUB_CLOUD_EVENTS_SER"),
        ("pubsub/orders", "application/cloudevents+json", "[1,2]", 500, "ERR_PUBSUB_CLOUD_EVENTS_SER"),
    ];
    for (path, ct, body, status, code) in bad {
        let r = send("POST", &url(path), &[("content-type", ct)], body).await.unwrap();
        assert_eq!((r.status, r.json()["errorCode"].as_str()), (status, Some(code)), "{path}: {}", r.text());
    }
    let meta = send("GET", &format!("{}/v1.0/metadata", s.api_url()), &[], "").await.unwrap().json();
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
    let s = mesh.sidecar("nopub").args(["--resources-path", dir.to_str().unwrap()]).start().await;
    let r = send("POST", &format!("{}/v1.0/publish/pubsub/t", s.api_url()), &[], "x").await.unwrap();
    assert_eq!((r.status, r.json()["errorCode"].as_str()), (400, Some("ERR_PUBSUB_NOT_CONFIGURED")));
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
        {"pubsubname": "pubsub", "topic": "ruled", "routes": {"rules": [{"match": "event.type == \"x\"", "path": "/x"}]}},
    ]);
    let app = FakeApp::with_subscriptions("sub", subs).await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("subapp").app_port(app.port).start().await;
    s.wait_ready().await;
    let listed = s.wait_subscriptions(3).await;
    let topics: Vec<&str> = listed.iter().map(|s| s["topic"].as_str().unwrap()).collect();
    assert_eq!(topics, ["orders", "flaky", "gone"], "rules are refused, not routed elsewhere");
    assert!(listed.iter().all(|s| s["type"] == "PROGRAMMATIC"));
    assert_eq!(app.subscribe_calls(), 1, "the sidecar asks for subscriptions once");

    let api = s.api_url();
    for i in 0..3 {
        assert_eq!(publish(&api, "orders", "application/json", &format!("{{\"n\":{i}}}")).await, 204);
    }
    assert_eq!(publish(&api, "flaky", "text/plain", "again").await, 204);
    assert_eq!(publish(&api, "gone", "text/plain", "once").await, 204);

    let events = wait_until(Duration::from_secs(10), "three deliveries", || async {
        let got: Vec<_> = app.seen().into_iter().filter(|r| r.path == "/events").collect();
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
            (ce["topic"].as_str(), ce["pubsubname"].as_str(), ce["source"].as_str()),
            (Some("orders"), Some("pubsub"), Some("subapp"))
        );
        assert_eq!((ce["specversion"].as_str(), ce["type"].as_str()), (Some("1.0"), Some("com.dapr.event.sent")));
        ids.insert(ce["id"].as_str().unwrap().to_owned());
        ns.push(ce["data"]["n"].as_u64().unwrap());
    }
    ns.sort_unstable();
    assert_eq!((ns, ids.len()), (vec![0, 1, 2], 3));
    // 500 is retried by the broker; 404 is dropped after one delivery.
    wait_until(Duration::from_secs(10), "redeliveries of the failing message", || async {
        (app.seen().iter().filter(|r| r.path == "/status/500").count() >= 3).then_some(())
    })
    .await;
    assert_eq!(app.seen().iter().filter(|r| r.path == "/status/404").count(), 1, "a dropped message came back");
}

async fn publish(api: &str, topic: &str, content_type: &str, body: &str) -> u16 {
    let url = format!("{api}/v1.0/publish/pubsub/{topic}");
    send("POST", &url, &[("content-type", content_type)], body.to_owned()).await.unwrap().status
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
    assert_eq!(publish(&api, "work", "application/json", r#"{"job":1}"#).await, 204);
    assert_eq!(publish(&api, "gone", "text/plain", "unknown route").await, 204);
    let letters = wait_until(Duration::from_secs(15), "two dead letters", || async {
        let got: Vec<_> = app.seen().into_iter().filter(|r| r.path == "/poison").collect();
        (got.len() == 2).then_some(got)
    })
    .await;
    assert_eq!(app.seen().iter().filter(|r| r.path == "/status/500").count(), 3, "tried three times before giving up");
    assert_eq!(app.seen().iter().filter(|r| r.path == "/status/404").count(), 1, "a drop is not retried");
    let mut original_topics: Vec<String> = letters
        .iter()
        .map(|l| serde_json::from_slice::<Value>(&l.body).unwrap()["topic"].as_str().unwrap().to_owned())
        .collect();
    original_topics.sort();
    assert_eq!(original_topics, ["gone", "work"], "the dead letter is the original event, untouched");

    // Dapr's component metrics count each delivery by outcome and each publish by result.
    let text = s.metrics().await;
    let ingress = |topic: &str, process_status: &str| {
        let (t, p) = (format!("topic=\"{topic}\""), format!("process_status=\"{process_status}\""));
        let labels = ["app_id=\"dl-app\"", "component=\"pubsub\"", "namespace=\"default\"", &t, &p];
        (
            sum_metric(&text, "dapr_component_pubsub_ingress_count", &labels),
            sum_metric(&text, "dapr_component_pubsub_ingress_latencies_count", &labels),
        )
    };
    assert_eq!(ingress("work", "retry"), (3.0, 3.0), "{text}");
    assert_eq!(ingress("gone", "drop"), (1.0, 1.0), "{text}");
    assert_eq!(ingress("poison", "success"), (2.0, 2.0), "{text}");
    assert_eq!(ingress("work", "success").0, 0.0);
    let bucket =
        sum_metric(&text, "dapr_component_pubsub_ingress_latencies_bucket", &["topic=\"poison\"", "le=\"+Inf\""]);
    assert_eq!(bucket, 2.0, "latencies are histograms with Dapr's buckets: {text}");
    for topic in ["work", "gone"] {
        let t = format!("topic=\"{topic}\"");
        let n =
            sum_metric(&text, "dapr_component_pubsub_egress_count", &[&t, "success=\"true\"", "component=\"pubsub\""]);
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
    let app =
        FakeApp::with_subscriptions("d", json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/events"}]))
            .await;
    let mut s =
        mesh.sidecar("decl-app").app_port(app.port).args(["--resources-path", dir.to_str().unwrap()]).start().await;
    s.wait_ready().await;
    let listed = s.wait_subscriptions(2).await;
    let kinds: Vec<(&str, &str)> =
        listed.iter().map(|s| (s["topic"].as_str().unwrap(), s["type"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("orders", "PROGRAMMATIC"), ("declared", "DECLARATIVE")]);
    let api = s.api_url();
    assert_eq!(publish(&api, "declared", "text/plain", "d1").await, 204);
    assert_eq!(publish(&api, "orders", "text/plain", "o1").await, 204);
    wait_until(Duration::from_secs(10), "both deliveries", || async {
        let seen = app.seen();
        (seen.iter().any(|r| r.path == "/declared") && seen.iter().any(|r| r.path == "/events")).then_some(())
    })
    .await;
    assert!(!app.seen().iter().any(|r| r.path == "/wrong" || r.path == "/other"), "{:?}", app.seen());

    // Rules are refused at start, naming file and field.
    std::fs::write(dir.join("subs.yaml"), "kind: Subscription\nmetadata: {name: r}\nspec:\n  pubsubname: pubsub\n  topic: t\n  routes: {rules: [{match: 'event.type == \"x\"', path: /x}], default: /d}\n").unwrap();
    let mut bad = mesh.sidecar("decl-bad").args(["--resources-path", dir.to_str().unwrap()]).spawn();
    assert_eq!(bad.wait_exit(Duration::from_secs(30)).await, Some(2));
    assert!(bad.log().contains("subs.yaml: spec.routes.rules"), "{}", bad.log());
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
    let route = |topic: &str| json!({"pubsubname": "pubsub", "topic": topic, "route": format!("/{topic}")});
    let app = FakeApp::with_subscriptions("sc", json!(["public", "audit", "private", "elsewhere"].map(route))).await;
    let mut s =
        mesh.sidecar("scoped-app").app_port(app.port).args(["--resources-path", dir.to_str().unwrap()]).start().await;
    s.wait_ready().await;
    // Subscriptions start in the app's order; the warning for the last one means all are done.
    wait_until(Duration::from_secs(10), "every subscription handled", || async {
        s.log().contains("subscription to topic 'elsewhere' on pubsub 'pubsub' is not allowed").then_some(())
    })
    .await;
    assert!(s.log().contains("subscription to topic 'private' on pubsub 'pubsub' is not allowed"), "{}", s.log());
    let mut topics: Vec<String> =
        s.wait_subscriptions(2).await.iter().map(|s| s["topic"].as_str().unwrap().to_owned()).collect();
    topics.sort();
    assert_eq!(topics, ["audit", "public"], "only topics in the app's subscription scope are subscribed");

    let api = s.api_url();
    for denied in ["audit", "elsewhere"] {
        let url = format!("{api}/v1.0/publish/pubsub/{denied}");
        let r = send("POST", &url, &[("content-type", "text/plain")], "no").await.unwrap();
        assert_eq!(r.status, 403, "{denied}");
        assert_eq!(r.json()["errorCode"], "ERR_PUBSUB_FORBIDDEN");
        assert_eq!(r.json()["message"], format!("topic {denied} is not allowed for app id scoped-app"));
    }
    assert_eq!(publish(&api, "private", "text/plain", "p").await, 204, "publishing needs no subscription");
    assert_eq!(publish(&api, "public", "text/plain", "hello").await, 204);
    wait_until(Duration::from_secs(10), "the allowed delivery", || async {
        app.seen().iter().any(|r| r.path == "/public").then_some(())
    })
    .await;
    let paths: Vec<String> = app.seen().iter().map(|r| r.path.clone()).filter(|p| p != "/dapr/subscribe").collect();
    assert_eq!(paths, ["/public"], "the refused publish to audit wrote nothing");
}

#[tokio::test]
async fn bulk_publish_checks_every_entry_then_publishes_them_all() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::{Value, json};
    use std::time::Duration;

    let app =
        FakeApp::with_subscriptions("bk", json!([{"pubsubname": "pubsub", "topic": "batch", "route": "/batch"}])).await;
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("bulk-app").app_port(app.port).start().await;
    s.wait_ready().await;
    s.wait_subscriptions(1).await;
    let bulk = |prefix: &str, body: Value| {
        let url = format!("{}/{prefix}/publish/bulk/pubsub/batch", s.api_url());
        async move { send("POST", &url, &[("content-type", "application/json")], body.to_string()).await.unwrap() }
    };

    // Refused batches publish nothing, not even their valid entries.
    let good = json!({"entryId": "ok", "event": "fine", "contentType": "text/plain"});
    for (why, body) in [
        ("not an array", json!({"entryId": "1"})),
        ("duplicate id", json!([good, good])),
        ("missing id", json!([good, {"event": "x", "contentType": "text/plain"}])),
        ("no content type", json!([good, {"entryId": "2", "event": "x"}])),
        ("text that is not a string", json!([good, {"entryId": "2", "event": {"a": 1}, "contentType": "text/plain"}])),
        ("bad base64", json!([good, {"entryId": "2", "event": "%%%", "contentType": "application/octet-stream"}])),
    ] {
        let r = bulk("v1.0-alpha1", body).await;
        assert_eq!(r.status, 400, "{why}: {}", r.text());
        assert_eq!(r.json()["errorCode"], "ERR_PUBSUB_EVENTS_SER", "{why}");
    }
    let url = format!("{}/v1.0-alpha1/publish/bulk/nopubsub/batch", s.api_url());
    let r = send("POST", &url, &[], json!([good]).to_string()).await.unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].clone()),
        (400, json!("ERR_PUBSUB_NOT_FOUND")),
        "400 for bulk, as daprd"
    );
    let url = format!("{}/v1.0-alpha1/publish/bulk/pubsub/batch?metadata.rawPayload=maybe", s.api_url());
    let r = send("POST", &url, &[], json!([good]).to_string()).await.unwrap();
    assert_eq!((r.status, r.json()["errorCode"].clone()), (400, json!("ERR_PUBSUB_REQUEST_METADATA")));

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
    assert_eq!(events.len(), 4, "only the good batches were published: {events:?}");
    let find =
        |f: &dyn Fn(&Value) -> bool| events.iter().find(|e| f(e)).cloned().unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(find(&|e| e["data"] == json!({"n": 1}))["datacontenttype"], "application/json");
    assert_eq!(find(&|e| e["data"] == "two")["datacontenttype"], "text/plain");
    assert_eq!(find(&|e| e.get("data_base64").is_some())["data_base64"], "dGhyZWU=");
    let ce = find(&|e| e["id"] == "ce-4");
    assert_eq!(
        (ce["data"].clone(), ce["topic"].clone(), ce["pubsubname"].clone()),
        (json!(4), json!("batch"), json!("pubsub"))
    );

    let text = s.metrics().await;
    let labels = ["topic=\"batch\"", "success=\"true\""];
    assert_eq!(sum_metric(&text, "dapr_component_pubsub_egress_bulk_count", &labels), 2.0, "{text}");
    assert_eq!(sum_metric(&text, "dapr_component_pubsub_egress_bulk_event_count", &labels), 4.0, "{text}");
    assert_eq!(sum_metric(&text, "dapr_component_pubsub_egress_bulk_latencies_count", &labels), 2.0, "{text}");
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
        let r = send("POST", &url(&format!("?metadata.ttlInSeconds={bad}")), &[], "x").await.unwrap();
        assert_eq!((r.status, r.json()["errorCode"].clone()), (400, json!("ERR_PUBSUB_REQUEST_METADATA")), "{bad}");
    }
    let r = send("POST", &url("?metadata.ttlInSeconds=60"), &[("content-type", "text/plain")], "fresh").await.unwrap();
    assert_eq!(r.status, 204);
    // An event whose expiration has passed, however it got one, is dropped: counted, never
    // delivered.
    let old = json!({"specversion": "1.0", "id": "old", "source": "s", "type": "t", "data": "stale", "expiration": "2001-01-01T00:00:00Z"});
    let r = send("POST", &url(""), &[("content-type", "application/cloudevents+json")], old.to_string()).await.unwrap();
    assert_eq!(r.status, 204);
    let body = |r: &outrider_testkit::Recorded| serde_json::from_slice::<Value>(&r.body).unwrap();
    let (s, app) = (&s, &app);
    wait_until(Duration::from_secs(10), "the stale event dropped and the fresh one delivered", || async move {
        let text = s.metrics().await;
        let dropped =
            sum_metric(&text, "dapr_component_pubsub_ingress_count", &["topic=\"timed\"", "process_status=\"drop\""]);
        (dropped == 1.0 && app.seen().iter().any(|r| r.path == "/timed")).then_some(())
    })
    .await;
    let timed: Vec<Value> = app.seen().iter().filter(|r| r.path == "/timed").map(body).collect();
    assert_eq!(timed.len(), 1, "only the fresh event reached the app: {timed:?}");
    assert_eq!(timed[0]["data"], "fresh");
    let (time, expiration) = (timed[0]["time"].as_str().unwrap(), timed[0]["expiration"].as_str().unwrap());
    assert!(expiration.ends_with('Z') && expiration > time, "{time} then {expiration}");
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
    let mut s =
        mesh.sidecar("dlq-app").app_port(app.port).args(["--resources-path", dir.to_str().unwrap()]).start().await;
    s.wait_ready().await;
    s.wait_subscriptions(2).await;
    assert_eq!(publish(&s.api_url(), "work", "text/plain", "undeliverable").await, 204);
    // Without the dead-letter topic the drop would be final; here the message must stay.
    wait_until(Duration::from_secs(15), "the message offered again", || async {
        (app.seen().iter().filter(|r| r.path == "/status/404").count() >= 2).then_some(())
    })
    .await;
    assert!(!app.seen().iter().any(|r| r.path == "/poison"), "nothing was written to the forbidden topic");
}
