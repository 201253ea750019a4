//! Actor timers, the caller's side: `POST|PUT /v1.0/actors/{type}/{id}/timers/{name}` with
//! `{dueTime, period, ttl, callback, data}` registers a timer on this host (which must host the
//! type; the actor is activated here), `DELETE` removes it (204 whether or not it existed).

use bytes::Bytes;
use chrono::Utc;
use http::StatusCode;
use outrider_blocks::actors::schedule::Firings;
use serde::Deserialize;

use super::{Actors, check_name};
use crate::errors::ApiError;
use crate::to_app::actors::HostError;
use crate::to_app::actors::timers::Timer;

/// A timer as the caller sends it: every time field a JSON string, as daprd reads them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimerBody {
    #[serde(default)]
    due_time: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    ttl: String,
    #[serde(default)]
    callback: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

pub(super) fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ERR_MALFORMED_REQUEST",
        format!("failed deserializing HTTP body: {e}"),
    )
}

fn create_error(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_ACTOR_TIMER_CREATE",
        format!("error creating actor timer: {why}"),
    )
}

/// Registers a timer.
pub(crate) async fn create_timer(
    a: &Actors,
    actor_type: &str,
    id: &str,
    name: &str,
    body: &Bytes,
) -> Result<(), ApiError> {
    let req: TimerBody = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    check_name("timer name", name)?;
    check_name("actorType", actor_type)?;
    check_name("actorId", id)?;
    let Some(host) = a.host().filter(|h| h.types().contains_key(actor_type)) else {
        return Err(create_error(format!(
            "can't create timer for actor {actor_type}||{id}: actor type not registered"
        )));
    };
    let firings = Firings::from_request(&req.due_time, &req.period, &req.ttl, Utc::now(), true)
        .map_err(|e| create_error(format!("timer {actor_type}||{id}||{name}: {e}")))?;
    let timer = Timer {
        name: name.to_owned(),
        callback: req.callback,
        data: req.data,
        due_time: req.due_time,
        period: req.period,
        firings,
    };
    match host.register_timer(actor_type, id, timer).await {
        Ok(()) => Ok(()),
        Err(HostError::Elsewhere(h)) => Err(create_error(format!(
            "actor {actor_type}||{id} is active on the host at {}; its timers are made there",
            h.address
        ))),
        Err(e) => Err(create_error(e)),
    }
}

/// Removes a timer; absent is fine.
pub(crate) fn delete_timer(
    a: &Actors,
    actor_type: &str,
    id: &str,
    name: &str,
) -> Result<(), ApiError> {
    check_name("actorType", actor_type)?;
    check_name("actorId", id)?;
    if let Some(host) = a.host() {
        host.delete_timer(actor_type, id, name);
    }
    Ok(())
}
