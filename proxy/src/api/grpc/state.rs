//! The gRPC codec of the state API: `GetState`, `GetBulkState`, `SaveState`, `DeleteState`,
//! `DeleteBulkState`, `ExecuteStateTransaction` and `QueryStateAlpha1` as the typed requests of
//! [`crate::api::state`]. Values are the bytes the app sent, stored as they are.

use outrider_blocks::state::{Item, StateError};
use outrider_proto::common::v1 as common;
use outrider_proto::runtime::v1 as rt;
use prost::Message as _;

use super::status::from_api_for;
use crate::api::ApiState;
use crate::api::state::{
    self, BulkSink, DeleteStateRequest, ExecuteStateTransactionRequest, GetBulkStateRequest,
    GetStateRequest, QueryStateRequest, SaveStateRequest, StateItem, StateOptions,
    TransactionalStateOperation,
};
use crate::errors::ApiError;
use tonic::Status;

/// `common.v1.StateOptions` in the operations' words.
fn options(o: Option<common::StateOptions>) -> StateOptions {
    let o = o.unwrap_or_default();
    StateOptions {
        concurrency: concurrency(o.concurrency),
        consistency: consistency(o.consistency),
    }
}

/// Unknown values are passed on as numbers, for the operation to refuse.
fn concurrency(v: i32) -> Option<String> {
    use common::state_options::StateConcurrency as C;
    match C::try_from(v) {
        Ok(C::ConcurrencyUnspecified) => None,
        Ok(C::ConcurrencyFirstWrite) => Some("first-write".into()),
        Ok(C::ConcurrencyLastWrite) => Some("last-write".into()),
        Err(_) => Some(v.to_string()),
    }
}

fn consistency(v: i32) -> Option<String> {
    use common::state_options::StateConsistency as C;
    match C::try_from(v) {
        Ok(C::ConsistencyUnspecified) => None,
        Ok(C::ConsistencyEventual) => Some("eventual".into()),
        Ok(C::ConsistencyStrong) => Some("strong".into()),
        Err(_) => Some(v.to_string()),
    }
}

/// An ETag as the operations take it: absent or empty is none.
fn etag(e: Option<common::Etag>) -> Option<String> {
    e.map(|e| e.value).filter(|v| !v.is_empty())
}

/// `common.v1.StateItem`.
fn item(i: common::StateItem) -> StateItem {
    StateItem {
        key: i.key,
        value: Some(i.value),
        etag: etag(i.etag),
        metadata: i.metadata,
        options: options(i.options),
    }
}

/// Runs `f` on the store named `name`, with the store named in the error details.
macro_rules! on_store {
    ($s:expr, $name:expr, |$store:ident| $body:expr) => {{
        let name: &str = $name;
        let result: Result<_, ApiError> = async {
            let $store = state::store($s, name)?;
            $body.await
        }
        .await;
        result.map_err(|e| from_api_for(e, name))
    }};
}

pub(super) async fn get(
    s: &ApiState,
    req: rt::GetStateRequest,
) -> Result<rt::GetStateResponse, Status> {
    let get = GetStateRequest {
        key: req.key,
        consistency: consistency(req.consistency),
        metadata: req.metadata,
    };
    let item = on_store!(s, &req.store_name, |store| state::get(s, &store, get))?;
    Ok(item.map_or_else(rt::GetStateResponse::default, |i: Item| {
        rt::GetStateResponse {
            data: i.data,
            etag: i.etag.unwrap_or_default(),
            metadata: i.metadata,
        }
    }))
}

/// The answer of a bulk read, as it grows.
#[derive(Default)]
struct Items {
    items: Vec<rt::BulkStateItem>,
    bytes: usize,
}

impl BulkSink for Items {
    fn push(&mut self, key: &str, read: Result<Option<Item>, StateError>) {
        let item = match read {
            Ok(Some(i)) => rt::BulkStateItem {
                key: key.to_owned(),
                data: i.data,
                etag: i.etag.unwrap_or_default(),
                error: String::new(),
                metadata: i.metadata,
            },
            Ok(None) => rt::BulkStateItem {
                key: key.to_owned(),
                ..Default::default()
            },
            Err(e) => rt::BulkStateItem {
                key: key.to_owned(),
                error: e.to_string(),
                ..Default::default()
            },
        };
        self.bytes += item.encoded_len();
        self.items.push(item);
    }

    fn len(&self) -> usize {
        self.bytes
    }
}

pub(super) async fn bulk(
    s: &ApiState,
    req: rt::GetBulkStateRequest,
) -> Result<rt::GetBulkStateResponse, Status> {
    let bulk = GetBulkStateRequest {
        keys: req.keys,
        parallelism: u64::try_from(req.parallelism).ok().filter(|n| *n > 0),
        metadata: req.metadata,
    };
    let mut out = Items::default();
    on_store!(s, &req.store_name, |store| state::bulk(
        s, &store, bulk, &mut out
    ))?;
    Ok(rt::GetBulkStateResponse { items: out.items })
}

pub(super) async fn save(s: &ApiState, req: rt::SaveStateRequest) -> Result<(), Status> {
    let states = req.states.into_iter().map(|i| Ok(item(i)));
    on_store!(s, &req.store_name, |store| state::save(
        s,
        &store,
        SaveStateRequest { states }
    ))
}

pub(super) async fn delete(s: &ApiState, req: rt::DeleteStateRequest) -> Result<(), Status> {
    let delete = DeleteStateRequest {
        key: req.key,
        etag: etag(req.etag),
        options: options(req.options),
        metadata: req.metadata,
    };
    on_store!(s, &req.store_name, |store| state::delete(s, &store, delete))
}

pub(super) async fn delete_bulk(
    s: &ApiState,
    req: rt::DeleteBulkStateRequest,
) -> Result<(), Status> {
    let deletes: Vec<_> = req
        .states
        .into_iter()
        .map(|i| DeleteStateRequest {
            key: i.key,
            etag: etag(i.etag),
            options: options(i.options),
            metadata: i.metadata,
        })
        .collect();
    on_store!(s, &req.store_name, |store| state::delete_bulk(
        s, &store, deletes
    ))
}

pub(super) async fn transaction(
    s: &ApiState,
    req: rt::ExecuteStateTransactionRequest,
) -> Result<(), Status> {
    let operations: Vec<_> = req
        .operations
        .into_iter()
        .map(|op| {
            Ok(TransactionalStateOperation {
                operation_type: op.operation_type,
                request: op.request.map(item).unwrap_or_default(),
            })
        })
        .collect();
    let tx = ExecuteStateTransactionRequest {
        operations,
        metadata: req.metadata,
    };
    on_store!(s, &req.store_name, |store| state::transaction(
        s, &store, tx
    ))
}

pub(super) async fn query(
    s: &ApiState,
    req: rt::QueryStateRequest,
) -> Result<rt::QueryStateResponse, Status> {
    let page = on_store!(s, &req.store_name, |store| async {
        let store = store.queryable()?;
        let query = serde_json::from_str(&req.query).map_err(|e| {
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_STATE_QUERY",
                format!(
                    "state store {} query failed: failed to parse JSON query body: {e}",
                    req.store_name
                ),
            )
        })?;
        state::query(s, &store, QueryStateRequest { query }).await
    })?;
    let results = page
        .results
        .into_iter()
        .map(|r| rt::QueryStateItem {
            key: r.key,
            data: r.data,
            etag: r.etag.unwrap_or_default(),
            error: String::new(),
        })
        .collect();
    Ok(rt::QueryStateResponse {
        results,
        token: page.token.unwrap_or_default(),
        metadata: Default::default(),
    })
}
