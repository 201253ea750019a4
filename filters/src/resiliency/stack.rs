//! The one builder of a resiliency stack: every call path that applies policies (invocation of
//! another app, a component call, a delivery to the app) composes the same layers in the same
//! request order here — retry, then circuit breaker, then the deadline of each attempt.

use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt as _};

use super::classify::Classify;
use super::retry::{Cloned, Replay};
use super::{
    BreakerPolicy, CircuitBreakerLayer, Labels, Policies, RetryLayer, Retrying, TimeoutLayer,
};

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
    /// again.
    pub fn around<S, Req>(self, service: S) -> BoxCloneSyncService<Req, S::Response, BoxError>
    where
        Req: Replay + Send + 'static,
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
        S::Error: Into<BoxError>,
        C: Classify<S::Response> + Clone + Send + Sync + 'static,
    {
        BoxCloneSyncService::new(self.layered(service))
    }

    /// The same stack for requests that are plain values, replayed by cloning. Boxed once, as
    /// [`Stack::around`] is.
    pub fn around_cloned<S, Req>(
        self,
        service: S,
    ) -> BoxCloneSyncService<Req, S::Response, BoxError>
    where
        Req: Clone + Send + Sync + 'static,
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
        S::Error: Into<BoxError>,
        C: Classify<S::Response> + Clone + Send + Sync + 'static,
    {
        let unwrapped = service.map_request(|Cloned(r): Cloned<Req>| r);
        BoxCloneSyncService::new(self.layered(unwrapped).map_request(Cloned))
    }

    /// The layers over `service`, not yet boxed.
    fn layered<S, Req>(
        self,
        service: S,
    ) -> impl Service<Req, Response = S::Response, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
    where
        Req: Replay + Send + 'static,
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
        S::Error: Into<BoxError>,
        C: Classify<S::Response> + Clone + Send + Sync + 'static,
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
            .service(service.map_err(Into::<BoxError>::into))
            .map_err(|e: BoxError| e)
    }
}
