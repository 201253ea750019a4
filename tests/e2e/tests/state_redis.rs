//! The Redis state store through real sidecars and private redis-server instances.

use std::time::{Duration, Instant};

use outrider_testkit::{Mesh, RedisServer, Reply, Sidecar, send, wait_until};
use serde_json::json;

fn component(mesh: &Mesh, name: &str, redis: &RedisServer, extra: &str) -> String {
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: redisstore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n{extra}",
        redis.host()
    );
    mesh.resources(name, "redis.yaml", &yaml)
}

/// Saves `items` (a JSON array) to the store, with no content type.
async fn save(s: &Sidecar, items: serde_json::Value) -> Reply {
    s.request("POST", "/v1.0/state/redisstore", &[], items.to_string())
        .await
}

/// Reads `key` from the store.
async fn get(s: &Sidecar, key: &str) -> Reply {
    s.get(&format!("/v1.0/state/redisstore/{key}")).await
}

#[tokio::test]
async fn redis_store_with_a_password_keeps_daprs_layout() {
    let redis = RedisServer::start_with_password("s3cr3t");
    let mesh = Mesh::new();
    let res = component(
        &mesh,
        "res",
        &redis,
        "  - name: redisPassword\n    value: s3cr3t\n",
    );
    let s = mesh.sidecar("rapp").resources(&res).start().await;
    let r = save(&s, json!([{"key": "k", "value": {"n": 1}}])).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = get(&s, "k").await;
    assert_eq!((r.status, r.json()), (200, json!({"n": 1})));
    assert_eq!(r.headers["etag"], "1", "Redis ETags are the hash's version");
    // Stored the way daprd stores it: a hash with data and version, under app-id||key.
    let hash = redis.cli(&["-a", "s3cr3t", "HGETALL", "rapp||k"]).stdout;
    let hash = String::from_utf8_lossy(&hash);
    assert!(
        hash.contains("data") && hash.contains("{\"n\":1}") && hash.contains("version"),
        "{hash}"
    );
    let r = save(
        &s,
        json!([{"key": "k", "value": 2, "etag": "not-a-number"}]),
    )
    .await;
    r.assert_error(400, "ERR_STATE_SAVE", "an invalid etag is 400");
    for (etag, status) in [("7", 409), ("1", 204)] {
        let r = save(&s, json!([{"key": "k", "value": 2, "etag": etag}])).await;
        assert_eq!(r.status, status, "etag {etag}");
    }
    assert_eq!(get(&s, "k").await.headers["etag"], "2");
    let meta = s.metadata().await;
    assert_eq!(meta["components"][0]["type"], "state.redis");
    assert!(
        !meta["components"][0]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("QUERY_API"))
    );
    let r = s
        .request("POST", "/v1.0-alpha1/state/redisstore/query", &[], "{}")
        .await;
    r.assert_error(500, "ERR_STATE_STORE_NOT_SUPPORTED", "a query");
}

#[tokio::test]
async fn concurrent_increments_on_redis_lose_nothing() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = component(&mesh, "res", &redis, "");
    let s = mesh.sidecar("rc").resources(&res).start().await;
    let base = format!("{}/v1.0/state/redisstore", s.api_url());
    assert_eq!(
        outrider_testkit::state::increment_concurrently(&base, "counter", 8, 200).await,
        1600
    );
}

#[tokio::test]
async fn a_redis_outage_fails_fast_and_recovers_without_losing_data() {
    // Append-only with fsync on every write: what was acknowledged survives the kill.
    let mut redis = RedisServer::start_durable();
    let mesh = Mesh::new();
    let res = component(
        &mesh,
        "res",
        &redis,
        "  - name: readTimeout\n    value: 1s\n",
    );
    let s = mesh.sidecar("ro").resources(&res).start().await;
    for i in 0..20 {
        let r = save(&s, json!([{"key": format!("k{i}"), "value": i}])).await;
        assert_eq!(r.status, 204);
    }
    redis.stop();
    // Ten seconds of traffic against the dead store: every call answers an error, promptly.
    let outage = Instant::now();
    let mut failures = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        let started = Instant::now();
        get(&s, "k1").await.assert_error(500, "ERR_STATE_GET", "k1");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a call took {:?} against a dead store",
            started.elapsed()
        );
        failures += 1;
        tokio::time::sleep(Duration::from_millis(200)).await; // pacing of the outage traffic
    }
    assert!(failures >= 5);
    redis.restart();
    let url = format!("{}/v1.0/state/redisstore/k1", s.api_url());
    wait_until(Duration::from_secs(30), "the store to recover", || async {
        (send("GET", &url, &[], "").await.ok()?.status == 200).then_some(())
    })
    .await;
    for i in 0..20 {
        let r = get(&s, &format!("k{i}")).await;
        assert_eq!((r.status, r.json()), (200, json!(i)), "k{i} was lost");
    }
    let r = save(&s, json!([{"key": "after", "value": true}])).await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn redis_tls_verifies_by_default_and_skips_only_when_told() {
    let redis = RedisServer::start_tls();
    let mesh = Mesh::new();
    // The server's CA is private: with verification on (the default) the start fails.
    let strict = component(
        &mesh,
        "res-strict",
        &redis,
        "  - name: enableTLS\n    value: \"true\"\n  - name: dialTimeout\n    value: 2s\n",
    );
    let log = mesh
        .sidecar("tls-strict")
        .resources(&strict)
        .start_fails(Duration::from_secs(30), 1, &[])
        .await
        .to_ascii_lowercase();
    assert!(
        log.contains("spec.metadata.redishost")
            && (log.contains("certificate") || log.contains("unknownissuer")),
        "{log}"
    );
    // Told to skip verification: it works, and says so in the log.
    let lax = component(
        &mesh,
        "res-lax",
        &redis,
        "  - name: enableTLS\n    value: \"true\"\n  - name: insecureSkipTLSVerify\n    value: \"true\"\n",
    );
    let s = mesh.sidecar("tls-lax").resources(&lax).start().await;
    let r = save(&s, json!([{"key": "k", "value": "over tls"}])).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(&s, "k").await.json(), json!("over tls"));
    assert!(
        s.log().contains("verification is off"),
        "the skip is not logged"
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_the_start_with_file_and_field() {
    let mut redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = component(
        &mesh,
        "res",
        &redis,
        "  - name: dialTimeout\n    value: 1s\n",
    );
    redis.stop();
    let says = ["redis.yaml: spec.metadata.redisHost", &redis.host()];
    mesh.sidecar("down")
        .resources(&res)
        .start_fails(Duration::from_secs(30), 1, &says)
        .await;
}
