//! Resiliency through real sidecars: on the invocation path (retries, timeouts, Retry-After, the
//! built-in retries and a breaker, with HTTP/2 forced between the sidecars here; `over_h3.rs`
//! runs the same tests over HTTP/3), and on components (retries through a store or broker
//! outage, and a component breaker).

use std::time::Duration;

use outrider_testkit::{Mesh, RedisServer, Sidecar, send, wait_until};

/// Every mesh of the invocation tests: its sidecars call each other over HTTP/2 only.
fn mesh() -> Mesh {
    Mesh::over("h2")
}

#[path = "resiliency/invoke.rs"]
mod invoke;

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
