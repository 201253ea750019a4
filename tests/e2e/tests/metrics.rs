//! Metrics stay bounded whatever callers send, and the exposition is valid Prometheus text.

use std::process::Stdio;
use std::sync::Arc;

use outrider_testkit::{FakeApp, Mesh, send, wait_registered};
use tokio::io::AsyncWriteExt as _;

/// A random token that is easy to look for in the exposition.
fn token(state: &mut u64) -> String {
    // xorshift64: enough to make every path and Host different.
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    format!("zq{:x}", *state)
}

/// Non-comment lines: one per series (histograms count each bucket).
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Runs `promtool check metrics` on `text`: its exit code and what it printed.
async fn promtool(text: &str) -> (i32, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by make deps (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), printed)
}

/// promtool passes the exposition, apart from its naming advice on the names Dapr fixed
/// (`dapr_http_server_request_count` is a counter without `_total`,
/// `dapr_runtime_service_invocation_res_recv_latency_ms` abbreviates its unit), which
/// compatibility keeps.
async fn assert_valid_exposition(who: &str, text: &str) {
    let (code, printed) = promtool(text).await;
    assert!(
        code == 0 || code == 3,
        "{who}: promtool failed ({code}):\n{printed}"
    );
    for line in printed.lines().filter(|l| !l.trim().is_empty()) {
        let dapr_naming = line.starts_with("dapr_")
            && (line.ends_with("counter metrics should have \"_total\" suffix")
                || line.ends_with(
                    "non-histogram and non-summary metrics should not have \"_count\" suffix",
                )
                || line.ends_with("metric names should not contain abbreviated units"));
        assert!(dapr_naming, "{who}: promtool: {line}\n{printed}");
    }
}

#[tokio::test]
async fn ten_thousand_random_requests_keep_the_series_bounded() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let a = Arc::new(mesh.sidecar("a").start().await);
    wait_registered(&mesh, "b", 1).await;
    let before = (series(&a.metrics().await), series(&b.metrics().await));

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    let mut jobs = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let (t1, t2) = (token(&mut seed), token(&mut seed));
        let (path, header): (String, Option<(&str, String)>) = match i % 5 {
            0 => (format!("/v1.0/invoke/b/method/{t1}/{t2}"), None),
            1 => (format!("/{t1}/{t2}"), Some(("dapr-app-id", "b".to_owned()))),
            2 => (format!("/v1.0/state/statestore/{t1}"), None),
            3 => (format!("/v1.0/{t1}?{t2}=1"), None),
            // A few calls to apps that do not exist (each waits for discovery briefly).
            _ if i % 100 == 4 => (format!("/v1.0/invoke/{t1}/method/x"), None),
            _ => (format!("/v1.0/metadata/{t1}"), None),
        };
        // Only calls to apps that do not exist may fail on our side (500, no endpoints).
        let may_fail = i % 5 == 4 && i % 100 == 4;
        jobs.push((path, header, t2, may_fail));
    }
    let jobs = Arc::new(std::sync::Mutex::new(jobs));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (a, jobs) = (a.clone(), jobs.clone());
        workers.push(tokio::spawn(async move {
            let mut answered = 0;
            loop {
                let Some((path, header, host, may_fail)) = jobs.lock().unwrap().pop() else {
                    return answered;
                };
                let mut headers = vec![("host", host.as_str())];
                if let Some((k, v)) = &header {
                    headers.push((k, v.as_str()));
                }
                let r = send("GET", &format!("{}{path}", a.api_url()), &headers, "")
                    .await
                    .expect("the sidecar answers");
                assert!(
                    r.status < 500 || (may_fail && r.status == 500),
                    "{path}: {}",
                    r.status
                );
                answered += 1;
            }
        }));
    }
    let mut answered = 0;
    for w in workers {
        answered += w.await.unwrap();
    }
    assert_eq!(answered, 10_000);
    assert!(
        app.seen().len() >= 4000,
        "the invocations reached the app: {}",
        app.seen().len()
    );

    // Invocations are counted on both sides, by verified or resolved app ids only.
    let sent = a
        .metric_sum(
            "dapr_runtime_service_invocation_req_sent_total",
            &["destination_app_id=\"b\""],
        )
        .await;
    let ok = a
        .metric_sum(
            "dapr_runtime_service_invocation_res_recv_total",
            &["destination_app_id=\"b\"", "status=\"200\""],
        )
        .await;
    let received = b
        .metric_sum(
            "dapr_runtime_service_invocation_req_recv_total",
            &["source_app_id=\"a\""],
        )
        .await;
    assert!(
        sent >= 4000.0 && ok >= 4000.0 && received >= 4000.0,
        "sent {sent}, ok {ok}, received {received}"
    );
    for (who, s, was) in [("a", &*a, before.0), ("b", &b, before.1)] {
        let text = s.metrics().await;
        assert!(
            !text.contains("zq"),
            "{who}: a caller-supplied path or Host became a label:\n{text}"
        );
        let now = series(&text);
        // Every series comes from a route template, a status, a method or a configured name: the
        // count grows by a bounded amount however many distinct paths arrive.
        assert!(
            now <= was + 400,
            "{who}: {was} series before, {now} after 10 000 distinct paths:\n{text}"
        );
        assert!(
            text.contains("dapr_http_server_request_count"),
            "{who}: {text}"
        );
        assert_valid_exposition(who, &text).await;
    }
    drop(b);
}
