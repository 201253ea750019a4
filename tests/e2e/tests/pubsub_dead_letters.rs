//! What happens to a message its subscriber keeps failing (api.md §4.6): retries as the
//! resiliency policy says, then the dead-letter topic when it is in scope.

use std::time::Duration;

use outrider_testkit::{JSON, Mesh, publish, sum_metric, wait_until};
use serde_json::json;

#[tokio::test]
async fn exhausted_messages_go_to_the_dead_letter_topic() {
    let subs = json!([
        {"pubsubname": "pubsub", "topic": "work", "route": "/status/500", "deadLetterTopic": "poison"},
        {"pubsubname": "pubsub", "topic": "gone", "route": "/status/404", "deadLetterTopic": "poison"},
        {"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
    ]);
    let mesh = Mesh::new();
    let (app, s) = mesh.sidecar("dl-app").start_subscriber("dl", subs).await;
    let api = s.api_url();
    assert_eq!(
        publish(&api, "work", "application/json", r#"{"job":1}"#).await,
        204
    );
    assert_eq!(
        publish(&api, "gone", "text/plain", "unknown route").await,
        204
    );
    let letters = app
        .wait_seen(Duration::from_secs(15), "two dead letters", |seen| {
            let got: Vec<_> = seen.into_iter().filter(|r| r.path == "/poison").collect();
            (got.len() == 2).then_some(got)
        })
        .await;
    let tries = [
        ("/status/500", 3, "tried three times before giving up"),
        ("/status/404", 1, "a drop is not retried"),
    ];
    for (route, n, why) in tries {
        assert_eq!(app.count_at(route), n, "{why}");
    }
    let mut original_topics: Vec<String> = letters
        .iter()
        .map(|l| l.json()["topic"].as_str().unwrap().to_owned())
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
async fn a_dead_letter_topic_out_of_scope_keeps_failing_messages() {
    let mesh = Mesh::new();
    let component = concat!(
        "kind: Component\nmetadata: {name: pubsub}\nspec:\n  type: pubsub.in-memory\n  metadata:\n",
        "  - {name: publishingScopes, value: 'dlq-app=work'}\n",
    );
    let res = mesh.resources("res", "pubsub.yaml", component);
    let subs = json!([
        {"pubsubname": "pubsub", "topic": "work", "route": "/status/404", "deadLetterTopic": "poison"},
        {"pubsubname": "pubsub", "topic": "poison", "route": "/poison"},
    ]);
    let (app, s) = mesh
        .sidecar("dlq-app")
        .resources(&res)
        .start_subscriber("dq", subs)
        .await;
    assert_eq!(
        publish(&s.api_url(), "work", "text/plain", "undeliverable").await,
        204
    );
    // Without the dead-letter topic the drop would be final; here the message must stay.
    app.wait_at("/status/404", 2, Duration::from_secs(15)).await;
    assert!(
        !app.seen().iter().any(|r| r.path == "/poison"),
        "nothing was written to the forbidden topic"
    );
}

/// A `Resiliency` retry policy for the pub/sub component's inbound direction decides how often a
/// failing delivery is tried before it goes to the dead-letter topic, and which statuses it
/// retries at all.
#[tokio::test]
async fn resiliency_policies_drive_delivery_retries() {
    let mesh = Mesh::new();
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
    let res = mesh.resources("res", "res.yaml", docs);
    let (app, s) = mesh
        .sidecar("resilient-app")
        .resources(&res)
        .start_subscriber(
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
    for (pubsub, job) in [
        ("pubsub", r#"{"job":1}"#),
        ("hasty", r#"{"job":3}"#),
        ("picky", r#"{"job":2}"#),
    ] {
        let r = s.publish(pubsub, "work", JSON, job).await;
        assert_eq!(r.status, 204, "{pubsub}: {}", r.text());
    }
    app.wait_seen(Duration::from_secs(15), "the three dead letters", |seen| {
        let at = |p: &str| seen.iter().any(|r| r.path == p);
        (at("/poison") && at("/picky-poison") && at("/hasty-poison")).then_some(())
    })
    .await;
    // A hanging app: each attempt timed out after 200 ms, three attempts, then the dead letter,
    // long before the app's 5 s answer.
    assert_eq!(app.count_at("/slow/5000"), 3);
    let timeouts = s
        .metric_sum(
            "dapr_resiliency_activations_total",
            &["policy=\"timeout\"", "target=\"component_hasty\""],
        )
        .await;
    assert_eq!(timeouts, 3.0);
    let tries = |job: u64| {
        app.seen_at("/status/500")
            .iter()
            .filter(|r| r.json()["data"]["job"] == job)
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
    let bad = mesh.resources(
        "res",
        "res.yaml",
        "kind: Resiliency\nmetadata: {name: r}\nspec:\n  targets:\n    components:\n      pubsub: {inbound: {retry: nowhere}}\n",
    );
    let says = ["res.yaml: spec.targets.components.pubsub.inbound.retry"];
    let limit = Duration::from_secs(30);
    let bad = mesh.sidecar("resilient-bad").resources(&bad);
    bad.start_fails(limit, 2, &says).await;
}
