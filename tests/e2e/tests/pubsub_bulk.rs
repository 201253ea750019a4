//! Bulk publish and bulk subscribe through a real sidecar (api.md §4.3, §4.6): every entry is
//! checked before any is published, and each entry's status in a delivered batch is honoured.

use outrider_testkit::{Mesh, publish, send, sum_metric};

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

/// A bulk subscription's calls to the app go through the component's inbound Resiliency
/// policies, as single deliveries do: each batch post is cut at the policy's timeout and
/// retried by its retry policy before the dead-letter path takes over.
#[tokio::test]
async fn bulk_deliveries_follow_the_components_inbound_policies() {
    use outrider_testkit::{FakeApp, wait_until};
    use serde_json::json;
    use std::time::Duration;

    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    let docs = concat!(
        "kind: Component\nmetadata: {name: pubsub}\nspec: {type: pubsub.in-memory}\n---\n",
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: delivery}\nspec:\n",
        "  policies:\n    timeouts: {quick: 200ms}\n",
        "    retries: {two: {policy: constant, duration: 20ms, maxRetries: 2}}\n",
        "  targets:\n    components:\n      pubsub: {inbound: {timeout: quick, retry: two}}\n",
    );
    std::fs::write(dir.join("res.yaml"), docs).unwrap();
    let bulk = json!({"enabled": true, "maxMessagesCount": 1, "maxAwaitDurationMs": 10});
    let app = FakeApp::with_subscriptions(
        "bkr",
        json!([
            {"pubsubname": "pubsub", "topic": "work", "route": "/slow/5000",
             "deadLetterTopic": "poison", "bulkSubscribe": bulk},
            {"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
        ]),
    )
    .await;
    let mut s = mesh
        .sidecar("bulk-resilient")
        .app_port(app.port)
        .args(["--resources-path", dir.to_str().unwrap()])
        .start()
        .await;
    s.wait_ready().await;
    s.wait_subscriptions(2).await;
    assert_eq!(
        publish(&s.api_url(), "work", "application/json", r#"{"job":1}"#).await,
        204
    );
    // Without the timeout each post would hold the batch for 5 s: three dead-letter attempts
    // would take 15 s.
    wait_until(Duration::from_secs(10), "the dead letter", || async {
        app.seen().iter().any(|r| r.path == "/poison").then_some(())
    })
    .await;
    let posts = app.seen().iter().filter(|r| r.path == "/slow/5000").count();
    assert_eq!(
        posts, 9,
        "three dead-letter attempts, each a post and the policy's two retries"
    );
    let timeouts = s
        .metric_sum(
            "dapr_resiliency_activations_total",
            &[
                "policy=\"timeout\"",
                "target=\"component_pubsub\"",
                "flow_direction=\"inbound\"",
            ],
        )
        .await;
    assert_eq!(timeouts, 9.0, "every post was cut at the policy's timeout");
}
