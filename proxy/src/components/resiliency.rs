//! Resiliency policies around component calls: the same `filters` layers as invocation, over a
//! store's tower service or a broker's publish.
//!
//! A state store, pub/sub, lock store or output binding with a `Resiliency` policy for its `outbound` direction (by name under
//! `targets.components.<name>`, or a default such as `DefaultStatestoreComponentOutboundRetryPolicy`)
//! gets retry(breaker(timeout(call))); the timeout defaults to the API's store deadline. Only
//! component failures count: a mismatched ETag or a bad request is the component answering, not
//! failing, so it is neither retried nor held against the breaker.

use std::time::Duration;

use std::sync::Arc;

use outrider_blocks::Fault;
use outrider_blocks::bindings::{
    BindingComponent, BindingError, InvokeRequest, InvokeResponse, OutputBinding,
};
use outrider_blocks::lock::{
    LockComponent, LockError, LockStore, TryLockRequest, UnlockRequest, UnlockStatus,
};
use outrider_blocks::pubsub::{
    Handler, Message, PubSub, PubSubComponent, PubSubError, SubscribeRequest, Subscription,
};
use outrider_blocks::state::{BoxFuture, StateComponent, StateError, StateResponse};
use outrider_filters::resiliency::classify::{Classify, Failure, StackError, Verdict};
use outrider_filters::resiliency::{
    Direction, Labels, Policies, Resiliency, Stack, component_policies,
};
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

/// Judges store outcomes: only an unreachable or failing store is a failure.
#[derive(Clone, Copy, Debug)]
struct StoreClassify;

impl Classify<StateResponse, StackError<StateError>> for StoreClassify {
    fn verdict(&self, result: &Result<StateResponse, StackError<StateError>>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            // The store says whether another attempt could help.
            Err(StackError::Call(e)) if !e.is_retryable() => Verdict::Success,
            Err(e) => Verdict::Failure(Failure::error(e.kind_if_sent())),
        }
    }
}

/// The outbound policies of a component, with the log line saying which apply; `None` when none.
fn outbound_policies(all: &[Resiliency], name: &str, type_: &str) -> Option<Policies> {
    let p = component_policies(all, name, type_, Direction::Outbound);
    if p.timeout.is_none() && p.retry.is_none() && p.breaker.is_none() {
        return None;
    }
    tracing::info!(
        component = %name,
        timeout = p.timeout.as_ref().map(|t| t.0.as_str()),
        retry = p.retry.as_ref().map(|r| r.0.as_str()),
        circuit_breaker = p.breaker.as_ref().map(|b| b.0.as_str()),
        "resiliency policies apply to the component's calls"
    );
    Some(p)
}

/// The stack of a component's outbound policies: retry(breaker(timeout(call))), the timeout
/// defaulting to `deadline`.
fn stack<C>(p: Policies, name: &str, app_id: &str, deadline: Duration, classify: C) -> Stack<C> {
    let mut stack = Stack::from_policies(Labels::component(app_id, name, "outbound"), classify, p);
    // The API's store deadline unless a policy sets one.
    stack
        .timeout
        .get_or_insert_with(|| ("default".to_owned(), deadline));
    stack
}

/// Wraps `c` in the resiliency policies that apply to it, if any.
pub(crate) fn layer_state(
    c: &mut StateComponent,
    all: &[Resiliency],
    app_id: &str,
    deadline: Duration,
) {
    if let Some(p) = outbound_policies(all, &c.name, &c.type_) {
        let stack = stack(p, &c.name, app_id, deadline, StoreClassify);
        let layered = stack.layered_cloned(c.service()).map_err(state_error);
        c.layered = Some(BoxCloneSyncService::new(layered));
    }
}

/// Judges publish outcomes: only a failing or unreachable broker is a failure.
#[derive(Clone, Copy, Debug)]
struct BrokerClassify;

impl Classify<(), StackError<PubSubError>> for BrokerClassify {
    fn verdict(&self, result: &Result<(), StackError<PubSubError>>) -> Verdict {
        match result {
            Ok(()) => Verdict::Success,
            // The broker answering (a bad request) is not the broker failing.
            Err(StackError::Call(e)) if !e.is_retryable() => Verdict::Success,
            Err(e) => Verdict::Failure(Failure::error(e.kind_if_sent())),
        }
    }
}

/// A broker whose publishes go through resiliency layers; subscriptions are the inner broker's.
struct ResilientBroker {
    inner: Arc<dyn PubSub>,
    publish: BoxCloneSyncService<Message, (), PubSubError>,
}

impl PubSub for ResilientBroker {
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>> {
        let call = self.publish.clone().oneshot(msg);
        Box::pin(call)
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>> {
        self.inner.subscribe(req, handler)
    }
}

/// Wraps `c`'s publishes in the resiliency policies that apply to it, if any.
pub(crate) fn layer_publish(
    c: &mut PubSubComponent,
    all: &[Resiliency],
    app_id: &str,
    deadline: Duration,
) {
    let Some(p) = outbound_policies(all, &c.name, &c.type_) else {
        return;
    };
    let inner = c.broker.clone();
    let broker = inner.clone();
    let publish = tower::service_fn(move |msg: Message| {
        let broker = broker.clone();
        async move { broker.publish(msg).await }
    });
    let publish = stack(p, &c.name, app_id, deadline, BrokerClassify)
        .layered_cloned(publish)
        .map_err(pubsub_error);
    c.broker = Arc::new(ResilientBroker {
        inner,
        publish: BoxCloneSyncService::new(publish),
    });
}

/// Judges lock outcomes: any answer (taken or not, whatever the unlock status) is the store
/// working; only a failing or unreachable store is a failure.
#[derive(Clone, Copy, Debug)]
struct LockClassify;

impl<R> Classify<R, StackError<LockError>> for LockClassify {
    fn verdict(&self, result: &Result<R, StackError<LockError>>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(StackError::Call(e)) if !e.is_retryable() => Verdict::Success,
            Err(e) => Verdict::Failure(Failure::error(e.kind_if_sent())),
        }
    }
}

/// A call of a lock store, as one service's request, so that both operations share one
/// breaker.
#[derive(Clone)]
enum LockCall {
    Take(TryLockRequest),
    Give(UnlockRequest),
}

/// The answer of a [`LockCall`].
enum LockAnswer {
    Taken(bool),
    Given(UnlockStatus),
}

/// A lock store whose calls go through resiliency layers.
struct ResilientLock(BoxCloneSyncService<LockCall, LockAnswer, LockError>);

impl LockStore for ResilientLock {
    fn try_lock(&self, req: TryLockRequest) -> BoxFuture<Result<bool, LockError>> {
        let call = self.0.clone().oneshot(LockCall::Take(req));
        Box::pin(async move {
            match call.await? {
                LockAnswer::Taken(taken) => Ok(taken),
                LockAnswer::Given(_) => unreachable!("a take is answered as one"),
            }
        })
    }

    fn unlock(&self, req: UnlockRequest) -> BoxFuture<Result<UnlockStatus, LockError>> {
        let call = self.0.clone().oneshot(LockCall::Give(req));
        Box::pin(async move {
            match call.await? {
                LockAnswer::Given(status) => Ok(status),
                LockAnswer::Taken(_) => unreachable!("an unlock is answered as one"),
            }
        })
    }
}

/// Wraps `c`'s calls in the resiliency policies that apply to it, if any.
pub(crate) fn layer_lock(
    c: &mut LockComponent,
    all: &[Resiliency],
    app_id: &str,
    deadline: Duration,
) {
    let Some(p) = outbound_policies(all, &c.name, &c.type_) else {
        return;
    };
    let inner = c.store.clone();
    let call = tower::service_fn(move |call: LockCall| {
        let inner = inner.clone();
        async move {
            match call {
                LockCall::Take(req) => inner.try_lock(req).await.map(LockAnswer::Taken),
                LockCall::Give(req) => inner.unlock(req).await.map(LockAnswer::Given),
            }
        }
    });
    let layered = stack(p, &c.name, app_id, deadline, LockClassify)
        .layered_cloned(call)
        .map_err(lock_error);
    c.store = Arc::new(ResilientLock(BoxCloneSyncService::new(layered)));
}

/// Judges output binding outcomes: a refused request is the binding answering; a failing or
/// silent component is a failure.
#[derive(Clone, Copy, Debug)]
struct BindingClassify;

impl<R> Classify<R, StackError<BindingError>> for BindingClassify {
    fn verdict(&self, result: &Result<R, StackError<BindingError>>) -> Verdict {
        match result {
            Ok(_) | Err(StackError::Call(BindingError::BadRequest(_))) => Verdict::Success,
            Err(e) => Verdict::Failure(Failure::error(e.kind_if_sent())),
        }
    }
}

type BindingAnswer = Option<InvokeResponse>;

/// An output binding whose calls go through resiliency layers.
struct ResilientOutput {
    operations: &'static [&'static str],
    call: BoxCloneSyncService<InvokeRequest, BindingAnswer, BindingError>,
}

impl OutputBinding for ResilientOutput {
    fn operations(&self) -> &'static [&'static str] {
        self.operations
    }

    fn invoke(&self, req: InvokeRequest) -> BoxFuture<Result<BindingAnswer, BindingError>> {
        Box::pin(self.call.clone().oneshot(req))
    }
}

/// Wraps `c`'s output calls in the resiliency policies that apply to it, and in `deadline`
/// unless a policy sets another timeout.
pub(crate) fn layer_binding(
    c: &mut BindingComponent,
    all: &[Resiliency],
    app_id: &str,
    deadline: Duration,
) {
    let Some(inner) = c.output.clone() else {
        return;
    };
    // Without a policy, the stack is the deadline alone: no call is unbounded.
    let p = outbound_policies(all, &c.name, &c.type_).unwrap_or_default();
    let operations = inner.operations();
    let deadline = inner.deadline().map_or(deadline, |own| own.max(deadline));
    let call = tower::service_fn(move |req: InvokeRequest| {
        let inner = inner.clone();
        async move { inner.invoke(req).await }
    });
    let layered = stack(p, &c.name, app_id, deadline, BindingClassify)
        .layered_cloned(call)
        .map_err(binding_error);
    c.output = Some(Arc::new(ResilientOutput {
        operations,
        call: BoxCloneSyncService::new(layered),
    }));
}

/// An output binding call's error: the component's own, or a layer's.
fn binding_error(e: StackError<BindingError>) -> BindingError {
    match e {
        StackError::Call(e) => e,
        StackError::TimedOut(t) => BindingError::Timeout(t.0),
        StackError::Refused(r) => BindingError::Failed(Fault::caused_by(r.to_string(), r)),
    }
}

/// A lock call's error: the store's own, or a layer's.
fn lock_error(e: StackError<LockError>) -> LockError {
    match e {
        StackError::Call(e) => e,
        StackError::TimedOut(t) => LockError::Timeout(t.0),
        StackError::Refused(r) => LockError::Store(Fault::caused_by(r.to_string(), r)),
    }
}

/// A publish error: the broker's own, or a layer's.
fn pubsub_error(e: StackError<PubSubError>) -> PubSubError {
    match e {
        StackError::Call(e) => e,
        StackError::TimedOut(t) => PubSubError::Broker(Fault::caused_by(t.to_string(), t)),
        StackError::Refused(r) => PubSubError::Broker(Fault::caused_by(r.to_string(), r)),
    }
}

/// A store call's error: the store's own, or a layer's.
fn state_error(e: StackError<StateError>) -> StateError {
    match e {
        StackError::Call(e) => e,
        StackError::TimedOut(t) => StateError::Timeout(t.0),
        StackError::Refused(r) => StateError::Store(r.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use outrider_filters::resiliency::breaker::Refused;
    use outrider_filters::resiliency::classify::FailureKind;
    use outrider_filters::resiliency::timeout::TimedOut;

    use super::*;

    #[test]
    fn only_store_failures_count() {
        let c = StoreClassify;
        let err = |e: StateError| -> Result<StateResponse, StackError<StateError>> {
            Err(StackError::Call(e))
        };
        assert_eq!(c.verdict(&Ok(StateResponse::Done)), Verdict::Success);
        assert_eq!(
            c.verdict(&err(StateError::EtagMismatch("x".into()))),
            Verdict::Success
        );
        assert_eq!(
            c.verdict(&err(StateError::BadRequest("x".into()))),
            Verdict::Success
        );
        let failure = Verdict::Failure(Failure {
            kind: FailureKind::Sent,
            status: None,
            grpc: None,
            retry_after: None,
        });
        assert_eq!(c.verdict(&err(StateError::Store("down".into()))), failure);
        assert_eq!(
            c.verdict(&Err(TimedOut(Duration::from_secs(1)).into())),
            failure
        );
        let refused = c.verdict(&Err(Refused::Open("cb".into()).into()));
        assert!(matches!(
            refused,
            Verdict::Failure(Failure {
                kind: FailureKind::Refused,
                ..
            })
        ));
        assert!(matches!(
            state_error(TimedOut(Duration::from_secs(2)).into()),
            StateError::Timeout(_)
        ));
        assert!(matches!(
            state_error(StackError::Call(StateError::EtagInvalid("e".into()))),
            StateError::EtagInvalid(_)
        ));
    }
}
