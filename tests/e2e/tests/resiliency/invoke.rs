//! Resiliency on the invocation path, through real sidecars and a flaky app: retries (counted),
//! timeouts, Retry-After, the built-in retries, and a breaker that trips, half-opens and closes.
//! `resiliency.rs` runs it over HTTP/2 and `over_h3.rs` over HTTP/3; each builds its meshes with
//! `crate::mesh()`.

use std::time::{Duration, Instant};

use outrider_testkit::{FakeApp, Mesh, Sidecar, wait_registered, wait_until};

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
    let mesh = crate::mesh();
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
