use super::parse::{code_ranges, duration_value};
use super::*;
use serde_json::{Value, json};

fn doc(spec: Value) -> Value {
    json!({"apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency", "metadata": {"name": "r"}, "spec": spec})
}

#[test]
fn constant_and_exponential_waits() {
    let ms = Duration::from_millis;
    let constant = RetryPolicy {
        backoff: Backoff::Constant(ms(200)),
        max_retries: Some(2),
        http_codes: None,
        grpc_codes: None,
    };
    assert_eq!(constant.delay(0, ms(0), 0.3), Some(ms(200)));
    assert_eq!(constant.delay(1, ms(0), 0.9), Some(ms(200)));
    assert_eq!(
        constant.delay(2, ms(0), 0.0),
        None,
        "two retries, then exhausted"
    );
    let exp = RetryPolicy {
        backoff: Backoff::Exponential {
            initial: ms(100),
            randomization: 0.5,
            multiplier: 2.0,
            max_interval: ms(1000),
            max_elapsed: ms(10_000),
        },
        max_retries: None,
        http_codes: None,
        grpc_codes: None,
    };
    // jitter 0.5 is the midpoint: no randomisation.
    let waits: Vec<Duration> = (0..6).map(|n| exp.delay(n, ms(0), 0.5).unwrap()).collect();
    assert_eq!(
        waits,
        [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
    );
    assert_eq!(exp.delay(1, ms(0), 0.0), Some(ms(100)), "-50 %");
    assert_eq!(exp.delay(1, ms(0), 1.0), Some(ms(300)), "+50 %");
    assert_eq!(
        exp.delay(3, ms(0), 1.0),
        Some(ms(1000)),
        "never beyond maxInterval"
    );
    assert_eq!(
        exp.delay(50, ms(10_000), 0.5),
        None,
        "maxElapsedTime reached"
    );
    assert_eq!(
        exp.delay(4, ms(9_500), 0.5),
        None,
        "the wait would end past maxElapsedTime"
    );
    assert_eq!(
        exp.delay(4, ms(9_000), 0.5),
        Some(ms(1000)),
        "ends exactly at maxElapsedTime"
    );
}

#[test]
fn matching_status_codes() {
    let p = RetryPolicy {
        backoff: Backoff::Constant(Duration::ZERO),
        max_retries: None,
        http_codes: Some(code_ranges("429, 500-503", 100..=599).unwrap()),
        grpc_codes: None,
    };
    assert!(p.retries_status(Some(429)) && p.retries_status(Some(502)));
    assert!(!p.retries_status(Some(404)) && !p.retries_status(Some(504)));
    assert!(
        p.retries_status(None),
        "a failure without a status is always retried"
    );
    for bad in ["600", "50-40", "abc", "99"] {
        assert!(code_ranges(bad, 100..=599).is_err(), "{bad}");
    }
}

#[test]
fn named_targets_then_defaults_from_most_specific() {
    let r = Resiliency::parse(&doc(json!({
        "policies": {"retries": {
            "important": {"policy": "constant", "duration": "50ms", "maxRetries": 4},
            "DefaultPubsubComponentInboundRetryPolicy": {"duration": "1s", "maxRetries": 2},
            "DefaultRetryPolicy": {"policy": "exponential", "maxInterval": "15s"},
        }},
        "targets": {"components": {"orders": {"inbound": {"retry": "important"}}}},
    })))
    .unwrap();
    let inbound = |name: &str, ty: &str| {
        r.component_retry(name, ty, Direction::Inbound)
            .map(|p| p.max_retries)
    };
    assert_eq!(inbound("orders", "pubsub.redis"), Some(Some(4)), "named");
    assert_eq!(
        inbound("other", "pubsub.redis"),
        Some(Some(2)),
        "the pub/sub inbound default"
    );
    assert_eq!(
        inbound("store", "state.redis"),
        Some(None),
        "the top-level default"
    );
    let out = r
        .component_retry("orders", "pubsub.redis", Direction::Outbound)
        .unwrap();
    assert!(
        matches!(out.backoff, Backoff::Exponential { .. }),
        "outbound falls back to DefaultRetryPolicy"
    );
    assert!(
        Resiliency::parse(&doc(json!({})))
            .unwrap()
            .component_retry("x", "pubsub.redis", Direction::Inbound)
            .is_none()
    );
}

#[test]
fn problems_name_field_and_value() {
    let errs = Resiliency::parse(
        &json!({"kind": "Resiliency", "metadata": {"name": ""}, "spec": {
            "policies": {"retries": {
                "a": {"policy": "linear", "duration": "soon", "maxRetries": "x"},
                "b": {"matching": {"httpStatusCodes": "200-100", "gRPCStatusCodes": "1-4,17"}},
            }},
            "targets": {"components": {"pubsub": {"inbound": {"retry": "missing"}}}},
        }}),
    )
    .unwrap_err();
    let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let expect = [
        "metadata.name: is required",
        "spec.policies.retries.a.duration: \"soon\"",
        "spec.policies.retries.a.maxRetries: \"x\"",
        "spec.policies.retries.a.policy: \"linear\"",
        "spec.policies.retries.b.matching.httpStatusCodes: \"200-100\"",
        "spec.policies.retries.b.matching.gRPCStatusCodes: \"1-4,17\"",
        "spec.targets.components.pubsub.inbound.retry: \"missing\"",
    ];
    for e in expect {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e} not in {got:#?}");
    }
}

#[test]
fn durations() {
    let ms = Duration::from_millis;
    assert_eq!(
        duration_value("500"),
        Some(ms(500)),
        "bare numbers are milliseconds"
    );
    assert_eq!(duration_value("5s"), Some(ms(5000)));
    assert_eq!(duration_value("1m30s"), Some(ms(90_000)));
    assert_eq!(duration_value("1.5h"), Some(ms(5_400_000)));
    for bad in ["", "soon", "5d", "-1s"] {
        assert_eq!(duration_value(bad), None, "{bad}");
    }
}

#[test]
fn scopes() {
    let mut d = doc(json!({}));
    d["scopes"] = json!(["a"]);
    let r = Resiliency::parse(&d).unwrap();
    assert!(r.applies_to("a") && !r.applies_to("b"));
    assert!(
        Resiliency::parse(&doc(json!({})))
            .unwrap()
            .applies_to("anyone")
    );
}

#[test]
fn app_policies_by_name_then_defaults_then_built_in() {
    let r = Resiliency::parse(&doc(json!({
        "policies": {
            "timeouts": {"general": "5s", "fast": "500", "DefaultAppTimeoutPolicy": "2s"},
            "retries": {"important": {"maxRetries": 30}, "DefaultRetryPolicy": {"maxRetries": 1}},
            "circuitBreakers": {"simpleCB": {"trip": "consecutiveFailures >= 5"}},
        },
        "targets": {"apps": {
            "named": {"timeout": "fast", "retry": "important", "circuitBreaker": "simpleCB"},
            "timeout-only": {"timeout": "general"},
        }},
    })))
    .unwrap();
    let all = [r];
    let (p, retry) = app_policies(&all, "named");
    assert_eq!(p.timeout, Some(("fast".into(), Duration::from_millis(500))));
    assert_eq!(
        retry.map(|r| (r.name, r.policy.max_retries, r.builtin)),
        Some(("important".into(), Some(30), false))
    );
    assert_eq!(p.breaker.map(|b| b.0), Some("simpleCB".into()));
    // Each kind resolves on its own: the named timeout, the default retry, no breaker.
    let (p, retry) = app_policies(&all, "timeout-only");
    assert_eq!(p.timeout.map(|t| t.0), Some("general".into()));
    assert_eq!(retry.map(|r| r.name), Some("DefaultRetryPolicy".into()));
    assert!(p.breaker.is_none());
    let (p, _) = app_policies(&all, "anyone");
    assert_eq!(
        p.timeout.map(|t| t.0),
        Some("DefaultAppTimeoutPolicy".into())
    );
    // Without any Resiliency: the built-in service retries.
    let (p, retry) = app_policies(&[], "anyone");
    assert!(p.timeout.is_none() && p.breaker.is_none());
    let retry = retry.unwrap();
    assert_eq!(
        (retry.name.as_str(), retry.builtin, retry.policy.max_retries),
        (BUILTIN_SERVICE_RETRIES, true, Some(3))
    );
    assert_eq!(
        retry.policy.backoff,
        Backoff::Constant(Duration::from_secs(1))
    );
    // A target named without a retry turns the built-in retries off.
    let plain = Resiliency::parse(&doc(json!({
        "policies": {"timeouts": {"t": "1s"}},
        "targets": {"apps": {"b": {"timeout": "t"}}},
    })))
    .unwrap();
    assert!(app_policies(std::slice::from_ref(&plain), "b").1.is_none());
    assert!(app_policies(&[plain], "c").1.is_some_and(|r| r.builtin));
}

#[test]
fn target_names_must_exist_and_timeouts_must_be_durations() {
    let errs = Resiliency::parse(&doc(json!({
        "policies": {"timeouts": {"bad": "soon", "zero": "0"}},
        "targets": {
            "apps": {"b": {"timeout": "nope", "retry": "nope", "circuitBreaker": "nope"}},
            "components": {"store": {"outbound": {"circuitBreaker": "nope"}}},
        },
    })))
    .unwrap_err();
    let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for e in [
        "spec.policies.timeouts.bad: \"soon\"",
        "spec.policies.timeouts.zero: \"0\"",
        "spec.targets.apps.b.timeout: \"nope\" is not a policy in spec.policies.timeouts",
        "spec.targets.apps.b.retry: \"nope\" is not a policy in spec.policies.retries",
        "spec.targets.apps.b.circuitBreaker: \"nope\" is not a policy in spec.policies.circuitBreakers",
        "spec.targets.components.store.outbound.circuitBreaker: \"nope\"",
    ] {
        assert!(got.iter().any(|g| g.starts_with(e)), "{e} not in {got:#?}");
    }
}
