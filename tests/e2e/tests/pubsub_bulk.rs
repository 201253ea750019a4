//! Bulk publish and bulk subscribe through a real sidecar (api.md §4.3, §4.6): every entry is
//! checked before any is published, and each entry's status in a delivered batch is honoured.

use std::time::Duration;

use outrider_testkit::{FakeApp, JSON, Mesh, Recorded, publish, sum_metric};
use serde_json::{Value, json};

#[tokio::test]
async fn bulk_publish_checks_every_entry_then_publishes_them_all() {
    let mesh = Mesh::new();
    let (app, s) = mesh
        .sidecar("bulk-app")
        .start_subscriber(
            "bk",
            json!([{"pubsubname": "pubsub", "topic": "batch", "route": "/batch"}]),
        )
        .await;
    let bulk = |prefix: &str, body: Value| {
        let path = format!("/{prefix}/publish/bulk/pubsub/batch");
        let s = &s;
        async move { s.request("POST", &path, JSON, body.to_string()).await }
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
        r.assert_error(400, "ERR_PUBSUB_EVENTS_SER", why);
    }
    for (path, code, why) in [
        (
            "nopubsub/batch",
            "ERR_PUBSUB_NOT_FOUND",
            "400 for bulk, as daprd",
        ),
        (
            "pubsub/batch?metadata.rawPayload=maybe",
            "ERR_PUBSUB_REQUEST_METADATA",
            "bad metadata",
        ),
    ] {
        let path = format!("/v1.0-alpha1/publish/bulk/{path}");
        let r = s
            .request("POST", &path, &[], json!([good]).to_string())
            .await;
        r.assert_error(400, code, why);
    }

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
    let events: Vec<Value> = app
        .wait_at("/batch", 4, Duration::from_secs(10))
        .await
        .iter()
        .map(Recorded::json)
        .collect();
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
    let s = mesh
        .sidecar("bulk-sub")
        .app_port(app.port)
        .start_subscribed(2)
        .await;
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
    let batches = app
        .wait_seen(Duration::from_secs(15), "every event in a batch", |seen| {
            let batches: Vec<Value> = seen
                .iter()
                .filter(|r| r.path == "/bulk/SUCCESS")
                .map(Recorded::json)
                .collect();
            let n: usize = batches
                .iter()
                .map(|b| b["entries"].as_array().unwrap().len())
                .sum();
            (n >= 12).then_some(batches)
        })
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
    let letter = app.wait_at("/rejects", 1, Duration::from_secs(10)).await[0].json();
    assert_eq!(letter["data"]["n"], 7);
    assert_eq!(app.count_at("/rejects"), 1);
}

/// A bulk subscription's calls to the app go through the component's inbound Resiliency
/// policies, as single deliveries do: each batch post is cut at the policy's timeout and
/// retried by its retry policy before the dead-letter path takes over.
#[tokio::test]
async fn bulk_deliveries_follow_the_components_inbound_policies() {
    let mesh = Mesh::new();
    let docs = concat!(
        "kind: Component\nmetadata: {name: pubsub}\nspec: {type: pubsub.in-memory}\n---\n",
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: delivery}\nspec:\n",
        "  policies:\n    timeouts: {quick: 200ms}\n",
        "    retries: {two: {policy: constant, duration: 20ms, maxRetries: 2}}\n",
        "  targets:\n    components:\n      pubsub: {inbound: {timeout: quick, retry: two}}\n",
    );
    let res = mesh.resources("res", "res.yaml", docs);
    let bulk = json!({"enabled": true, "maxMessagesCount": 1, "maxAwaitDurationMs": 10});
    let (app, s) = mesh
        .sidecar("bulk-resilient")
        .resources(&res)
        .start_subscriber(
            "bkr",
            json!([
                {"pubsubname": "pubsub", "topic": "work", "route": "/slow/5000",
                 "deadLetterTopic": "poison", "bulkSubscribe": bulk},
                {"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
            ]),
        )
        .await;
    assert_eq!(
        publish(&s.api_url(), "work", "application/json", r#"{"job":1}"#).await,
        204
    );
    // Without the timeout each post would hold the batch for 5 s: three dead-letter attempts
    // would take 15 s.
    app.wait_at("/poison", 1, Duration::from_secs(10)).await;
    let posts = app.count_at("/slow/5000");
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
