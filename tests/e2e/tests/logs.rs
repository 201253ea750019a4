//! The API access log and JSON logs: one line per request with the chosen fields, and no token,
//! authorization, cookie or query string anywhere in the log.

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, send, wait_registered, wait_until};

/// Values that must never reach a log line.
const SECRETS: [&str; 5] = [
    "api-token-s3cret",
    "Bearer b3arer",
    "session=c00kie",
    "qu3ry-token",
    "app-token-s3cret",
];

#[tokio::test]
async fn the_access_log_names_each_call_and_never_a_secret() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh
        .sidecar("b")
        .app_port(app.port)
        .env("APP_API_TOKEN", "app-token-s3cret")
        .args(["--log-as-json", "--enable-api-logging"])
        .start()
        .await;
    let a = mesh
        .sidecar("a")
        .env("DAPR_API_TOKEN", "api-token-s3cret")
        .args(["--enable-api-logging"])
        .start()
        .await;
    wait_registered(&mesh, "b", 1).await;
    let headers = [
        ("dapr-api-token", "api-token-s3cret"),
        ("authorization", "Bearer b3arer"),
        ("cookie", "session=c00kie"),
        ("user-agent", "logs-test/1.0"),
    ];
    let r = send(
        "POST",
        &format!(
            "{}/v1.0/invoke/b/method/orders/7?token=qu3ry-token",
            a.api_url()
        ),
        &headers,
        "x",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        send(
            "GET",
            &format!("{}/v1.0/state/statestore/k", a.api_url()),
            &headers,
            ""
        )
        .await
        .unwrap()
        .status,
        204
    );
    // The callee's app got the request (and the app token), so the secrets did travel.
    assert_eq!(
        app.seen().last().unwrap().headers["dapr-api-token"],
        "app-token-s3cret"
    );
    let seen_b = send(
        "GET",
        &format!("{}/v1.0/metadata", b.api_url()),
        &[("user-agent", "json-check")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(seen_b.status, 200);

    let log = wait_until(Duration::from_secs(5), "two access log lines", || async {
        let log = a.log();
        (log.matches("HTTP API called").count() >= 2).then_some(log)
    })
    .await;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("HTTP API called"))
        .collect();
    let invoke = lines
        .iter()
        .find(|l| l.contains("path=/v1.0/invoke/b/method/orders/7"))
        .expect("the invocation is logged");
    for field in [
        "method=POST",
        "status=200",
        "duration_ms=",
        "user_agent=logs-test/1.0",
        "route=/v1.0/invoke/{id}/method/{method}",
    ] {
        assert!(invoke.contains(field), "{field} missing: {invoke}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("path=/v1.0/state/statestore/k") && l.contains("status=204")),
        "{log}"
    );

    // JSON lines parse, and carry the same fields.
    let json_log = wait_until(Duration::from_secs(5), "a JSON access line", || async {
        let log = b.log();
        log.contains("\"path\":\"/v1.0/metadata\"").then_some(log)
    })
    .await;
    let line = json_log
        .lines()
        .find(|l| l.contains("\"path\":\"/v1.0/metadata\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["fields"]["message"], "HTTP API called", "{v}");
    assert_eq!(v["fields"]["user_agent"], "json-check", "{v}");
    assert_eq!(v["fields"]["status"], 200, "{v}");
    assert_eq!(v["span"]["route"], "/v1.0/metadata", "{v}");
    for l in json_log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
    }

    for (who, text) in [("a", a.log()), ("b", b.log())] {
        for s in SECRETS {
            assert!(!text.contains(s), "{who} logged {s:?}:\n{text}");
        }
    }
}

#[tokio::test]
async fn obfuscated_urls_and_omitted_health_checks() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "kind: Configuration\nspec:\n  logging:\n    apiLogging: {enabled: true, obfuscateURLs: true, omitHealthChecks: true}\n",
    )
    .unwrap();
    let s = mesh
        .sidecar("a")
        .args(["--config", config.to_str().unwrap()])
        .start()
        .await;
    assert_eq!(s.get("/v1.0/state/statestore/pers0nal").await.status, 204);
    assert_eq!(s.get("/v1.0/healthz").await.status, 204);
    let log = wait_until(Duration::from_secs(5), "the access line", || async {
        let log = s.log();
        log.contains("HTTP API called").then_some(log)
    })
    .await;
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("HTTP API called"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("path=/v1.0/state/{store}/{key}")),
        "{log}"
    );
    assert!(!log.contains("pers0nal"), "{log}");
    assert!(!lines.iter().any(|l| l.contains("healthz")), "{log}");
}
