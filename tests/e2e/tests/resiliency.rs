//! Resiliency on the invocation path, through real sidecars and a flaky app: retries (counted),
//! timeouts, Retry-After, the built-in retries, and a breaker that trips, half-opens and closes.

use std::time::{Duration, Instant};

use outrider_testkit::{FakeApp, Mesh, RedisServer, Sidecar, send, wait_registered, wait_until};

const RESILIENCY: &str = concat!(
    "apiVersion: dapr.io/v1alpha1\n",
    "kind: Resiliency\n",
    "metadata: {name: shop}\n",
    "spec:\n",
    "  policies:\n",
    "    timeouts: {fast: 300ms}\n",
    "    retries:\n",
    "      three: {policy: constant, duration: 50ms, maxRetries: 3}\n",
    "    circuitBreakers:\n",
    "      cb: {maxRequests: 1, timeout: 1s, trip: 'consecutiveFailures >= 3'}\n",
    "  targets:\n",
    "    apps:\n",
    "      b: {timeout: fast, retry: three}\n",
    "      c: {circuitBreaker: cb}\n",
);

struct World {
    _mesh: Mesh,
    _dir: tempfile::TempDir,
    a: Sidecar,
    plain: Sidecar,
    b_app: FakeApp,
    c_app: FakeApp,
    _b: Sidecar,
    _c: Sidecar,
}

async fn world() -> World {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("resiliency.yaml"), RESILIENCY).unwrap();
    let (b_app, c_app) = (FakeApp::start("b").await, FakeApp::start("c").await);
    let b = mesh.sidecar("b").app_port(b_app.port).start().await;
    let c = mesh.sidecar("c").app_port(c_app.port).start().await;
    let a = mesh.sidecar("a").resources(dir.path()).start().await;
    let plain = mesh.sidecar("plain").start().await;
    wait_registered(&mesh, "b", 1).await;
    wait_registered(&mesh, "c", 1).await;
    World {
        _mesh: mesh,
        _dir: dir,
        a,
        plain,
        b_app,
        c_app,
        _b: b,
        _c: c,
    }
}

async fn call(from: &Sidecar, target: &str) -> (u16, String) {
    let r = from
        .request("POST", &format!("/v1.0/invoke/{target}"), &[], "payload")
        .await;
    (r.status, r.text())
}

fn attempts(app: &FakeApp, path: &str) -> Vec<String> {
    app.seen()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[tokio::test]
async fn retries_timeouts_and_retry_after_follow_the_policy() {
    let w = world().await;
    // Fails twice with 503, then answers: the policy's retries get there, body replayed each time.
    assert_eq!(
        call(&w.a, "b/method/flaky/one/2/503").await,
        (200, "ok after 2".to_owned())
    );
    assert_eq!(attempts(&w.b_app, "/flaky/one/2/503"), ["payload"; 3]);
    let retries =
        w.a.metric_sum(
            "dapr_resiliency_activations_total",
            &["policy=\"retry\"", "target=\"app_b\""],
        )
        .await;
    assert!(retries >= 2.0, "{retries}");

    // Without `matching`, a 500 is the app's answer, not a transient failure: not retried.
    assert_eq!(call(&w.a, "b/method/flaky/two/5/500").await.0, 500);
    assert_eq!(attempts(&w.b_app, "/flaky/two/5/500").len(), 1);

    // 429 is retried only when the app says when to come back, and not before then.
    assert_eq!(call(&w.a, "b/method/flaky/three/1/429").await.0, 429);
    assert_eq!(attempts(&w.b_app, "/flaky/three/1/429").len(), 1);
    let start = Instant::now();
    assert_eq!(
        call(&w.a, "b/method/flaky/four/1/429?retry-after=1")
            .await
            .0,
        200
    );
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured: {:?}",
        start.elapsed()
    );
    // A 503 that says when to come back waits that long rather than the policy's 50 ms.
    let start = Instant::now();
    assert_eq!(
        call(&w.a, "b/method/flaky/seven/1/503?retry-after=1")
            .await
            .0,
        200
    );
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured: {:?}",
        start.elapsed()
    );

    // A hanging app: each attempt times out after 300 ms and is retried, then the caller gets 504.
    let (status, body) = call(&w.a, "b/method/slow/3000").await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains("ERR_DIRECT_INVOKE") && body.contains("timed out after 300ms"),
        "{body}"
    );
    wait_until(
        Duration::from_secs(5),
        "four attempts at the app",
        || async { (attempts(&w.b_app, "/slow/3000").len() == 4).then_some(()) },
    )
    .await;
    let timeouts =
        w.a.metric_sum(
            "dapr_resiliency_activations_total",
            &["policy=\"timeout\"", "name=\"fast\""],
        )
        .await;
    assert!(timeouts >= 4.0, "{timeouts}");
}

#[tokio::test]
async fn without_a_policy_the_built_in_retries_cover_transient_answers_only() {
    let w = world().await;
    // Dapr's built-in service retries: three, a second apart, here for 503.
    let start = Instant::now();
    assert_eq!(
        call(&w.plain, "b/method/flaky/five/2/503").await,
        (200, "ok after 2".to_owned())
    );
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(attempts(&w.b_app, "/flaky/five/2/503").len(), 3);
    // A 500 or 404 is passed back at once.
    assert_eq!(call(&w.plain, "b/method/flaky/six/1/500").await.0, 500);
    assert_eq!(attempts(&w.b_app, "/flaky/six/1/500").len(), 1);
}

#[tokio::test]
async fn a_breaker_trips_half_opens_and_closes() {
    let w = world().await;
    // Three failures in a row trip c's breaker; they reach the app and come back as they are.
    for _ in 0..3 {
        assert_eq!(call(&w.a, "c/method/flaky/down/100/500").await.0, 500);
    }
    let (status, body) = call(&w.a, "c/method/flaky/down/100/500").await;
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["errorCode"], "ERR_DIRECT_INVOKE");
    assert_eq!(
        json["message"],
        "failed to invoke, id: c, err: circuit breaker \"cb\" is open"
    );
    assert_eq!(
        attempts(&w.c_app, "/flaky/down/100/500").len(),
        3,
        "an open breaker sends nothing"
    );
    let state = |status: &'static str| {
        let a = &w.a;
        async move {
            a.metric_sum(
                "dapr_resiliency_cb_state",
                &["target=\"app_c\"", &format!("status=\"{status}\"")],
            )
            .await
        }
    };
    assert_eq!(state("open").await, 1.0);
    assert!(
        w.a.log().contains("circuit breaker opened"),
        "{}",
        w.a.log()
    );
    // Another target is not affected.
    assert_eq!(call(&w.a, "b/method/hello").await.0, 200);

    // After its timeout the breaker lets one probe through; a healthy answer closes it.
    wait_until(
        Duration::from_secs(10),
        "the breaker to close on a good probe",
        || async { (call(&w.a, "c/method/healthy").await.0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(state("closed").await, 1.0);
    assert_eq!(state("open").await, 0.0);
    assert_eq!(call(&w.a, "c/method/healthy").await.0, 200);
}

/// A sidecar with a Redis state store `store` and the given Resiliency policies for it.
async fn store_sidecar(
    mesh: &Mesh,
    dir: &std::path::Path,
    redis: &RedisServer,
    policies: &str,
) -> Sidecar {
    let component = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: store}}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - {{name: redisHost, value: '{}'}}\n",
        redis.host()
    );
    std::fs::write(dir.join("store.yaml"), component).unwrap();
    let resiliency = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {{name: store-policies}}\nspec:\n{policies}  targets:\n    components:\n      store:\n        outbound: {{retry: storeRetry, circuitBreaker: storeCB}}\n"
    );
    std::fs::write(dir.join("resiliency.yaml"), resiliency).unwrap();
    mesh.sidecar("stateful").resources(dir).start().await
}

#[tokio::test]
async fn component_retries_carry_a_call_through_a_store_outage() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let policies = concat!(
        "  policies:\n",
        "    retries: {storeRetry: {policy: constant, duration: 100ms, maxRetries: 100}}\n",
        "    circuitBreakers: {storeCB: {trip: 'consecutiveFailures >= 1000'}}\n",
    );
    let s = store_sidecar(&mesh, dir.path(), &redis, policies).await;
    let url = format!("{}/v1.0/state/store/k", s.api_url());
    assert_eq!(send("GET", &url, &[], "").await.unwrap().status, 204);
    redis.stop();
    let pending = tokio::spawn(async move { send("GET", &url, &[], "").await.unwrap() });
    // Once the call has failed and been retried, the store comes back; the call then succeeds.
    wait_until(
        Duration::from_secs(10),
        "a retry of the store call",
        || async {
            let n = s
                .metric_sum(
                    "dapr_resiliency_activations_total",
                    &["policy=\"retry\"", "target=\"component_store\""],
                )
                .await;
            (n >= 1.0).then_some(())
        },
    )
    .await;
    redis.restart();
    let r = pending.await.unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    // Dapr's component metrics count the calls, failed attempts aside.
    let gets = s
        .metric_sum(
            "dapr_component_state_count",
            &[
                "component=\"store\"",
                "operation=\"get\"",
                "success=\"true\"",
            ],
        )
        .await;
    assert!(gets >= 2.0, "{gets}");
}

#[tokio::test]
async fn publish_retries_carry_a_message_through_a_broker_outage() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let component = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: bus}}\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - {{name: redisHost, value: '{}'}}\n",
        redis.host()
    );
    std::fs::write(dir.path().join("bus.yaml"), component).unwrap();
    let resiliency = concat!(
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: bus-policies}\nspec:\n",
        "  policies:\n    retries: {busRetry: {policy: constant, duration: 100ms, maxRetries: 100}}\n",
        "  targets:\n    components:\n      bus:\n        outbound: {retry: busRetry}\n",
    );
    std::fs::write(dir.path().join("resiliency.yaml"), resiliency).unwrap();
    let s = mesh
        .sidecar("publisher")
        .resources(dir.path())
        .start()
        .await;
    let url = format!("{}/v1.0/publish/bus/orders", s.api_url());
    assert_eq!(
        send("POST", &url, &[("content-type", "application/json")], "{}")
            .await
            .unwrap()
            .status,
        204
    );
    redis.stop();
    let pending = tokio::spawn(async move {
        send("POST", &url, &[("content-type", "application/json")], "{}")
            .await
            .unwrap()
    });
    wait_until(
        Duration::from_secs(10),
        "a retry of the publish",
        || async {
            let n = s
                .metric_sum(
                    "dapr_resiliency_activations_total",
                    &["policy=\"retry\"", "target=\"component_bus\""],
                )
                .await;
            (n >= 1.0).then_some(())
        },
    )
    .await;
    redis.restart();
    let r = pending.await.unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    // The message is on the stream.
    let host = redis.host();
    let len = std::process::Command::new("redis-cli")
        .args(["-p", host.rsplit(':').next().unwrap(), "XLEN", "orders"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&len.stdout).trim(),
        "1",
        "the restarted (empty) server got the retried message"
    );
}

#[tokio::test]
async fn a_component_breaker_stops_calls_to_a_failing_store() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let policies = concat!(
        "  policies:\n",
        "    retries: {storeRetry: {maxRetries: 0}}\n",
        "    circuitBreakers: {storeCB: {timeout: 60s, trip: 'consecutiveFailures >= 2'}}\n",
    );
    let s = store_sidecar(&mesh, dir.path(), &redis, policies).await;
    let url = format!("{}/v1.0/state/store/k", s.api_url());
    assert_eq!(send("GET", &url, &[], "").await.unwrap().status, 204);
    redis.stop();
    for _ in 0..2 {
        let r = send("GET", &url, &[], "").await.unwrap();
        assert_eq!(r.status, 500, "{}", r.text());
        assert!(!r.text().contains("circuit breaker"), "{}", r.text());
    }
    let r = send("GET", &url, &[], "").await.unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_STATE_GET")),
        "{}",
        r.text()
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("circuit breaker \"storeCB\" is open"),
        "{}",
        r.text()
    );
    let open = s
        .metric_sum(
            "dapr_resiliency_cb_state",
            &["target=\"component_store\"", "status=\"open\""],
        )
        .await;
    assert_eq!(open, 1.0);
    // The store is back, but the breaker stays open until its timeout.
    redis.restart();
    assert!(
        send("GET", &url, &[], "")
            .await
            .unwrap()
            .text()
            .contains("is open")
    );
}
