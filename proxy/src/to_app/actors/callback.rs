//! What the host asks of its app for one actor ([`Callback`]), and how the app is reached
//! ([`ActorApp`]): an HTTP request on the app channel, or a request down the actor event stream
//! a gRPC app opened.

use std::sync::Arc;

use http::Method;

use super::{method_path, segment, stream};
use crate::to_app::channel::AppChannel;

/// How the app hosting actors is reached: its app channel (HTTP), or the actor event stream it
/// opened (`SubscribeActorEventsAlpha1`).
#[derive(Clone)]
pub(crate) enum ActorApp {
    Channel(Box<AppChannel>),
    Stream(Arc<stream::ActorStream>),
}

/// One callback to the app for an actor.
pub(crate) struct Callback<'a> {
    pub(crate) actor_type: &'a str,
    pub(crate) id: &'a str,
    pub(crate) what: What<'a>,
}

/// What a [`Callback`] asks.
pub(crate) enum What<'a> {
    /// A method, with the caller's query: `timer/{name}` and `remind/{name}` are the actor's
    /// timers and reminders.
    Method {
        method: &'a str,
        query: Option<&'a str>,
    },
    /// Deactivation.
    Deactivate,
}

impl Callback<'_> {
    /// The callback as an HTTP request's method and path (with query).
    pub(super) fn http(&self) -> (Method, String) {
        let actor = format!("/actors/{}/{}", segment(self.actor_type), segment(self.id));
        match self.what {
            What::Method { method, query } => {
                let query = query.map(|q| format!("?{q}")).unwrap_or_default();
                let path = format!("{actor}/method/{}{query}", method_path(method));
                (Method::PUT, path)
            }
            What::Deactivate => (Method::DELETE, actor),
        }
    }
}
