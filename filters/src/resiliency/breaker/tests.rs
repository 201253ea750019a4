use std::convert::Infallible;
use std::time::Duration;

use serde_json::json;
use tower::{ServiceBuilder, ServiceExt as _, service_fn};

use super::*;
use crate::resiliency::classify::{HttpClassify, StackError};

fn policy(v: serde_json::Value) -> BreakerPolicy {
    BreakerPolicy::parse(&v, "spec.policies.circuitBreakers.cb").expect("valid")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults_and_problems() {
    let p = policy(json!({}));
    assert_eq!(
        (p.max_requests, p.interval, p.timeout),
        (1, Duration::ZERO, secs(60))
    );
    assert_eq!(p.trip_source, "consecutiveFailures > 5");
    for (v, field, value) in [
        (json!({"maxRequests": 0}), "maxRequests", "\"0\""),
        (json!({"timeout": "soon"}), "timeout", "soon"),
        (
            json!({"trip": "consecutiveFailures >"}),
            "trip",
            "not a valid CEL",
        ),
        (
            json!({"trip": "consecutiveFailures + 1"}),
            "trip",
            "not true or false",
        ),
        (
            json!({"trip": "failures > 2"}),
            "trip",
            "cannot be evaluated",
        ),
    ] {
        let errs = BreakerPolicy::parse(&v, "spec.policies.circuitBreakers.cb").unwrap_err();
        assert!(
            errs.iter().any(
                |e| e.field == format!("spec.policies.circuitBreakers.cb.{field}")
                    && e.message.contains(value)
            ),
            "{v}: {errs:?}"
        );
    }
}

#[test]
fn trips_half_opens_and_closes() {
    let t0 = Instant::now();
    let mut b = Breaker::new(
        "cb",
        policy(json!({"maxRequests": 2, "timeout": "10s", "trip": "consecutiveFailures >= 3"})),
        t0,
    );
    // Two failures and a success: still closed (the streak broke).
    for ok in [false, false, true, false, false] {
        let g = b.before(t0).unwrap();
        assert_eq!(b.after(g, ok, t0), None);
    }
    assert_eq!(b.counts().consecutive_failures, 2);
    let g = b.before(t0).unwrap();
    assert_eq!(
        b.after(g, false, t0),
        Some(State::Open),
        "the third failure in a row trips it"
    );
    assert_eq!(b.before(t0 + secs(9)), Err(Refused::Open("cb".into())));
    // After the timeout it is half-open: two probes, no third.
    assert_eq!(b.state(t0 + secs(10)), State::HalfOpen);
    let (p1, p2) = (
        b.before(t0 + secs(10)).unwrap(),
        b.before(t0 + secs(10)).unwrap(),
    );
    assert_eq!(
        b.before(t0 + secs(10)),
        Err(Refused::TooManyRequests("cb".into()))
    );
    assert_eq!(b.after(p1, true, t0 + secs(10)), None);
    assert_eq!(
        b.after(p2, true, t0 + secs(10)),
        Some(State::Closed),
        "maxRequests successes close it"
    );
    // A failed probe opens it again.
    for _ in 0..3 {
        let g = b.before(t0 + secs(11)).unwrap();
        b.after(g, false, t0 + secs(11));
    }
    assert_eq!(b.state(t0 + secs(21)), State::HalfOpen);
    let g = b.before(t0 + secs(21)).unwrap();
    assert_eq!(b.after(g, false, t0 + secs(21)), Some(State::Open));
    assert_eq!(b.state(t0 + secs(30)), State::Open);
}

#[test]
fn outcomes_from_an_earlier_state_are_ignored_and_interval_resets() {
    let t0 = Instant::now();
    let mut b = Breaker::new(
        "cb",
        policy(json!({"interval": "5s", "trip": "totalFailures >= 2"})),
        t0,
    );
    let slow = b.before(t0).unwrap();
    let g = b.before(t0).unwrap();
    b.after(g, false, t0);
    // The interval passes: the counts start again, and the slow call's failure belongs to the
    // old generation.
    assert_eq!(b.after(slow, false, t0 + secs(5)), None);
    assert_eq!(b.counts(), Counts::default());
    let g = b.before(t0 + secs(6)).unwrap();
    assert_eq!(
        b.after(g, false, t0 + secs(6)),
        None,
        "one failure in this interval"
    );
    let g = b.before(t0 + secs(6)).unwrap();
    assert_eq!(b.after(g, false, t0 + secs(6)), Some(State::Open));
}

#[tokio::test(start_paused = true)]
async fn the_layer_refuses_while_open_without_calling_the_target() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let target = service_fn(move |_: ()| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            let mut rsp = http::Response::new(());
            *rsp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, StackError<Infallible>>(rsp)
        }
    });
    let labels = Labels {
        app_id: "me".into(),
        target: "app_b".into(),
        flow_direction: "outbound",
    };
    let classify = HttpClassify;
    let layer = CircuitBreakerLayer::new(
        "cb",
        policy(json!({"timeout": "30s", "trip": "consecutiveFailures >= 2"})),
        classify,
        labels,
    );
    let svc = ServiceBuilder::new().layer(layer).service(target);
    for _ in 0..2 {
        let rsp = svc.clone().oneshot(()).await.unwrap();
        assert_eq!(
            rsp.status(),
            503,
            "failing answers pass through while closed"
        );
    }
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(
        matches!(&err, StackError::Refused(Refused::Open(name)) if name == "cb"),
        "{err}"
    );
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "an open breaker never calls the target"
    );
    tokio::time::advance(secs(30)).await;
    assert_eq!(
        svc.clone().oneshot(()).await.unwrap().status(),
        503,
        "the half-open probe reaches the target"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(
        svc.clone().oneshot(()).await.is_err(),
        "the failed probe opened it again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_before_its_answer_frees_its_slot() {
    let target = service_fn(|fail: bool| async move {
        if fail {
            let mut rsp = http::Response::new(());
            *rsp.status_mut() = http::StatusCode::BAD_GATEWAY;
            Ok::<_, StackError<Infallible>>(rsp)
        } else {
            // Never answers: the caller gives up.
            std::future::pending().await
        }
    });
    let labels = Labels {
        app_id: "me".into(),
        target: "app_b".into(),
        flow_direction: "outbound",
    };
    let layer = CircuitBreakerLayer::new(
        "cb",
        policy(json!({"timeout": "10s", "trip": "consecutiveFailures >= 1"})),
        HttpClassify,
        labels,
    );
    let svc = ServiceBuilder::new().layer(layer).service(target);
    assert_eq!(svc.clone().oneshot(true).await.unwrap().status(), 502);
    tokio::time::advance(secs(10)).await;
    // The half-open probe hangs and its caller goes away.
    let probe = tokio::time::timeout(secs(1), svc.clone().oneshot(false)).await;
    assert!(probe.is_err());
    // The slot is free: the next call is let through as a probe (and its failure opens again).
    assert_eq!(svc.clone().oneshot(true).await.unwrap().status(), 502);
    let err = svc.clone().oneshot(true).await.unwrap_err();
    assert!(matches!(err, StackError::Refused(_)), "{err}");
}
