//! The sidecar calling its app: the app channel (`channel`) and the deliveries of subscribed
//! messages (`subscriptions`, with batched delivery in `subscriptions::bulk`).

pub(crate) mod channel;
pub(crate) mod subscriptions;
