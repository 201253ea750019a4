//! The sidecar calling its app: the app channel (`channel`), the one delivery path every
//! message takes to the app (`deliver`), and the subscriptions that feed it (`subscriptions`,
//! with batched delivery in `subscriptions::bulk` and dead letters in
//! `subscriptions::dead_letter`).

pub(crate) mod channel;
pub(crate) mod deliver;
pub(crate) mod health;
pub(crate) mod subscriptions;
