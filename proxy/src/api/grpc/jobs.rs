//! The gRPC codec of the jobs API: `ScheduleJob`, `GetJob` and `DeleteJob`, and their `Alpha1`
//! names, over [`crate::api::jobs`]. A job's `data` of type `google.protobuf.Value` is kept as
//! the JSON it holds (what the HTTP API keeps, so either API reads what the other wrote); data of
//! any other type is kept as given and handed back as given.

use std::time::Duration;

use bytes::Bytes;
use outrider_proto::common::v1 as common;
use outrider_proto::runtime::v1 as rt;
use prost::Message as _;
use prost_types::Any;
use prost_types::value::Kind;
use serde_json::{Value, json};
use tonic::Status;

use super::status::from_api;
use crate::api::ApiState;
use crate::api::jobs::{self, JobRequest};
use crate::errors::ApiError;

const VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.Value";

fn invalid(code: &'static str, message: &str) -> Status {
    from_api(ApiError::new(http::StatusCode::BAD_REQUEST, code, message))
}

pub(super) async fn schedule(s: &ApiState, req: rt::ScheduleJobRequest) -> Result<(), Status> {
    let job = req
        .job
        .ok_or_else(|| invalid("DAPR_SCHEDULER_EMPTY", "Job is empty"))?;
    if job.name.trim().is_empty() {
        return Err(invalid("DAPR_SCHEDULER_JOB_NAME_EMPTY", "Name is empty"));
    }
    let (data, raw) = match job.data {
        None => (None, None),
        Some(any) if any.type_url.is_empty() && any.value.is_empty() => (None, None),
        Some(any) if any.type_url == VALUE_TYPE => {
            let v = prost_types::Value::decode(any.value.as_slice()).map_err(|e| {
                invalid(
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    &format!(
                        "failed to schedule job due to: data is not a google.protobuf.Value: {e}"
                    ),
                )
            })?;
            (Some(json_value(v)), None)
        }
        Some(any) => (None, Some((any.type_url, Bytes::from(any.value)))),
    };
    let req = JobRequest {
        schedule: job.schedule,
        repeats: job.repeats,
        due_time: job.due_time,
        ttl: job.ttl,
        data,
        raw,
        overwrite: req.overwrite,
        failure_policy: job.failure_policy.and_then(|p| policy_json(&p)),
    };
    jobs::schedule(s, &job.name, req).await.map_err(from_api)
}

pub(super) async fn get(
    s: &ApiState,
    req: &rt::GetJobRequest,
) -> Result<rt::GetJobResponse, Status> {
    let entry = jobs::get_entry(s, &req.name).await.map_err(from_api)?;
    let extra = |k: &str| entry.extra.get(k).filter(|v| !v.is_null());
    let data = match (jobs::raw_data(&entry), &entry.data) {
        (Some((type_url, value)), _) => Some(Any { type_url, value }),
        (None, Some(v)) => Some(Any {
            type_url: VALUE_TYPE.to_owned(),
            value: crate::to_app::channel::grpc::translate::proto_value(v.clone()).encode_to_vec(),
        }),
        (None, None) => None,
    };
    let job = rt::Job {
        name: req.name.clone(),
        schedule: extra("schedule").and_then(Value::as_str).map(str::to_owned),
        repeats: extra("repeats")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        due_time: Some(entry.due_time.clone()).filter(|d| !d.is_empty()),
        ttl: Some(entry.ttl.clone()).filter(|t| !t.is_empty()),
        data,
        failure_policy: Some(policy_proto(&jobs::shown_policy(&entry))),
    };
    Ok(rt::GetJobResponse { job: Some(job) })
}

pub(super) async fn delete(s: &ApiState, req: &rt::DeleteJobRequest) -> Result<(), Status> {
    jobs::delete(s, &req.name).await.map_err(from_api)
}

/// A failure policy in the JSON form the HTTP API takes; `None` for a policy that names none.
fn policy_json(p: &common::JobFailurePolicy) -> Option<Value> {
    use common::job_failure_policy::Policy;
    Some(match p.policy? {
        Policy::Drop(_) => json!({"drop": {}}),
        Policy::Constant(c) => {
            let mut constant = json!({});
            if let Some(i) = c.interval {
                let ms = i64::from(i.nanos) / 1_000_000 + i.seconds.saturating_mul(1000);
                constant["interval"] = json!(format!("{ms}ms"));
            }
            if let Some(n) = c.max_retries {
                constant["maxRetries"] = json!(n);
            }
            json!({"constant": constant})
        }
    })
}

/// The JSON form of a failure policy as the gRPC API shows it.
fn policy_proto(p: &Value) -> common::JobFailurePolicy {
    use common::job_failure_policy::Policy;
    let policy = if p.get("drop").is_some() {
        Policy::Drop(common::JobFailurePolicyDrop {})
    } else {
        let c = &p["constant"];
        let interval = c["interval"]
            .as_str()
            .and_then(outrider_filters::duration::go_duration)
            .unwrap_or(Duration::ZERO);
        Policy::Constant(common::JobFailurePolicyConstant {
            interval: Some(prost_types::Duration {
                seconds: i64::try_from(interval.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(interval.subsec_nanos()).unwrap_or(0),
            }),
            max_retries: (c.get("maxRetries").or_else(|| c.get("max_retries")))
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
        })
    };
    common::JobFailurePolicy {
        policy: Some(policy),
    }
}

/// A `google.protobuf.Value` as the JSON it holds.
fn json_value(v: prost_types::Value) -> Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(json_value).collect()),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, json_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_policies_go_both_ways() {
        let v = json!({"a": [1.5, "x", true, null], "b": {"c": "d"}});
        let proto = crate::to_app::channel::grpc::translate::proto_value(v.clone());
        assert_eq!(json_value(proto), v);
        for p in [
            json!({"drop": {}}),
            json!({"constant": {"interval": "1500ms", "maxRetries": 2}}),
        ] {
            let back = policy_json(&policy_proto(&p)).unwrap();
            assert_eq!(back, p, "{p}");
        }
        let no_policy = common::JobFailurePolicy { policy: None };
        assert_eq!(policy_json(&no_policy), None);
    }
}
