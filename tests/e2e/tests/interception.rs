//! Transparent interception, end to end: `outrider run --intercept` carries what the rules of
//! `outrider init` catch. Unmodified HTTP clients and opaque TCP cross the LAN over the
//! mutual-TLS mesh, under the callee's access policy and the caller's resiliency policy;
//! destinations outside the mesh are passed through; plain traffic from outside the mesh is let
//! in (permissive mode).
//!
//! Every host is a network namespace on a bridge (`testkit::netns`): the rules and all traffic
//! stay inside them. Sidecars run as the user `outrider init` is told to leave alone; clients and
//! servers run as root, so theirs are the connections redirected. Without root the tests report
//! themselves skipped. The rules themselves are tested in `interception_rules.rs`, strict mode
//! and the edges of protocol detection in `interception_edges.rs`.

use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outrider_testkit::intercept::{install, mdns_config};
use outrider_testkit::netns::{Background, Capture, Host, Lan};
use outrider_testkit::{Mesh, Sidecar, WELL_KNOWN_PORTS, shared_binary, sum_metric, wait_until};
use serde_json::{Value, json};

/// Bound for every program a test runs to completion.
const LIMIT: Duration = Duration::from_secs(30);
/// The sidecars' mesh port (they have the well-known ports).
const MESH: u16 = WELL_KNOWN_PORTS[3];

const RECV: &str = "dapr_runtime_service_invocation_req_recv_total";
const SENT: &str = "dapr_runtime_service_invocation_req_sent_total";
const BLOCKED: &str = "dapr_runtime_acl_app_policy_action_blocked_total";
const READ: &str = "outrider_tcp_read_bytes_total";
const WRITE: &str = "outrider_tcp_write_bytes_total";
const REFUSED: &str = "outrider_tcp_refused_total";
const PASSTHROUGH: &str = r#"peer="passthrough""#;
const OUTBOUND: &str = r#"direction="outbound""#;
const INBOUND: &str = r#"direction="inbound""#;
const FROM_A: &str = r#"source_app_id="a""#;

/// a retries calls to b twice, 10 ms apart.
const RESILIENCY: &str = concat!(
    "apiVersion: dapr.io/v1alpha1\n",
    "kind: Resiliency\n",
    "metadata: {name: retry-b}\n",
    "spec:\n",
    "  policies:\n",
    "    retries:\n",
    "      twice: {policy: constant, duration: 10ms, maxRetries: 2}\n",
    "  targets:\n",
    "    apps:\n",
    "      b: {retry: twice}\n",
);

/// A TCP echo server at the port given, on 127.0.0.1 or the address given after it, which
/// prints each connection it accepts.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", int(sys.argv[1])))
srv.listen(16)
print("listening", flush=True)
def serve(c):
    with c:
        while True:
            data = c.recv(1 << 16)
            if not data:
                break
            c.sendall(data)
while True:
    c, peer = srv.accept()
    print("accepted", peer, flush=True)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Sends `size` seeded pseudo-random bytes to host:port from one thread, half-closes, reads the
/// echo until EOF on another and prints OK if it is the same bytes.
const BIG_ECHO: &str = r#"
import hashlib, random, socket, sys, threading
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = b"\x00raw" + random.Random(17).randbytes(size - 4)
s = socket.create_connection((host, port), timeout=60)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
sender = threading.Thread(target=send)
sender.start()
digest, n = hashlib.sha256(), 0
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    digest.update(chunk)
    n += len(chunk)
sender.join()
ok = n == len(data) and digest.digest() == hashlib.sha256(data).digest()
print("OK" if ok else "MISMATCH: %d of %d bytes back" % (n, len(data)))
"#;

/// Sends a few bytes to host:port and prints what comes back: EOF, RESET or DATA.
const ONE_EXCHANGE: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
try:
    s.sendall(b"\x00ping\n")
    data = s.recv(64)
    print("EOF" if not data else "DATA %r" % data)
except (ConnectionResetError, BrokenPipeError):
    print("RESET")
"#;

/// A GET with Python's `requests`, proxies from the environment ignored: status, then body.
const REQUESTS_GET: &str = r#"
import sys, requests
session = requests.Session()
session.trust_env = False
r = session.get(sys.argv[1], timeout=20)
print(r.status_code)
print(r.text, end="")
"#;

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

/// A marker no other run, and no other step of this one, uses: to look for on the wire.
fn marker(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("zq{what}{:x}n{nanos:x}n{n}", std::process::id())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bytes counted both ways for `labels` on `s`.
async fn tcp_bytes(s: &Sidecar, labels: &[&str]) -> f64 {
    let text = s.metrics().await;
    sum_metric(&text, READ, labels) + sum_metric(&text, WRITE, labels)
}

/// Hosts a and b intercepted, each with a sidecar (b's app is `echo-app` on 7000); c outside
/// the mesh.
struct World {
    a: Sidecar,
    b: Sidecar,
    _mesh: Mesh,
    lan: Lan,
}

/// b lets everyone in, but not a to `/denied`, nor a's tunnels to port 7001.
fn acl() -> Value {
    json!({
        "defaultAction": "allow",
        "trustDomain": "public",
        "policies": [{
            "appId": "a",
            "namespace": "default",
            "trustDomain": "public",
            "defaultAction": "allow",
            "operations": [
                {"name": "/denied", "httpVerb": ["*"], "action": "deny"},
                {"name": "/tcp/7001", "httpVerb": ["CONNECT"], "action": "deny"},
            ],
        }],
    })
}

async fn world() -> Option<World> {
    let lan = match Lan::new(3) {
        Ok(lan) => lan,
        Err(why) => {
            skip(&why);
            return None;
        }
    };
    let (ha, hb, hc) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    ha.hosts(&[
        ("b", hb.addr),
        ("b.default", hb.addr),
        ("b.default.svc.cluster.local", hb.addr),
        ("c", hc.addr),
    ]);
    install(ha).await;
    install(hb).await;
    let mesh = Mesh::new();
    let cfg_b = mdns_config(mesh.home(), "b", json!({"accessControl": acl()}));
    let mut b = mesh
        .intercepting("b", hb, &cfg_b)
        .args(["--app-ports", "6379,7001,7002"])
        .app_port(7000)
        .command([shared_binary("echo-app").to_string_lossy().into_owned()])
        .spawn();
    b.wait_ready().await;
    let cfg_a = mdns_config(mesh.home(), "a", json!({}));
    let resources = mesh.resources("resources-a", "resiliency.yaml", RESILIENCY);
    let mut a = mesh
        .intercepting("a", ha, &cfg_a)
        .resources(&resources)
        .spawn();
    a.wait_ready().await;
    // a finds b (mDNS) before anything is measured.
    wait_until(Duration::from_secs(20), "a to reach b", || async {
        let r = a
            .call("GET", "/v1.0/invoke/b/method/ready", "")
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    Some(World {
        a,
        b,
        _mesh: mesh,
        lan,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_client_is_carried_over_mtls_and_governed_by_policy() {
    let Some(w) = world().await else { return };
    let meta = w.a.call("GET", "/v1.0/metadata", "").await.unwrap().json();
    let interception = &meta["interception"];
    assert_eq!(interception["enabled"], true, "{meta}");
    assert_eq!(interception["outboundPort"], 15001, "{meta}");
    assert_eq!(interception["inboundPort"], 15006, "{meta}");
    assert_eq!(interception["mode"], "permissive", "{meta}");
    assert!(interception["rules"].is_string(), "{meta}");

    // Everything up to the big streams is watched on a's wire.
    let mut capture = w.lan.hosts[0].capture("eth0").await;
    let http_marker = marker("http");
    mesh_http_reaches_the_app(&w, &http_marker).await;
    policy_and_retries_apply(&w).await;
    let value_marker = marker("value");
    let _redis = redis_is_tunnelled(&w, &value_marker).await;
    capture.stop().await;
    nothing_in_clear_on_the_wire(&capture, &[&http_marker, &value_marker]).await;

    streams_are_tunnelled_and_ports_governed(&w).await;
    no_loop_and_passthrough(&w).await;
    plain_inbound_is_let_in(&w).await;
}

/// Asserts an echo-app answer to a mesh call from a for `path`.
fn assert_echoed(status: u16, body: &str, path: &str) {
    assert_eq!(status, 200, "{path}: {body}");
    let echoed: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{path}: not the app's answer ({e}): {body}"));
    assert_eq!(echoed["path"], path, "{body}");
    assert_eq!(echoed["headers"]["dapr-caller-app-id"], "a", "{body}");
}

/// Unmodified HTTP clients on a reach b's app over the mesh, whatever name or address they
/// use, over HTTP/1.1 or h2c.
async fn mesh_http_reaches_the_app(w: &World, marker: &str) {
    let (ha, b_addr) = (&w.lan.hosts[0], w.lan.hosts[1].addr);
    let sent = w.a.metric_sum(SENT, &[r#"destination_app_id="b""#]).await;
    let received = w.b.metric_sum(RECV, &[FROM_A]).await;
    let path = format!("/orders/{marker}");
    let mut calls = 0.0;
    for authority in [
        "b:7000".to_owned(),
        "b.default:7000".to_owned(),
        "b.default.svc.cluster.local:7000".to_owned(),
        format!("{b_addr}:7000"),
    ] {
        let (status, body) = ha.curl(&[&format!("http://{authority}{path}")]).await;
        assert_echoed(status, &body, &path);
        calls += 1.0;
    }
    let url = format!("http://b:7000{path}");
    let (status, body) = ha.curl(&["--http2-prior-knowledge", &url]).await;
    assert_echoed(status, &body, &path);
    let said = ha.python(REQUESTS_GET, &[&url], LIMIT).await;
    let (status, body) = said.split_once('\n').unwrap_or((&said, ""));
    assert_echoed(status.trim().parse().unwrap_or(0), body, &path);
    calls += 2.0;
    // Counted as invocations on both sides.
    w.a.wait_metric(SENT, &[r#"destination_app_id="b""#], sent + calls)
        .await;
    w.b.wait_metric(RECV, &[FROM_A], received + calls).await;
}

/// b's access policy and a's retry policy govern intercepted calls as they do API calls.
async fn policy_and_retries_apply(w: &World) {
    let ha = &w.lan.hosts[0];
    let blocked = w.b.metric_sum(BLOCKED, &[r#"app_id="a""#]).await;
    let (status, body) = ha.curl(&["http://b:7000/denied"]).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("\"pid\""), "the app answered: {body}");
    w.b.wait_metric(BLOCKED, &[r#"app_id="a""#], blocked + 1.0)
        .await;

    // One call, three attempts at b: the first and a's two retries.
    let from_a = [FROM_A];
    let before = w.b.metric_sum(RECV, &from_a).await;
    let (status, body) = ha.curl(&["http://b:7000/status/503"]).await;
    assert_eq!(status, 503, "{body}");
    w.b.wait_metric(RECV, &from_a, before + 3.0).await;
    let intercepted = w.b.metric_sum(RECV, &from_a).await - before;

    let before = w.b.metric_sum(RECV, &from_a).await;
    let r = w.a.call("GET", "/v1.0/invoke/b/method/status/503", "");
    let r = r.await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    w.b.wait_metric(RECV, &from_a, before + 3.0).await;
    let through_api = w.b.metric_sum(RECV, &from_a).await - before;
    assert_eq!((intercepted, through_api), (3.0, 3.0), "attempts at b");
}

/// `n` bytes of `marker` repeated, so that any packet carrying a part has a whole copy.
fn repeated(marker: &str, n: usize) -> Vec<u8> {
    let unit = format!("{marker}-");
    unit.bytes().cycle().take(n).collect()
}

/// `redis-cli -h b -p 6379 <cmd>` on `host`, fed `input`.
async fn redis_cli(host: &Host, cmd: &[&str], input: &[u8]) -> Output {
    let argv: Vec<&str> = ["-h", "b", "-p", "6379"]
        .iter()
        .chain(cmd)
        .copied()
        .collect();
    host.output_fed("redis-cli", &argv, input, LIMIT).await
}

/// Redis on b, bound to loopback, reached from a by name on its own (opaque) port: tunnelled,
/// a 1 MiB value intact both ways. Returns the server, to keep it running.
async fn redis_is_tunnelled(w: &World, marker: &str) -> Background {
    let (ha, hb) = (&w.lan.hosts[0], &w.lan.hosts[1]);
    let mut redis = hb.background(
        "redis-server",
        &[
            "--port",
            "6379",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    redis.wait_log("Ready to accept connections").await;
    let out = redis_cli(ha, &["PING"], b"").await;
    assert_eq!(stdout(&out).trim(), "PONG", "{}", stderr(&out));
    let value = repeated(marker, 1 << 20);
    let out = redis_cli(ha, &["-x", "SET", "k"], &value).await;
    assert_eq!(stdout(&out).trim(), "OK", "{}", stderr(&out));
    let out = redis_cli(ha, &["GET", "k"], b"").await;
    let got = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
    assert!(
        got == value.as_slice(),
        "GET gave {} bytes back, not the 1 MiB set: {}",
        got.len(),
        stderr(&out)
    );
    // Counted under the peer's app id on both sides: at least the value each way.
    metric_reaches_bytes(&w.a, &[OUTBOUND, r#"peer="b""#], 2.0 * f64::from(1 << 20)).await;
    metric_reaches_bytes(&w.b, &[INBOUND, r#"peer="a""#], 2.0 * f64::from(1 << 20)).await;
    redis
}

/// Waits (bounded, 10 s) until the bytes counted both ways for `labels` on `s` reach `floor`.
async fn metric_reaches_bytes(s: &Sidecar, labels: &[&str], floor: f64) {
    let what = format!("{floor} TCP bytes {labels:?} on {}", s.app_id);
    wait_until(Duration::from_secs(10), &what, || async move {
        (tcp_bytes(s, labels).await >= floor).then_some(())
    })
    .await;
}

/// The capture of a's wire: no marker in clear, no packet to the apps' ports, mesh packets.
async fn nothing_in_clear_on_the_wire(capture: &Capture, markers: &[&str]) {
    for m in markers {
        assert!(
            !capture.contains(m.as_bytes()),
            "{m} crossed the LAN in clear"
        );
    }
    let plain = capture.read(&["tcp port 7000 or tcp port 6379"]).await;
    assert!(
        plain.trim().is_empty(),
        "packets to the apps' ports:\n{plain}"
    );
    let mesh = capture.read(&[&format!("tcp port {MESH}")]).await;
    assert!(
        mesh.lines().count() > 10,
        "hardly any mesh traffic:\n{mesh}"
    );
    let data = format!("tcp port {MESH} and tcp[tcpflags] & tcp-push != 0");
    let excerpt = capture.read(&["-c", "3", "-X", &data]).await;
    let excerpt: Vec<&str> = excerpt.lines().take(40).collect();
    eprintln!(
        "a's wire, the first data packets to or from the mesh port:\n{}",
        excerpt.join("\n")
    );
}

/// Over the tunnel, 64 MiB each way arrive intact with the half-close; a port b's policy
/// denies to a is refused before anything reaches the server.
async fn streams_are_tunnelled_and_ports_governed(w: &World) {
    let (ha, hb) = (&w.lan.hosts[0], &w.lan.hosts[1]);
    let mut echo = hb.background("python3", &["-u", "-c", ECHO_SERVER, "7002"]);
    let mut guarded = hb.background("python3", &["-u", "-c", ECHO_SERVER, "7001"]);
    echo.wait_log("listening").await;
    guarded.wait_log("listening").await;

    let size = (64 << 20).to_string();
    let said = ha
        .python(BIG_ECHO, &["b", "7002", &size], Duration::from_secs(240))
        .await;
    assert_eq!(said.trim(), "OK", "the 64 MiB echo");
    assert!(echo.log().contains("accepted"), "{}", echo.log());

    let refused =
        w.b.metric_sum(REFUSED, &[INBOUND, r#"reason="policy""#])
            .await;
    let said = ha.python(ONE_EXCHANGE, &["b", "7001"], LIMIT).await;
    assert!(
        matches!(said.trim(), "EOF" | "RESET"),
        "a tunnel b's policy denies: {said}"
    );
    w.b.wait_metric(REFUSED, &[INBOUND, r#"reason="policy""#], refused + 1.0)
        .await;
    assert!(
        !guarded.log().contains("accepted"),
        "the server behind a denied port saw a connection:\n{}",
        guarded.log()
    );
}

/// a's own connections to b's LAN address were never caught again (no loop): nothing has left
/// a unmeshed so far. Then servers outside the mesh are reached as they are, through a's
/// sidecar: HTTP (counted as a passthrough request) and opaque TCP (passthrough bytes).
async fn no_loop_and_passthrough(w: &World) {
    let (ha, hc) = (&w.lan.hosts[0], &w.lan.hosts[2]);
    let text = w.a.metrics().await;
    assert_eq!(sum_metric(&text, READ, &[PASSTHROUGH]), 0.0, "{text}");
    let loops = sum_metric(&text, REFUSED, &[r#"reason="loop""#]);
    assert_eq!(loops, 0.0, "{text}");
    assert!(sum_metric(&text, READ, &[r#"peer="b""#]) > 0.0, "{text}");

    let forwarded = "outrider_passthrough_requests_total";
    let before = w.a.metric_sum(forwarded, &[r#"status="2xx""#]).await;
    let _web = hc.web_server(8000).await;
    let (status, body) = ha.curl(&["http://c:8000/"]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Directory listing"), "{body}");
    w.a.wait_metric(forwarded, &[r#"status="2xx""#], before + 1.0)
        .await;

    let mut echo = hc.background("python3", &["-u", "-c", ECHO_SERVER, "7010", "0.0.0.0"]);
    echo.wait_log("listening").await;
    let said = ha.python(ONE_EXCHANGE, &["c", "7010"], LIMIT).await;
    assert!(said.starts_with(r"DATA b'\x00"), "opaque TCP to c: {said}");
    w.a.wait_metric(READ, &[OUTBOUND, PASSTHROUGH], 1.0).await;

    // The app's own calls to its sidecar's API work as before.
    let api = format!("http://127.0.0.1:{}/v1.0/healthz", WELL_KNOWN_PORTS[0]);
    let (status, body) = ha.curl(&[&api]).await;
    assert_eq!(status, 204, "{body}");
}

/// Plain traffic from c, outside the mesh, to a server on b: let in (permissive), counted.
async fn plain_inbound_is_let_in(w: &World) {
    let (hb, hc) = (&w.lan.hosts[1], &w.lan.hosts[2]);
    let _server = hb.web_server(8090).await;
    let (status, body) = hc.curl(&[&format!("http://{}:8090/", hb.addr)]).await;
    assert_eq!(status, 200, "{body}");
    w.b.wait_metric(READ, &[INBOUND, r#"peer="unmeshed""#], 1.0)
        .await;
}
