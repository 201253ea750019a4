//! Actor timers: kept in memory with the active actor, gone when it deactivates. Each firing
//! takes the actor's turn and calls the app at `PUT /actors/{type}/{id}/method/timer/{name}`
//! with `{data, callback, dueTime, period}`; a failed callback is logged and the timer goes on,
//! as in daprd, and an answer marked `X-DaprReminderCancel: true` stops it. A firing counts as activity: an actor whose timer fires more often than its idle
//! timeout stays active.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderValue, Request, header};
use outrider_blocks::actors::schedule::Firings;
use serde_json::{Value, json};

use super::{Active, Found, Host, HostError};

/// Timers one actor may have at once.
pub(crate) const MAX_TIMERS: usize = 256;

/// A running timer: stopped between firings when deleted or replaced (a firing under way, which
/// holds the actor's turn, finishes first), or aborted with its actor (whose turn is closed).
pub(crate) struct Handle {
    abort: tokio::task::AbortHandle,
    stop: tokio_util::sync::CancellationToken,
}

impl Handle {
    /// Stops it after the firing under way, if any.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops it now: only once the actor's turn is closed.
    pub(crate) fn abort(&self) {
        self.stop.cancel();
        self.abort.abort();
    }
}

/// A timer as registered.
#[derive(Clone, Debug)]
pub(crate) struct Timer {
    pub(crate) name: String,
    pub(crate) callback: String,
    pub(crate) data: Option<Value>,
    /// As given, echoed to the app.
    pub(crate) due_time: String,
    pub(crate) period: String,
    pub(crate) firings: Firings,
}

impl Host {
    /// Registers (or replaces) a timer of actor `(actor_type, id)`, activating the actor here.
    pub(crate) async fn register_timer(
        self: &Arc<Self>,
        actor_type: &str,
        id: &str,
        timer: Timer,
    ) -> Result<(), HostError> {
        if !self.types.contains_key(actor_type) {
            return Err(HostError::NotHosted(actor_type.to_owned()));
        }
        let deadline = tokio::time::Instant::now() + super::ACTIVATION_PATIENCE;
        let active = match self.find(actor_type, id, true, deadline).await? {
            Found::Here(a) => a,
            Found::Elsewhere(h) => return Err(HostError::Elsewhere(h)),
        };
        let mut timers = active.timers.lock().unwrap_or_else(|p| p.into_inner());
        if timers.len() >= MAX_TIMERS && !timers.contains_key(&timer.name) {
            return Err(HostError::Unavailable(format!(
                "the actor has {MAX_TIMERS} timers already"
            )));
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run(
            Arc::downgrade(self),
            (actor_type.to_owned(), id.to_owned()),
            Arc::downgrade(&active),
            timer.clone(),
            stop.clone(),
        ));
        let handle = Handle {
            abort: task.abort_handle(),
            stop,
        };
        if let Some(old) = timers.insert(timer.name, handle) {
            old.stop();
        }
        Ok(())
    }

    /// Deletes a timer of an actor active here; nothing happens when there is none.
    pub(crate) fn delete_timer(&self, actor_type: &str, id: &str, name: &str) {
        let key = (actor_type.to_owned(), id.to_owned());
        let Some(active) = self.table().get(&key).cloned() else {
            return;
        };
        let removed = active
            .timers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(timer) = removed {
            timer.stop();
        }
    }
}

/// Fires `timer` until it is spent, deleted, or its actor goes.
async fn run(
    host: Weak<Host>,
    key: (String, String),
    active: Weak<Active>,
    timer: Timer,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut fired = 0u32;
    let mut last = timer.firings.due;
    while let Some(at) = timer.firings.next(fired, last) {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        let (Some(host), Some(active)) = (host.upgrade(), active.upgrade()) else {
            return;
        };
        if active.closing.load(Ordering::Acquire) || stop.is_cancelled() {
            return;
        }
        let cancelled = fire(&host, &key, &active, &timer).await;
        fired += 1;
        last = at;
        if cancelled {
            break;
        }
    }
    // Spent or cancelled by the app: forget it, unless it was replaced meanwhile (another task's
    // handle).
    if let Some(active) = active.upgrade() {
        let mut timers = active.timers.lock().unwrap_or_else(|p| p.into_inner());
        let me = tokio::task::id();
        if timers.get(&timer.name).is_some_and(|t| t.abort.id() == me) {
            timers.remove(&timer.name);
        }
    }
}

/// One firing; whether the app asked that the timer fire no more.
async fn fire(host: &Host, key: &(String, String), active: &Active, timer: &Timer) -> bool {
    let depth = host
        .types
        .get(&key.0)
        .and_then(|c| c.reentrancy)
        .unwrap_or(1);
    let Ok(_turn) = active.turns.enter(None, depth).await else {
        return false;
    };
    if !active.usable(&host.session()) {
        return false;
    }
    active.touch();
    let mut body = json!({
        "callback": timer.callback,
        "dueTime": timer.due_time,
        "period": timer.period,
    });
    if let Some(data) = &timer.data {
        body["data"] = data.clone();
    }
    let mut req = Request::new(Bytes::from(body.to_string()));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let method = format!("timer/{}", timer.name);
    let callback = super::Callback {
        actor_type: &key.0,
        id: &key.1,
        what: super::What::Method {
            method: &method,
            query: None,
        },
    };
    let result = host.call_app_within(&callback, req, None).await;
    let ok = matches!(&result, Ok(r) if r.status() == http::StatusCode::OK);
    let timers = &crate::telemetry::metrics::actors::TIMERS_FIRED;
    crate::telemetry::metrics::actors::fired(timers, &host.me.app_id, &key.0, ok);
    let cancelled = match result {
        Ok(r) if r.status() == http::StatusCode::OK => super::stream::cancels(r.headers()),
        Ok(r) => {
            tracing::warn!(actor_type = %key.0, id = %key.1, timer = %timer.name, status = r.status().as_u16(), "the app failed an actor timer");
            false
        }
        Err(e) => {
            tracing::warn!(actor_type = %key.0, id = %key.1, timer = %timer.name, error = %e, "an actor timer could not reach the app");
            false
        }
    };
    active.touch();
    cancelled
}
