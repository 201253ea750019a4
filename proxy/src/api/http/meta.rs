//! The HTTP codec of health, metadata and shutdown: `GET /v1.0/healthz[?appid=…]`,
//! `GET /v1.0/healthz/outbound`, `GET /v1.0/metadata` (JSON with empty fields omitted, as daprd
//! writes it), `PUT /v1.0/metadata/{key}` (the raw body is the value) and `POST /v1.0/shutdown`.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::{json_response, no_content, query_param};
use crate::api::ApiState;
use crate::api::http::body::read_body;
use crate::api::meta::{self, AttributeName, GetMetadataResponse, SetMetadataRequest};
use crate::errors::ApiError;
use crate::net::http::Body;

pub(in crate::api) fn healthz(
    s: &ApiState,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    meta::healthz(s, query_param(query, "appid").as_deref())?;
    Ok(no_content())
}

pub(in crate::api) fn healthz_outbound(s: &ApiState) -> Result<Response<Body>, ApiError> {
    meta::healthz_outbound(s)?;
    Ok(no_content())
}

pub(in crate::api) fn get(s: &ApiState) -> Result<Response<Body>, ApiError> {
    Ok(json_response(&Value::Object(metadata_json(meta::get(s)))))
}

/// daprd's JSON of the metadata answer: empty lists are left out.
fn metadata_json(m: GetMetadataResponse) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("id".into(), json!(m.id));
    body.insert("runtimeVersion".into(), json!(m.runtime_version));
    let n = m.name_resolution;
    body.insert(
        "nameResolution".into(),
        json!({
            "resolver": n.resolver,
            "loadBalancing": n.load_balancing,
            "meshTransport": n.mesh_transport,
            "targets": n.targets,
        }),
    );
    if !m.registered_components.is_empty() {
        let comps = (m.registered_components.iter())
            .map(|c| json!({"name": c.name, "type": c.type_, "version": c.version, "capabilities": c.capabilities}))
            .collect();
        body.insert("components".into(), Value::Array(comps));
    }
    if !m.subscriptions.is_empty() {
        let subs = m.subscriptions.iter().map(|l| l.to_metadata()).collect();
        body.insert("subscriptions".into(), Value::Array(subs));
    }
    if !m.http_endpoints.is_empty() {
        let names = (m.http_endpoints.iter()).map(|name| json!({"name": name}));
        body.insert("httpEndpoints".into(), Value::Array(names.collect()));
    }
    body.insert("extended".into(), json!(m.extended_metadata));
    if let Some(a) = m.app_connection_properties {
        let mut props =
            json!({"port": a.port, "protocol": a.protocol, "channelAddress": a.channel_address});
        if let Some(n) = a.max_concurrency {
            props["maxConcurrency"] = json!(n);
        }
        if let Some(h) = a.health {
            props["health"] = json!({
                "healthCheckPath": h.path,
                "healthProbeInterval": meta::go_duration(h.interval),
                "healthProbeTimeout": meta::go_duration(h.timeout),
                "healthThreshold": h.threshold,
            });
        }
        body.insert("appConnectionProperties".into(), props);
    }
    let actors = &m.actor_runtime;
    let counts: Vec<Value> = (actors.active.iter())
        .map(|(t, n)| match n {
            0 => json!({ "type": t }),
            n => json!({ "type": t, "count": n }),
        })
        .collect();
    if !counts.is_empty() {
        body.insert("actors".into(), Value::Array(counts.clone()));
    }
    let mut runtime = json!({"runtimeStatus": actors.status, "hostReady": actors.host_ready});
    if !counts.is_empty() {
        runtime["activeActors"] = Value::Array(counts);
    }
    if actors.status == "RUNNING" {
        runtime["placement"] = json!(actors.placement);
    }
    body.insert("actorRuntime".into(), runtime);
    if let Some(i) = m.interception {
        body.insert(
            "interception".into(),
            json!({"enabled": true, "outboundPort": i.outbound_port, "inboundPort": i.inbound_port,
                   "mode": i.mode.as_str(), "rules": i.rules}),
        );
    }
    body
}

/// `PUT /v1.0/metadata/{key}`: the raw body, as UTF-8 text, becomes `extended[key]`.
pub(in crate::api) async fn put(
    s: &ApiState,
    key: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let key = AttributeName::new(key)?;
    let bytes = read_body(s, req, meta::MAX_ATTRIBUTE_VALUE).await?;
    let value = String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "the metadata value must be UTF-8 text",
        )
    })?;
    meta::put(s, SetMetadataRequest { key, value })?;
    Ok(no_content())
}

/// `POST /v1.0/shutdown`: answers 204, then shuts down gracefully.
pub(in crate::api) fn shutdown(s: &ApiState) -> Result<Response<Body>, ApiError> {
    meta::shutdown(s);
    Ok(no_content())
}
