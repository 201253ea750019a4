//! The state API: `/v1.0/state/{store}[/{key}|/bulk|/transaction]`, with daprd's bodies, status
//! codes and error codes (api.md §3). Keys are prefixed per the component's `keyPrefix` before
//! they reach a store, and every store call has a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_blocks::state::{
    Concurrency, Consistency, DeleteRequest, Item, Metadata, Operation, Options, Query, SetRequest,
    StateComponent, StateError, StateRequest, StateResponse,
};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::meta::{json_response, no_content};
use super::{ApiState, percent_decode};
use crate::errors::ApiError;
use crate::net::http::{Body, full};

/// How long one store call may take before the API answers with an error.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(10);

mod bulk;

pub(super) use bulk::bulk;

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// The store named in the path, or the error daprd gives.
fn store<'a>(s: &'a ApiState, name: &str) -> Result<&'a StateComponent, ApiError> {
    if s.stores.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_CONFIGURED",
            "state store is not configured",
        ));
    }
    s.stores.get(name).ok_or_else(|| {
        bad(
            "ERR_STATE_STORE_NOT_FOUND",
            format!("state store {name} is not found"),
        )
    })
}

/// Rejects keys the prefixing scheme cannot hold, and returns the stored key.
fn stored_key(c: &StateComponent, key: &str) -> Result<String, ApiError> {
    if key.contains("||") {
        return Err(bad(
            "ERR_MALFORMED_REQUEST",
            format!("input key/keyPrefix '{key}' can't contain '||'"),
        ));
    }
    if key.is_empty() {
        return Err(bad("ERR_MALFORMED_REQUEST", "\"key\" is a required field"));
    }
    Ok(format!("{}{key}", c.prefix))
}

/// Whom store calls are counted for.
#[derive(Clone, Copy)]
struct Counted<'a> {
    app_id: &'a str,
    namespace: &'a str,
}

impl<'a> From<&'a ApiState> for Counted<'a> {
    fn from(s: &'a ApiState) -> Self {
        Counted {
            app_id: &s.app_id,
            namespace: &s.namespace,
        }
    }
}

/// Sends one request through the store's service, under the deadline, and counts it with
/// Dapr's component metrics.
async fn call(
    who: Counted<'_>,
    c: &StateComponent,
    req: StateRequest,
) -> Result<StateResponse, StateError> {
    let operation = match &req {
        StateRequest::Get { .. } => "get",
        StateRequest::Set(_) => "set",
        StateRequest::Delete(_) => "delete",
        StateRequest::Multi(_) => "transaction",
        StateRequest::Query { .. } => "query",
    };
    let started = std::time::Instant::now();
    let result = match &c.layered {
        // Resiliency policies apply: their timeout is the deadline.
        Some(svc) => svc
            .clone()
            .oneshot(req)
            .await
            .map_err(crate::components::resiliency::state_error),
        None => tokio::time::timeout(STORE_TIMEOUT, c.service().oneshot(req))
            .await
            .unwrap_or(Err(StateError::Timeout(STORE_TIMEOUT))),
    };
    // A mismatched ETag or a bad request is the store answering: only failures count as such.
    let success = !matches!(result, Err(StateError::Store(_) | StateError::Timeout(_)));
    let labels = [
        ("app_id", who.app_id.to_owned()),
        ("component", c.name.clone()),
        ("namespace", who.namespace.to_owned()),
        ("operation", operation.to_owned()),
        ("success", success.to_string()),
    ];
    crate::telemetry::metrics::STATE_COUNT
        .counter(&labels)
        .increment(1);
    crate::telemetry::metrics::STATE_LATENCIES
        .histogram(&labels)
        .record(started.elapsed().as_secs_f64() * 1000.0);
    result
}

/// A write, delete or transaction through the service.
async fn call_done(
    who: Counted<'_>,
    c: &StateComponent,
    req: StateRequest,
) -> Result<(), StateError> {
    match call(who, c, req).await? {
        StateResponse::Done => Ok(()),
        other => Err(StateError::Store(
            format!("unexpected answer from the store: {other:?}").into(),
        )),
    }
}

/// A read through the service.
async fn call_get(
    who: Counted<'_>,
    c: &StateComponent,
    key: String,
    metadata: Metadata,
) -> Result<Option<Item>, StateError> {
    match call(who, c, StateRequest::Get { key, metadata }).await? {
        StateResponse::Item(item) => Ok(item),
        other => Err(StateError::Store(
            format!("unexpected answer from the store: {other:?}").into(),
        )),
    }
}

/// Maps a store failure of a single-key operation: 409 for a mismatch, 400 for bad input.
fn store_error(code: &'static str, message: String, e: &StateError) -> ApiError {
    let status = match e {
        StateError::EtagMismatch(_) => StatusCode::CONFLICT,
        StateError::EtagInvalid(_) | StateError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, code, message)
}

/// `metadata.<name>=<value>` query parameters (first value wins), as request metadata.
pub(super) fn query_metadata(query: Option<&str>) -> Metadata {
    let mut md = Metadata::new();
    for kv in query.unwrap_or_default().split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if let Some(name) = percent_decode(k).strip_prefix("metadata.") {
            md.entry(name.to_owned())
                .or_insert_with(|| percent_decode(&v.replace('+', " ")));
        }
    }
    md
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    super::query_param(query, name)
}

async fn read_json(s: &ApiState, req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = super::body::read_body(s, req, u64::MAX).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        bad(
            "ERR_MALFORMED_REQUEST",
            format!("failed deserializing HTTP body: {e}"),
        )
    })
}

/// A field of a JSON object, matched case-insensitively as Go's decoder does.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_map(v: Option<&Value>, what: &str) -> Result<Metadata, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(bad(
                    "ERR_MALFORMED_REQUEST",
                    format!("{what}.{k} must be a string, got {other}"),
                )),
            })
            .collect(),
        Some(other) => Err(bad(
            "ERR_MALFORMED_REQUEST",
            format!("{what} must be an object, got {other}"),
        )),
    }
}

fn parse_options(
    concurrency: Option<&str>,
    consistency: Option<&str>,
) -> Result<Options, ApiError> {
    let concurrency = match concurrency.unwrap_or("") {
        "" | "last-write" => Concurrency::LastWrite,
        "first-write" => Concurrency::FirstWrite,
        other => {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("concurrency {other:?} is not first-write or last-write"),
            ));
        }
    };
    let consistency = match consistency.unwrap_or("") {
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

/// The fields shared by save items and transaction requests.
struct Parsed {
    key: String,
    value: Option<Bytes>,
    etag: Option<String>,
    metadata: Metadata,
    options: Options,
}

fn parse_item(v: &Value, base_md: &Metadata, path: &str) -> Result<Parsed, ApiError> {
    let Value::Object(obj) = v else {
        return Err(bad(
            "ERR_MALFORMED_REQUEST",
            format!("{path} must be an object, got {v}"),
        ));
    };
    let key = match field(obj, "key") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(bad("ERR_MALFORMED_REQUEST", "\"key\" is a required field"));
        }
        Some(other) => {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("{path}.key must be a string, got {other}"),
            ));
        }
    };
    let etag = match field(obj, "etag") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(other) => {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("{path}.etag must be a string, got {other}"),
            ));
        }
    };
    let mut metadata = string_map(field(obj, "metadata"), &format!("{path}.metadata"))?;
    // Query metadata wins over the body's, as in daprd.
    metadata.extend(base_md.iter().map(|(k, v)| (k.clone(), v.clone())));
    let options = match field(obj, "options") {
        None | Some(Value::Null) => Options::default(),
        Some(Value::Object(o)) => {
            let s = |n| field(o, n).and_then(Value::as_str);
            parse_options(s("concurrency"), s("consistency"))?
        }
        Some(other) => {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("{path}.options must be an object, got {other}"),
            ));
        }
    };
    // The value is stored as its JSON text, so a GET returns the same JSON.
    let value = field(obj, "value").map(|v| Bytes::from(serde_json::to_vec(v).unwrap_or_default()));
    Ok(Parsed {
        key,
        value,
        etag,
        metadata,
        options,
    })
}

fn set_request(c: &StateComponent, p: Parsed) -> Result<SetRequest, ApiError> {
    let key = stored_key(c, &p.key)?;
    let value = p.value.unwrap_or_else(|| Bytes::from_static(b"null"));
    Ok(SetRequest {
        key,
        value,
        etag: p.etag,
        metadata: p.metadata,
        options: p.options,
    })
}

/// `POST|PUT /v1.0/state/{store}`: an array of items, all validated before any is written.
pub(super) async fn save(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let c = store(s, name)?;
    let base = query_metadata(req.uri().query());
    let body = read_json(s, req).await?;
    let Value::Array(items) = body else {
        return Err(bad(
            "ERR_MALFORMED_REQUEST",
            "failed deserializing HTTP body: expected an array of state items",
        ));
    };
    let reqs = items
        .iter()
        .enumerate()
        .map(|(i, v)| parse_item(v, &base, &format!("[{i}]")).and_then(|p| set_request(c, p)))
        .collect::<Result<Vec<_>, _>>()?;
    for r in reqs {
        call_done(s.into(), c, StateRequest::Set(r))
            .await
            .map_err(|e| {
                store_error(
                    "ERR_STATE_SAVE",
                    format!("failed saving state in state store {name}: {e}"),
                    &e,
                )
            })?;
    }
    Ok(no_content())
}

/// `GET /v1.0/state/{store}/{key}`: the stored bytes, or 204.
pub(super) async fn get(
    s: &ApiState,
    name: &str,
    key: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let c = store(s, name)?;
    let stored = stored_key(c, key)?;
    parse_options(None, query_value(query, "consistency").as_deref())?;
    let item = call_get(s.into(), c, stored, query_metadata(query))
        .await
        .map_err(|e| {
            store_error(
                "ERR_STATE_GET",
                format!("fail to get {key} from state store {name}: {e}"),
                &e,
            )
        })?;
    let Some(Item {
        data,
        etag,
        metadata,
    }) = item
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
pub(super) async fn delete(
    s: &ApiState,
    name: &str,
    key: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let c = store(s, name)?;
    let stored = stored_key(c, key)?;
    let query = req.uri().query();
    let options = parse_options(
        query_value(query, "concurrency").as_deref(),
        query_value(query, "consistency").as_deref(),
    )?;
    let etag = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let r = DeleteRequest {
        key: stored,
        etag,
        metadata: query_metadata(query),
        options,
    };
    call_done(s.into(), c, StateRequest::Delete(r))
        .await
        .map_err(|e| {
            store_error(
                "ERR_STATE_DELETE",
                format!("failed deleting state with key {key}: {e}"),
                &e,
            )
        })?;
    Ok(no_content())
}

/// `POST|PUT /v1.0-alpha1/state/{store}/query`: this app's keys whose JSON values match, with
/// sort and paging. 204 when nothing matches, as daprd answers.
pub(super) async fn query(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let c = store(s, name)?;
    if !c.store.features().query {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            format!("state store {name} doesn't support query"),
        ));
    }
    let body = read_json(s, req).await?;
    let _permit = s.heavy_permit("ERR_STATE_QUERY").await?;
    let q = Query::parse(&body).map_err(|e| {
        bad(
            "ERR_STATE_QUERY",
            format!("failed query in state store {name}: {e}"),
        )
    })?;
    let page = match call(
        s.into(),
        c,
        StateRequest::Query {
            prefix: c.prefix.clone(),
            query: q,
        },
    )
    .await
    {
        Ok(StateResponse::Page(p)) => Ok(p),
        Ok(other) => Err(StateError::Store(
            format!("unexpected answer from the store: {other:?}").into(),
        )),
        Err(e) => Err(e),
    }
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_QUERY",
            format!("failed query in state store {name}: {e}"),
        )
    })?;
    if page.items.is_empty() {
        return Ok(no_content());
    }
    let results: Vec<Value> = page
        .items
        .into_iter()
        .map(|(key, data, etag)| {
            let data: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
            let key = key.strip_prefix(&c.prefix).unwrap_or(&key).to_owned();
            json!({"key": key, "data": data, "etag": etag})
        })
        .collect();
    let mut body = json!({"results": results, "metadata": {}});
    if let Some(t) = page.token {
        body["token"] = json!(t);
    }
    Ok(json_response(&body))
}

/// `POST|PUT /v1.0/state/{store}/transaction`: all operations or none.
pub(super) async fn transaction(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let c = store(s, name)?;
    let query_md = query_metadata(req.uri().query());
    let body = read_json(s, req).await?;
    let Value::Object(obj) = &body else {
        return Err(bad(
            "ERR_MALFORMED_REQUEST",
            "failed deserializing HTTP body: expected an object",
        ));
    };
    let mut base = string_map(field(obj, "metadata"), "metadata")?;
    base.extend(query_md);
    let ops = match field(obj, "operations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("operations must be an array, got {other}"),
            ));
        }
    };
    if ops.is_empty() {
        return Ok(no_content());
    }
    if !c.store.features().transactional {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            format!("state store {name} doesn't support transaction"),
        ));
    }
    let mut parsed = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Value::Object(o) = op else {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("operations[{i}] must be an object"),
            ));
        };
        let kind = field(o, "operation")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let request = field(o, "request").cloned().unwrap_or(Value::Null);
        let p = parse_item(
            &request,
            &BTreeMap::new(),
            &format!("operations[{i}].request"),
        )?;
        let mut metadata = base.clone();
        metadata.extend(p.metadata.clone());
        parsed.push(match kind {
            "upsert" => Operation::Upsert(set_request(c, Parsed { metadata, ..p })?),
            "delete" => Operation::Delete(DeleteRequest {
                key: stored_key(c, &p.key)?,
                etag: p.etag,
                metadata,
                options: p.options,
            }),
            other => {
                return Err(bad(
                    "ERR_NOT_SUPPORTED_STATE_OPERATION",
                    format!("operation type {other} not supported"),
                ));
            }
        });
    }
    call_done(s.into(), c, StateRequest::Multi(parsed))
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
        })?;
    Ok(no_content())
}
