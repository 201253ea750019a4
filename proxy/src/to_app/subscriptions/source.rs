//! Where a subscription's events come from: a broker's topic or an input binding, started the
//! same way and refused for now (tried again) or for good.

use std::sync::Arc;

use outrider_blocks::bindings::{BindingError, InputBinding};
use outrider_blocks::pubsub::{Handler, PubSub, PubSubError, SubscribeRequest, Subscription};

use super::Refused;

/// Where a subscription's events come from.
#[derive(Clone)]
pub(crate) enum Source {
    /// A topic of a broker.
    Topic {
        broker: Arc<dyn PubSub>,
        req: SubscribeRequest,
    },
    /// An input binding.
    Binding(Arc<dyn InputBinding>),
}

impl Source {
    /// Starts delivering to `handler`.
    pub(super) async fn start(&self, handler: Handler) -> Result<Subscription, Refused> {
        match self {
            Source::Topic { broker, req } => match broker.subscribe(req.clone(), handler).await {
                Ok(sub) => Ok(sub),
                // The broker refuses the subscription as written: it never will work.
                Err(e @ PubSubError::BadRequest(_)) => Err(Refused::Never(e.to_string())),
                Err(e) => Err(Refused::ForNow(e.to_string())),
            },
            Source::Binding(b) => match b.read(handler).await {
                Ok(sub) => Ok(sub),
                Err(e @ BindingError::BadRequest(_)) => Err(Refused::Never(e.to_string())),
                Err(e) => Err(Refused::ForNow(e.to_string())),
            },
        }
    }
}
