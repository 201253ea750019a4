//! The HTTP codec of actors: `/v1.0/actors/{type}/{id}/method/{method}` (any verb; the caller's
//! query, headers and body go to the actor, its answer comes back as the app gave it),
//! `…/state/{key}` and `…/state` (a JSON array of `{operation, request}`), as daprd writes
//! them. Timers and reminders answer 501 until they land.

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::api::ApiState;
use crate::api::actors::{self, ActorStateOp, MethodCall};
use crate::errors::ApiError;
use crate::net::http::Body;

use super::route::Params;

pub(in crate::api) async fn method(
    s: &ApiState,
    p: Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let req = super::body::read_request(req, s.max_body_size, s.body_idle_timeout).await?;
    let call = MethodCall {
        actor_type: p.store,
        id: p.id,
        method: p.key,
        req,
    };
    s.actors.invoke(call, None).await
}

/// `GET …/state/{key}`: 200 with the stored bytes and `metadata.*` headers, or 204.
pub(in crate::api) async fn get_state(
    s: &ApiState,
    p: &Params,
) -> Result<Response<Body>, ApiError> {
    let Some(item) = actors::read_state(&s.actors, &p.store, &p.id, &p.key).await? else {
        return Ok(super::no_content());
    };
    let mut rsp = Response::new(crate::net::http::full(item.data));
    let h = rsp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (k, v) in &item.metadata {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(format!("metadata.{k}")),
            http::HeaderValue::try_from(v.as_str()),
        ) {
            h.insert(name, value);
        }
    }
    Ok(rsp)
}

/// One operation as the HTTP API takes it: `{"operation", "request": {"key", "value", "etag",
/// "metadata"}}`.
#[derive(Debug, serde::Deserialize)]
struct StateOpBody {
    #[serde(default)]
    operation: String,
    #[serde(default)]
    request: Option<StateOpRequest>,
}

#[derive(Debug, serde::Deserialize)]
struct StateOpRequest {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: outrider_blocks::state::Metadata,
}

/// The transaction's body as operations, with daprd's errors.
fn state_ops(body: &Bytes) -> Result<Vec<ActorStateOp>, ApiError> {
    let ops: Vec<StateOpBody> = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("failed deserializing HTTP body: {e}"),
        )
    })?;
    ops.into_iter()
        .map(|op| {
            let req = op
                .request
                .ok_or_else(|| actors::transaction_error("request data is empty".into()))?;
            match op.operation.as_str() {
                "" => Err(actors::transaction_error("operation is empty".into())),
                "upsert" => Ok(ActorStateOp::Upsert {
                    key: req.key,
                    value: Bytes::from(
                        serde_json::to_vec(&req.value.unwrap_or(serde_json::Value::Null))
                            .unwrap_or_default(),
                    ),
                    etag: req.etag,
                    metadata: req.metadata,
                }),
                "delete" => Ok(ActorStateOp::Delete {
                    key: req.key,
                    etag: req.etag,
                }),
                other => Err(actors::transaction_error(format!(
                    "operation type {other} not supported"
                ))),
            }
        })
        .collect()
}

pub(in crate::api) async fn transaction(
    s: &ApiState,
    p: &Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: Bytes = super::body::read_body(s, req, u64::MAX).await?;
    let ops = state_ops(&body)?;
    actors::transaction(&s.actors, &p.store, &p.id, ops).await?;
    Ok(super::no_content())
}

/// `POST|PUT …/timers/{name}` registers, `DELETE` removes: 204 either way.
pub(in crate::api) async fn timer(
    s: &ApiState,
    p: &Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if req.method() == http::Method::DELETE {
        actors::delete_timer(&s.actors, &p.store, &p.id, &p.key)?;
    } else {
        let body: Bytes = super::body::read_body(s, req, u64::MAX).await?;
        actors::create_timer(&s.actors, &p.store, &p.id, &p.key, &body).await?;
    }
    Ok(super::no_content())
}

/// `POST|PUT …/reminders/{name}` makes one, `GET` reads it, `DELETE` removes it.
pub(in crate::api) async fn reminder(
    s: &ApiState,
    p: &Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let a = &s.actors;
    match *req.method() {
        http::Method::GET => {
            let v = actors::get_reminder(a, &p.store, &p.id, &p.key).await?;
            let mut rsp = Response::new(crate::net::http::full(format!("{v}\n")));
            rsp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(rsp)
        }
        http::Method::DELETE => {
            actors::delete_reminder(a, &p.store, &p.id, &p.key).await?;
            Ok(super::no_content())
        }
        _ => {
            let body: Bytes = super::body::read_body(s, req, u64::MAX).await?;
            actors::create_reminder(a, &p.store, &p.id, &p.key, &body).await?;
            Ok(super::no_content())
        }
    }
}
