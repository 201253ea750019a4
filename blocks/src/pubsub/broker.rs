//! The broker contract every pub/sub component implements.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::deadline;
use crate::fault::{Cause, Fault};
use crate::state::BoxFuture;

/// Message metadata (publish metadata travels with the message where the broker can carry it).
pub type Metadata = BTreeMap<String, String>;

/// A message as published and delivered: the envelope bytes (or raw payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The bytes published.
    pub data: Bytes,
    /// Publish metadata.
    pub metadata: Metadata,
}

/// How a subscriber answered a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: acknowledge.
    Success,
    /// Not handled now: deliver again later.
    Retry,
    /// Never deliverable: acknowledge without handling.
    Drop,
}

/// Receives deliveries. The component acknowledges only after the future resolves, and only
/// for [`Outcome::Success`] and [`Outcome::Drop`].
pub type Handler = Arc<dyn Fn(Message) -> BoxFuture<Outcome> + Send + Sync>;

/// What to subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// The topic.
    pub topic: String,
    /// The consumer group: instances of one group compete, groups each get every message.
    pub group: String,
    /// At most this many deliveries in flight.
    pub concurrency: usize,
}

/// Why a pub/sub operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PubSubError {
    /// The broker failed or is unreachable.
    #[error(transparent)]
    Broker(Fault),
    /// The request is malformed for this broker.
    #[error("{0}")]
    BadRequest(String),
    /// A subscriber has no room for the message: it is not handling what it was sent.
    #[error("{0}")]
    Full(String),
}

impl PubSubError {
    /// Whether trying the call again may succeed: the broker failed ([`Fault::is_retryable`]) or
    /// a subscriber had no room yet. A bad request is refused the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Broker(fault) => fault.is_retryable(),
            Self::Full(_) => true,
            Self::BadRequest(_) => false,
        }
    }
}

/// A broker failure worded `<broker>: <what>: <error>` (`<broker>: <error>` when `what` is
/// empty), keeping the client's error as its cause.
pub(crate) fn broker_error<E>(broker: &str, what: &str, e: E) -> PubSubError
where
    E: std::fmt::Display + Into<Cause>,
{
    PubSubError::Broker(Fault::caused_by(format!("{}: {e}", label(broker, what)), e))
}

/// A broker call under `timeout` (see [`crate::deadline`]), its failures worded by
/// [`broker_error`] and running out as `<broker>: <what>: no answer within <timeout>`.
pub(crate) async fn broker_call<T, E>(
    broker: &str,
    timeout: Duration,
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, PubSubError>
where
    E: std::fmt::Display + Into<Cause>,
{
    let call = async { call.await.map_err(|e| broker_error(broker, what, e)) };
    deadline::bounded(timeout, call, |t| {
        PubSubError::Broker(Fault::new(format!(
            "{}: no answer within {t:?}",
            label(broker, what)
        )))
    })
    .await
}

fn label(broker: &str, what: &str) -> String {
    if what.is_empty() {
        broker.to_owned()
    } else {
        format!("{broker}: {what}")
    }
}

/// An active subscription; dropping it stops deliveries (in-flight ones finish on their own),
/// [`Subscription::stop`] also waits for them and their acknowledgements.
pub struct Subscription {
    token: tokio_util::sync::CancellationToken,
    _stop: tokio_util::sync::DropGuard,
    tasks: tokio_util::task::TaskTracker,
}

impl Subscription {
    /// A subscription stopped by cancelling `token`, with nothing to wait for.
    pub fn new(token: tokio_util::sync::CancellationToken) -> Self {
        let tasks = tokio_util::task::TaskTracker::new();
        tasks.close();
        Self::tracked(token, tasks)
    }

    /// A subscription stopped by cancelling `token`, whose deliveries (with their
    /// acknowledgements) run as tasks of `tasks`.
    pub fn tracked(
        token: tokio_util::sync::CancellationToken,
        tasks: tokio_util::task::TaskTracker,
    ) -> Self {
        Self {
            _stop: token.clone().drop_guard(),
            token,
            tasks,
        }
    }

    /// Stops deliveries and waits up to `grace` for those in flight to finish and be
    /// acknowledged; returns whether they all did.
    pub async fn stop(self, grace: std::time::Duration) -> bool {
        self.token.cancel();
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("in_flight", &self.tasks.len())
            .finish()
    }
}

/// A pub/sub broker.
///
/// Contract: `publish` returns once the broker has the message. A subscription delivers every
/// message published to its topic after it started, to one member of each group, at least
/// once: a message is acknowledged only when the handler answered [`Outcome::Success`] or
/// [`Outcome::Drop`]; [`Outcome::Retry`] (or a stop mid-delivery) means it is delivered again.
/// At most `concurrency` deliveries of one subscription run at once.
pub trait PubSub: Send + Sync + 'static {
    /// Publishes one message.
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>>;

    /// Starts delivering `req.topic` to `handler`.
    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>>;
}
