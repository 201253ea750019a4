//! Actor state: reading any actor's key (daprd does not ask whether the actor is active), and
//! transactions for an actor active on this host only, atomic in one store transaction. Keys
//! are daprd's: `<app-id>||<type>||<id>||<key>`. The HTTP and gRPC codecs read their bodies into
//! [`ActorStateOp`]s.

use bytes::Bytes;
use http::StatusCode;
use outrider_blocks::state::{
    DeleteRequest, Item, Metadata, Operation, SetRequest, StateError, StateStore,
};

use super::{Actors, check_name};
use crate::api::STORE_TIMEOUT;
use crate::errors::ApiError;

/// One operation of an actor state transaction.
#[derive(Debug)]
pub(crate) enum ActorStateOp {
    /// Store `value` (the bytes as given: JSON from the HTTP API) under `key`.
    Upsert {
        key: String,
        value: Bytes,
        etag: Option<String>,
        metadata: Metadata,
    },
    /// Remove `key`.
    Delete { key: String, etag: Option<String> },
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

/// Reads one key of an actor; `None` when absent (or empty).
pub(crate) async fn read_state(
    a: &Actors,
    actor_type: &str,
    id: &str,
    key: &str,
) -> Result<Option<Item>, ApiError> {
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
    Ok(item.filter(|i| !i.data.is_empty()))
}

/// Applies `ops` to an actor active here, all or none.
pub(crate) async fn transaction(
    a: &Actors,
    actor_type: &str,
    id: &str,
    ops: Vec<ActorStateOp>,
) -> Result<(), ApiError> {
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
    let failed = |why: String| transaction_error(why);
    let mut steps = Vec::with_capacity(ops.len());
    for op in ops {
        steps.push(match op {
            ActorStateOp::Upsert { key, .. } | ActorStateOp::Delete { key, .. }
                if key.is_empty() =>
            {
                return Err(failed("missing key".into()));
            }
            ActorStateOp::Upsert {
                key,
                value,
                etag,
                metadata,
            } => Operation::Upsert(SetRequest {
                key: key_of(a, actor_type, id, &key),
                value,
                etag,
                metadata,
                ..SetRequest::default()
            }),
            ActorStateOp::Delete { key, etag } => Operation::Delete(DeleteRequest {
                key: key_of(a, actor_type, id, &key),
                etag,
                ..DeleteRequest::default()
            }),
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

/// daprd's answer for a transaction that failed.
pub(crate) fn transaction_error(why: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_ACTOR_STATE_TRANSACTION_SAVE",
        format!("error saving actor transaction state: {why}"),
    )
}
