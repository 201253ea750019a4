//! The HTTP codec of publishing: `POST|PUT /v1.0/publish/{pubsub}/{topic…}` (the body and its
//! `Content-Type` are the event, `metadata.*` query parameters its metadata) and
//! `/v1.0-alpha1/publish/bulk/{pubsub}/{topic…}` (a JSON array of
//! `{entryId, event, contentType, metadata}`, each event decoded by its content type), with
//! daprd's answers: 204, or a 500 listing the entries that failed.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_blocks::pubsub::{Metadata, media_type};
use outrider_filters::trace::TraceContext;
use serde_json::{Map, Value, json};

use super::{no_content, query_metadata};
use crate::api::ApiState;
use crate::api::http::body::read_body;
use crate::api::publish::{
    self, BulkPublishRequest, BulkPublishRequestEntry, Origin, PublishEventRequest, events_ser,
};
use crate::errors::ApiError;
use crate::net::http::{Body, full};

/// The trace the publisher's request carries, for the envelope.
fn origin(req: &Request<Incoming>) -> Origin {
    let tracestate = req
        .headers()
        .get("tracestate")
        .and_then(|v| v.to_str().ok());
    Origin::new(req.extensions().get::<TraceContext>(), tracestate)
}

pub(in crate::api) async fn publish(
    s: &ApiState,
    name: &str,
    topic: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let to = publish::single(s, name, topic, query_metadata(req.uri().query()))?;
    let data_content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let origin = origin(&req);
    let data = read_body(s, req, u64::MAX).await?;
    let event = PublishEventRequest {
        data,
        data_content_type,
        origin,
    };
    publish::publish(s, to, event).await?;
    Ok(no_content())
}

/// `POST|PUT /v1.0-alpha1/publish/bulk/{pubsub}/{topic…}`.
pub(in crate::api) async fn publish_bulk(
    s: &ApiState,
    name: &str,
    topic: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let to = publish::bulk_target(s, name, topic, query_metadata(req.uri().query()))?;
    let origin = origin(&req);
    let body = read_body(s, req, u64::MAX).await?;
    let entries: Vec<Map<String, Value>> = serde_json::from_slice(&body).map_err(|e| {
        events_ser(format!(
            "error when unmarshaling the request for topic {topic} pubsub {name}: {e}"
        ))
    })?;
    let entries = entries.iter().map(entry);
    let failed = publish::publish_bulk(s, to, BulkPublishRequest { entries, origin }).await?;
    if failed.is_empty() {
        return Ok(no_content());
    }
    let failed: Vec<Value> = failed
        .into_iter()
        // Both spellings: daprd writes `entryId`, the JavaScript SDK looks up `entryID`.
        .map(|f| json!({"entryId": f.entry_id, "entryID": f.entry_id, "error": f.error}))
        .collect();
    let body = json!({"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"});
    let mut rsp = Response::new(full(body.to_string()));
    *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(rsp)
}

/// One bulk entry, read the way Go's JSON decoder reads it (field names in any case); its event
/// is text for `text/*` and XML, JSON for JSON types and base64 for `application/octet-stream`.
fn entry(entry: &Map<String, Value>) -> Result<BulkPublishRequestEntry, ApiError> {
    let field = |name: &str| {
        entry
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let text = |name: &str| {
        field(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let entry_id = text("entryId");
    let content_type = text("contentType");
    let event = event(
        &content_type,
        field("event").unwrap_or(&Value::Null),
        &entry_id,
    )?;
    let mut metadata = Metadata::new();
    if let Some(Value::Object(m)) = field("metadata") {
        for (k, v) in m {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            metadata.insert(k.clone(), v);
        }
    }
    Ok(BulkPublishRequestEntry {
        entry_id,
        event,
        content_type,
        metadata,
    })
}

/// The bytes of an entry's event, as its content type says to read the JSON value.
fn event(content_type: &str, event: &Value, entry_id: &str) -> Result<Bytes, ApiError> {
    let mismatch = || {
        events_ser(format!(
            "error: mismatch between contentType {content_type:?} and event for entry {entry_id}"
        ))
    };
    let media = media_type(content_type);
    if media.starts_with("text/") || media.ends_with("/xml") || media.ends_with("+xml") {
        Ok(Bytes::from(event.as_str().ok_or_else(mismatch)?.to_owned()))
    } else if media == "application/json" || media.ends_with("+json") {
        Ok(Bytes::from(event.to_string()))
    } else if media == "application/octet-stream" {
        let b64 = event.as_str().ok_or_else(mismatch)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| mismatch())?;
        Ok(Bytes::from(bytes))
    } else {
        Err(events_ser(format!(
            "error: unsupported contentType {content_type:?} for entry {entry_id}"
        )))
    }
}
