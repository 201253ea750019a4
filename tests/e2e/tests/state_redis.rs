//! The Redis state store through real sidecars and private redis-server instances.

use std::time::{Duration, Instant};

use outrider_testkit::{Mesh, RedisServer, Sidecar, send, wait_until};
use serde_json::json;

fn component(mesh: &Mesh, name: &str, redis: &RedisServer, extra: &str) -> String {
    let dir = mesh.home().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: redisstore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {}\n{extra}",
        redis.host()
    );
    std::fs::write(dir.join("redis.yaml"), yaml).unwrap();
    dir.to_string_lossy().into_owned()
}

fn url(s: &Sidecar, rest: &str) -> String {
    format!("{}/v1.0/state/redisstore{rest}", s.api_url())
}

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--no-auth-warning"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn redis_store_with_a_password_keeps_daprs_layout() {
    let redis = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        "s3cr3t",
    ]);
    let mesh = Mesh::new();
    let res = component(
        &mesh,
        "res",
        &redis,
        "  - name: redisPassword\n    value: s3cr3t\n",
    );
    let s = mesh
        .sidecar("rapp")
        .args(["--resources-path", &res])
        .start()
        .await;
    let r = send(
        "POST",
        &url(&s, ""),
        &[],
        json!([{"key": "k", "value": {"n": 1}}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let r = send("GET", &url(&s, "/k"), &[], "").await.unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"n": 1})));
    assert_eq!(r.headers["etag"], "1", "Redis ETags are the hash's version");
    // Stored the way daprd stores it: a hash with data and version, under app-id||key.
    let hash = redis_cli(&redis, &["-a", "s3cr3t", "HGETALL", "rapp||k"]);
    assert!(
        hash.contains("data") && hash.contains("{\"n\":1}") && hash.contains("version"),
        "{hash}"
    );
    let r = send(
        "POST",
        &url(&s, ""),
        &[],
        json!([{"key": "k", "value": 2, "etag": "not-a-number"}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (400, Some("ERR_STATE_SAVE")),
        "an invalid etag is 400"
    );
    let r = send(
        "POST",
        &url(&s, ""),
        &[],
        json!([{"key": "k", "value": 2, "etag": "7"}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409);
    let r = send(
        "POST",
        &url(&s, ""),
        &[],
        json!([{"key": "k", "value": 2, "etag": "1"}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        send("GET", &url(&s, "/k"), &[], "").await.unwrap().headers["etag"],
        "2"
    );
    let meta = send("GET", &format!("{}/v1.0/metadata", s.api_url()), &[], "")
        .await
        .unwrap()
        .json();
    assert_eq!(meta["components"][0]["type"], "state.redis");
    assert!(
        !meta["components"][0]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("QUERY_API"))
    );
    let r = send(
        "POST",
        &format!("{}/v1.0-alpha1/state/redisstore/query", s.api_url()),
        &[],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_STATE_STORE_NOT_SUPPORTED"))
    );
}

#[tokio::test]
async fn concurrent_increments_on_redis_lose_nothing() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let res = component(&mesh, "res", &redis, "");
    let s = mesh
        .sidecar("rc")
        .args(["--resources-path", &res])
        .start()
        .await;
    let base = url(&s, "");
    assert_eq!(
        outrider_testkit::state::increment_concurrently(&base, "counter", 8, 200).await,
        1600
    );
}

#[tokio::test]
async fn a_redis_outage_fails_fast_and_recovers_without_losing_data() {
    // Append-only with fsync on every write: what was acknowledged survives the kill.
    let mut redis = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let mesh = Mesh::new();
    let res = component(
        &mesh,
        "res",
        &redis,
        "  - name: readTimeout\n    value: 1s\n",
    );
    let s = mesh
        .sidecar("ro")
        .args(["--resources-path", &res])
        .start()
        .await;
    for i in 0..20 {
        let r = send(
            "POST",
            &url(&s, ""),
            &[],
            json!([{"key": format!("k{i}"), "value": i}]).to_string(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 204);
    }
    redis.stop();
    // Ten seconds of traffic against the dead store: every call answers an error, promptly.
    let outage = Instant::now();
    let mut failures = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        let started = Instant::now();
        let r = send("GET", &url(&s, "/k1"), &[], "").await.unwrap();
        assert_eq!(
            (r.status, r.json()["errorCode"].as_str()),
            (500, Some("ERR_STATE_GET")),
            "{}",
            r.text()
        );
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
    wait_until(Duration::from_secs(30), "the store to recover", || async {
        (send("GET", &url(&s, "/k1"), &[], "").await.ok()?.status == 200).then_some(())
    })
    .await;
    for i in 0..20 {
        let r = send("GET", &url(&s, &format!("/k{i}")), &[], "")
            .await
            .unwrap();
        assert_eq!((r.status, r.json()), (200, json!(i)), "k{i} was lost");
    }
    let r = send(
        "POST",
        &url(&s, ""),
        &[],
        json!([{"key": "after", "value": true}]).to_string(),
    )
    .await
    .unwrap();
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
    let mut s = mesh
        .sidecar("tls-strict")
        .args(["--resources-path", &strict])
        .spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = s.log().to_ascii_lowercase();
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
    let s = mesh
        .sidecar("tls-lax")
        .args(["--resources-path", &lax])
        .start()
        .await;
    let r = send(
        "POST",
        &url(&s, ""),
        &[],
        json!([{"key": "k", "value": "over tls"}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        send("GET", &url(&s, "/k"), &[], "").await.unwrap().json(),
        json!("over tls")
    );
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
    let mut s = mesh
        .sidecar("down")
        .args(["--resources-path", &res])
        .spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = s.log();
    assert!(
        log.contains("redis.yaml: spec.metadata.redisHost") && log.contains(&redis.host()),
        "{log}"
    );
}
