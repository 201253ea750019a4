//! The sidecar calling its app: the app channel (`channel`, with `--app-max-concurrency` in
//! `channel::limit`), the one delivery path every message takes to the app (`deliver`), the
//! subscriptions that feed it (`subscriptions`, with batched delivery in `subscriptions::bulk`,
//! dead letters in `subscriptions::dead_letter`, and the pause while the app is unhealthy in
//! `subscriptions::pause`), the input bindings that feed it too (`bindings`), and the app's
//! health checks (`health`), the actors it hosts (`actors`), and the durable reminders and jobs
//! it fires (`schedules`).

pub(crate) mod actors;
pub(crate) mod bindings;
pub(crate) mod channel;
pub(crate) mod deliver;
pub(crate) mod health;
pub(crate) mod schedules;
pub(crate) mod subscriptions;
