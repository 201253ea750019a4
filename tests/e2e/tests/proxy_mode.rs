//! `outrider proxy`: the L7 proxy alone in front of one upstream.

use std::convert::Infallible;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use outrider_testkit::{FakeApp, binary, free_port, send, wait_until};
use tokio::process::{Child, Command};

fn proxy(listen: u16, upstream: &str) -> Child {
    Command::new(binary("outrider"))
        .args([
            "proxy",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--upstream",
            upstream,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("outrider proxy")
}

#[tokio::test]
async fn forwards_to_the_upstream_and_says_when_it_is_gone() {
    let app = FakeApp::start("upstream").await;
    let port = free_port();
    let mut child = proxy(port, &format!("127.0.0.1:{}", app.port));
    let url = format!("http://127.0.0.1:{port}/orders/7?x=1");
    let r = wait_until(Duration::from_secs(10), "the proxy to answer", || async {
        send(
            "POST",
            &url,
            &[
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "1"),
                ("x-keep", "2"),
            ],
            "an order",
        )
        .await
        .ok()
    })
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = app
        .seen()
        .into_iter()
        .find(|s| s.path == "/orders/7")
        .expect("the upstream got the request");
    assert_eq!(
        (seen.method.as_str(), seen.query.as_str(), &seen.body[..]),
        ("POST", "x=1", &b"an order"[..])
    );
    assert_eq!(seen.headers["x-keep"], "2");
    assert!(
        !seen.headers.contains_key("x-drop"),
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(seen.headers["host"], format!("127.0.0.1:{}", app.port));
    // A traceparent is continued or started, as on the sidecar's listeners.
    assert!(
        seen.headers.contains_key("traceparent"),
        "{:?}",
        seen.headers
    );

    drop(app);
    let r = send("GET", &url, &[], "").await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_bad_upstream_is_refused_before_listening() {
    let out = Command::new(binary("outrider"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "no-port-here",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--upstream") && err.contains("\"no-port-here\" is not host:port"),
        "{err}"
    );
}

/// How the counting upstream treats its connections.
#[derive(Clone, Copy, Debug)]
enum Upstream {
    /// Keeps them open.
    KeepAlive,
    /// Closes each after one answer, saying so (`connection: close`).
    CloseSaying,
    /// Closes each right after one answer without saying so, as an upstream that ends idle
    /// connections does: the proxy learns of it from the connection's end, not from the answer.
    CloseSilently,
}

/// An upstream that counts the connections it accepts and answers every request with the
/// number of its connection.
async fn counting_upstream(mode: Upstream) -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if let Upstream::CloseSilently = mode {
                tokio::spawn(async move {
                    // A GET without a body: its head is all there is to read.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    let body = n.to_string();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(answer.as_bytes()).await;
                });
                continue;
            }
            let svc = hyper::service::service_fn(move |_req| async move {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(n.to_string()))))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(matches!(mode, Upstream::KeepAlive))
                .serve_connection(TokioIo::new(tcp), svc);
            tokio::spawn(conn);
        }
    });
    (port, accepted)
}

/// One downstream keep-alive connection to the proxy.
async fn downstream(port: u16) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// The status and body of one request on `conn`.
async fn call(conn: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> (u16, String) {
    conn.ready().await.unwrap();
    let req = hyper::Request::builder()
        .uri("/n")
        .header("host", "proxy")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rsp = conn.send_request(req).await.unwrap();
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn proxy_in_front_of(upstream: u16) -> (Child, u16) {
    let port = free_port();
    let child = proxy(port, &format!("127.0.0.1:{upstream}"));
    wait_until(Duration::from_secs(10), "the proxy to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
    (child, port)
}

#[tokio::test]
async fn upstream_connections_are_kept_and_shared_by_downstream_connections() {
    let (upstream, accepted) = counting_upstream(Upstream::KeepAlive).await;
    let (mut child, port) = proxy_in_front_of(upstream).await;
    let mut first = downstream(port).await;
    let mut second = downstream(port).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(call(&mut first).await);
        answers.push(call(&mut second).await);
    }
    // One request at a time: every answer came over the one upstream connection, whichever
    // downstream connection asked.
    assert!(
        answers.iter().all(|a| *a == (200, "1".to_owned())),
        "{answers:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_upstream_connection_that_closes_is_replaced_for_the_next_request() {
    for mode in [Upstream::CloseSaying, Upstream::CloseSilently] {
        let (upstream, _) = counting_upstream(mode).await;
        let (mut child, port) = proxy_in_front_of(upstream).await;
        let mut conn = downstream(port).await;
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.push(call(&mut conn).await);
        }
        // Each request went over a new upstream connection, and none failed.
        let expected: Vec<(u16, String)> = (1..=5).map(|n| (200, n.to_string())).collect();
        assert_eq!(answers, expected, "{mode:?}");
        child.kill().await.unwrap();
    }
}
