//! Health, metadata and shutdown routes.

use std::sync::atomic::Ordering;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::http::{json_response, no_content, query_param};
use crate::errors::ApiError;
use crate::net::http::Body;

/// Extended metadata attributes: how many, and how large each name and value may be. Every
/// `GET /v1.0/metadata` returns them all, so together they stay small.
const MAX_ATTRIBUTES: usize = 64;
const MAX_ATTRIBUTE_KEY: usize = 256;
const MAX_ATTRIBUTE_VALUE: u64 = 64 * 1024;

/// The runtime version reported to SDKs.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /v1.0/healthz[?appid=…]`: 204 once components, listeners and the app are up.
pub(super) fn healthz(s: &ApiState, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    if let Some(id) = query_param(query, "appid")
        && id != s.app_id
    {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_APPID_NOT_MATCH",
            "dapr app-id does not match",
        ));
    }
    if s.health.ready() {
        Ok(no_content())
    } else {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_NOT_READY",
            "dapr is not ready",
        ))
    }
}

/// `GET /v1.0/healthz/outbound`: 204 once outbound APIs serve, before the app is up.
pub(super) fn healthz_outbound(s: &ApiState) -> Result<Response<Body>, ApiError> {
    if s.health.outbound_ready() {
        Ok(no_content())
    } else {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_OUTBOUND_HEALTH_NOT_READY",
            "dapr outbound is not ready",
        ))
    }
}

/// `GET /v1.0/metadata`. Empty fields are omitted, as daprd does.
pub(super) fn get(s: &ApiState) -> Result<Response<Body>, ApiError> {
    let mut extended: Map<String, Value> = s
        .extended
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    extended.insert("daprRuntimeVersion".into(), json!(VERSION));
    extended.insert(
        "outrider.nameResolution".into(),
        json!(s.outbound.resolver_name()),
    );
    let mut body = Map::new();
    body.insert("id".into(), json!(s.app_id));
    body.insert("runtimeVersion".into(), json!(VERSION));
    // Not in daprd's answer: which resolver and balancer this sidecar uses, and what they see of
    // every target called so far.
    body.insert(
        "nameResolution".into(),
        json!({
            "resolver": s.outbound.resolver_name(),
            "loadBalancing": s.outbound.balancing(),
            "targets": s.outbound.targets(),
        }),
    );
    if !s.stores.is_empty() || !s.pubsubs.is_empty() || !s.secret_stores.is_empty() {
        let comps: Vec<Value> = s
            .stores
            .values()
            .map(|c| json!({"name": c.name, "type": c.type_, "version": c.version, "capabilities": c.store.features().capabilities()}))
            .chain(s.pubsubs.values().map(|c| json!({"name": c.name, "type": c.type_, "version": c.version, "capabilities": []})))
            .chain(s.secret_stores.values().map(|c| json!({"name": c.name, "type": c.type_, "version": c.version, "capabilities": []})))
            .collect();
        body.insert("components".into(), Value::Array(comps));
    }
    let subs = s.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
    if !subs.is_empty() {
        body.insert(
            "subscriptions".into(),
            Value::Array(
                subs.iter()
                    .map(crate::to_app::subscriptions::Listed::to_metadata)
                    .collect(),
            ),
        );
    }
    drop(subs);
    body.insert("extended".into(), Value::Object(extended));
    if let Some(port) = s.app_port {
        body.insert(
            "appConnectionProperties".into(),
            json!({"port": port, "protocol": "http", "channelAddress": s.app_channel_address}),
        );
    }
    Ok(json_response(&Value::Object(body)))
}

/// `PUT /v1.0/metadata/{key}`: the raw body becomes `extended[key]`. An empty key is a no-op.
pub(super) async fn put(
    s: &ApiState,
    key: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if key.len() > MAX_ATTRIBUTE_KEY {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("a metadata attribute name is at most {MAX_ATTRIBUTE_KEY} bytes"),
        ));
    }
    let bytes = super::body::read_body(s, req, MAX_ATTRIBUTE_VALUE).await?;
    let value = String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "the metadata value must be UTF-8 text",
        )
    })?;
    if key.is_empty() {
        return Ok(no_content());
    }
    let mut extended = s.extended.lock().unwrap_or_else(|p| p.into_inner());
    if extended.len() >= MAX_ATTRIBUTES && !extended.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!(
                "at most {MAX_ATTRIBUTES} metadata attributes can be set; an existing one can be changed"
            ),
        ));
    }
    extended.insert(key, value);
    Ok(no_content())
}

/// `POST /v1.0/shutdown`: answers 204, then shuts down gracefully.
pub(super) fn shutdown(s: &ApiState) -> Result<Response<Body>, ApiError> {
    tracing::info!("shutdown requested through the API");
    s.health.draining.store(true, Ordering::Release);
    s.shutdown.cancel();
    Ok(no_content())
}
