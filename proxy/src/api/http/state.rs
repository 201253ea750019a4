//! The HTTP codec of the state API: `/v1.0/state/{store}[/{key}|/bulk|/transaction]` and
//! `/v1.0-alpha1/state/{store}/query` (api.md §3). It decodes daprd's JSON bodies (field names
//! in any case, as Go's decoder reads them), `metadata.*` query parameters, `If-Match`,
//! `concurrency` and `consistency` into the typed requests of [`crate::api::state`], and encodes
//! the results: 204 for no data, the stored bytes with `ETag` and `metadata.*` headers.

mod bulk;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_blocks::state::{Item, Metadata};
use serde_json::{Map, Value, json};

use super::{json_response, no_content, query_metadata, query_param};
use crate::api::ApiState;
use crate::api::state::{
    self, DeleteStateRequest, ExecuteStateTransactionRequest, GetStateRequest, QueryStateRequest,
    SaveStateRequest, StateItem, StateOptions, TransactionalStateOperation,
};
use crate::errors::ApiError;
use crate::net::http::{Body, full};

pub(in crate::api) use bulk::bulk;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", message)
}

/// The body, read whole and parsed as JSON.
async fn read_json(s: &ApiState, req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = crate::api::http::body::read_body(s, req, u64::MAX).await?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("failed deserializing HTTP body: {e}")))
}

/// A field of a JSON object, matched case-insensitively as Go's decoder does.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A JSON object of strings, as metadata.
fn string_map(v: Option<&Value>, what: &str) -> Result<Metadata, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(bad(format!("{what}.{k} must be a string, got {other}"))),
            })
            .collect(),
        Some(other) => Err(bad(format!("{what} must be an object, got {other}"))),
    }
}

/// A string field: absent and `null` are `None`.
fn optional_string(v: Option<&Value>, what: &str) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!("{what} must be a string, got {other}"))),
    }
}

/// `{key, value, etag, metadata, options}` at `path` of the body; the request's `base` metadata
/// wins over the item's, as in daprd.
fn state_item(v: &Value, base: &Metadata, path: &str) -> Result<StateItem, ApiError> {
    let Value::Object(obj) = v else {
        return Err(bad(format!("{path} must be an object, got {v}")));
    };
    let key = match field(obj, "key") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(bad("\"key\" is a required field"));
        }
        Some(other) => return Err(bad(format!("{path}.key must be a string, got {other}"))),
    };
    let etag = optional_string(field(obj, "etag"), &format!("{path}.etag"))?;
    let mut metadata = string_map(field(obj, "metadata"), &format!("{path}.metadata"))?;
    metadata.extend(base.iter().map(|(k, v)| (k.clone(), v.clone())));
    let options = match field(obj, "options") {
        None | Some(Value::Null) => StateOptions::default(),
        Some(Value::Object(o)) => {
            let s = |n| field(o, n).and_then(Value::as_str).map(str::to_owned);
            StateOptions {
                concurrency: s("concurrency"),
                consistency: s("consistency"),
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "{path}.options must be an object, got {other}"
            )));
        }
    };
    // The value is stored as its JSON text, so a GET returns the same JSON.
    let value = field(obj, "value").map(|v| Bytes::from(serde_json::to_vec(v).unwrap_or_default()));
    Ok(StateItem {
        key,
        value,
        etag,
        metadata,
        options,
    })
}

/// `POST|PUT /v1.0/state/{store}`: an array of items.
pub(in crate::api) async fn save(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let store = state::store(s, name)?;
    let base = query_metadata(req.uri().query());
    let Value::Array(items) = read_json(s, req).await? else {
        return Err(bad(
            "failed deserializing HTTP body: expected an array of state items",
        ));
    };
    let states = items
        .iter()
        .enumerate()
        .map(|(i, v)| state_item(v, &base, &format!("[{i}]")));
    state::save(s, &store, SaveStateRequest { states }).await?;
    Ok(no_content())
}

/// `GET /v1.0/state/{store}/{key}`: the stored bytes, or 204.
pub(in crate::api) async fn get(
    s: &ApiState,
    name: &str,
    key: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let store = state::store(s, name)?;
    let req = GetStateRequest {
        key: key.to_owned(),
        consistency: query_param(query, "consistency"),
        metadata: query_metadata(query),
    };
    let Some(Item {
        data,
        etag,
        metadata,
    }) = state::get(s, &store, req).await?
    else {
        return Ok(no_content());
    };
    let mut rsp = Response::new(full(data));
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(e) = etag.and_then(|e| HeaderValue::try_from(e).ok()) {
        h.insert(header::ETAG, e);
    }
    for (k, v) in metadata {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(format!("metadata.{k}")),
            HeaderValue::try_from(v),
        ) {
            h.insert(k, v);
        }
    }
    Ok(rsp)
}

/// `DELETE /v1.0/state/{store}/{key}`, with `If-Match`.
pub(in crate::api) async fn delete(
    s: &ApiState,
    name: &str,
    key: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let store = state::store(s, name)?;
    let query = req.uri().query();
    let etag = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let req = DeleteStateRequest {
        key: key.to_owned(),
        etag,
        options: StateOptions {
            concurrency: query_param(query, "concurrency"),
            consistency: query_param(query, "consistency"),
        },
        metadata: query_metadata(query),
    };
    state::delete(s, &store, req).await?;
    Ok(no_content())
}

/// `POST|PUT /v1.0/state/{store}/transaction`: `{operations: [{operation, request}], metadata}`.
pub(in crate::api) async fn transaction(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let store = state::store(s, name)?;
    let query_md = query_metadata(req.uri().query());
    let body = read_json(s, req).await?;
    let Value::Object(obj) = &body else {
        return Err(bad("failed deserializing HTTP body: expected an object"));
    };
    let mut metadata = string_map(field(obj, "metadata"), "metadata")?;
    metadata.extend(query_md);
    let ops = match field(obj, "operations") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(other) => return Err(bad(format!("operations must be an array, got {other}"))),
    };
    // A function, not a closure: the future must be `Send` for every lifetime of the items.
    let operations = ops.iter().enumerate().map(operation);
    let req = ExecuteStateTransactionRequest {
        operations,
        metadata,
    };
    state::transaction(s, &store, req).await?;
    Ok(no_content())
}

/// The `i`th operation of a transaction.
fn operation((i, op): (usize, &Value)) -> Result<TransactionalStateOperation, ApiError> {
    let Value::Object(o) = op else {
        return Err(bad(format!("operations[{i}] must be an object")));
    };
    let operation_type = field(o, "operation")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let request = field(o, "request").unwrap_or(&Value::Null);
    let request = state_item(
        request,
        &Metadata::new(),
        &format!("operations[{i}].request"),
    )?;
    Ok(TransactionalStateOperation {
        operation_type,
        request,
    })
}

/// `POST|PUT /v1.0-alpha1/state/{store}/query`: this app's keys whose JSON values match, with
/// sort and paging. 204 when nothing matches, as daprd answers.
pub(in crate::api) async fn query(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let store = state::store(s, name)?.queryable()?;
    let query = read_json(s, req).await?;
    let page = state::query(s, &store, QueryStateRequest { query }).await?;
    if page.results.is_empty() {
        return Ok(no_content());
    }
    let results: Vec<Value> = page
        .results
        .into_iter()
        .map(|r| {
            let data: Value = serde_json::from_slice(&r.data).unwrap_or(Value::Null);
            json!({"key": r.key, "data": data, "etag": r.etag})
        })
        .collect();
    let mut body = json!({"results": results, "metadata": {}});
    if let Some(t) = page.token {
        body["token"] = json!(t);
    }
    Ok(json_response(&body))
}
