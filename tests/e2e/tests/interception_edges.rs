//! Transparent interception at its edges: strict mTLS mode refusing plain traffic from outside
//! the mesh, a client that waits for the server to speak first, and a malformed request.
//!
//! Hosts are network namespaces on a bridge (`testkit::netns`); sidecars run as the user
//! `outrider init` leaves alone, clients and servers as root. Without root the tests report
//! themselves skipped.

use std::time::Duration;

use outrider_testkit::intercept::{init_ok, install, mdns_config};
use outrider_testkit::netns::Lan;
use outrider_testkit::{Mesh, Sidecar, sum_metric, wait_until};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// A TCP server on all addresses at the port given that greets each client with "hello\n" and
/// closes, without waiting for the client to say anything.
const SPEAKS_FIRST: &str = r#"
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(16)
print("listening", flush=True)
while True:
    c, peer = srv.accept()
    print("accepted", peer, flush=True)
    c.sendall(b"hello\n")
    c.close()
"#;

/// Connects to host:port, sends nothing, and prints as JSON the first line it receives and how
/// long that took.
const SILENT_CLIENT: &str = r#"
import json, socket, sys, time
start = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(64)
    if not chunk:
        break
    data += chunk
print(json.dumps({"data": data.decode("latin-1"), "elapsed": time.monotonic() - start}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_refuses_plain_traffic_from_outside_the_mesh() {
    let lan = match Lan::new(2) {
        Ok(lan) => lan,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let (hb, hc) = (&lan.hosts[0], &lan.hosts[1]);
    install(hb).await;
    let mesh = Mesh::new();
    let cfg = mdns_config(mesh.home(), "b", json!({"mtls": {"mode": "strict"}}));
    let mut b = mesh.intercepting("b", hb, &cfg).spawn();
    b.wait_ready().await;
    let meta = b.call("GET", "/v1.0/metadata", "").await.unwrap().json();
    assert_eq!(meta["interception"]["mode"], "strict", "{meta}");

    // A server on b's LAN address; c has no sidecar, so its request comes in plain: refused.
    let server = hb.web_server(8090).await;
    let url = format!("http://{}:8090/", hb.addr);
    let (status, body) = hc.curl(&["--max-time", "5", &url]).await;
    assert_eq!(
        status, 0,
        "plain traffic got through in strict mode: {body}"
    );
    b.wait_metric(
        "outrider_tcp_refused_total",
        &[r#"direction="inbound""#, r#"reason="strict""#],
        1.0,
    )
    .await;
    assert!(
        !server.log().contains("GET /"),
        "the server saw the request:\n{}",
        server.log()
    );

    // The rules were what refused it: without them c reaches the server directly.
    init_ok(hb, &["--uninstall"]).await;
    let (status, body) = hc.curl(&[&url]).await;
    assert_eq!(status, 200, "{body}");
    assert!(server.log().contains("GET /"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detection_bound_and_bad_requests() {
    let lan = match Lan::new(2) {
        Ok(lan) => lan,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let (ha, hc) = (&lan.hosts[0], &lan.hosts[1]);
    ha.hosts(&[("c", hc.addr)]);
    install(ha).await;
    let mesh = Mesh::new();
    let cfg = mdns_config(mesh.home(), "a", json!({}));
    let mut a = mesh
        .intercepting("a", ha, &cfg)
        .args(["--detect-timeout", "1s"])
        .spawn();
    a.wait_ready().await;
    let mut speaker = hc.background("python3", &["-u", "-c", SPEAKS_FIRST, "9000"]);
    speaker.wait_log("listening").await;
    let web = hc.web_server(8000).await;

    // The client says nothing: once the detection bound (1 s here, not the default 3 s) has
    // passed, its connection goes to the destination as it is, and the server speaks.
    let said = ha.python(SILENT_CLIENT, &["c", "9000"], LIMIT).await;
    let said: Value = serde_json::from_str(&said).unwrap_or_else(|e| panic!("{e}: {said}"));
    assert_eq!(said["data"], "hello\n", "{said}");
    let elapsed = said["elapsed"].as_f64().unwrap_or(f64::MAX);
    assert!(elapsed < 2.9, "the greeting took {elapsed} s");
    assert!(speaker.log().contains("accepted"), "{}", speaker.log());
    let passthrough = [r#"direction="outbound""#, r#"peer="passthrough""#];
    wait_bytes(&a, &passthrough).await;

    // A malformed request line: the sidecar answers 400 itself and closes; the server never
    // sees it.
    let (answer, closed) = ha.exchange("c", 8000, r"GET /x HTTX/9\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(
        closed,
        "the connection stayed open after the 400: {answer:?}"
    );
    assert!(!web.log().contains("HTTX"), "{}", web.log());

    // The sidecar is still serving.
    let r = a.call("GET", "/v1.0/healthz", "").await.unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
}

/// Waits (bounded, 10 s) until `s` has counted TCP bytes, either way, for `labels`.
async fn wait_bytes(s: &Sidecar, labels: &[&str]) {
    let what = format!("TCP bytes {labels:?} on {}", s.app_id);
    wait_until(Duration::from_secs(10), &what, || async move {
        let text = s.metrics().await;
        let n = sum_metric(&text, "outrider_tcp_read_bytes_total", labels)
            + sum_metric(&text, "outrider_tcp_write_bytes_total", labels);
        (n > 0.0).then_some(())
    })
    .await;
}
