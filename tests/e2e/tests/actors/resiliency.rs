//! `Resiliency` for actors: a type named under `targets.actors` gets its retry and circuit
//! breaker on the calling sidecar and its timeout on the host; a type named nowhere keeps the
//! built-in retries, which never repeat a call the app failed.

use std::time::{Duration, Instant};

use outrider_testkit::{ActorApp, Mesh, Turns};
use serde_json::json;

use super::{call, host};

const RESILIENCY: &str = r#"apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: actor-policies
spec:
  policies:
    timeouts:
      quick: 300ms
    retries:
      twice:
        policy: constant
        duration: 50ms
        maxRetries: 2
    circuitBreakers:
      tripTwo:
        maxRequests: 1
        timeout: 60s
        trip: consecutiveFailures >= 2
  targets:
    actors:
      Retried:
        retry: twice
      Guarded:
        circuitBreaker: tripTwo
        circuitBreakerScope: id
      Timed:
        timeout: quick
"#;

/// The app's calls of `method` on actor `actor` (`type/id`).
fn seen(app: &ActorApp, actor: &str, method: &str) -> usize {
    (app.calls().iter())
        .filter(|(a, m)| a == actor && m == method)
        .count()
}

#[tokio::test]
async fn actor_types_get_their_retry_breaker_and_timeout() {
    let mesh = Mesh::new();
    let res = mesh.memory_actor_store();
    mesh.resources("res", "resiliency.yaml", RESILIENCY);
    let config = json!({"entities": ["Retried", "Guarded", "Timed", "Plain"]});
    let app = ActorApp::start("one", config, Turns::default()).await;
    let s = host(&mesh, "resilient", &res, &app).await;

    // Retried: two failures, then the third try answers.
    let r = call(&s, "POST", "/v1.0/actors/Retried/a/method/flaky?fail=2", "").await;
    assert_eq!(
        (r.status, r.json()["call"].clone()),
        (200, json!(3)),
        "{}",
        r.text()
    );
    // Three failures in a row exhaust two retries: the app's error, after three tries.
    let r = call(&s, "POST", "/v1.0/actors/Retried/b/method/flaky?fail=5", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["errorCode"], "ERR_ACTOR_INVOKE_METHOD");
    assert_eq!(seen(&app, "Retried/b", "flaky"), 3);

    // Guarded, one breaker per actor: two failures open g1's; its next call never reaches the
    // app; g2 is not held back.
    for _ in 0..2 {
        let r = call(
            &s,
            "POST",
            "/v1.0/actors/Guarded/g1/method/status?code=500",
            "",
        )
        .await;
        assert!(
            r.text().contains("error from actor service: (500)"),
            "{}",
            r.text()
        );
    }
    let r = call(
        &s,
        "POST",
        "/v1.0/actors/Guarded/g1/method/status?code=500",
        "",
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["message"],
        "error invoke actor method: circuit breaker is open"
    );
    assert_eq!(seen(&app, "Guarded/g1", "status"), 2);
    let r = call(&s, "POST", "/v1.0/actors/Guarded/g2/method/echo", "").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Timed: the app's answer is given up after 300 ms; the actor takes calls again at once.
    let start = Instant::now();
    let r = call(&s, "POST", "/v1.0/actors/Timed/t/method/slow?ms=3000", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("did not answer within 300ms"),
        "{}",
        r.text()
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let r = call(&s, "POST", "/v1.0/actors/Timed/t/method/echo", "").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Plain, named by no document: the built-in retries leave the app's failures alone.
    let r = call(&s, "POST", "/v1.0/actors/Plain/p/method/flaky?fail=1", "").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(seen(&app, "Plain/p", "flaky"), 1);
}
