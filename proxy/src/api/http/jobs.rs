//! The HTTP codec of the jobs API: `POST /v1.0[-alpha1]/jobs/{name}` with `{schedule, repeats,
//! dueTime, ttl, data, overwrite, failurePolicy}` (protobuf's JSON mapping: either field
//! spelling) → 204; `GET` → the job as JSON; `DELETE` → 204.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::protojson::Message;
use crate::api::ApiState;
use crate::api::jobs::{self, JobRequest};
use crate::errors::ApiError;
use crate::net::http::Body;

pub(in crate::api) async fn job(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let name = name.trim();
    match *req.method() {
        http::Method::GET => Ok(super::json_response(&jobs::get(s, name).await?)),
        http::Method::DELETE => {
            jobs::delete(s, name).await?;
            Ok(super::no_content())
        }
        _ => {
            let body = super::body::read_body(s, req, u64::MAX).await?;
            let m = Message::parse(&body)?;
            if m.optional_string("name", "name")?.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "DAPR_SCHEDULER_JOB_NAME",
                    "Set the job name in the url only",
                ));
            }
            let req = JobRequest {
                schedule: m.optional_string("schedule", "schedule")?,
                repeats: m.optional_uint32("repeats", "repeats")?,
                due_time: m.optional_string("dueTime", "due_time")?,
                ttl: m.optional_string("ttl", "ttl")?,
                data: m.value("data", "data"),
                raw: None,
                overwrite: m.bool("overwrite", "overwrite")?,
                failure_policy: m.value("failurePolicy", "failure_policy"),
            };
            jobs::schedule(s, name, req).await?;
            Ok(super::no_content())
        }
    }
}
