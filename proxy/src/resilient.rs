//! Resiliency policies around component calls: the same `filters` layers as invocation, over a
//! store's tower service.
//!
//! A state store with a `Resiliency` policy for its `outbound` direction (by name under
//! `targets.components.<store>`, or a default such as `DefaultStatestoreComponentOutboundRetryPolicy`)
//! gets retry(breaker(timeout(call))); the timeout defaults to the API's store deadline. Only
//! store failures count: a mismatched ETag or a bad request is the store answering, not failing,
//! so it is neither retried nor held against the breaker.

use std::time::Duration;

use outrider_blocks::state::{StateComponent, StateError, StateRequest, StateResponse};
use outrider_filters::resiliency::breaker::Refused;
use outrider_filters::resiliency::classify::{Classify, Failure, Verdict};
use outrider_filters::resiliency::timeout::TimedOut;
use outrider_filters::resiliency::{
    CircuitBreakerLayer, Cloned, Direction, Labels, Resiliency, RetryLayer, Retrying, TimeoutLayer, component_policies,
};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

/// Judges store outcomes: only an unreachable or failing store is a failure.
#[derive(Clone, Copy, Debug)]
struct StoreClassify;

impl Classify<StateResponse> for StoreClassify {
    fn verdict(&self, result: &Result<StateResponse, BoxError>) -> Verdict {
        let Err(e) = result else { return Verdict::Success };
        let kind = outrider_filters::resiliency::classify::error_kind(e.as_ref(), |_| false);
        let failing = match e.downcast_ref::<StateError>() {
            Some(StateError::Store(_) | StateError::Timeout(_)) | None => true,
            Some(_) => false,
        };
        if failing { Verdict::Failure(Failure { kind, status: None, retry_after: None }) } else { Verdict::Success }
    }
}

/// Wraps `c` in the resiliency policies that apply to it, if any.
pub(crate) fn layer_state(c: &mut StateComponent, all: &[Resiliency], app_id: &str, deadline: Duration) {
    let p = component_policies(all, &c.name, &c.type_, Direction::Outbound);
    if p.timeout.is_none() && p.retry.is_none() && p.breaker.is_none() {
        return;
    }
    tracing::info!(
        component = %c.name,
        timeout = p.timeout.as_ref().map(|t| t.0.as_str()),
        retry = p.retry.as_ref().map(|r| r.0.as_str()),
        circuit_breaker = p.breaker.as_ref().map(|b| b.0.as_str()),
        "resiliency policies apply to the state store"
    );
    let labels =
        Labels { app_id: app_id.to_owned(), target: format!("component_{}", c.name), flow_direction: "outbound" };
    let (timeout_name, timeout) = p.timeout.unwrap_or_else(|| ("default".to_owned(), deadline));
    let stack = ServiceBuilder::new()
        .map_request(Cloned)
        .option_layer(p.retry.map(|(name, policy)| {
            RetryLayer::new(Retrying { name, policy, builtin: false }, StoreClassify, labels.clone())
        }))
        .option_layer(p.breaker.map(|(name, b)| CircuitBreakerLayer::new(&name, b, StoreClassify, labels.clone())))
        .layer(TimeoutLayer::new(&timeout_name, timeout, labels))
        .map_request(|Cloned(r): Cloned<StateRequest>| r)
        .service(c.service())
        .map_err(|e: BoxError| e);
    c.layered = Some(BoxCloneSyncService::new(stack));
}

/// A store call's error, typed again.
pub(crate) fn state_error(e: BoxError) -> StateError {
    let e = match e.downcast::<StateError>() {
        Ok(se) => return *se,
        Err(e) => e,
    };
    if let Some(t) = e.downcast_ref::<TimedOut>() {
        return StateError::Timeout(t.0);
    }
    if let Some(r) = e.downcast_ref::<Refused>() {
        return StateError::Store(r.to_string());
    }
    StateError::Store(e.to_string())
}

#[cfg(test)]
mod tests {
    use outrider_filters::resiliency::classify::FailureKind;

    use super::*;

    #[test]
    fn only_store_failures_count() {
        let c = StoreClassify;
        let err = |e: StateError| -> Result<StateResponse, BoxError> { Err(Box::new(e)) };
        assert_eq!(c.verdict(&Ok(StateResponse::Done)), Verdict::Success);
        assert_eq!(c.verdict(&err(StateError::EtagMismatch("x".into()))), Verdict::Success);
        assert_eq!(c.verdict(&err(StateError::BadRequest("x".into()))), Verdict::Success);
        let failure = Verdict::Failure(Failure { kind: FailureKind::Sent, status: None, retry_after: None });
        assert_eq!(c.verdict(&err(StateError::Store("down".into()))), failure);
        assert_eq!(c.verdict(&Err(Box::new(TimedOut(Duration::from_secs(1))))), failure);
        let refused = c.verdict(&Err(Box::new(Refused::Open("cb".into()))));
        assert!(matches!(refused, Verdict::Failure(Failure { kind: FailureKind::Refused, .. })));
        assert!(matches!(state_error(Box::new(TimedOut(Duration::from_secs(2)))), StateError::Timeout(_)));
        assert!(matches!(state_error(Box::new(StateError::EtagInvalid("e".into()))), StateError::EtagInvalid(_)));
    }
}
