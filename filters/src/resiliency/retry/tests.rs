use std::sync::Mutex;

use http::{Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt as _, service_fn};

use super::*;
use crate::resiliency::classify::{Failed, HttpClassify, StackError};
use crate::resiliency::timeout::{TimedOut, TimeoutLayer};
use crate::resiliency::{Backoff, CircuitBreakerLayer};

/// A request that can be replayed, or not.
#[derive(Debug)]
struct Req(bool);

impl Replay for Req {
    fn replay(&self) -> Option<Self> {
        self.0.then_some(Req(true))
    }
}

/// An error that says its request never left.
#[derive(Debug, thiserror::Error)]
#[error("connection refused")]
struct Unreachable;

impl Failed for Unreachable {
    fn kind(&self) -> FailureKind {
        FailureKind::Unsent
    }
}

/// What the scripted target and the layers over it fail with.
type Error = StackError<Unreachable>;

fn labels() -> Labels {
    Labels {
        app_id: "me".into(),
        target: "app_b".into(),
        flow_direction: "outbound",
    }
}

fn classify() -> HttpClassify {
    HttpClassify
}

fn retrying(max: u32, codes: Option<&str>, builtin: bool) -> Retrying {
    Retrying {
        name: "p".into(),
        policy: RetryPolicy {
            backoff: Backoff::Constant(Duration::from_millis(100)),
            max_retries: Some(max),
            http_codes: codes.map(|c| crate::resiliency::parse::code_ranges(c, 100..=599).unwrap()),
            grpc_codes: None,
        },
        builtin,
    }
}

/// What the scripted target does on each attempt.
#[derive(Clone, Copy, Debug)]
enum Step {
    Status(u16),
    RetryAfter(u16, u64),
    Unsent,
    Hang,
}

/// A target that follows `script` (the last step repeats) and records when each attempt came.
fn scripted(
    script: Vec<Step>,
) -> (
    impl tower::Service<Req, Response = Response<()>, Error = Error, Future: Send>
    + Clone
    + Send
    + 'static,
    Arc<Mutex<Vec<Duration>>>,
) {
    let t0 = Instant::now();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let svc = service_fn(move |_: Req| {
        let n = {
            let mut a = seen.lock().unwrap();
            a.push(t0.elapsed());
            a.len() - 1
        };
        let step = script[n.min(script.len() - 1)];
        async move {
            match step {
                Step::Status(code) => {
                    let mut rsp = Response::new(());
                    *rsp.status_mut() = StatusCode::from_u16(code).unwrap();
                    Ok(rsp)
                }
                Step::RetryAfter(code, secs) => {
                    let mut rsp = Response::new(());
                    *rsp.status_mut() = StatusCode::from_u16(code).unwrap();
                    rsp.headers_mut()
                        .insert(http::header::RETRY_AFTER, secs.into());
                    Ok(rsp)
                }
                Step::Unsent => Err(StackError::Call(Unreachable)),
                Step::Hang => std::future::pending().await,
            }
        }
    });
    (svc, attempts)
}

async fn run(
    r: Retrying,
    script: Vec<Step>,
    replayable: bool,
) -> (Result<u16, Error>, Vec<Duration>) {
    let (target, attempts) = scripted(script);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(r, classify(), labels()))
        .service(target);
    let result = svc
        .oneshot(Req(replayable))
        .await
        .map(|r| r.status().as_u16());
    let at = attempts.lock().unwrap().clone();
    (result, at)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn fails_n_times_then_succeeds_with_the_policy_waits() {
    use Step::*;
    let (r, at) = run(
        retrying(5, None, false),
        vec![Status(503), Status(502), Status(504), Status(200)],
        true,
    )
    .await;
    assert_eq!(r.unwrap(), 200);
    assert_eq!(at, [ms(0), ms(100), ms(200), ms(300)]);
    // Exhausted: the last answer is passed back.
    let (r, at) = run(retrying(2, None, false), vec![Status(503)], true).await;
    assert_eq!((r.unwrap(), at.len()), (503, 3));
}

#[tokio::test(start_paused = true)]
async fn only_the_default_statuses_are_retried_without_matching() {
    use Step::*;
    for (step, attempts) in [
        (Status(500), 1),
        (Status(404), 1),
        (Status(429), 1),
        (RetryAfter(429, 1), 2),
        (RetryAfter(429, 31), 1),
        (Status(503), 2),
    ] {
        let (_, at) = run(retrying(1, None, false), vec![step, Status(200)], true).await;
        assert_eq!(at.len(), attempts, "{step:?}");
    }
    // Retry-After sets the wait when it is longer than the policy's.
    let (_, at) = run(
        retrying(1, None, false),
        vec![RetryAfter(503, 2), Status(200)],
        true,
    )
    .await;
    assert_eq!(at, [ms(0), ms(2000)]);
}

#[tokio::test(start_paused = true)]
async fn matching_lists_exactly_the_statuses_retried() {
    use Step::*;
    let r = || retrying(1, Some("500,429,404"), false);
    assert_eq!(
        run(r(), vec![Status(500), Status(200)], true).await.1.len(),
        2
    );
    // A code the breaker would call a success is still retried when the policy lists it.
    assert_eq!(
        run(r(), vec![Status(404), Status(200)], true).await.1.len(),
        2
    );
    assert_eq!(
        run(r(), vec![Status(409), Status(200)], true).await.1.len(),
        1
    );
    assert_eq!(
        run(r(), vec![Status(429), Status(200)], true).await.1.len(),
        2
    );
    assert_eq!(
        run(r(), vec![Status(503), Status(200)], true).await.1.len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn errors_unsent_requests_and_bodies_that_cannot_be_replayed() {
    use Step::*;
    // A request that never left is retried even by the built-in policy.
    assert_eq!(
        run(retrying(1, None, true), vec![Unsent, Status(200)], true)
            .await
            .0
            .unwrap(),
        200
    );
    // Nothing is retried when the request cannot be sent again.
    assert_eq!(
        run(
            retrying(3, None, false),
            vec![Status(503), Status(200)],
            false
        )
        .await
        .1
        .len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried_under_a_policy_but_not_by_the_built_in_one() {
    use Step::*;
    for (builtin, attempts) in [(false, 2), (true, 1)] {
        let (target, at) = scripted(vec![Hang, Status(200)]);
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::new(
                retrying(3, None, builtin),
                classify(),
                labels(),
            ))
            .layer(TimeoutLayer::new("fast", ms(500), labels()))
            .service(target);
        let result = svc.oneshot(Req(true)).await;
        assert_eq!(at.lock().unwrap().len(), attempts, "builtin={builtin}");
        if builtin {
            let err = result.unwrap_err();
            assert!(
                matches!(err, StackError::TimedOut(TimedOut(after)) if after == ms(500)),
                "{err}"
            );
        } else {
            assert_eq!(result.unwrap().status(), 200);
            assert_eq!(
                at.lock().unwrap()[1],
                ms(600),
                "the timeout, then the policy's wait"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_not_retried() {
    use Step::*;
    let breaker = crate::resiliency::BreakerPolicy::parse(
        &serde_json::json!({"trip": "consecutiveFailures >= 1", "timeout": "1m"}),
        "cb",
    )
    .unwrap();
    let (target, at) = scripted(vec![Status(503)]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            retrying(5, None, false),
            classify(),
            labels(),
        ))
        .layer(CircuitBreakerLayer::new(
            "cb",
            breaker,
            classify(),
            labels(),
        ))
        .service(target);
    let err = svc.oneshot(Req(true)).await.unwrap_err();
    assert!(matches!(err, StackError::Refused(_)), "{err}");
    assert_eq!(
        at.lock().unwrap().len(),
        1,
        "one attempt tripped it; the retry met the open breaker"
    );
}

#[test]
fn jitter_is_a_unit_fraction() {
    for _ in 0..1000 {
        let j = jitter();
        assert!((0.0..1.0).contains(&j), "{j}");
    }
}

#[test]
fn grpc_errors_follow_the_grpc_codes_the_policy_lists() {
    let rsp = |grpc: &str| {
        let mut r = http::Response::new(());
        r.headers_mut().insert("grpc-status", grpc.parse().unwrap());
        r.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        Ok::<_, Unreachable>(r)
    };
    // The header on an answer that is not gRPC's means nothing.
    let mut plain = http::Response::new(());
    plain
        .headers_mut()
        .insert("grpc-status", "14".parse().unwrap());
    assert_eq!(
        classify().verdict(&Ok::<_, Unreachable>(plain)),
        Verdict::Success
    );
    // 14 (UNAVAILABLE) in the head of a 200 is a failure; 0 is not.
    let unavailable = match classify().verdict(&rsp("14")) {
        Verdict::Failure(f) => f,
        Verdict::Success => panic!("a gRPC error is a failure"),
    };
    assert_eq!((unavailable.grpc, unavailable.status), (Some(14), None));
    assert_eq!(classify().verdict(&rsp("0")), Verdict::Success);
    let mut listed = retrying(3, None, false);
    listed.policy.grpc_codes =
        Some(crate::resiliency::parse::code_ranges("1-4,14", 0..=16).unwrap());
    assert!(listed.retries(&unavailable));
    let not_listed = Failure {
        grpc: Some(5),
        ..unavailable
    };
    assert!(!listed.retries(&not_listed));
    // Without a list a configured policy retries every gRPC error; the built-in one none.
    assert!(retrying(3, None, false).retries(&not_listed));
    assert!(!retrying(3, None, true).retries(&unavailable));
}
