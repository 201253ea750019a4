//! Memory under connection abuse (security rule 11): what a burst of connections and HTTP/2
//! readers that take nothing cost, and that it comes back.

use std::time::Duration;

use outrider_testkit::{Mesh, send, sum_metric, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

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
    let r = a.get("/v1.0/state/statestore/big").await;
    assert_eq!(r.status, 200);
}
