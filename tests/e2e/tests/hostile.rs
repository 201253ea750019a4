//! Hostile load on the listeners: silent, dripping and idle connections, connection caps, a flood
//! of the admin port under a 1024-descriptor limit, and the status page kept to loopback
//! (security rule 11). Hostile bodies are in `hostile_bodies`, memory after connection abuse in
//! `hostile_memory`.

use std::time::Duration;

use outrider_testkit::netns::Lan;
use outrider_testkit::{FakeApp, Mesh, send, sum_metric, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Reads until the peer closes; panics unless that happens within `limit`.
async fn assert_closed_within(tcp: &mut TcpStream, limit: Duration, what: &str) {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    assert!(
        timeout(limit, read_all).await.is_ok(),
        "{what}: still open after {limit:?}"
    );
}

/// Sends `head` one byte every 200 ms, never finishing; returns how long the peer let it go on.
async fn drip(port: u16, head: &'static [u8]) -> Duration {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    for b in head.iter().cycle() {
        if tcp.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A closed connection may still take a write or two; a read sees the close.
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = timeout(Duration::from_millis(1), tcp.read(&mut probe)).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a dripping head was never cut off"
        );
    }
    started.elapsed()
}

#[tokio::test]
async fn silent_dripping_and_idle_connections_are_closed_on_every_listener() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh
        .sidecar("a")
        .app_port(app.port)
        .args(["--request-head-timeout", "1s", "--idle-timeout", "2s"])
        .start()
        .await;
    // A TLS record header announcing 512 bytes that never all come, for the mesh port.
    const TLS_DRIP: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    const HTTP_DRIP: &[u8] = b"GET /v1.0/healthz HTTP/1.1\r\nX-Slow: ";
    for (name, port, head) in [
        ("api", a.api, HTTP_DRIP),
        ("admin", a.admin, HTTP_DRIP),
        ("mesh", a.mesh, TLS_DRIP),
    ] {
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let dripping = tokio::spawn(drip(port, head));
        assert_closed_within(
            &mut silent,
            Duration::from_secs(8),
            &format!("{name}: a silent connection"),
        )
        .await;
        let lasted = dripping.await.unwrap();
        assert!(
            lasted < Duration::from_secs(8),
            "{name}: a dripping head lasted {lasted:?}"
        );
    }

    // A keep-alive connection with nothing in flight is closed after the idle timeout.
    let mut tcp = TcpStream::connect(("127.0.0.1", a.api)).await.unwrap();
    tcp.write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 204"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_closed_within(
        &mut tcp,
        Duration::from_secs(8),
        "an idle keep-alive connection",
    )
    .await;

    // None of it disturbed the sidecar.
    let r = a.get("/v1.0/invoke/a/method/ok").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let metrics = a.metrics().await;
    for listener in ["api", "admin", "mesh"] {
        let closed = sum_metric(
            &metrics,
            "outrider_connections_closed_total",
            &[&format!("listener=\"{listener}\"")],
        );
        assert!(
            closed >= 2.0,
            "{listener}: {closed} connections closed by deadlines:\n{metrics}"
        );
    }
}

/// Opens a connection to `port` and completes one request on it, so it is surely accepted.
async fn held(port: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    tcp
}

#[tokio::test]
async fn a_full_listener_closes_new_connections_at_once_and_the_others_serve_on() {
    let mesh = Mesh::new();
    let a = mesh
        .sidecar("a")
        .args(["--metrics-max-connections", "4"])
        .start()
        .await;
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(held(a.admin).await);
    }
    // The fifth is accepted by the kernel, then closed by the sidecar without an answer.
    let mut fifth = TcpStream::connect(("127.0.0.1", a.admin)).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = timeout(Duration::from_secs(2), fifth.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a connection past the cap was left open");
    assert!(
        buf.is_empty(),
        "a connection past the cap was served: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // The API does not share the admin listener's cap.
    let r = a.get("/v1.0/metadata").await;
    assert_eq!(r.status, 200);
    // A slot freed is a slot reused.
    holders.pop();
    let text = wait_until(
        Duration::from_secs(5),
        "a scrape after a slot was freed",
        || async {
            send("GET", &format!("{}/metrics", a.admin_url()), &[], "")
                .await
                .ok()
                .filter(|r| r.status == 200)
        },
    )
    .await
    .text();
    let refused = sum_metric(
        &text,
        "outrider_connections_refused_total",
        &["listener=\"admin\""],
    );
    assert!(refused >= 1.0, "refusals were not counted:\n{text}");
}

#[tokio::test]
async fn an_admin_flood_under_a_1024_descriptor_limit_leaves_the_api_serving() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 2048,
        "this test needs 2048 descriptors of its own, the hard limit is {hard}"
    );

    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh
        .sidecar("a")
        .app_port(app.port)
        .fd_limit(1024)
        .args(["--request-head-timeout", "3s"])
        .start()
        .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", a.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(3), Some("1024"), "{line}");

    // 1 100 silent connections to the admin port, held open: the cap lets 32 of them in.
    let mut flood = Vec::new();
    for _ in 0..1100 {
        if let Ok(Ok(tcp)) = timeout(
            Duration::from_secs(2),
            TcpStream::connect(("127.0.0.1", a.admin)),
        )
        .await
        {
            flood.push(tcp);
        }
    }
    assert!(
        flood.len() >= 1000,
        "only {} connections were made",
        flood.len()
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", a.pid()))
        .unwrap()
        .count();
    assert!(
        fds < 200,
        "the sidecar holds {fds} descriptors under the flood"
    );

    // The API, the store and the app channel all serve meanwhile.
    let base = a.api_url();
    let r = send(
        "POST",
        &format!("{base}/v1.0/state/statestore"),
        &[],
        r#"[{"key":"k","value":"v"}]"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let r = send("GET", &format!("{base}/v1.0/state/statestore/k"), &[], "")
        .await
        .unwrap();
    assert_eq!((r.status, r.text()), (200, "\"v\"".to_owned()));
    let r = send("GET", &format!("{base}/v1.0/invoke/a/method/ok"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // The flood's silent connections pass their deadline, and scraping works again.
    wait_until(
        Duration::from_secs(15),
        "a scrape after the flood's deadline",
        || async {
            send("GET", &format!("{}/metrics", a.admin_url()), &[], "")
                .await
                .ok()
                .filter(|r| r.status == 200)
        },
    )
    .await;
    drop(flood);
}

#[tokio::test]
async fn the_dashboard_and_status_answer_loopback_only_unless_opened() {
    let lan = match Lan::new(2) {
        Ok(lan) => lan,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let (server, client) = (&lan.hosts[0], &lan.hosts[1]);
    let mesh = Mesh::new();
    let closed = mesh.sidecar("a").on(server).start().await;
    let open = mesh
        .sidecar("b")
        .on(server)
        .args(["--admin-status-remote"])
        .start()
        .await;
    let curl = async |host: &outrider_testkit::netns::Host, url: String| -> (u16, String) {
        let out = host
            .tokio_command("curl")
            .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", &url])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    };
    let remote = |s: &outrider_testkit::Sidecar, path: &str| {
        format!("http://{}:{}{path}", server.addr, s.admin)
    };
    let local =
        |s: &outrider_testkit::Sidecar, path: &str| format!("http://127.0.0.1:{}{path}", s.admin);

    for path in [
        "/",
        "/status.txt",
        "/api/overview",
        "/api/history",
        "/api/events",
    ] {
        let (status, body) = curl(client, remote(&closed, path)).await;
        assert_eq!(status, 403, "{path} from another host: {body}");
        assert!(!body.contains("spiffe://"), "{body}");
    }
    for path in ["/metrics", "/healthz"] {
        assert_eq!(
            curl(client, remote(&closed, path)).await.0,
            200,
            "{path} from another host"
        );
    }
    let (status, body) = curl(server, local(&closed, "/status.txt")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("identity: spiffe://"), "{body}");
    let (status, body) = curl(server, local(&closed, "/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<script src=\"/assets/dash.js\""), "{body}");
    let (status, body) = curl(client, remote(&open, "/status.txt")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("identity: spiffe://"), "{body}");
    let (status, body) = curl(client, remote(&open, "/api/overview")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\":\"spiffe://"), "{body}");
}

/// The admin port changes nothing: every route answers GET and HEAD only, and a name that is
/// not an address or localhost (DNS rebinding) gets nothing but metrics and health.
#[tokio::test]
async fn the_admin_port_is_read_only_and_refuses_rebound_names() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("a").start().await;
    let admin = s.admin_url();
    for path in [
        "/",
        "/status.txt",
        "/api/overview",
        "/api/events",
        "/metrics",
        "/healthz",
        "/ready",
        "/nowhere",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let r = send(method, &format!("{admin}{path}"), &[], "x")
                .await
                .unwrap();
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
    let r = send("HEAD", &format!("{admin}/api/overview"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let rebound = [("host", "attacker.example:9090")];
    for path in ["/", "/api/overview", "/status.txt"] {
        let r = send("GET", &format!("{admin}{path}"), &rebound, "")
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{path} for a rebound name: {}", r.text());
    }
    let r = send("GET", &format!("{admin}/metrics"), &rebound, "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "metrics for any name");
    let r = send("GET", &format!("{admin}/"), &[("host", "localhost")], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-security-policy")
            .map(|c| c.contains("default-src 'none'")),
        Some(true)
    );
}

/// The dashboard shows no token, header value or attribute the app set: a sidecar with an API
/// token whose app set an attribute, called with a secret header, says none of them.
#[tokio::test]
async fn the_dashboard_shows_no_token_header_or_app_attribute() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let s = mesh
        .sidecar("a")
        .app_port(app.port)
        .env("DAPR_API_TOKEN", "api-token-s3cret")
        .start()
        .await;
    let token = [("dapr-api-token", "api-token-s3cret")];
    let r = send(
        "PUT",
        &format!("{}/v1.0/metadata/dbPassword", s.api_url()),
        &token,
        "attr-s3cret",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let headers = [
        ("dapr-api-token", "api-token-s3cret"),
        ("authorization", "Bearer header-s3cret"),
    ];
    let r = send(
        "GET",
        &format!("{}/v1.0/invoke/a/method/x", s.api_url()),
        &headers,
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let admin = s.admin_url();
    // After a reading of the metrics, so the overview has figures too.
    wait_until(
        Duration::from_secs(10),
        "a route in the overview",
        || async {
            let o = send("GET", &format!("{admin}/api/overview"), &[], "")
                .await
                .ok()?
                .text();
            o.contains("/v1.0/invoke/").then_some(())
        },
    )
    .await;
    for path in ["/api/overview", "/api/history", "/status.txt", "/"] {
        let body = send("GET", &format!("{admin}{path}"), &[], "")
            .await
            .unwrap()
            .text();
        for secret in [
            "api-token-s3cret",
            "header-s3cret",
            "attr-s3cret",
            "dbPassword",
        ] {
            assert!(!body.contains(secret), "{path} shows {secret}: {body}");
        }
    }
}
