//! The bindings building block: output bindings (the app calls an external system through a
//! component: `POST /v1.0/bindings/{name}`) and input bindings (a schedule or a queue triggers
//! the app), with the [`OutputBinding`] and [`InputBinding`] contracts their components
//! implement.
//!
//! A request names an operation (`create`, `get`, `delete`, `list`, …) among those the component
//! declares, carries the request's data as bytes (the JSON text of the `data` field, as daprd
//! passes it on) and string metadata; the answer is bytes and metadata, or nothing.

pub(crate) mod cron;
pub mod gotime;
mod localstorage;
mod mysql;
mod open;
mod postgres;
mod queue;
mod redis;
mod sql;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::fault::Fault;
use crate::state::BoxFuture;

pub use crate::pubsub::broker::{Handler, Message, Outcome, Subscription};
pub use cron::{CronBinding, Schedule};
pub use localstorage::LocalStorage;
pub use open::{BindingComponent, Input, Outside, OutsideOpened, open, open_with};
pub use queue::QueueBinding;
pub use redis::RedisBinding;
pub use sql::SqlBinding;

/// Request and response metadata.
pub type Metadata = BTreeMap<String, String>;

/// One call of an output binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvokeRequest {
    /// The operation, one of the binding's [`OutputBinding::operations`].
    pub operation: String,
    /// The data.
    pub data: Bytes,
    /// The request's metadata (`key`, `fileName`, `ttlInSeconds`, …).
    pub metadata: Metadata,
}

/// What a call answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvokeResponse {
    /// The data.
    pub data: Bytes,
    /// Response metadata (sent back as `metadata.<name>` headers over HTTP).
    pub metadata: Metadata,
}

/// A binding failing, or refusing a request.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BindingError {
    /// The request is not one this binding can serve (missing metadata, a bad path).
    #[error("{0}")]
    BadRequest(String),
    /// The external system failed or is unreachable.
    #[error(transparent)]
    Failed(Fault),
    /// It did not answer in time.
    #[error("the binding did not answer within {0:?}")]
    Timeout(Duration),
}

/// An output binding.
///
/// Contract, checked for every component by the conformance suite (`blocks/tests/bindings.rs`):
/// - `operations` lists what `invoke` serves; the API refuses the others before calling;
/// - `create` then `get` of the same name answers the bytes created; after `delete`, `get`
///   answers no data (or fails saying it is not there);
/// - names and data are opaque: no name reaches outside what the component was configured
///   with (a file outside the root, another database).
pub trait OutputBinding: Send + Sync {
    /// The operations served.
    fn operations(&self) -> &'static [&'static str];
    /// Serves one request; `None` when the operation answers nothing.
    fn invoke(&self, req: InvokeRequest)
    -> BoxFuture<Result<Option<InvokeResponse>, BindingError>>;

    /// How long a call may take by the component's own settings (`bindings.http`'s
    /// `responseTimeout`), when it sets one: the sidecar's default deadline never cuts it short.
    fn deadline(&self) -> Option<Duration> {
        None
    }
}

/// An input binding: a source of events (a schedule's ticks, a queue's messages) the sidecar
/// delivers to the app.
///
/// Contract, checked for every component by the conformance suite (`blocks/tests/bindings.rs`):
/// - `read` returns once reading has started; from then on every event goes to the handler;
/// - an event is acknowledged to its source only after the handler answered
///   [`Outcome::Success`] or [`Outcome::Drop`]; on [`Outcome::Retry`] a source that keeps events
///   (a queue) delivers it again, one that cannot (a schedule) goes on to the next;
/// - dropping the [`Subscription`] stops reading (deliveries under way finish);
///   [`Subscription::stop`] also waits for them; `read` may be called again afterwards.
pub trait InputBinding: Send + Sync {
    /// Starts delivering events to `handler`.
    fn read(&self, handler: Handler) -> BoxFuture<Result<Subscription, BindingError>>;
}
