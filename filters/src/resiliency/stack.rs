//! The one builder of a resiliency stack: every call path that applies policies (invocation of
//! another app, a component call, a delivery to the app) composes the same layers in the same
//! request order here — retry, then circuit breaker, then the deadline of each attempt.

use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt as _};

use super::classify::{Classify, StackError};
use super::retry::{Cloned, Replay};
use super::{
    BreakerPolicy, CircuitBreakerLayer, Labels, Policies, RetryLayer, Retrying, TimeoutLayer,
};

/// A call through a stack, boxed: requests `Req`, answers `R`, and the call's own errors `E`.
pub type Stacked<Req, R, E> = BoxCloneSyncService<Req, R, StackError<E>>;

/// The layers that apply to one target, and how they judge and count its calls.
#[derive(Clone, Debug)]
pub struct Stack<C> {
    /// Counted under these labels.
    pub labels: Labels,
    /// Judges each attempt for the retry and the breaker.
    pub classify: C,
    /// Retries of failed attempts, if a policy (or the built-in one) applies.
    pub retry: Option<Retrying>,
    /// The circuit breaker, if one applies: open, it answers at once without calling.
    pub breaker: Option<(String, BreakerPolicy)>,
    /// The deadline of each attempt, if one applies.
    pub timeout: Option<(String, Duration)>,
}

impl<C> Stack<C> {
    /// The stack of the `policies` a `Resiliency` resolved for one target, counted under
    /// `labels`.
    pub fn from_policies(labels: Labels, classify: C, policies: Policies) -> Self {
        Self {
            labels,
            classify,
            retry: policies.retry.map(|(name, policy)| Retrying {
                name,
                policy,
                builtin: false,
            }),
            breaker: policies.breaker,
            timeout: policies.timeout,
        }
    }

    /// retry(breaker(timeout(`service`))), for requests that say themselves how to be sent
    /// again. The service's own errors come back as [`StackError::Call`].
    pub fn around<S, Req>(self, service: S) -> Stacked<Req, S::Response, S::Error>
    where
        Req: Replay + Send + 'static,
        S: Stackable<Req>,
        C: Judges<S, Req>,
    {
        BoxCloneSyncService::new(self.layered(service))
    }

    /// The same stack for requests that are plain values, replayed by cloning. Boxed once, as
    /// [`Stack::around`] is.
    pub fn around_cloned<S, Req>(self, service: S) -> Stacked<Req, S::Response, S::Error>
    where
        Req: Clone + Send + Sync + 'static,
        S: Stackable<Req>,
        C: Judges<S, Req>,
    {
        BoxCloneSyncService::new(self.layered_cloned(service))
    }

    /// [`Stack::around_cloned`] not yet boxed, for callers that convert its errors before they
    /// box it.
    pub fn layered_cloned<S, Req>(
        self,
        service: S,
    ) -> impl Stackable<Req, Response = S::Response, Error = StackError<S::Error>>
    where
        Req: Clone + Send + Sync + 'static,
        S: Stackable<Req>,
        C: Judges<S, Req>,
    {
        let unwrapped = service.map_request(|Cloned(r): Cloned<Req>| r);
        self.layered::<_, Cloned<Req>>(unwrapped)
            .map_request(Cloned)
    }

    /// [`Stack::around`] not yet boxed.
    fn layered<S, Req>(
        self,
        service: S,
    ) -> impl Stackable<Req, Response = S::Response, Error = StackError<S::Error>>
    where
        Req: Replay + Send + 'static,
        S: Stackable<Req>,
        C: Judges<S, Req>,
    {
        let Self {
            labels,
            classify,
            retry,
            breaker,
            timeout,
        } = self;
        ServiceBuilder::new()
            // Failed attempts the policy retries are sent again through everything below.
            .option_layer(retry.map(|r| RetryLayer::new(r, classify.clone(), labels.clone())))
            // Open, the breaker answers at once without calling.
            .option_layer(
                breaker
                    .map(|(name, b)| CircuitBreakerLayer::new(&name, b, classify, labels.clone())),
            )
            // A deadline per attempt.
            .option_layer(timeout.map(|(name, d)| TimeoutLayer::new(&name, d, labels)))
            .service(service.map_err(StackError::Call))
    }
}

/// A service a stack can wrap (and what a stack is): shared between tasks, its calls sent to
/// other tasks.
pub trait Stackable<Req>:
    Service<Req, Future: Send + 'static, Response: Send + 'static, Error: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, Req> Stackable<Req> for S where
    S: Service<Req, Future: Send + 'static, Response: Send + 'static, Error: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A classifier of the calls of service `S` through a stack.
pub trait Judges<S: Service<Req>, Req>:
    Classify<S::Response, StackError<S::Error>> + Clone + Send + Sync + 'static
{
}

impl<C, S: Service<Req>, Req> Judges<S, Req> for C where
    C: Classify<S::Response, StackError<S::Error>> + Clone + Send + Sync + 'static
{
}
