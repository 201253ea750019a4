//! Input bindings through a real sidecar and a real app: a cron binding posts each tick to the
//! app's route after the app said (to `OPTIONS`) that it takes them, one the app refuses is never
//! read, a declared input one is read without asking, failed deliveries are retried by the
//! component's inbound policy, and bad definitions stop the start naming the field.

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, sum_metric, wait_until};

const WAIT: Duration = Duration::from_secs(20);

fn cron(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "kind: Component\nmetadata: {{name: {name}}}\nspec:\n  type: bindings.cron\n  \
         version: v1\n  metadata:\n  - {{name: schedule, value: '{schedule}'}}\n{extra}---\n"
    )
}

#[tokio::test]
async fn cron_ticks_reach_the_routes_the_app_takes() {
    let mesh = Mesh::new();
    let docs = [
        cron(
            "ticker",
            "@every 300ms",
            "  - {name: route, value: /ticks}\n",
        ),
        // The app answers OPTIONS here with 404: it does not take these.
        cron(
            "refused",
            "@every 300ms",
            "  - {name: route, value: /status/404}\n",
        ),
        // Six fields: every second, on the second.
        cron("seconds", "* * * * * *", ""),
    ]
    .concat();
    let res = mesh.resources("res", "cron.yaml", &docs);
    let app = FakeApp::start("cron-app").await;
    let mut s = mesh
        .sidecar("cron")
        .resources(&res)
        .app_port(app.port)
        .start()
        .await;
    s.wait_ready().await;

    // The question, then three ticks.
    let seen = app.wait_at("/ticks", 4, WAIT).await;
    assert_eq!(seen[0].method, "OPTIONS");
    for t in &seen[1..] {
        assert_eq!(t.method, "POST");
        assert_eq!(t.headers["content-type"], "application/json");
        assert_eq!(t.headers["timezone"], "Local");
        let read = t.headers["readtimeutc"].to_str().unwrap();
        assert!(read.ends_with(" +0000 UTC"), "{read}");
        assert!(t.body.is_empty());
    }
    let seconds = app.wait_at("/seconds", 3, WAIT).await;
    assert_eq!(seconds[1].method, "POST");

    // Asked once each, before any tick.
    let asked = |path: &str| {
        app.seen_at(path)
            .iter()
            .filter(|r| r.method == "OPTIONS")
            .count()
    };
    assert_eq!(asked("/ticks"), 1);
    assert_eq!(asked("/seconds"), 1);
    let refused = app.seen_at("/status/404");
    assert_eq!(refused.len(), 1, "only asked: {refused:?}");
    assert_eq!(refused[0].method, "OPTIONS");

    let meta = s.get("/v1.0/metadata").await.json();
    let ticker = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ticker")
        .cloned()
        .unwrap();
    assert_eq!(ticker["type"], "bindings.cron");
    assert_eq!(ticker["capabilities"], serde_json::json!(["INPUT_BINDING"]));

    let labels = [
        "app_id=\"cron\"",
        "component=\"ticker\"",
        "success=\"true\"",
    ];
    wait_until(WAIT, "input binding metrics", || async {
        let text = s.metrics().await;
        (sum_metric(&text, "dapr_component_input_binding_count", &labels) >= 3.0).then_some(())
    })
    .await;
    let text = s.metrics().await;
    assert!(
        text.contains("dapr_component_input_binding_latencies_bucket"),
        "{text}"
    );
    let refused = ["component=\"refused\""];
    assert_eq!(
        sum_metric(&text, "dapr_component_input_binding_count", &refused),
        0.0
    );
}

#[tokio::test]
async fn a_declared_input_is_read_without_asking_and_retried_by_its_policy() {
    let mesh = Mesh::new();
    let docs = cron(
        "flaky",
        "@every 1s",
        "  - {name: route, value: /flaky/cron/2/500}\n  - {name: direction, value: input}\n",
    ) + concat!(
        "kind: Resiliency\nmetadata: {name: r}\nspec:\n  policies:\n",
        "    retries: {three: {policy: constant, duration: 20ms, maxRetries: 3}}\n",
        "  targets:\n    components:\n      flaky: {inbound: {retry: three}}\n",
    );
    let res = mesh.resources("res", "cron.yaml", &docs);
    let app = FakeApp::start("cron-flaky").await;
    let mut s = mesh
        .sidecar("cron-flaky")
        .resources(&res)
        .app_port(app.port)
        .start()
        .await;
    s.wait_ready().await;

    // The first tick fails twice and is retried at once; it then succeeds.
    let seen = app.wait_at("/flaky/cron/2/500", 3, WAIT).await;
    assert!(seen.iter().all(|r| r.method == "POST"), "never asked");
    let labels = ["component=\"flaky\"", "success=\"true\""];
    wait_until(WAIT, "one successful delivery", || async {
        let text = s.metrics().await;
        (sum_metric(&text, "dapr_component_input_binding_count", &labels) >= 1.0).then_some(())
    })
    .await;
    let text = s.metrics().await;
    let failed = ["component=\"flaky\"", "success=\"false\""];
    assert_eq!(
        sum_metric(&text, "dapr_component_input_binding_count", &failed),
        0.0,
        "retried within one delivery"
    );
}

#[tokio::test]
async fn bad_cron_definitions_stop_the_start() {
    let mesh = Mesh::new();
    let cases = [
        ("sched", cron("c", "* * * *", ""), "spec.metadata.schedule"),
        (
            "every",
            cron("c", "@every soon", ""),
            "positive Go duration",
        ),
        ("none", cron("c", "", ""), "spec.metadata.schedule"),
        (
            "route",
            cron("c", "@every 1s", "  - {name: route, value: '/a b'}\n"),
            "spec.metadata.route",
        ),
        (
            "out",
            cron("c", "@every 1s", "  - {name: direction, value: output}\n"),
            "bindings.cron has no output side",
        ),
    ];
    for (dir, docs, says) in cases {
        let res = mesh.resources(dir, "cron.yaml", &docs);
        mesh.sidecar(&format!("cron-bad-{dir}"))
            .resources(&res)
            .start_fails(Duration::from_secs(30), 1, &["cron.yaml", says])
            .await;
    }
}

/// A queue binding named `q` for `kind`, posting to `route`, read without asking the app.
fn queue(kind: &str, url: &str, name: &str, route: &str) -> String {
    let md = match kind {
        "mqtt" => format!(
            "bindings.mqtt3\n  metadata:\n  - {{name: url, value: '{url}'}}\n  \
             - {{name: topic, value: '{name}'}}\n  - {{name: consumerID, value: '{name}'}}\n"
        ),
        _ => format!(
            "bindings.rabbitmq\n  metadata:\n  - {{name: host, value: '{url}'}}\n  \
             - {{name: queueName, value: '{name}'}}\n  - {{name: durable, value: 'true'}}\n"
        ),
    };
    format!(
        "kind: Component\nmetadata: {{name: q}}\nspec:\n  type: {md}  \
         - {{name: route, value: {route}}}\n  - {{name: direction, value: 'input, output'}}\n"
    )
}

/// An event the app has not answered when its sidecar is killed reaches it again through the
/// next sidecar: at-least-once across a crash.
async fn nothing_lost_when_the_sidecar_dies(kind: &str, url: &str) {
    let mesh = Mesh::new();
    let name = outrider_testkit::unique(kind);
    let app = FakeApp::start("queue-app").await;
    // The first sidecar delivers to a route the app takes a minute to answer.
    let res = mesh.resources("first", "q.yaml", &queue(kind, url, &name, "/slow/60000"));
    let mut first = mesh
        .sidecar(&format!("{kind}-first"))
        .resources(&res)
        .app_port(app.port)
        .start()
        .await;
    first.wait_ready().await;
    // Sent only once the binding reads its queue: an MQTT message published before anyone
    // subscribed is not kept for later subscribers.
    wait_until(WAIT, "the input binding's subscription", || async {
        let log = first.log();
        log.lines()
            .any(|l| l.contains(" subscribed ") && l.contains("binding"))
            .then_some(())
    })
    .await;
    let body = serde_json::json!({"operation": "create", "data": {"order": 7}});
    let r = first
        .request("POST", "/v1.0/bindings/q", &[], body.to_string())
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let held = app.wait_at("/slow/60000", 1, WAIT).await;
    assert_eq!(held[0].json(), serde_json::json!({"order": 7}));
    first.kill().await;

    let res = mesh.resources("second", "q.yaml", &queue(kind, url, &name, "/events"));
    let mut second = mesh
        .sidecar(&format!("{kind}-second"))
        .resources(&res)
        .app_port(app.port)
        .start()
        .await;
    second.wait_ready().await;
    let again = app.wait_at("/events", 1, WAIT).await;
    assert_eq!(again[0].json(), serde_json::json!({"order": 7}));
    assert_eq!(again[0].headers["content-type"], "application/json");
}

#[tokio::test]
async fn mqtt_binding_loses_nothing_when_the_sidecar_dies() {
    // A broker of its own: the binding's kept session stays behind.
    let broker = outrider_testkit::Mosquitto::private();
    nothing_lost_when_the_sidecar_dies("mqtt", &broker.url).await;
}

#[tokio::test]
async fn rabbitmq_binding_loses_nothing_when_the_sidecar_dies() {
    // A node of its own: the test leaves a durable queue behind.
    let broker = outrider_testkit::RabbitMq::private();
    nothing_lost_when_the_sidecar_dies("rabbitmq", &broker.url).await;
}
