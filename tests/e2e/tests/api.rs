//! The app-facing API: tokens, strict framing, health, metadata and metrics.

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, free_port, raw_request, send, sum_metric, wait_until};

#[tokio::test]
async fn api_token_guards_every_route_but_the_exact_health_paths() {
    let mesh = Mesh::new();
    let b_app = FakeApp::start("b").await;
    let _b = mesh
        .sidecar("b")
        .app_port(b_app.port)
        .env("APP_API_TOKEN", "for-b-app")
        .start()
        .await;
    let a = mesh
        .sidecar("a")
        .env("DAPR_API_TOKEN", "s3cret")
        .start()
        .await;
    outrider_testkit::wait_registered(&mesh, "b", 1).await;
    let base = a.api_url();

    for (method, path) in [
        ("GET", "/v1.0/metadata"),
        ("PUT", "/v1.0/metadata/k"),
        ("POST", "/v1.0/shutdown"),
        ("GET", "/v1.0/invoke/b/method/x"),
        ("GET", "/v1.0/state/x/y?x=/healthz"),
        ("GET", "/v1.0/healthzx"),
        ("GET", "/v1.0/healthz/outbound/x"),
        ("POST", "/v1.0/healthz"),
        ("GET", "/v1.0/healthz/../metadata"),
        ("GET", "/healthz"),
    ] {
        for token in [None, Some("wrong"), Some("S3CRET"), Some("s3cret2")] {
            let headers: Vec<(&str, &str)> =
                token.map(|t| ("dapr-api-token", t)).into_iter().collect();
            let r = send(method, &format!("{base}{path}"), &headers, "")
                .await
                .unwrap();
            assert_eq!(r.status, 401, "{method} {path} with {token:?}");
            assert_eq!(r.text(), "invalid api token\n");
        }
    }
    assert!(
        b_app.seen().is_empty(),
        "an unauthenticated call reached an app"
    );
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        assert_eq!(
            send("GET", &format!("{base}{path}"), &[], "")
                .await
                .unwrap()
                .status,
            204,
            "{path}"
        );
    }
    let ok = [("dapr-api-token", "s3cret")];
    assert_eq!(
        send("GET", &format!("{base}/v1.0/metadata"), &ok, "")
            .await
            .unwrap()
            .status,
        200
    );
    let r = send("GET", &format!("{base}/v1.0/invoke/b/method/x"), &ok, "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = b_app.seen().pop().unwrap().headers;
    assert_eq!(
        seen["dapr-api-token"], "for-b-app",
        "the app gets its own token, never the caller's"
    );
}

#[tokio::test]
async fn framing_and_request_line_abuse_is_refused() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh.sidecar("a").app_port(app.port).start().await;
    // Requests refused by the API edge ask for close so the read ends at once; the framing
    // refusals (the first three, and the fragment) must close on their own.
    let cases: [(&str, &[u8]); 8] = [
        ("CL + TE", b"POST /v1.0/invoke/a/method/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("differing CLs", b"POST /v1.0/invoke/a/method/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("raw NUL", b"GET /v1.0/invoke/a/method/x\0y HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("escaped NUL", b"GET /v1.0/invoke/a/method/x%00y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("escaped newline", b"GET /v1.0/invoke/a/method/x%0d%0aSet-Cookie:%20a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("lower-case method", b"get /v1.0/invoke/a/method/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("bad escape", b"GET /v1.0/invoke/a/method/x%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("raw fragment", b"GET /v1.0/invoke/a/method/open#/../admin HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (what, req) in cases {
        let reply = raw_request(a.api, req).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{what}: {reply:?}");
    }
    let reply = raw_request(a.api, cases[0].1).await;
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "CL+TE must close: {reply:?}"
    );
    assert!(
        app.seen().is_empty(),
        "a malformed request reached the app: {:?}",
        app.seen()
    );
    // Framing is tracked across requests: a well-framed chunked request, then a refused one.
    let pipeline = b"POST /v1.0/invoke/a/method/ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /v1.0/invoke/a/method/x#y HTTP/1.1\r\nHost: x\r\n\r\n";
    let reply = raw_request(a.api, pipeline).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    assert!(reply.contains("HTTP/1.1 400"), "{reply:?}");
    let seen = app.seen();
    assert_eq!(
        seen.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/ok"]
    );
}

#[tokio::test]
async fn health_follows_the_app_and_checks_the_app_id() {
    let mesh = Mesh::new();
    let port = free_port();
    let mut a = mesh.sidecar("a").app_port(port).start().await;
    let base = a.api_url();
    let r = send("GET", &format!("{base}/v1.0/healthz"), &[], "")
        .await
        .unwrap();
    r.assert_error(
        500,
        "ERR_HEALTH_NOT_READY",
        "healthz before the app is ready",
    );
    assert_eq!(
        send("GET", &format!("{base}/v1.0/healthz/outbound"), &[], "")
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        send("GET", &format!("{}/ready", a.admin_url()), &[], "")
            .await
            .unwrap()
            .status,
        503
    );
    let _app = FakeApp::start_on(port, "a").await;
    a.wait_ready().await;
    assert_eq!(
        send("GET", &format!("{}/ready", a.admin_url()), &[], "")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        send("GET", &format!("{base}/v1.0/healthz?appid=a"), &[], "")
            .await
            .unwrap()
            .status,
        204
    );
    let r = send("GET", &format!("{base}/v1.0/healthz?appid=z"), &[], "")
        .await
        .unwrap();
    r.assert_error(
        500,
        "ERR_HEALTH_APPID_NOT_MATCH",
        "healthz for another app id",
    );
}

#[tokio::test]
async fn metadata_reports_and_stores_extended_values() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh.sidecar("a").app_port(app.port).start().await;
    let url = format!("{}/v1.0/metadata", a.api_url());
    let j = send("GET", &url, &[], "").await.unwrap().json();
    assert_eq!(j["id"], "a");
    assert!(j["runtimeVersion"].is_string());
    assert_eq!(j["extended"]["daprRuntimeVersion"], j["runtimeVersion"]);
    assert_eq!(j["appConnectionProperties"]["port"], app.port);
    assert_eq!(j["appConnectionProperties"]["channelAddress"], "127.0.0.1");
    // Without resources, the default durable state store is there.
    assert_eq!(j["components"][0]["name"], "statestore");
    assert_eq!(j["components"][0]["type"], "state.sqlite");
    let put = send(
        "PUT",
        &format!("{url}/team%20name"),
        &[("content-type", "text/plain")],
        "payments",
    )
    .await
    .unwrap();
    assert_eq!(put.status, 204);
    assert_eq!(
        send("PUT", &format!("{url}/"), &[], "ignored")
            .await
            .unwrap()
            .status,
        204
    );
    let j = send("GET", &url, &[], "").await.unwrap().json();
    assert_eq!(j["extended"]["team name"], "payments");
    let bad = send("PUT", &format!("{url}/k"), &[], vec![0xff, 0xfe])
        .await
        .unwrap();
    bad.assert_error(
        400,
        "ERR_MALFORMED_REQUEST",
        "a metadata value that is not UTF-8",
    );
}

#[tokio::test]
async fn metrics_use_route_templates_not_raw_paths() {
    let mesh = Mesh::new();
    let b_app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(b_app.port).start().await;
    let a = mesh.sidecar("a").start().await;
    outrider_testkit::wait_registered(&mesh, "b", 1).await;
    for id in ["secret-order-1", "secret-order-2"] {
        let r = send(
            "GET",
            &format!("{}/v1.0/invoke/b/method/orders/{id}", a.api_url()),
            &[("host", "evil-host.example")],
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    }
    a.get("/v1.0/unknown-secret-route").await;
    let text = wait_until(Duration::from_secs(5), "client metrics on b", || async {
        let t = b.metrics().await;
        (sum_metric(
            &t,
            "dapr_http_client_completed_count",
            &["app_id=\"b\"", "status=\"200\""],
        ) >= 2.0)
            .then_some(t)
    })
    .await;
    let a_text = a.metrics().await;
    let invoke = [
        "app_id=\"a\"",
        "method=\"GET\"",
        "path=\"/v1.0/invoke/{id}/method/{method}\"",
        "status=\"200\"",
    ];
    assert_eq!(
        sum_metric(&a_text, "dapr_http_server_request_count", &invoke),
        2.0,
        "{a_text}"
    );
    assert_eq!(
        sum_metric(
            &a_text,
            "dapr_http_server_request_count",
            &["path=\"other\"", "status=\"404\""]
        ),
        1.0
    );
    assert!(
        a_text.contains("dapr_http_server_latency_bucket"),
        "latency is a histogram"
    );
    for t in [&a_text, &text] {
        for leak in ["secret-order", "unknown-secret-route", "evil-host"] {
            assert!(!t.contains(leak), "a raw value leaked into metrics: {leak}");
        }
    }
}

#[tokio::test]
async fn apis_not_served_yet_answer_501_naming_the_api() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh.sidecar("a").app_port(app.port).start().await;
    for (method, path, api) in [
        (
            "POST",
            "/v1.0-alpha1/conversation/llm/converse",
            "conversation",
        ),
        ("PUT", "/v1.0-alpha1/crypto/vault/encrypt", "cryptography"),
        ("POST", "/v1.0-beta1/workflows/dapr/flow/start", "workflow"),
    ] {
        let r = a.call(method, path, "{}").await.unwrap();
        assert_eq!(r.status, 501, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["errorCode"], "ERR_NOT_IMPLEMENTED", "{path}");
        assert!(v["message"].as_str().unwrap().contains(api), "{path}: {v}");
    }
    // None of them reached the app as an invocation.
    assert!(app.seen().is_empty());
}
