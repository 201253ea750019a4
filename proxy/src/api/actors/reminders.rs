//! Actor reminders: durable, in the actor state store, fired on whichever host owns the actor
//! (`to_app::schedules`). `POST|PUT /v1.0/actors/{type}/{id}/reminders/{name}` with `{dueTime,
//! period, ttl, data, overwrite}`, `GET` (404 when absent) and `DELETE` (204 either way), through
//! a sidecar whose app hosts the type, with daprd's codes. A firing calls the actor's
//! `remind/{name}` method with `{data, dueTime, period}` in its turn, activating it if needed;
//! a failed one is tried three times more, a second apart, then given up. An answer marked
//! `X-DaprReminderCancel: true` (daprd's header) deletes the reminder.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderValue, Method, Request, StatusCode, header};
use outrider_blocks::actors::durable::{Entry, Group, PutError};
use outrider_blocks::actors::schedule::Firings;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Actors, MethodCall, check_name, timers::malformed};
use crate::errors::ApiError;
use crate::mesh::placement::Owner;
use crate::to_app::schedules::{Delivered, Kind};

/// Tries of a failing reminder firing (daprd: one, then three retries).
const TRIES: u32 = 4;
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReminderBody {
    #[serde(default)]
    due_time: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    ttl: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    overwrite: Option<bool>,
}

fn error(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError::new(status, code, message)
}

/// The reminders of `actor_type`, when this sidecar's app hosts it.
fn group_of(a: &Actors, actor_type: &str, actor_id: &str) -> Result<Group, ApiError> {
    check_name("actorType", actor_type)?;
    check_name("actorId", actor_id)?;
    let hosted = a.host().is_some_and(|h| h.types().contains_key(actor_type));
    if !hosted || a.scheduler.get().is_none() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "ERR_ACTOR_REMINDER_NON_HOSTED",
            "operations on actor reminders are only possible on hosted actor types".into(),
        ));
    }
    Ok(a.reminder_group(actor_type))
}

fn entry_id(actor_id: &str, name: &str) -> String {
    format!("{actor_id}||{name}")
}

/// Makes (or replaces) a reminder.
pub(crate) async fn create_reminder(
    a: &Actors,
    actor_type: &str,
    actor_id: &str,
    name: &str,
    body: &Bytes,
) -> Result<(), ApiError> {
    let req: ReminderBody = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    check_name("reminder name", name)?;
    let group = group_of(a, actor_type, actor_id)?;
    let failed = |why: String| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_ACTOR_REMINDER_CREATE",
            format!("error creating actor reminder: {why}"),
        )
    };
    let firings = Firings::from_request(&req.due_time, &req.period, &req.ttl, Utc::now(), false)
        .map_err(|e| failed(e.to_string()))?;
    let mut entry = Entry::new(entry_id(actor_id, name), &firings, &req.period);
    entry.data = req.data;
    entry.due_time = req.due_time;
    entry.ttl = req.ttl;
    let scheduler = a
        .scheduler
        .get()
        .ok_or_else(|| failed("no scheduler".into()))?;
    match scheduler
        .schedules()
        .put(&group, &entry, req.overwrite.unwrap_or(true))
        .await
    {
        Ok(()) => {
            scheduler.changed(&group, &entry.id);
            Ok(())
        }
        Err(PutError::Exists) => Err(error(
            StatusCode::CONFLICT,
            "ERR_ACTOR_REMINDER_ALREADY_EXISTS",
            format!("actor reminder already exists: {name}"),
        )),
        Err(PutError::Store(e)) => Err(failed(e.to_string())),
    }
}

/// Reads a reminder: daprd's fields, as they were given.
pub(crate) async fn get_reminder(
    a: &Actors,
    actor_type: &str,
    actor_id: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let group = group_of(a, actor_type, actor_id)?;
    let scheduler = a.scheduler.get().expect("checked by group_of");
    let entry = scheduler
        .schedules()
        .get(&group, &entry_id(actor_id, name))
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_ACTOR_REMINDER_GET",
                format!("error getting actor reminder: {e}"),
            )
        })?
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "ERR_ACTOR_REMINDER_NOT_FOUND",
                format!("actor reminder not found: {name}"),
            )
        })?;
    let mut out = json!({"actorID": actor_id, "actorType": actor_type});
    if let Some(d) = entry.data {
        out["data"] = d;
    }
    for (field, v) in [
        ("dueTime", entry.due_time),
        ("period", entry.period),
        ("ttl", entry.ttl),
    ] {
        if !v.is_empty() {
            out[field] = json!(v);
        }
    }
    Ok(out)
}

/// Deletes a reminder; absent is fine.
pub(crate) async fn delete_reminder(
    a: &Actors,
    actor_type: &str,
    actor_id: &str,
    name: &str,
) -> Result<(), ApiError> {
    let group = group_of(a, actor_type, actor_id)?;
    let scheduler = a.scheduler.get().expect("checked by group_of");
    let id = entry_id(actor_id, name);
    scheduler
        .schedules()
        .delete(&group, &id)
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_ACTOR_REMINDER_DELETE",
                format!("error deleting actor reminder: {e}"),
            )
        })?;
    scheduler.changed(&group, &id);
    Ok(())
}

/// The reminders of one hosted type, as the scheduler fires them.
pub(crate) struct Reminders {
    pub(crate) actors: Weak<Actors>,
    pub(crate) actor_type: String,
}

impl Kind for Reminders {
    fn owns(&self, id: &str) -> bool {
        let (Some(actors), Some((actor_id, _))) = (self.actors.upgrade(), id.split_once("||"))
        else {
            return false;
        };
        // A gRPC app away from its actor event stream: its reminders wait for it.
        if actors.host().is_some_and(|h| h.app_away()) {
            return false;
        }
        actors.placement.owner(&self.actor_type, actor_id) == Some(Owner::Me)
    }

    fn deliver(&self, entry: Entry) -> futures_util::future::BoxFuture<'static, Delivered> {
        let (actors, actor_type) = (self.actors.clone(), self.actor_type.clone());
        Box::pin(async move {
            let Some(actors) = actors.upgrade() else {
                return Delivered::Done;
            };
            remind(&actors, &actor_type, entry).await
        })
    }
}

/// One reminder firing, tried again as daprd does; cancelled when the app's answer says so.
async fn remind(actors: &Arc<Actors>, actor_type: &str, entry: Entry) -> Delivered {
    let Some((actor_id, name)) = entry.id.split_once("||") else {
        return Delivered::Done;
    };
    let mut body = json!({"dueTime": entry.due_time, "period": entry.period});
    if let Some(d) = &entry.data {
        body["data"] = d.clone();
    }
    let body = Bytes::from(body.to_string());
    let app_id = actors.app_id.clone();
    for attempt in 1..=TRIES {
        let mut req = Request::new(body.clone());
        *req.method_mut() = Method::PUT;
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let call = MethodCall {
            actor_type: actor_type.to_owned(),
            id: actor_id.to_owned(),
            method: format!("remind/{name}"),
            req,
        };
        let answer = actors.fire(call).await;
        let ok = matches!(&answer, Ok(r) if r.status() == StatusCode::OK);
        let fired = &crate::telemetry::metrics::actors::REMINDERS_FIRED;
        crate::telemetry::metrics::actors::fired(fired, &app_id, actor_type, ok);
        if ok {
            return if answer.is_ok_and(|r| crate::to_app::actors::stream::cancels(r.headers())) {
                tracing::info!(
                    actor_type,
                    actor_id,
                    reminder = name,
                    "the app cancelled a reminder"
                );
                Delivered::Cancelled
            } else {
                Delivered::Done
            };
        }
        tracing::warn!(
            actor_type,
            actor_id,
            reminder = name,
            attempt,
            "a reminder firing failed"
        );
        if attempt < TRIES {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Delivered::Done
}
