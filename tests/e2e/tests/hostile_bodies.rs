//! Hostile request and response bodies (security rule 11): declared oversized bodies refused at
//! once, malformed chunking, bodies that stall, bounded metadata attributes, and an app that
//! answers 101.

use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Sends `head` (and nothing more) and returns the response head, which must come within 3 s.
async fn answer_to_head(port: u16, head: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    assert!(
        timeout(Duration::from_secs(3), read).await.is_ok(),
        "no answer to {head:?} within 3 s"
    );
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn declared_oversized_bodies_are_refused_at_once_on_every_route() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh.sidecar("a").app_port(app.port).start().await;
    for (method, path) in [
        ("POST", "/v1.0/state/statestore"),
        ("POST", "/v1.0/state/statestore/bulk"),
        ("POST", "/v1.0/state/statestore/transaction"),
        ("POST", "/v1.0-alpha1/state/statestore/query"),
        ("POST", "/v1.0/publish/pubsub/orders"),
        ("POST", "/v1.0-alpha1/publish/bulk/pubsub/orders"),
        ("POST", "/v1.0/publish/bulk/pubsub/orders"),
        ("PUT", "/v1.0/metadata/big"),
        ("POST", "/v1.0/invoke/a/method/x"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n"
        );
        let answer = answer_to_head(a.api, &head).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{method} {path}: {answer:?}"
        );
        assert!(
            !answer.contains("100 Continue"),
            "{method} {path} invited the body: {answer:?}"
        );
    }
    assert!(
        app.seen().is_empty(),
        "an oversized request reached the app"
    );
    // The metadata attribute's own, smaller limit.
    let r = send(
        "PUT",
        &format!("{}/v1.0/metadata/big", a.api_url()),
        &[],
        vec![b'x'; 65 * 1024],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["errorCode"], "ERR_BODY_READ");
}

#[tokio::test]
async fn a_malformed_chunked_body_on_invoke_is_400_and_never_reaches_the_app_whole() {
    let mesh = Mesh::new();
    let (a_app, b_app) = (FakeApp::start("a").await, FakeApp::start("b").await);
    let a = mesh.sidecar("a").app_port(a_app.port).start().await;
    let _b = mesh.sidecar("b").app_port(b_app.port).start().await;
    outrider_testkit::wait_registered(&mesh, "b", 1).await;
    // To our own app and to another app over the mesh.
    for target in ["a", "b"] {
        let mut tcp = TcpStream::connect(("127.0.0.1", a.api)).await.unwrap();
        let req = format!(
            "POST /v1.0/invoke/{target}/method/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\nZZ-not-hex\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let _ = timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 400"), "{target}: {got:?}");
        assert!(got.contains("ERR_MALFORMED_REQUEST"), "{target}: {got:?}");
        assert!(
            !got.contains("error invoking app channel"),
            "{target}: internals leaked: {got:?}"
        );
    }
    assert!(
        a_app.seen().is_empty(),
        "the app handled a partial body: {:?}",
        a_app.seen()
    );
    assert!(
        b_app.seen().is_empty(),
        "the app handled a partial body: {:?}",
        b_app.seen()
    );
}

#[tokio::test]
async fn bodies_that_stall_time_out_and_metadata_attributes_are_bounded() {
    let mesh = Mesh::new();
    let a = mesh
        .sidecar("a")
        .args(["--request-head-timeout", "1s"])
        .start()
        .await;
    // 100 bytes declared, 10 sent, then nothing.
    let head = "POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[{\"key\":\"k";
    let mut tcp = TcpStream::connect(("127.0.0.1", a.api)).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("ERR_BODY_READ"), "{answer:?}");

    let base = a.api_url();
    for i in 0..64 {
        let r = send("PUT", &format!("{base}/v1.0/metadata/k{i}"), &[], "v")
            .await
            .unwrap();
        assert_eq!(r.status, 204);
    }
    let r = send(
        "PUT",
        &format!("{base}/v1.0/metadata/one-too-many"),
        &[],
        "v",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["errorCode"], "ERR_MALFORMED_REQUEST");
    // Changing an existing attribute is still allowed; an over-long name is not.
    assert_eq!(
        send("PUT", &format!("{base}/v1.0/metadata/k0"), &[], "w")
            .await
            .unwrap()
            .status,
        204
    );
    let long = "n".repeat(300);
    assert_eq!(
        send("PUT", &format!("{base}/v1.0/metadata/{long}"), &[], "v")
            .await
            .unwrap()
            .status,
        400
    );
    let meta = send("GET", &format!("{base}/v1.0/metadata"), &[], "")
        .await
        .unwrap()
        .json();
    assert_eq!(meta["extended"]["k0"], "w");
    assert!(meta["extended"].get("one-too-many").is_none());
}

#[tokio::test]
async fn a_101_from_the_app_is_refused() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh.sidecar("a").app_port(app.port).start().await;
    let r = a.get("/v1.0/invoke/a/method/status/101").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(r.text().contains("101"), "{}", r.text());
}
