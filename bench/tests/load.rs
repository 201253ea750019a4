//! The load generator measures what a server does, at the rate it was asked for, and charges a
//! stalled server for every request it held up (no coordinated omission).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use outrider_bench::load::{Op, Plan, run};
use tokio::net::TcpListener;
use tokio::time::Instant;

fn post(http2: bool) -> Op {
    Op::Http {
        method: Method::POST,
        path: "/echo".into(),
        headers: HeaderMap::new(),
        body: Bytes::from(vec![b'x'; 1024]),
        http2,
        ids: None,
    }
}

async fn echo(delay: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(outrider_bench::echo::serve(l, delay));
    addr
}

#[tokio::test]
async fn percentiles_match_a_known_server_delay() {
    let addr = echo(Duration::from_millis(20)).await;
    for http2 in [false, true] {
        let plan = Plan {
            addr,
            op: post(http2),
            connections: 4,
            rate: Some(100.0),
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(200),
            deliveries: None,
        };
        let r = run(&plan).await.unwrap();
        assert_eq!(r.errors, 0);
        // The server waits 20 ms (tokio's timer adds up to about 1 ms); the generator and the
        // loopback add little. Bounds leave room for a busy test machine.
        let l = &r.latency_us;
        assert!(
            (20_000.0..26_000.0).contains(&l.p50),
            "http2={http2}: {l:?}"
        );
        assert!(
            (20_000.0..40_000.0).contains(&l.p99),
            "http2={http2}: {l:?}"
        );
    }
}

#[tokio::test]
async fn a_fixed_rate_is_kept() {
    let addr = echo(Duration::ZERO).await;
    for (connections, rate) in [(1, 200.0), (8, 800.0)] {
        let plan = Plan {
            addr,
            op: post(false),
            connections,
            rate: Some(rate),
            duration: Duration::from_secs(3),
            warmup: Duration::from_millis(300),
            deliveries: None,
        };
        let r = run(&plan).await.unwrap();
        assert!(
            (r.rps - rate).abs() / rate <= 0.02,
            "asked {rate}/s, got {:.1}/s",
            r.rps
        );
    }
}

#[tokio::test]
async fn a_server_slower_than_the_rate_shows_its_own_rate() {
    // One connection to a server taking 10 ms a request serves at most 100 a second.
    let addr = echo(Duration::from_millis(10)).await;
    let plan = Plan {
        addr,
        op: post(false),
        connections: 1,
        rate: Some(200.0),
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
        deliveries: None,
    };
    let r = run(&plan).await.unwrap();
    assert!(r.rps <= 110.0, "{r:?}");
    // The backlog it builds shows as latency: by the end, requests wait a second or more.
    assert!(r.latency_us.p90 > 500_000.0, "{:?}", r.latency_us);
}

#[tokio::test]
async fn max_mode_runs_as_fast_as_answers_come() {
    let addr = echo(Duration::from_millis(10)).await;
    let plan = Plan {
        addr,
        op: post(false),
        connections: 2,
        rate: None,
        duration: Duration::from_secs(1),
        warmup: Duration::ZERO,
        deliveries: None,
    };
    let r = run(&plan).await.unwrap();
    // Two connections, one request each at a time, 10 ms a request: at most 200/s.
    assert!((120.0..=200.0).contains(&r.rps), "{r:?}");
}

/// A server that answers at once, except that it holds everything that arrives during one
/// second, starting one second after it starts, until that second is over.
async fn staller() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stall_from = Instant::now() + Duration::from_secs(1);
    let stall_until = stall_from + Duration::from_secs(1);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    let now = Instant::now();
                    if now >= stall_from && now < stall_until {
                        tokio::time::sleep_until(stall_until).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_stall_shows_in_the_tail_not_just_once() {
    let addr = staller().await;
    // 100 requests a second on one connection for 4 s: the 100 due during the stall all wait
    // for it, from up to 1 s down to nothing.
    let plan = Plan {
        addr,
        op: Op::Http {
            method: Method::GET,
            path: "/".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            http2: false,
            ids: None,
        },
        connections: 1,
        rate: Some(100.0),
        duration: Duration::from_secs(4),
        warmup: Duration::ZERO,
        deliveries: None,
    };
    let r = run(&plan).await.unwrap();
    let l = &r.latency_us;
    // A generator that waited politely would record one slow request out of 400 (p90 well
    // under a millisecond).
    assert!(l.p90 > 400_000.0, "{l:?}");
    assert!(l.max > 900_000.0, "{l:?}");
    assert!(l.p50 < 5_000.0, "{l:?}");
}
