//! The logical stage: a target app (id and namespace) with its resiliency policies composed as
//! retry(breaker(timeout(attempt))). Every attempt, retries included, goes through the concrete
//! stage again, so a retry can reach another instance.

use std::sync::Arc;

use http::Response;
use outrider_discovery::Target;
use outrider_filters::resiliency::{
    HttpClassify, Labels, Resiliency, Stack, Stacked, app_policies,
};

use super::OutboundRequest;
use super::concrete::Concrete;
use crate::errors::InvokeError;
use crate::net::http::Body;

/// A target's resiliency stack over its concrete stage.
pub(super) struct Logical {
    pub(super) stack: Stacked<OutboundRequest, Response<Body>, InvokeError>,
    pub(super) concrete: Arc<Concrete>,
}

impl Logical {
    /// The logical stage for `target`, calling from `app_id`: its resiliency policies over
    /// `concrete`.
    pub(super) fn new(
        app_id: &str,
        resiliency: &[Resiliency],
        target: &Target,
        concrete: Arc<Concrete>,
    ) -> Self {
        let (policies, retrying) = app_policies(resiliency, &target.app_id);
        let inner = concrete.clone();
        let attempt = tower::service_fn(move |req: OutboundRequest| {
            let concrete = inner.clone();
            async move { concrete.send(req).await }
        });
        // One breaker per target app; failed attempts the policy retries go back through the
        // balancer.
        let stack = Stack {
            labels: Labels::app(app_id, &target.app_id),
            classify: HttpClassify,
            retry: retrying,
            breaker: policies.breaker,
            timeout: policies.timeout,
        }
        .around(attempt);
        Self { stack, concrete }
    }
}
