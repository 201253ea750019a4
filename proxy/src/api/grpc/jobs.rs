//! The gRPC codec of the jobs API: `ScheduleJob`, `GetJob` and `DeleteJob`, and their `Alpha1`
//! names, over [`crate::api::jobs`]. A job's `data` of type `google.protobuf.Value` is kept as
//! the JSON it holds (what the HTTP API keeps, so either API reads what the other wrote); data of
//! any other type is kept as given and handed back as given.

use std::time::Duration;

use bytes::Bytes;
use outrider_proto::common::v1 as common;
use outrider_proto::runtime::v1 as rt;
use prost::Message as _;
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
            let bad = |why: String| {
                invalid(
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    &format!("failed to schedule job due to: {why}"),
                )
            };
            let v = prost_types::Value::decode(any.value.as_slice())
                .map_err(|e| bad(format!("data is not a google.protobuf.Value: {e}")))?;
            (Some(json_value(v).map_err(bad)?), None)
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
        failure_policy: match job.failure_policy {
            Some(p) => policy_json(&p).map_err(|e| {
                invalid(
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    &format!("failed to schedule job due to: job failed validation: {e}"),
                )
            })?,
            None => None,
        },
    };
    jobs::schedule(s, &job.name, req).await.map_err(from_api)
}

pub(super) async fn get(
    s: &ApiState,
    req: &rt::GetJobRequest,
) -> Result<rt::GetJobResponse, Status> {
    let entry = jobs::get_entry(s, &req.name).await.map_err(from_api)?;
    let extra = |k: &str| entry.extra.get(k).filter(|v| !v.is_null());
    let data = jobs::job_any(&entry);
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
fn policy_json(p: &common::JobFailurePolicy) -> Result<Option<Value>, String> {
    use common::job_failure_policy::Policy;
    let Some(policy) = p.policy else {
        return Ok(None);
    };
    Ok(Some(match policy {
        Policy::Drop(_) => json!({"drop": {}}),
        Policy::Constant(c) => {
            let mut constant = json!({});
            if let Some(i) = c.interval {
                let nanos = i128::from(i.seconds) * 1_000_000_000 + i128::from(i.nanos);
                if nanos < 0 {
                    return Err(format!(
                        "failure policy interval {}s{}ns is negative",
                        i.seconds, i.nanos
                    ));
                }
                // The largest unit that writes it exactly.
                let text = match nanos {
                    n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
                    n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
                    n => format!("{n}ns"),
                };
                constant["interval"] = json!(text);
            }
            if let Some(n) = c.max_retries {
                constant["maxRetries"] = json!(n);
            }
            json!({"constant": constant})
        }
    }))
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
            .and_then(|i| jobs::policy_interval(i).ok())
            .unwrap_or(Duration::ZERO);
        Policy::Constant(common::JobFailurePolicyConstant {
            interval: Some(prost_types::Duration {
                seconds: i64::try_from(interval.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(interval.subsec_nanos()).unwrap_or(0),
            }),
            max_retries: (c.get("maxRetries").or_else(|| c.get("max_retries")))
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
                .and_then(|n| u32::try_from(n).ok()),
        })
    };
    common::JobFailurePolicy {
        policy: Some(policy),
    }
}

/// A `google.protobuf.Value` as the JSON it holds: a whole number as an integer (as protobuf's
/// JSON writes it), NaN and infinities refused (JSON has none).
fn json_value(v: prost_types::Value) -> Result<Value, String> {
    /// The largest integer a double holds exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) if !n.is_finite() => {
            return Err(format!("data holds the number {n}, which JSON cannot"));
        }
        #[allow(clippy::cast_possible_truncation)]
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() <= EXACT => json!(n as i64),
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(l)) => Value::Array(
            (l.values.into_iter())
                .map(json_value)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Value::Object(
            (s.fields.into_iter())
                .map(|(k, v)| Ok((k, json_value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_policies_go_both_ways() {
        let v = json!({"a": [1.5, "x", true, null, 1, -7], "b": {"c": "d"}});
        let proto = crate::to_app::channel::grpc::translate::proto_value(v.clone());
        assert_eq!(json_value(proto), Ok(v), "whole numbers stay integers");
        let nan = prost_types::Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        assert!(json_value(nan).is_err());
        for (given, read) in [
            (json!({"drop": {}}), json!({"drop": {}})),
            (
                json!({"constant": {"interval": "1500ms", "maxRetries": 2}}),
                json!({"constant": {"interval": "1500ms", "maxRetries": 2}}),
            ),
            (
                json!({"constant": {"interval": "PT5S"}}),
                json!({"constant": {"interval": "5s"}}),
            ),
        ] {
            let back = policy_json(&policy_proto(&given)).unwrap().unwrap();
            assert_eq!(back, read, "{given}");
        }
        let no_policy = common::JobFailurePolicy { policy: None };
        assert_eq!(policy_json(&no_policy), Ok(None));
        let negative = common::JobFailurePolicy {
            policy: Some(common::job_failure_policy::Policy::Constant(
                common::JobFailurePolicyConstant {
                    interval: Some(prost_types::Duration {
                        seconds: -1,
                        nanos: 0,
                    }),
                    max_retries: None,
                },
            )),
        };
        assert!(policy_json(&negative).is_err());
        let huge = prost_types::Duration {
            seconds: i64::MAX,
            nanos: 999_999_999,
        };
        let huge = common::JobFailurePolicy {
            policy: Some(common::job_failure_policy::Policy::Constant(
                common::JobFailurePolicyConstant {
                    interval: Some(huge),
                    max_retries: Some(1),
                },
            )),
        };
        assert!(policy_json(&huge).is_ok(), "no overflow");
    }
}
