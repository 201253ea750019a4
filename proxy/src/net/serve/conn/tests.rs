use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use tokio::time::advance;

use super::*;

const LIMITS: Limits = Limits {
    max_connections: 8,
    head_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(120),
    stall_timeout: Duration::from_secs(30),
    multiplexed: false,
};

fn verdict(a: &Activity) -> Verdict {
    a.verdict(&LIMITS, Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_expires_at_the_head_timeout() {
    let a = Activity::new();
    assert_eq!(verdict(&a), Verdict::Wait(a.born + LIMITS.head_timeout));
    advance(Duration::from_millis(9_999)).await;
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        verdict(&a),
        Verdict::Expired("no request head within the head timeout")
    );
}

#[tokio::test(start_paused = true)]
async fn a_served_connection_goes_idle_only_with_nothing_in_flight() {
    let a = Activity::new();
    a.read(b"GET / HTTP/1.1\r\n\r\n");
    a.request_started();
    advance(Duration::from_secs(500)).await;
    // A long request is not idle, and no head is pending.
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    a.request_ended();
    advance(Duration::from_secs(119)).await;
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    advance(Duration::from_secs(1)).await;
    assert_eq!(verdict(&a), Verdict::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_later_http1_head_must_complete_in_time() {
    let a = Activity::new();
    a.read(b"GET / HTTP/1.1\r\n\r\n");
    a.request_started();
    a.request_ended();
    advance(Duration::from_secs(60)).await;
    // The first byte of the next head starts its clock; idleness alone would allow 120 s.
    a.read(b"G");
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        verdict(&a),
        Verdict::Expired("a request head did not complete in time")
    );
    // Completing it in time clears the clock.
    let b = Activity::new();
    b.read(b"G");
    advance(Duration::from_secs(5)).await;
    b.request_started();
    advance(Duration::from_secs(50)).await;
    assert!(matches!(verdict(&b), Verdict::Wait(_)));
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_partial_head_must_complete_in_time_once_the_request_before_it_ends() {
    let a = Activity::new();
    // One read: a whole head, then the start of the next one, which the guard holds.
    a.read(b"GET / HTTP/1.1\r\n\r\nGET / HT");
    a.partial_head(true);
    a.request_started();
    advance(Duration::from_secs(60)).await;
    // A long request is not cut short by the head behind it.
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    a.request_ended();
    advance(Duration::from_secs(9)).await;
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        verdict(&a),
        Verdict::Expired("a request head did not complete in time")
    );
}

#[tokio::test(start_paused = true)]
async fn http2_preface_counts_as_served_and_later_frames_start_no_head_clock() {
    let a = Activity::new();
    // The preface may arrive in pieces.
    a.read(&H2_PREFACE[..5]);
    a.read(&H2_PREFACE[5..]);
    a.read(b"\0\0\0\x04\0\0\0\0\0");
    advance(Duration::from_secs(60)).await;
    // Pings and settings on an idle HTTP/2 connection are not a request head.
    a.read(b"\0\0\x08\x06\0\0\0\0\0");
    advance(Duration::from_secs(30)).await;
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    advance(Duration::from_secs(30)).await;
    assert_eq!(verdict(&a), Verdict::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_blocked_write_expires_at_the_stall_timeout_unless_it_moves() {
    let a = Activity::new();
    a.request_started();
    a.write_done(true, false);
    advance(Duration::from_secs(20)).await;
    a.write_done(true, false);
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    a.write_done(false, true);
    advance(Duration::from_secs(20)).await;
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    a.write_done(true, false);
    advance(Duration::from_secs(30)).await;
    assert_eq!(verdict(&a), Verdict::Expired("the peer stopped reading"));
}

#[tokio::test(start_paused = true)]
async fn a_body_the_peer_stops_taking_is_seen_and_handed_on_in_pieces() {
    let a = Arc::new(Activity::new());
    let mut svc = Tracked::new(
        tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![7u8; 40_000]))))
        }),
        a.clone(),
    );
    let rsp = tower::Service::call(&mut svc, Request::new(()))
        .await
        .unwrap();
    assert_eq!(a.in_flight.load(Ordering::Relaxed), 1);
    let mut body = rsp.into_body();
    assert_eq!(body.size_hint().exact(), Some(40_000));
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first.len(), MAX_FRAME);
    assert_eq!(body.size_hint().exact(), Some(40_000 - MAX_FRAME as u64));
    // Not asked for the next piece: a stall, which expires at the stall timeout.
    advance(Duration::from_secs(29)).await;
    assert!(matches!(verdict(&a), Verdict::Wait(_)));
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        verdict(&a),
        Verdict::Expired("the peer stopped taking a response")
    );
    // Asked again: no longer stalled.
    let mut total = first.len();
    while let Some(f) = body.frame().await {
        total += f.unwrap().into_data().unwrap().len();
    }
    assert_eq!(total, 40_000);
    // Asked once more after its last frame, it has nothing to wait for.
    assert!(a.stalled.lock().unwrap().is_empty());
    drop(body);
    assert!(a.stalled.lock().unwrap().is_empty());
    assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_single_frame_body_held_after_its_frame_is_a_stall() {
    let a = Arc::new(Activity::new());
    let mut svc = Tracked::new(
        tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
        }),
        a.clone(),
    );
    let mut body = tower::Service::call(&mut svc, Request::new(()))
        .await
        .unwrap()
        .into_body();
    let _frame = body.frame().await;
    // A peer that grants no window: the frame was taken, never sent, and the body kept.
    advance(LIMITS.stall_timeout).await;
    assert_eq!(
        verdict(&a),
        Verdict::Expired("the peer stopped taking a response")
    );
    drop(body);
    assert!(a.stalled.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stalled_body_ends_the_request_and_the_stall() {
    let a = Arc::new(Activity::new());
    let mut svc = Tracked::new(
        tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![1u8; 20_000]))))
        }),
        a.clone(),
    );
    let mut body = tower::Service::call(&mut svc, Request::new(()))
        .await
        .unwrap()
        .into_body();
    let _ = body.frame().await;
    assert_eq!(a.stalled.lock().unwrap().len(), 1);
    drop(body);
    assert!(a.stalled.lock().unwrap().is_empty());
    assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_never_asked_for_is_a_stall_and_an_empty_one_is_not() {
    let a = Arc::new(Activity::new());
    let mut svc = Tracked::new(
        tower::service_fn(|req: Request<bool>| async move {
            let body = if *req.body() {
                Full::new(Bytes::from_static(b"x"))
            } else {
                Full::new(Bytes::new())
            };
            Ok::<_, Infallible>(Response::new(body))
        }),
        a.clone(),
    );
    // Not asked for its first frame yet: waiting on the peer.
    let waiting = tower::Service::call(&mut svc, Request::new(true))
        .await
        .unwrap();
    let empty = tower::Service::call(&mut svc, Request::new(false))
        .await
        .unwrap();
    assert_eq!(a.stalled.lock().unwrap().len(), 1);
    advance(LIMITS.stall_timeout).await;
    assert_eq!(
        verdict(&a),
        Verdict::Expired("the peer stopped taking a response")
    );
    drop((waiting, empty));
    assert!(a.stalled.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn on_a_multiplexed_connection_one_stalled_stream_closes_nothing_while_others_flow() {
    let mesh = Limits {
        multiplexed: true,
        ..LIMITS
    };
    let a = Activity::new();
    a.request_started();
    let paused = a.stall();
    for _ in 0..6 {
        advance(Duration::from_secs(10)).await;
        a.write_done(false, true); // other streams' bytes go out
        assert!(matches!(a.verdict(&mesh, Instant::now()), Verdict::Wait(_)));
    }
    // Nothing written for the stall timeout, with a stream waiting: the peer takes nothing.
    advance(Duration::from_secs(30)).await;
    assert_eq!(
        a.verdict(&mesh, Instant::now()),
        Verdict::Expired("the peer stopped taking responses")
    );
    a.unstall(paused);
}
