//! State operations (api.md §3), whatever the transport: which store a request names, key
//! prefixing (`keyPrefix`) and the checks that belong to each operation, the store call with its
//! deadline and metrics, and daprd's error codes and messages. Requests and results are shaped
//! after the state messages of `dapr.proto.runtime.v1` (`SaveStateRequest`, `GetStateRequest`,
//! ...), so each codec maps its wire form onto them. Not here: bodies, headers, query strings or
//! JSON — `api::http::state` decodes and encodes those.
//!
//! A request is checked in daprd's order: the codec resolves the store first ([`store`]), then
//! decodes the body, then calls the operation. Lists of items arrive as iterators of decoded
//! items (`Result<_, ApiError>`), so a codec may decode each item as the operation reaches it:
//! the first problem in list order is the one reported, whether a decode or a key error.

mod bulk;
mod call;
#[cfg(test)]
mod tests;
mod transaction;

use bytes::Bytes;
use http::StatusCode;
use outrider_blocks::state::{
    self as engine, Concurrency, Consistency, Item, Metadata, Options, SetRequest, StateComponent,
    StateRequest,
};

use super::ApiState;
use crate::errors::ApiError;
use call::{call_done, call_get, store_error};

pub(crate) use bulk::{BulkSink, GetBulkStateRequest, bulk};
pub(crate) use call::STORE_TIMEOUT;
pub(crate) use transaction::{
    ExecuteStateTransactionRequest, QueryStateRequest, TransactionalStateOperation, query,
    transaction,
};

/// A state store a request names, found.
#[derive(Clone, Copy)]
pub(crate) struct Store<'a> {
    name: &'a str,
    c: &'a StateComponent,
}

/// A state store that answers queries.
pub(crate) struct Queryable<'a>(Store<'a>);

/// `common.v1.StateItem`: one item to save, or the request of a transaction operation.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StateItem {
    /// The key as the app names it, before prefixing.
    pub(crate) key: String,
    /// The value as it is stored; `None` stores JSON `null`.
    pub(crate) value: Option<Bytes>,
    pub(crate) etag: Option<String>,
    pub(crate) metadata: Metadata,
    pub(crate) options: StateOptions,
}

/// `common.v1.StateOptions` in daprd's words: `first-write` or `last-write`, `eventual` or
/// `strong`; absent or empty is the default. The operation checks them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StateOptions {
    pub(crate) concurrency: Option<String>,
    pub(crate) consistency: Option<String>,
}

/// `SaveStateRequest`: the items, checked in order, all before any is written.
pub(crate) struct SaveStateRequest<I> {
    pub(crate) states: I,
}

/// `GetStateRequest`.
pub(crate) struct GetStateRequest {
    pub(crate) key: String,
    pub(crate) consistency: Option<String>,
    pub(crate) metadata: Metadata,
}

/// `DeleteStateRequest`.
pub(crate) struct DeleteStateRequest {
    pub(crate) key: String,
    pub(crate) etag: Option<String>,
    pub(crate) options: StateOptions,
    pub(crate) metadata: Metadata,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// The store named `name`, or the error daprd gives.
pub(crate) fn store<'a>(s: &'a ApiState, name: &'a str) -> Result<Store<'a>, ApiError> {
    if s.stores.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_CONFIGURED",
            "state store is not configured",
        ));
    }
    let c = s.stores.get(name).ok_or_else(|| {
        bad(
            "ERR_STATE_STORE_NOT_FOUND",
            format!("state store {name} is not found"),
        )
    })?;
    Ok(Store { name, c })
}

impl<'a> Store<'a> {
    /// This store, if it answers queries.
    pub(crate) fn queryable(self) -> Result<Queryable<'a>, ApiError> {
        if !self.c.store.features().query {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_STATE_STORE_NOT_SUPPORTED",
                "state store does not support querying",
            )
            .with_reason("DAPR_STATE_QUERYING_NOT_SUPPORTED"));
        }
        Ok(Queryable(self))
    }

    /// Rejects keys the prefixing scheme cannot hold, and returns the stored key.
    fn stored_key(&self, key: &str) -> Result<String, ApiError> {
        if key.contains("||") {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("input key/keyPrefix '{key}' can't contain '||'"),
            )
            .with_reason("DAPR_STATE_ILLEGAL_KEY"));
        }
        if key.is_empty() {
            return Err(bad("ERR_MALFORMED_REQUEST", "\"key\" is a required field"));
        }
        Ok(format!("{}{key}", self.c.prefix))
    }

    /// The store's request for saving `item`: its options, then its key, are checked.
    fn set_request(&self, item: StateItem) -> Result<SetRequest, ApiError> {
        let options = item.options.parse()?;
        Ok(SetRequest {
            key: self.stored_key(&item.key)?,
            value: item.value.unwrap_or_else(|| Bytes::from_static(b"null")),
            etag: item.etag,
            metadata: item.metadata,
            options,
        })
    }
}

impl StateOptions {
    /// The options as the store takes them.
    fn parse(&self) -> Result<Options, ApiError> {
        let concurrency = match self.concurrency.as_deref().unwrap_or("") {
            "" | "last-write" => Concurrency::LastWrite,
            "first-write" => Concurrency::FirstWrite,
            other => {
                return Err(bad(
                    "ERR_MALFORMED_REQUEST",
                    format!("concurrency {other:?} is not first-write or last-write"),
                ));
            }
        };
        let consistency = match self.consistency.as_deref().unwrap_or("") {
            "" | "eventual" => Consistency::Eventual,
            "strong" => Consistency::Strong,
            other => {
                return Err(bad(
                    "ERR_MALFORMED_REQUEST",
                    format!("consistency {other:?} is not eventual or strong"),
                ));
            }
        };
        Ok(Options {
            concurrency,
            consistency,
        })
    }
}

/// Saves every item, in order; none is written unless all are valid.
pub(crate) async fn save<I>(
    s: &ApiState,
    store: &Store<'_>,
    req: SaveStateRequest<I>,
) -> Result<(), ApiError>
where
    I: IntoIterator<Item = Result<StateItem, ApiError>>,
{
    let reqs = req
        .states
        .into_iter()
        .map(|item| item.and_then(|i| store.set_request(i)))
        .collect::<Result<Vec<_>, _>>()?;
    for r in reqs {
        call_done(s.into(), store.c, StateRequest::Set(r))
            .await
            .map_err(|e| {
                store_error(
                    "ERR_STATE_SAVE",
                    format!("failed saving state in state store {}: {e}", store.name),
                    &e,
                )
            })?;
    }
    Ok(())
}

/// The item stored under `key`, if there is one.
pub(crate) async fn get(
    s: &ApiState,
    store: &Store<'_>,
    req: GetStateRequest,
) -> Result<Option<Item>, ApiError> {
    let stored = store.stored_key(&req.key)?;
    let options = StateOptions {
        concurrency: None,
        consistency: req.consistency,
    };
    options.parse()?;
    call_get(s.into(), store.c, stored, req.metadata)
        .await
        .map_err(|e| {
            store_error(
                "ERR_STATE_GET",
                format!(
                    "fail to get {} from state store {}: {e}",
                    req.key, store.name
                ),
                &e,
            )
        })
}

/// Deletes `key`, if its ETag matches when one is given.
pub(crate) async fn delete(
    s: &ApiState,
    store: &Store<'_>,
    req: DeleteStateRequest,
) -> Result<(), ApiError> {
    let key = req.key.clone();
    delete_all(s, store, vec![req], |e| {
        store_error(
            "ERR_STATE_DELETE",
            format!("failed deleting state with key {key}: {e}"),
            e,
        )
    })
    .await
}

/// Deletes every key, in order; none is deleted unless all requests are valid. The first
/// failure stops the rest, as a store's bulk delete does. Like a bulk read: at most
/// [`bulk::MAX_KEYS`] keys, among the heavy work that runs at once, within
/// [`bulk::MAX_DURATION`].
pub(crate) async fn delete_bulk(
    s: &ApiState,
    store: &Store<'_>,
    reqs: Vec<DeleteStateRequest>,
) -> Result<(), ApiError> {
    const CODE: &str = "ERR_STATE_BULK_DELETE";
    if reqs.len() > bulk::MAX_KEYS {
        return Err(bad(
            "ERR_MALFORMED_REQUEST",
            format!("at most {} keys can be deleted at once", bulk::MAX_KEYS),
        ));
    }
    let _permit = s.heavy_permit(CODE).await?;
    let all = delete_all(s, store, reqs, |e| {
        store_error(
            "ERR_STATE_BULK_DELETE",
            format!("failed deleting state in state store {}: {e}", store.name),
            e,
        )
    });
    tokio::time::timeout(bulk::MAX_DURATION, all)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                CODE,
                format!(
                    "deleting the keys took longer than {}s",
                    bulk::MAX_DURATION.as_secs()
                ),
            ))
        })
}

async fn delete_all(
    s: &ApiState,
    store: &Store<'_>,
    reqs: Vec<DeleteStateRequest>,
    failed: impl Fn(&engine::StateError) -> ApiError,
) -> Result<(), ApiError> {
    let checked = reqs
        .into_iter()
        .map(|r| {
            Ok(engine::DeleteRequest {
                key: store.stored_key(&r.key)?,
                etag: r.etag,
                metadata: r.metadata,
                options: r.options.parse()?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    for r in checked {
        call_done(s.into(), store.c, StateRequest::Delete(r))
            .await
            .map_err(|e| failed(&e))?;
    }
    Ok(())
}
