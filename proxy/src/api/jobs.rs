//! The jobs API: `POST|GET|DELETE /v1.0-alpha1/jobs/{name}` (and the `v1.0` names), kept in the
//! actor state store on the same durable scheduler as reminders (`to_app::schedules`). A due
//! job goes to one instance of the app as `POST /job/{name}` with its data as the JSON body (data
//! scheduled over gRPC as another type than `google.protobuf.Value`: its bytes, spaces around
//! trimmed, as daprd sends them); a 2xx or 404 answer is done, anything else is tried again as its
//! failure policy says (by default three more times, a second apart).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderValue, Method, Request, StatusCode, header};
use outrider_blocks::actors::durable::{Entry, Every, Group, PutError};
use outrider_blocks::actors::schedule::{Firings, parse_time};
use outrider_discovery::Target;
use outrider_policy::Caller;
use serde_json::{Value, json};

use super::ApiState;
use crate::errors::ApiError;
use crate::mesh::placement::Placement;
use crate::net::http::full;
use crate::to_app::channel::AppChannel;
use crate::to_app::schedules::{Delivered, Kind};

/// A job as asked for, read from protobuf's JSON form (either field spelling).
#[derive(Debug, Default)]
pub(crate) struct JobRequest {
    pub(crate) schedule: Option<String>,
    pub(crate) repeats: Option<u32>,
    pub(crate) due_time: Option<String>,
    pub(crate) ttl: Option<String>,
    pub(crate) data: Option<Value>,
    /// Data of another type than `google.protobuf.Value` (gRPC only): its type URL and bytes.
    pub(crate) raw: Option<(String, Bytes)>,
    pub(crate) overwrite: bool,
    pub(crate) failure_policy: Option<Value>,
}

/// A stored job's data of another type than JSON: its type URL and bytes.
pub(crate) fn raw_data(entry: &Entry) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let any = entry.extra.get("any")?;
    let url = any.get("typeUrl")?.as_str()?.to_owned();
    let value = base64::engine::general_purpose::STANDARD
        .decode(any.get("value")?.as_str()?)
        .ok()?;
    Some((url, value))
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

fn schedule_failed(why: impl std::fmt::Display) -> ApiError {
    err(
        StatusCode::INTERNAL_SERVER_ERROR,
        "DAPR_SCHEDULER_SCHEDULE_JOB",
        format!("failed to schedule job due to: {why}"),
    )
}

/// The shortest pause between tries of a failed job: a constant policy without an interval
/// must not retry in a tight loop.
const MIN_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A failure policy's interval: a Go or ISO 8601 duration without calendar units.
pub(crate) fn policy_interval(i: &str) -> Result<Duration, String> {
    outrider_blocks::actors::schedule::Period::parse(i)
        .ok()
        .filter(|p| p.months == 0 && p.days == 0 && p.repetitions.is_none())
        .map(|p| p.time)
        .ok_or_else(|| format!("failure policy interval {i:?} is not a duration"))
}

/// The retry policy of a job: tries in all (`None`: until it succeeds) and the pause between
/// (at least [`MIN_RETRY_PAUSE`]).
fn policy(p: Option<&Value>) -> Result<(Option<u32>, Duration), String> {
    let Some(p) = p else {
        return Ok((Some(4), Duration::from_secs(1)));
    };
    if p.get("drop").is_some() {
        return Ok((Some(1), Duration::ZERO));
    }
    let Some(c) = p.get("constant") else {
        return Err(format!("failure policy {p} is neither drop nor constant"));
    };
    let interval = match c.get("interval") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(Value::String(i)) => policy_interval(i)?,
        Some(other) => return Err(format!("failure policy interval {other} is not a duration")),
    };
    // A whole number of retries (protobuf's JSON may quote it), or none given: without limit.
    let max = match c.get("maxRetries").or_else(|| c.get("max_retries")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            (v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!("failure policy maxRetries {v} is not a whole number of retries")
                })?,
        ),
    };
    Ok((
        max.map(|n| n.saturating_add(1)),
        interval.max(MIN_RETRY_PAUSE),
    ))
}

/// The job's first firing and how it repeats; errors in the scheduler's words.
fn firings(
    req: &JobRequest,
    now: chrono::DateTime<Utc>,
) -> Result<(Firings, Option<Every>), String> {
    if req.repeats == Some(0) {
        return Err("defined repeats must be greater than 0".into());
    }
    let due = match &req.due_time {
        Some(d) => {
            Some(parse_time(d, now).map_err(|e| format!("due time format not recognized: {e}"))?)
        }
        None => None,
    };
    let every = match req.schedule.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(match s.strip_prefix("@every ") {
            Some(d) => {
                outrider_blocks::actors::schedule::Period::parse(d.trim())?;
                Every::Interval {
                    every: d.trim().to_owned(),
                    repeats: req.repeats,
                }
            }
            None => Every::Cron {
                expr: s.to_owned(),
                repeats: req.repeats,
            },
        }),
    };
    if every.is_none() && req.repeats.is_some_and(|n| n > 1) {
        return Err("job must have a schedule to repeat".into());
    }
    let first = match (due, &every) {
        (Some(d), _) => d,
        (None, Some(Every::Interval { every, .. })) => {
            let p = outrider_blocks::actors::schedule::Period::parse(every)?;
            p.after(now)
                .ok_or("the interval is past the calendar's end")?
        }
        (None, Some(Every::Cron { expr, .. })) => {
            outrider_blocks::actors::durable::next_cron(expr, now)?
        }
        (None, _) => return Err("job must have either a due time or a schedule".into()),
    };
    let expires = match &req.ttl {
        None => None,
        Some(t) => {
            let e = parse_time(t, due.unwrap_or(now))
                .map_err(|e| format!("ttl format not recognized: {e}"))?;
            if e < first {
                return Err("ttl must be greater than due time".into());
            }
            Some(e)
        }
    };
    Ok((
        Firings {
            due: first,
            period: None,
            expires,
        },
        every,
    ))
}

fn check_job_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "DAPR_SCHEDULER_JOB_NAME_EMPTY",
            "Name is empty",
        ));
    }
    let bad = name == "."
        || name == ".."
        || name.len() > 512
        || name.contains(['/', '\\', '#', '?'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(schedule_failed(format!(
            "job failed validation: invalid job name {name:?}"
        )));
    }
    Ok(())
}

/// This app's jobs and their scheduler; without one, why (the caller's error wraps it).
fn group_of(s: &ApiState) -> Result<(Group, &Arc<crate::to_app::schedules::Scheduler>), String> {
    let scheduler = s.actors.scheduler.get().ok_or_else(|| {
        "the jobs API needs a state store with `actorStateStore: \"true\"` (jobs are kept there) and an app".to_owned()
    })?;
    Ok((Group::jobs(&s.namespace, &s.app_id), scheduler))
}

/// Schedules (or replaces) job `name`.
pub(crate) async fn schedule(s: &ApiState, name: &str, req: JobRequest) -> Result<(), ApiError> {
    check_job_name(name)?;
    if req.schedule.as_deref().is_none_or(|x| x.trim().is_empty()) && req.due_time.is_none() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "DAPR_SCHEDULER_SCHEDULE_EMPTY",
            "Schedule is empty",
        ));
    }
    policy(req.failure_policy.as_ref())
        .map_err(|e| schedule_failed(format!("job failed validation: {e}")))?;
    let (group, scheduler) = group_of(s).map_err(schedule_failed)?;
    let (f, every) = firings(&req, Utc::now())
        .map_err(|e| schedule_failed(format!("job failed validation: {e}")))?;
    let mut entry = Entry::new(name.to_owned(), &f, "");
    entry.every = every;
    entry.data = req.data;
    entry.due_time = req.due_time.clone().unwrap_or_default();
    entry.ttl = req.ttl.clone().unwrap_or_default();
    entry.extra = json!({"schedule": req.schedule, "repeats": req.repeats, "failurePolicy": req.failure_policy});
    if let Some((url, value)) = &req.raw {
        use base64::Engine as _;
        let value = base64::engine::general_purpose::STANDARD.encode(value);
        entry.extra["any"] = json!({"typeUrl": url, "value": value});
    }
    match scheduler
        .schedules()
        .put(&group, &entry, req.overwrite)
        .await
    {
        Ok(()) => {
            scheduler.changed(&group, name);
            Ok(())
        }
        Err(PutError::Exists) => Err(err(
            StatusCode::CONFLICT,
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            format!("failed to schedule job due to: job already exists: '{name}'"),
        )),
        Err(PutError::Store(e)) => Err(schedule_failed(e)),
    }
}

/// Reads job `name` as stored.
pub(crate) async fn get_entry(s: &ApiState, name: &str) -> Result<Entry, ApiError> {
    let failed = |why: String| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DAPR_SCHEDULER_GET_JOB",
            format!("failed to get job due to: {why}"),
        )
    };
    if name.trim().is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "DAPR_SCHEDULER_JOB_NAME_EMPTY",
            "Name is empty",
        ));
    }
    let (group, scheduler) = group_of(s).map_err(failed)?;
    let entry = scheduler
        .schedules()
        .get(&group, name)
        .await
        .map_err(|e| failed(e.to_string()))?;
    entry.ok_or_else(|| failed(format!("job not found: {name}")))
}

/// The failure policy a job is shown with: the one given, else the default.
pub(crate) fn shown_policy(entry: &Entry) -> Value {
    match entry.extra.get("failurePolicy").filter(|v| !v.is_null()) {
        Some(p) => p.clone(),
        None => json!({"constant": {"interval": "1s", "maxRetries": 3}}),
    }
}

/// Reads job `name`, as daprd shows it.
pub(crate) async fn get(s: &ApiState, name: &str) -> Result<Value, ApiError> {
    let entry = get_entry(s, name).await?;
    let mut out = json!({"name": name});
    for field in ["schedule", "repeats"] {
        if let Some(v) = entry.extra.get(field).filter(|v| !v.is_null()) {
            out[field] = v.clone();
        }
    }
    if !entry.due_time.is_empty() {
        out["dueTime"] = json!(entry.due_time);
    }
    if !entry.ttl.is_empty() {
        out["ttl"] = json!(entry.ttl);
    }
    if let Some((url, value)) = raw_data(&entry) {
        use base64::Engine as _;
        let value = base64::engine::general_purpose::STANDARD.encode(value);
        out["data"] = json!({"@type": url, "value": value});
    } else if let Some(d) = &entry.data {
        out["data"] = json!({"@type": "type.googleapis.com/google.protobuf.Value", "value": d});
    }
    out["failurePolicy"] = shown_policy(&entry);
    Ok(out)
}

/// Deletes job `name`; absent is fine.
pub(crate) async fn delete(s: &ApiState, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "DAPR_SCHEDULER_JOB_NAME_EMPTY",
            "Name is empty",
        ));
    }
    let failed = |why: String| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DAPR_SCHEDULER_DELETE_JOB",
            format!("failed to delete job due to: {why}"),
        )
    };
    let (group, scheduler) = group_of(s).map_err(failed)?;
    scheduler
        .schedules()
        .delete(&group, name)
        .await
        .map_err(|e| failed(e.to_string()))?;
    scheduler.changed(&group, name);
    Ok(())
}

/// A job's data as the `Any` it was given (JSON data as a `google.protobuf.Value`).
pub(crate) fn job_any(entry: &Entry) -> Option<prost_types::Any> {
    use prost::Message as _;
    match (raw_data(entry), &entry.data) {
        (Some((type_url, value)), _) => Some(prost_types::Any { type_url, value }),
        (None, Some(v)) => Some(prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.Value".to_owned(),
            value: crate::to_app::channel::grpc::translate::proto_value(v.clone()).encode_to_vec(),
        }),
        (None, None) => None,
    }
}

/// `bytes` without the white space (Unicode's, as Go's `bytes.TrimSpace` counts it) at either
/// end; bytes that are not UTF-8 are not space.
fn go_trim_space(bytes: &[u8]) -> &[u8] {
    let mut chunks = bytes.utf8_chunks();
    let start = chunks
        .next()
        .map_or(0, |c| c.valid().len() - c.valid().trim_start().len());
    let end = match bytes.utf8_chunks().last() {
        Some(c) if c.invalid().is_empty() => {
            bytes.len() - (c.valid().len() - c.valid().trim_end().len())
        }
        _ => bytes.len(),
    };
    bytes.get(start..end).unwrap_or_default()
}

/// This app's jobs, as the scheduler fires them.
pub(crate) struct Jobs {
    pub(crate) app: AppChannel,
    pub(crate) me: Caller,
    pub(crate) placement: Arc<Placement>,
}

impl Kind for Jobs {
    fn owns(&self, id: &str) -> bool {
        let app = Target::new(self.me.app_id.clone(), self.me.namespace.clone());
        self.placement.owns_job(&app, id)
    }

    fn deliver(&self, entry: Entry) -> futures_util::future::BoxFuture<'static, Delivered> {
        let (app, me) = (self.app.clone(), self.me.clone());
        Box::pin(async move {
            deliver(&app, &me, entry).await;
            Delivered::Done
        })
    }
}

async fn deliver(app: &AppChannel, me: &Caller, entry: Entry) {
    let (tries, pause) = policy(entry.extra.get("failurePolicy").filter(|v| !v.is_null()))
        .unwrap_or((Some(4), Duration::from_secs(1)));
    let body = match (raw_data(&entry), &entry.data) {
        // As daprd sends it: the serialized bytes, spaces trimmed at both ends.
        (Some((_, bytes)), _) => Bytes::copy_from_slice(go_trim_space(&bytes)),
        (None, None | Some(Value::Null)) => Bytes::new(),
        (None, Some(d)) => Bytes::from(d.to_string()),
    };
    let path = format!("/job/{}", crate::to_app::actors::segment(&entry.id));
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut req = Request::new(full(body.clone()));
        // A gRPC app takes the job as `OnJobEvent`, with its data as stored.
        if app.speaks_grpc() {
            req.extensions_mut()
                .insert(crate::to_app::channel::grpc::JobDelivery {
                    name: entry.id.clone(),
                    data: job_any(&entry),
                });
        }
        *req.method_mut() = Method::POST;
        *req.uri_mut() = path.parse().expect("an escaped name makes a valid path");
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let status = app.invoke(req, me).await.map(|r| r.status());
        match status {
            Ok(s) if s.is_success() || s == StatusCode::NOT_FOUND => return,
            Ok(s) => {
                tracing::warn!(job = %entry.id, status = s.as_u16(), attempt, "the app failed a job")
            }
            Err(e) => {
                tracing::warn!(job = %entry.id, error = %e, attempt, "a job could not reach the app")
            }
        }
        if tries.is_some_and(|n| attempt >= n) {
            tracing::warn!(job = %entry.id, attempt, "a job's firing was given up");
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_data_is_trimmed_as_go_trims_space() {
        assert_eq!(go_trim_space(b"\n\x02hi"), b"\x02hi");
        assert_eq!(go_trim_space(b"\n\x0bhello world \t"), b"hello world");
        assert_eq!(go_trim_space("\u{a0}x\u{85}".as_bytes()), b"x");
        assert_eq!(
            go_trim_space(b" \xff "),
            b"\xff",
            "a byte that is not UTF-8 is not space"
        );
        assert_eq!(go_trim_space(b" \t\n"), b"");
        assert_eq!(go_trim_space(b""), b"");
    }

    #[test]
    fn failure_policies_never_spin_and_refuse_what_they_cannot_read() {
        let p = |v: Value| policy(Some(&v));
        assert_eq!(policy(None), Ok((Some(4), Duration::from_secs(1))));
        assert_eq!(p(json!({"constant": {}})), Ok((None, MIN_RETRY_PAUSE)));
        assert_eq!(
            p(json!({"constant": {"interval": "2s", "maxRetries": "3"}})),
            Ok((Some(4), Duration::from_secs(2)))
        );
        for bad in [json!(-1), json!(2.5), json!("x"), json!(u64::MAX)] {
            let e = p(json!({"constant": {"maxRetries": bad}})).unwrap_err();
            assert!(e.contains("maxRetries"), "{e}");
        }
        assert!(p(json!({"constant": {"interval": 5}})).is_err());
        assert!(p(json!({"sometimes": {}})).is_err());
    }
}
