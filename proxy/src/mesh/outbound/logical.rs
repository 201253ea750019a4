//! The logical stage: a target app (id and namespace) with its resiliency policies composed as
//! retry(breaker(timeout(attempt))). Every attempt, retries included, goes through the concrete
//! stage again, so a retry can reach another instance.

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use outrider_discovery::Target;
use outrider_filters::resiliency::{
    CircuitBreakerLayer, HttpClassify, Labels, Resiliency, RetryLayer, TimeoutLayer, app_policies,
};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

use super::OutboundRequest;
use super::concrete::Concrete;
use crate::errors::InvokeError;

/// A target's resiliency stack over its concrete stage.
pub(super) struct Logical {
    pub(super) stack: BoxCloneSyncService<OutboundRequest, Response<Incoming>, BoxError>,
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
        let labels = Labels {
            app_id: app_id.to_owned(),
            target: format!("app_{}", target.app_id),
            flow_direction: "outbound",
        };
        let classify = HttpClassify { unsent };
        let inner = concrete.clone();
        let attempt = tower::service_fn(move |req: OutboundRequest| {
            let concrete = inner.clone();
            async move { concrete.send(req).await.map_err(BoxError::from) }
        });
        let stack = ServiceBuilder::new()
            // Failed attempts the policy retries go back through the balancer.
            .option_layer(retrying.map(|r| RetryLayer::new(r, classify, labels.clone())))
            // One breaker per target app: open, it answers at once without sending.
            .option_layer(
                policies
                    .breaker
                    .map(|(name, p)| CircuitBreakerLayer::new(&name, p, classify, labels.clone())),
            )
            // A deadline per attempt.
            .option_layer(
                policies
                    .timeout
                    .map(|(name, d)| TimeoutLayer::new(&name, d, labels.clone())),
            )
            .service(attempt)
            .map_err(|e: BoxError| e);
        Self {
            stack: BoxCloneSyncService::new(stack),
            concrete,
        }
    }
}

/// Whether an error means the request never left this sidecar for an endpoint: the connection
/// failed. (No endpoint at all is not one of these: sending again at once would not help, and the
/// built-in retries must not keep a caller of a vanished app waiting.)
fn unsent(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<InvokeError>(),
        Some(InvokeError::Connect { .. })
    )
}
