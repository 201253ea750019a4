//! The gRPC codec of actors: `InvokeActor`, `GetActorState`, `ExecuteActorStateTransaction`,
//! `RegisterActorTimer`/`UnregisterActorTimer`, `RegisterActorReminder`/
//! `UnregisterActorReminder`/`GetActorReminder`, over the operations of [`crate::api::actors`].
//! Timer and reminder `data` is bytes here: JSON bytes are passed on as that JSON, anything
//! else as a base64 string.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use outrider_proto::runtime::v1 as rt;
use serde_json::{Value, json};
use tonic::Status;

use super::status::from_api;
use crate::api::ApiState;
use crate::api::actors::{self, ActorStateOp, MethodCall};

pub(super) async fn invoke(
    s: &ApiState,
    req: rt::InvokeActorRequest,
) -> Result<rt::InvokeActorResponse, Status> {
    let mut call = Request::new(req.data);
    *call.method_mut() = Method::PUT;
    for (k, v) in &req.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            call.headers_mut().append(name, value);
        }
    }
    let call = MethodCall {
        actor_type: req.actor_type,
        id: req.actor_id,
        method: req.method,
        req: call,
    };
    let rsp = s.actors.invoke(call, None).await.map_err(from_api)?;
    let data = crate::net::http::collect_within(
        rsp.into_body(),
        usize::try_from(s.max_body_size).unwrap_or(usize::MAX),
    )
    .await
    .map_err(|e| Status::internal(format!("error invoke actor method: {e}")))?;
    Ok(rt::InvokeActorResponse { data })
}

pub(super) async fn get_state(
    s: &ApiState,
    req: &rt::GetActorStateRequest,
) -> Result<rt::GetActorStateResponse, Status> {
    let item = actors::read_state(&s.actors, &req.actor_type, &req.actor_id, &req.key)
        .await
        .map_err(from_api)?;
    Ok(match item {
        Some(i) => rt::GetActorStateResponse {
            data: i.data,
            metadata: i.metadata.into_iter().collect(),
        },
        None => rt::GetActorStateResponse::default(),
    })
}

pub(super) async fn transaction(
    s: &ApiState,
    req: rt::ExecuteActorStateTransactionRequest,
) -> Result<(), Status> {
    let ops = req
        .operations
        .into_iter()
        .map(|op| match op.operation_type.as_str() {
            "upsert" => Ok(ActorStateOp::Upsert {
                key: op.key,
                value: Bytes::from(op.value.map(|v| v.value).unwrap_or_default()),
                etag: None,
                metadata: op.metadata.into_iter().collect(),
            }),
            "delete" => Ok(ActorStateOp::Delete {
                key: op.key,
                etag: None,
            }),
            other => Err(from_api(actors::transaction_error(format!(
                "operation type {other} not supported"
            )))),
        })
        .collect::<Result<Vec<_>, Status>>()?;
    actors::transaction(&s.actors, &req.actor_type, &req.actor_id, ops)
        .await
        .map_err(from_api)
}

/// Timer or reminder data as the HTTP API keeps it: daprd JSON-encodes the request's bytes, so
/// they are a base64 string whatever they hold (the SDKs decode it so). None when empty.
fn data_json(data: &[u8]) -> Option<Value> {
    (!data.is_empty())
        .then(|| Value::String(base64::engine::general_purpose::STANDARD.encode(data)))
}

fn body(fields: Value, data: &[u8]) -> Bytes {
    let mut fields = fields;
    if let Some(d) = data_json(data) {
        fields["data"] = d;
    }
    Bytes::from(fields.to_string())
}

pub(super) async fn register_timer(
    s: &ApiState,
    r: &rt::RegisterActorTimerRequest,
) -> Result<(), Status> {
    let b = body(
        json!({"dueTime": r.due_time, "period": r.period, "ttl": r.ttl, "callback": r.callback}),
        &r.data,
    );
    actors::create_timer(&s.actors, &r.actor_type, &r.actor_id, &r.name, &b)
        .await
        .map_err(from_api)
}

pub(super) fn unregister_timer(
    s: &ApiState,
    r: &rt::UnregisterActorTimerRequest,
) -> Result<(), Status> {
    actors::delete_timer(&s.actors, &r.actor_type, &r.actor_id, &r.name).map_err(from_api)
}

pub(super) async fn register_reminder(
    s: &ApiState,
    r: &rt::RegisterActorReminderRequest,
) -> Result<(), Status> {
    let mut fields = json!({"dueTime": r.due_time, "period": r.period, "ttl": r.ttl});
    if let Some(o) = r.overwrite {
        fields["overwrite"] = json!(o);
    }
    let b = body(fields, &r.data);
    actors::create_reminder(&s.actors, &r.actor_type, &r.actor_id, &r.name, &b)
        .await
        .map_err(from_api)
}

pub(super) async fn unregister_reminder(
    s: &ApiState,
    r: &rt::UnregisterActorReminderRequest,
) -> Result<(), Status> {
    actors::delete_reminder(&s.actors, &r.actor_type, &r.actor_id, &r.name)
        .await
        .map_err(from_api)
}

pub(super) async fn get_reminder(
    s: &ApiState,
    r: &rt::GetActorReminderRequest,
) -> Result<rt::GetActorReminderResponse, Status> {
    let v = actors::get_reminder(&s.actors, &r.actor_type, &r.actor_id, &r.name)
        .await
        .map_err(from_api)?;
    let text = |f: &str| v.get(f).and_then(Value::as_str).map(str::to_owned);
    Ok(rt::GetActorReminderResponse {
        actor_type: r.actor_type.clone(),
        actor_id: r.actor_id.clone(),
        due_time: text("dueTime"),
        period: text("period"),
        ttl: text("ttl"),
        data: v.get("data").map(|d| prost_types::Any {
            type_url: String::new(),
            value: d.to_string().into_bytes(),
        }),
    })
}
