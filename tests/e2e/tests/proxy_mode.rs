//! `outrider proxy`: the L7 proxy alone in front of one upstream.

use std::process::Stdio;
use std::time::Duration;

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
