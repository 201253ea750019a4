//! The state operations over many keys at once that the store does in one call: a transaction
//! (all operations or none) and a query (this app's keys whose JSON values match).

use bytes::Bytes;
use http::StatusCode;
use outrider_blocks::state::{
    self as engine, Metadata, Operation, Query, StateError, StateRequest, StateResponse,
};

use super::call::{call, call_done, unexpected};
use super::{Queryable, StateItem, Store, bad};
use crate::api::ApiState;
use crate::errors::ApiError;

/// `ExecuteStateTransactionRequest`. Each operation's metadata is laid over the request's.
pub(crate) struct ExecuteStateTransactionRequest<I> {
    pub(crate) operations: I,
    pub(crate) metadata: Metadata,
}

/// `TransactionalStateOperation`: `upsert` or `delete`, and its item.
pub(crate) struct TransactionalStateOperation {
    pub(crate) operation_type: String,
    pub(crate) request: StateItem,
}

/// `QueryStateRequest`: the query as JSON (`filter`, `sort`, `page`).
pub(crate) struct QueryStateRequest {
    pub(crate) query: serde_json::Value,
}

/// `QueryStateResponse`: one page of results, and the token of the next page if there is one.
pub(crate) struct QueryStateResponse {
    pub(crate) results: Vec<QueryStateItem>,
    pub(crate) token: Option<String>,
}

/// `QueryStateItem`: a key as the app names it, its stored value and its ETag.
pub(crate) struct QueryStateItem {
    pub(crate) key: String,
    pub(crate) data: Bytes,
    pub(crate) etag: Option<String>,
}

/// Runs every operation, or none. No operations is success, whatever the store; otherwise the
/// store must be transactional, and each operation is checked in order before any runs.
pub(crate) async fn transaction<I>(
    s: &ApiState,
    store: &Store<'_>,
    req: ExecuteStateTransactionRequest<I>,
) -> Result<(), ApiError>
where
    I: IntoIterator<Item = Result<TransactionalStateOperation, ApiError>>,
    I::IntoIter: ExactSizeIterator,
{
    let ops = req.operations.into_iter();
    if ops.len() == 0 {
        return Ok(());
    }
    if !store.c.store.features().transactional {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            format!("state store {} doesn't support transactions", store.name),
        )
        .with_reason("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"));
    }
    let mut parsed = Vec::with_capacity(ops.len());
    for op in ops {
        parsed.push(operation(store, &req.metadata, op?)?);
    }
    call_done(s.into(), store.c, StateRequest::Multi(parsed))
        .await
        .map_err(|e| {
            let status = if matches!(e, StateError::BadRequest(_)) {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            ApiError::new(
                status,
                "ERR_STATE_TRANSACTION",
                format!("error while executing state transaction: {e}"),
            )
        })
}

/// One operation as the store takes it: its options, then its kind and key, are checked.
pub(super) fn operation(
    store: &Store<'_>,
    base: &Metadata,
    op: TransactionalStateOperation,
) -> Result<Operation, ApiError> {
    let mut item = op.request;
    let mut metadata = base.clone();
    metadata.extend(std::mem::take(&mut item.metadata));
    item.metadata = metadata;
    match op.operation_type.as_str() {
        "upsert" => Ok(Operation::Upsert(store.set_request(item)?)),
        "delete" => {
            let options = item.options.parse()?;
            Ok(Operation::Delete(engine::DeleteRequest {
                key: store.stored_key(&item.key)?,
                etag: item.etag,
                metadata: item.metadata,
                options,
            }))
        }
        other => {
            item.options.parse()?;
            Err(bad(
                "ERR_NOT_SUPPORTED_STATE_OPERATION",
                format!("operation type {other} not supported"),
            ))
        }
    }
}

/// One page of this app's items that match, with keys as the app names them.
pub(crate) async fn query(
    s: &ApiState,
    store: &Queryable<'_>,
    req: QueryStateRequest,
) -> Result<QueryStateResponse, ApiError> {
    let Queryable(store) = store;
    let failed = |status, e: &dyn std::fmt::Display| {
        ApiError::new(
            status,
            "ERR_STATE_QUERY",
            format!("state store {} query failed: {e}", store.name),
        )
    };
    let _permit = s.heavy_permit("ERR_STATE_QUERY").await?;
    let q = Query::parse(&req.query).map_err(|e| failed(StatusCode::BAD_REQUEST, &e))?;
    let prefix = &store.c.prefix;
    let request = StateRequest::Query {
        prefix: prefix.clone(),
        query: q,
    };
    let page = match call(s.into(), store.c, request).await {
        Ok(StateResponse::Page(p)) => Ok(p),
        Ok(other) => Err(unexpected(&other)),
        Err(e) => Err(e),
    }
    .map_err(|e| failed(StatusCode::INTERNAL_SERVER_ERROR, &e))?;
    let results = page
        .items
        .into_iter()
        .map(|(key, data, etag)| QueryStateItem {
            key: key.strip_prefix(prefix.as_str()).unwrap_or(&key).to_owned(),
            data,
            etag,
        })
        .collect();
    Ok(QueryStateResponse {
        results,
        token: page.token,
    })
}
