//! Actor state: `GET …/state/{key}` reads any actor's key (daprd does not ask whether the actor
//! is active), and `POST …/state` applies a transaction for an actor active on this host only,
//! atomically in one store transaction. Keys are daprd's: `<app-id>||<type>||<id>||<key>`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use outrider_blocks::state::{
    DeleteRequest, Metadata, Operation, SetRequest, StateError, StateStore,
};
use serde::Deserialize;

use super::{Actors, check_name};
use crate::api::STORE_TIMEOUT;
use crate::errors::ApiError;
use crate::net::http::{Body, full};

/// One operation of a transaction, as the caller sends it.
#[derive(Debug, Deserialize)]
pub(crate) struct StateOp {
    #[serde(default)]
    operation: String,
    #[serde(default)]
    request: Option<OpRequest>,
}

#[derive(Debug, Deserialize)]
struct OpRequest {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

fn runtime_not_found() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_ACTOR_RUNTIME_NOT_FOUND",
        "the state store is not configured to use the actor runtime. Have you set the - name: actorStateStore value: \"true\" in your state store component file?",
    )
}

fn store_of(a: &Actors) -> Result<&dyn StateStore, ApiError> {
    a.store
        .as_ref()
        .map(|(_, s)| s.as_ref())
        .ok_or_else(runtime_not_found)
}

fn key_of(a: &Actors, actor_type: &str, id: &str, key: &str) -> String {
    format!("{}||{actor_type}||{id}||{key}", a.app_id)
}

/// `GET /v1.0/actors/{type}/{id}/state/{key}`: 200 with the stored JSON and `metadata.*`
/// headers, or 204 when there is none.
pub(crate) async fn get_state(
    a: &Actors,
    actor_type: &str,
    id: &str,
    key: &str,
) -> Result<Response<Body>, ApiError> {
    check_name("actorType", actor_type)?;
    check_name("actorId", id)?;
    let store = store_of(a)?;
    let found = tokio::time::timeout(
        STORE_TIMEOUT,
        store.get(key_of(a, actor_type, id, key), Metadata::new()),
    )
    .await
    .unwrap_or(Err(StateError::Timeout(STORE_TIMEOUT)));
    let item = found.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_ACTOR_STATE_GET",
            format!("error getting actor state: {e}"),
        )
    })?;
    let Some(item) = item.filter(|i| !i.data.is_empty()) else {
        return Ok(super::super::http::no_content());
    };
    let mut rsp = Response::new(full(item.data));
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in &item.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(format!("metadata.{k}")),
            HeaderValue::try_from(v.as_str()),
        ) {
            h.insert(name, value);
        }
    }
    Ok(rsp)
}

/// `POST|PUT /v1.0/actors/{type}/{id}/state`: the operations, all or none.
pub(crate) async fn transaction(
    a: &Actors,
    actor_type: &str,
    id: &str,
    body: &Bytes,
) -> Result<(), ApiError> {
    let ops: Vec<StateOp> = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("failed deserializing HTTP body: {e}"),
        )
    })?;
    check_name("actorType", actor_type)?;
    check_name("actorId", id)?;
    if !a.host().is_some_and(|h| h.is_active(actor_type, id)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_ACTOR_INSTANCE_MISSING",
            "actor instance is missing",
        ));
    }
    let store = store_of(a)?;
    let failed = |why: String| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_ACTOR_STATE_TRANSACTION_SAVE",
            format!("error saving actor transaction state: {why}"),
        )
    };
    let mut steps = Vec::with_capacity(ops.len());
    for op in ops {
        let req = op
            .request
            .ok_or_else(|| failed("request data is empty".into()))?;
        if op.operation.is_empty() {
            return Err(failed("operation is empty".into()));
        }
        if req.key.is_empty() {
            return Err(failed("missing key".into()));
        }
        let metadata = req.metadata;
        let key = key_of(a, actor_type, id, &req.key);
        steps.push(match op.operation.as_str() {
            "upsert" => Operation::Upsert(SetRequest {
                key,
                value: Bytes::from(
                    serde_json::to_vec(&req.value.unwrap_or(serde_json::Value::Null))
                        .unwrap_or_default(),
                ),
                etag: req.etag,
                metadata,
                ..SetRequest::default()
            }),
            "delete" => Operation::Delete(DeleteRequest {
                key,
                etag: req.etag,
                metadata,
                ..DeleteRequest::default()
            }),
            other => return Err(failed(format!("operation type {other} not supported"))),
        });
    }
    if steps.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(STORE_TIMEOUT, store.multi(steps)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(StateError::Timeout(STORE_TIMEOUT).to_string())),
    }
}
