//! The service invocation suite: two sidecars over mutual TLS, verbs, encoded paths, headers,
//! statuses, caller identity, failures, round-robin and large streamed bodies. `invoke.rs` runs
//! it over HTTP/2 and `over_h3.rs` over HTTP/3; each builds its meshes with `crate::mesh()`.

use std::time::Duration;

use outrider_testkit::{FNV_START, FakeApp, Mesh, Sidecar, fnv, send, wait_registered};

/// A (caller) and B (callee), each with a recording app, in one mesh.
struct Pair {
    mesh: Mesh,
    a: Sidecar,
    b: Sidecar,
    b_app: FakeApp,
    _a_app: FakeApp,
}

async fn pair(extra: &[&str]) -> Pair {
    let mesh = crate::mesh();
    let (a_app, b_app) = (FakeApp::start("a").await, FakeApp::start("b").await);
    let b = mesh
        .sidecar("b")
        .app_port(b_app.port)
        .args(extra.iter().copied())
        .start()
        .await;
    let a = mesh
        .sidecar("a")
        .app_port(a_app.port)
        .args(extra.iter().copied())
        .start()
        .await;
    wait_registered(&mesh, "b", 1).await;
    Pair {
        mesh,
        a,
        b,
        b_app,
        _a_app: a_app,
    }
}

fn url(s: &Sidecar, rest: &str) -> String {
    format!("{}/v1.0/invoke/{rest}", s.api_url())
}

#[tokio::test]
async fn verbs_paths_queries_and_bodies_reach_the_app() {
    let p = pair(&[]).await;
    for verb in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = send(
            verb,
            &url(&p.a, "b/method/orders/7?x=1&y=a+b%20c"),
            &[("content-type", "text/plain")],
            format!("body-{verb}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{verb}: {}", r.text());
        let j = r.json();
        assert_eq!(j["instance"], "b");
        assert_eq!(j["method"], verb);
        assert_eq!(j["path"], "/orders/7");
        assert_eq!(
            j["query"], "x=1&y=a+b%20c",
            "the query string is forwarded verbatim"
        );
        assert_eq!(j["body"], format!("body-{verb}"));
        assert_eq!(j["headers"]["content-type"], "text/plain");
    }
    let head = send("HEAD", &url(&p.a, "b/method/orders/7"), &[], "")
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // Empty method: forwarded as "/", like daprd.
    let r = send("GET", &url(&p.a, "b/method/"), &[], "").await.unwrap();
    assert_eq!(r.json()["path"], "/");
}

#[tokio::test]
async fn encoded_paths_arrive_in_their_one_canonical_form() {
    let p = pair(&[]).await;
    let cases = [
        ("b/method/a%20b/c%3Fd", "/a%20b/c%3Fd"),
        ("b/method/admin%2F..%2Fpublic", "/public"),
        ("b/method/admin/%2e%2e/public", "/public"),
        ("b/method/a%5Cb", "/a/b"),
        ("b/method/x//y/./z", "/x/y/z"),
        ("b/method/%7Euser/caf%C3%A9", "/~user/caf%C3%A9"),
        ("b/method/a%23b", "/a%23b"),
    ];
    for (rest, want) in cases {
        let r = send("GET", &url(&p.a, rest), &[], "").await.unwrap();
        assert_eq!(r.status, 200, "{rest}: {}", r.text());
        assert_eq!(r.json()["path"], want, "{rest}");
    }
    let seen: Vec<String> = p.b_app.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(
        seen,
        cases.iter().map(|c| c.1).collect::<Vec<_>>(),
        "the app saw exactly the canonical paths"
    );
}

#[tokio::test]
async fn headers_pass_both_ways_without_hop_by_hop_or_identity_headers() {
    let p = pair(&[]).await;
    let r = send(
        "GET",
        &url(&p.a, "b/method/headers"),
        &[
            ("x-custom", "kept"),
            ("connection", "x-private"),
            ("x-private", "dropped"),
            ("dapr-caller-app-id", "mallory"),
            ("dapr-caller-namespace", "evil"),
            ("dapr-callee-app-id", "c"),
            ("dapr-api-token", "caller-secret"),
        ],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-custom-response"], "yes");
    for hop in ["x-hop", "keep-alive"] {
        assert!(r.headers.get(hop).is_none(), "{hop} reached the caller");
    }
    let got = p.b_app.seen().pop().unwrap().headers;
    assert_eq!(got["x-custom"], "kept");
    assert!(
        got.get("x-private").is_none(),
        "a header named by Connection was forwarded"
    );
    assert!(
        got.get("dapr-api-token").is_none(),
        "the caller's token reached the callee app"
    );
    assert_eq!(
        got["dapr-caller-app-id"], "a",
        "caller identity comes from the certificate"
    );
    assert_eq!(got["dapr-caller-namespace"], "default");
    assert_eq!(got["dapr-callee-app-id"], "b");
    assert_eq!(got.get_all("dapr-caller-app-id").iter().count(), 1);
    assert!(got.get("traceparent").is_some());
}

#[tokio::test]
async fn app_statuses_and_bodies_pass_through() {
    let p = pair(&[]).await;
    for code in [201u16, 204, 302, 400, 404, 409, 500, 503] {
        let r = send(
            "POST",
            &url(&p.a, &format!("b/method/status/{code}")),
            &[],
            "x",
        )
        .await
        .unwrap();
        assert_eq!(r.status, code);
        assert_eq!(r.headers["x-app-status"], code.to_string().as_str());
        if code != 204 {
            assert_eq!(r.json()["status"], code);
        }
    }
}

#[tokio::test]
async fn header_form_and_self_invocation() {
    let p = pair(&[]).await;
    let r = send(
        "POST",
        &format!("{}/any/path?q=1", p.a.api_url()),
        &[("dapr-app-id", "b")],
        "hi",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (
            j["instance"].as_str(),
            j["path"].as_str(),
            j["query"].as_str()
        ),
        (Some("b"), Some("/any/path"), Some("q=1"))
    );
    assert!(j["headers"].get("dapr-app-id").is_none());
    // Namespace-qualified form.
    let r = send("GET", &url(&p.a, "b.default/method/x"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.json()["instance"], "b");
    // Basic auth naming the target (base64 of "dapr-app-id:b"); the header is not forwarded.
    let r = send(
        "GET",
        &format!("{}/basic?x=2", p.a.api_url()),
        &[("authorization", "Basic ZGFwci1hcHAtaWQ6Yg==")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.json()["instance"].as_str(), r.json()["path"].as_str()),
        (Some("b"), Some("/basic")),
        "{}",
        r.text()
    );
    assert!(r.json()["headers"].get("authorization").is_none());
    // The header wins over the path, and the whole path is the method.
    let r = send("GET", &url(&p.a, "a/method/x"), &[("dapr-app-id", "b")], "")
        .await
        .unwrap();
    assert_eq!(
        (r.json()["instance"].as_str(), r.json()["path"].as_str()),
        (Some("b"), Some("/v1.0/invoke/a/method/x"))
    );
    // Calling oneself goes to one's own app.
    let r = send("GET", &url(&p.a, "a/method/me"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.json()["instance"], "a");
    assert_eq!(r.json()["headers"]["dapr-caller-app-id"], "a");
}

#[tokio::test]
async fn failures_have_dapr_error_codes() {
    let mut p = pair(&[]).await;
    let cases = [
        (
            url(&p.a, "nobody/method/x"),
            500,
            "no endpoints found for app nobody.default",
        ),
        (
            url(&p.a, "b.other-ns/method/x"),
            500,
            "no endpoints found for app b.other-ns",
        ),
        (url(&p.a, "a.b.c/method/x"), 400, "invalid app id"),
        (
            url(&p.a, "http%3A%2F%2Fexample.com/method/x"),
            400,
            "HTTPEndpoint",
        ),
        (
            format!("{}/v1.0/nothing", p.a.api_url()),
            404,
            "failed getting app id",
        ),
        (
            format!("{}/v1.0/invoke/b", p.a.api_url()),
            404,
            "failed getting app id",
        ),
    ];
    for (u, status, text) in cases {
        let r = send("GET", &u, &[], "").await.unwrap();
        assert_eq!(r.status, status, "{u}: {}", r.text());
        assert_eq!(r.json()["errorCode"], "ERR_DIRECT_INVOKE", "{u}");
        assert!(
            r.json()["message"].as_str().unwrap().contains(text),
            "{u}: {}",
            r.text()
        );
    }
    // B's app goes away: B's sidecar answers the error.
    drop(std::mem::replace(
        &mut p.b_app,
        FakeApp::start("unused").await,
    ));
    let r = send("GET", &url(&p.a, "b/method/x"), &[], "")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_DIRECT_INVOKE")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("app channel"), "{}", r.text());
    // B's sidecar goes away: the caller cannot connect, then forgets the endpoint.
    p.b.kill().await;
    let r = send("GET", &url(&p.a, "b/method/x"), &[], "")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_DIRECT_INVOKE")),
        "{}",
        r.text()
    );
    wait_registered(&p.mesh, "b", 0).await;
}

#[tokio::test]
async fn round_robin_over_instances() {
    let mesh = crate::mesh();
    let (b1_app, b2_app) = (FakeApp::start("b1").await, FakeApp::start("b2").await);
    let _b1 = mesh.sidecar("b").app_port(b1_app.port).start().await;
    let _b2 = mesh.sidecar("b").app_port(b2_app.port).start().await;
    let a = mesh.sidecar("a").start().await;
    wait_registered(&mesh, "b", 2).await;
    // The caller may not have seen both yet; once it has, instances alternate strictly.
    let a_url = url(&a, "b/method/who");
    outrider_testkit::wait_until(Duration::from_secs(10), "both instances answering", || {
        let a_url = a_url.clone();
        async move {
            let r1 = send("GET", &a_url, &[], "").await.ok()?.json();
            let r2 = send("GET", &a_url, &[], "").await.ok()?.json();
            (r1["instance"] != r2["instance"]).then_some(())
        }
    })
    .await;
    let mut seq = Vec::new();
    for _ in 0..10 {
        seq.push(
            send("GET", &a_url, &[], "").await.unwrap().json()["instance"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for w in seq.windows(2) {
        assert_ne!(w[0], w[1], "not round-robin: {seq:?}");
    }
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    const SIZE: usize = 40 << 20;
    let p = pair(&["--max-body-size", "64Mi"]).await;
    // Warm up connections and pools, then note each sidecar's peak memory so far.
    assert_eq!(
        send("GET", &url(&p.a, "b/method/warm"), &[], "")
            .await
            .unwrap()
            .status,
        200
    );
    let before = [p.a.peak_rss_bytes(), p.b.peak_rss_bytes()];
    // Upload: the app hashes what streams in.
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let want = fnv(FNV_START, &body);
    let r = send(
        "POST",
        &url(&p.a, "b/method/sink"),
        &[("content-type", "application/octet-stream")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["bytes"], SIZE);
    assert_eq!(r.json()["fnv"], want);
    // Download: streamed by the app without a length.
    let r = send(
        "GET",
        &url(&p.a, &format!("b/method/stream/{SIZE}")),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE);
    assert!(
        r.body
            .chunks(65536)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == (i % 251) as u8))
    );
    // Streamed, not buffered: neither sidecar's peak memory grew by anything near a body.
    for (s, before) in [&p.a, &p.b].into_iter().zip(before) {
        let growth = s.peak_rss_bytes().saturating_sub(before);
        assert!(
            growth < SIZE as u64 / 4,
            "sidecar {} grew by {} MiB for a {} MiB body",
            s.app_id,
            growth >> 20,
            SIZE >> 20
        );
    }
}

#[tokio::test]
async fn the_body_limit_is_enforced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = pair(&[]).await; // default 4 MiB
    // A declared length over the limit is refused before any body byte is read.
    let head = format!(
        "POST /v1.0/invoke/b/method/sink HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        (4 << 20) + 1
    );
    let reply = outrider_testkit::raw_request(p.a.api, head.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply:?}");
    assert!(reply.contains("ERR_DIRECT_INVOKE"), "{reply:?}");
    assert!(
        p.b_app.seen().is_empty(),
        "an oversized body reached the app"
    );

    // A chunked body is cut off once it passes the limit, while it streams.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.a.api))
        .await
        .unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let head = "POST /v1.0/invoke/b/method/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        wr.write_all(head.as_bytes()).await?;
        let chunk = [7u8; 65536];
        for _ in 0..96 {
            wr.write_all(b"10000\r\n").await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await
    });
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply:?}");
    writer.abort();

    // Exactly the limit passes.
    let r = send("POST", &url(&p.a, "b/method/sink"), &[], vec![1u8; 4 << 20])
        .await
        .unwrap();
    assert_eq!(r.json()["bytes"], 4 << 20);
}
