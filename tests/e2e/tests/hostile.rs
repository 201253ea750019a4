//! Hostile load on the listeners: silent, dripping and idle connections, connection caps, a flood
//! of the admin port under a 1024-descriptor limit, and the status page kept to loopback
//! (security rule 11).

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
    let r = send(
        "GET",
        &format!("{}/v1.0/invoke/a/method/ok", a.api_url()),
        &[],
        "",
    )
    .await
    .unwrap();
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
    let r = send("GET", &format!("{}/v1.0/metadata", a.api_url()), &[], "")
        .await
        .unwrap();
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
async fn the_status_page_answers_loopback_only_unless_opened() {
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

    let (status, body) = curl(client, remote(&closed, "/")).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("spiffe://"), "{body}");
    for path in ["/metrics", "/healthz"] {
        assert_eq!(
            curl(client, remote(&closed, path)).await.0,
            200,
            "{path} from another host"
        );
    }
    let (status, body) = curl(server, local(&closed, "/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("identity: spiffe://"), "{body}");
    let (status, body) = curl(client, remote(&open, "/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("identity: spiffe://"), "{body}");
}

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
    let r = send(
        "GET",
        &format!("{}/v1.0/invoke/a/method/status/101", a.api_url()),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(r.text().contains("101"), "{}", r.text());
}

#[tokio::test]
async fn memory_goes_back_after_a_burst_of_connections() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 12_000,
        "this test needs 12 000 descriptors, the hard limit is {hard}"
    );
    let mesh = Mesh::new();
    let a = mesh
        .sidecar("a")
        .args(["--api-max-connections", "11000"])
        .start()
        .await;
    let mib = |b: u64| b >> 20;
    let idle = mib(a.rss_bytes());
    // 10 000 keep-alive connections, each having served one request.
    let mut held = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let mut tcp = TcpStream::connect(("127.0.0.1", a.api)).await.unwrap();
        tcp.write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 204"));
        held.push(tcp);
    }
    let busy = mib(a.rss_bytes());
    drop(held);
    let after = wait_until(
        Duration::from_secs(20),
        "memory to go back after the burst",
        || async {
            let now = mib(a.rss_bytes());
            (now <= idle + 16).then_some(now)
        },
    )
    .await;
    eprintln!("10 000 connections: RSS {idle} MiB idle, {busy} MiB while held, {after} MiB after");
}

#[tokio::test]
async fn http2_readers_that_take_nothing_are_cut_off_and_their_memory_comes_back() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mesh = Mesh::new();
    let a = mesh
        .sidecar("a")
        .args(["--stall-timeout", "2s", "--max-body-size", "2Mi"])
        .start()
        .await;
    let value = format!(
        "[{{\"key\":\"big\",\"value\":\"{}\"}}]",
        "x".repeat(1 << 20)
    );
    let r = send(
        "POST",
        &format!("{}/v1.0/state/statestore", a.api_url()),
        &[],
        value,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let r = send(
        "POST",
        &format!("{}/v1.0/state/statestore", a.api_url()),
        &[],
        r#"[{"key":"small","value":1}]"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let mib = |b: u64| b >> 20;
    let idle = mib(a.rss_bytes());
    // Three HTTP/2 connections that grant no window: 200 reads of the 1 MiB value on each of two,
    // and 200 reads of a 1-byte value on the third (a body of one frame, taken but never sent).
    let (mut conns, mut senders, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
    for key in ["big", "big", "small"] {
        let tcp = TcpStream::connect(("127.0.0.1", a.api)).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
        conns.push(tokio::spawn(conn));
        for _ in 0..200 {
            sender.ready().await.unwrap();
            let req = http::Request::get(format!("/v1.0/state/statestore/{key}"))
                .body(Empty::new())
                .unwrap();
            let rsp = sender.send_request(req).await.unwrap();
            assert_eq!(rsp.status(), 200);
            bodies.push(rsp.into_body());
        }
        // Kept: a client whose every sender is gone ends the connection itself.
        senders.push(sender);
    }
    let held = mib(a.rss_bytes());
    // The stall timeout closes every connection: their streams end in errors.
    for conn in conns {
        assert!(
            timeout(Duration::from_secs(10), conn).await.is_ok(),
            "a connection that took nothing stayed open"
        );
    }
    let first = timeout(Duration::from_secs(5), bodies[0].frame())
        .await
        .expect("a body still waits");
    assert!(matches!(first, Some(Err(_)) | None), "{first:?}");
    drop(bodies);
    let after = wait_until(
        Duration::from_secs(20),
        "memory to go back after the stalled reads",
        || async {
            let now = mib(a.rss_bytes());
            (now <= idle + 16).then_some(now)
        },
    )
    .await;
    eprintln!(
        "400 stalled HTTP/2 reads of 1 MiB: RSS {idle} MiB idle, {held} MiB while held, {after} MiB after"
    );
    let stalls = sum_metric(
        &a.metrics().await,
        "outrider_connections_closed_total",
        &[
            "listener=\"api\"",
            "reason=\"the peer stopped taking a response\"",
        ],
    );
    assert_eq!(stalls, 3.0);
    // And the sidecar serves on.
    let r = send(
        "GET",
        &format!("{}/v1.0/state/statestore/big", a.api_url()),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}
