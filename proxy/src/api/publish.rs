//! `POST|PUT /v1.0/publish/{pubsub}/{topic…}`: wraps the body in a CloudEvent (unless
//! `metadata.rawPayload` is true) and hands it to the broker (api.md §4.1, §4.2); and its bulk
//! form (§4.3).

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_blocks::pubsub::{
    EnvelopeError, Message, Metadata, PubSubComponent, PubSubError, PublishContext, envelope,
    media_type, message_ttl, parse_bool,
};
use outrider_filters::trace::TraceContext;
use serde_json::{Value, json};

use super::ApiState;
use super::http::{no_content, query_metadata};
use crate::errors::ApiError;
use crate::net::http::{Body, full};

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

/// The pub/sub and topic of a publish path, checked in daprd's order. An unknown pub/sub is
/// `not_found` (404 for single publishes, 400 for bulk ones, as in daprd).
fn target<'a>(
    s: &'a ApiState,
    name: &str,
    topic: &str,
    not_found: StatusCode,
) -> Result<&'a PubSubComponent, ApiError> {
    if name.is_empty() {
        return Err(err(
            StatusCode::NOT_FOUND,
            "ERR_PUBSUB_EMPTY",
            "pubsub name is empty",
        ));
    }
    if s.pubsubs.is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_NOT_CONFIGURED",
            "no pubsub is configured",
        ));
    }
    let Some(c) = s.pubsubs.get(name) else {
        return Err(err(
            not_found,
            "ERR_PUBSUB_NOT_FOUND",
            format!("pubsub {name} not found"),
        ));
    };
    if topic.is_empty() {
        return Err(err(
            StatusCode::NOT_FOUND,
            "ERR_TOPIC_NAME_EMPTY",
            format!("topic is empty in pubsub {name}"),
        ));
    }
    if !c.scopes.may_publish(topic) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "ERR_PUBSUB_FORBIDDEN",
            format!("topic {topic} is not allowed for app id {}", s.app_id),
        ));
    }
    Ok(c)
}

/// `metadata.rawPayload`: whether the body goes to the broker without an envelope. Checks
/// `metadata.ttlInSeconds` too.
fn raw_payload(metadata: &Metadata) -> Result<bool, ApiError> {
    message_ttl(metadata)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "ERR_PUBSUB_REQUEST_METADATA", e))?;
    match metadata.get("rawPayload") {
        None => Ok(false),
        Some(v) => parse_bool(v).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                "ERR_PUBSUB_REQUEST_METADATA",
                format!("failed deserializing metadata: rawPayload {v:?} is not a boolean"),
            )
        }),
    }
}

/// What the publisher's request carries besides the body, for the envelope.
struct Origin {
    traceparent: String,
    tracestate: String,
}

impl Origin {
    fn of(req: &Request<Incoming>) -> Self {
        let trace = req.extensions().get::<TraceContext>().copied();
        Self {
            traceparent: trace.map(|t| t.to_string()).unwrap_or_default(),
            tracestate: req
                .headers()
                .get("tracestate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// The broker's bytes for one event: the body itself when raw, else its CloudEvent.
    fn wrap(
        &self,
        s: &ApiState,
        (name, topic): (&str, &str),
        content_type: Option<&str>,
        body: Bytes,
        metadata: &Metadata,
        raw: bool,
    ) -> Result<Bytes, EnvelopeError> {
        if raw {
            return Ok(body);
        }
        let ctx = PublishContext {
            app_id: &s.app_id,
            pubsub: name,
            topic,
            traceparent: &self.traceparent,
            tracestate: &self.tracestate,
            now: std::time::SystemTime::now(),
            id: uuid::Uuid::new_v4().to_string(),
        };
        Ok(Bytes::from(
            envelope(&ctx, content_type, &body, metadata)?.to_string(),
        ))
    }
}

fn envelope_failed(e: &EnvelopeError) -> ApiError {
    err(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_PUBSUB_CLOUD_EVENTS_SER",
        e.to_string(),
    )
}

pub(super) async fn publish(
    s: &ApiState,
    name: &str,
    topic: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let c = target(s, name, topic, StatusCode::NOT_FOUND)?;
    let metadata = query_metadata(req.uri().query());
    let raw = raw_payload(&metadata)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let origin = Origin::of(&req);
    let body = super::body::read_body(s, req, u64::MAX).await?;
    let data = origin
        .wrap(
            s,
            (name, topic),
            content_type.as_deref(),
            body,
            &metadata,
            raw,
        )
        .map_err(|e| envelope_failed(&e))?;
    let start = std::time::Instant::now();
    let published = c
        .broker
        .publish(Message {
            topic: c.broker_topic(topic),
            data,
            metadata,
        })
        .await;
    s.pubsub_metrics
        .egress(name, topic, published.is_ok(), start);
    count_full(name, published.as_ref().err());
    published.map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            format!("error when publish to topic {topic} in pubsub {name}: {e}"),
        )
    })?;
    Ok(no_content())
}

/// `POST|PUT /v1.0-alpha1/publish/bulk/{pubsub}/{topic…}`: a JSON array of
/// `{entryId, event, contentType, metadata}`. Every entry is checked before any is published;
/// then each is published on its own, and the ones that failed are listed in a 500.
pub(super) async fn publish_bulk(
    s: &ApiState,
    name: &str,
    topic: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let c = target(s, name, topic, StatusCode::BAD_REQUEST)?;
    let metadata = query_metadata(req.uri().query());
    let origin = Origin::of(&req);
    let body = super::body::read_body(s, req, u64::MAX).await?;
    let entries: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&body).map_err(|e| {
            events_ser(format!(
                "error when unmarshaling the request for topic {topic} pubsub {name}: {e}"
            ))
        })?;
    let mut seen = std::collections::BTreeSet::new();
    let mut messages = Vec::with_capacity(entries.len());
    for entry in &entries {
        let e = BulkEntry::read(entry, &metadata)?;
        if e.id.is_empty() || !seen.insert(e.id.clone()) {
            return Err(events_ser(
                "error: entryId is duplicated or not present for entry",
            ));
        }
        let raw = raw_payload(&e.metadata)?;
        let data = origin
            .wrap(
                s,
                (name, topic),
                Some(&e.content_type),
                e.data,
                &e.metadata,
                raw,
            )
            .map_err(|err| envelope_failed(&err))?;
        messages.push((
            e.id,
            Message {
                topic: c.broker_topic(topic),
                data,
                metadata: e.metadata,
            },
        ));
    }
    let (start, count) = (std::time::Instant::now(), messages.len());
    let mut failed = Vec::new();
    for (id, msg) in messages {
        let published = c.broker.publish(msg).await;
        count_full(name, published.as_ref().err());
        if let Err(e) = published {
            // Both spellings: daprd writes `entryId`, the JavaScript SDK looks up `entryID`.
            failed.push(json!({"entryId": id, "entryID": id, "error": e.to_string()}));
        }
    }
    s.pubsub_metrics
        .egress_bulk(name, topic, count, failed.is_empty(), start);
    if failed.is_empty() {
        return Ok(no_content());
    }
    let body = json!({"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"});
    let mut rsp = Response::new(full(body.to_string()));
    *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(rsp)
}

/// Counts publishes refused because a subscriber had no room left (in-memory broker).
fn count_full(pubsub: &str, e: Option<&PubSubError>) {
    if let Some(PubSubError::Full(_)) = e {
        metrics::counter!("outrider_pubsub_publish_full_total", "component" => pubsub.to_owned())
            .increment(1);
    }
}

fn events_ser(message: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", message)
}

/// One bulk entry, read the way Go's JSON decoder reads it (field names in any case).
struct BulkEntry {
    id: String,
    content_type: String,
    data: Bytes,
    metadata: Metadata,
}

impl BulkEntry {
    fn read(entry: &serde_json::Map<String, Value>, request: &Metadata) -> Result<Self, ApiError> {
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
        let id = text("entryId");
        let content_type = text("contentType");
        let event = field("event").unwrap_or(&Value::Null);
        let mismatch = || {
            events_ser(format!(
                "error: mismatch between contentType {content_type:?} and event for entry {id}"
            ))
        };
        let media = media_type(&content_type);
        let data =
            if media.starts_with("text/") || media.ends_with("/xml") || media.ends_with("+xml") {
                Bytes::from(event.as_str().ok_or_else(mismatch)?.to_owned())
            } else if media == "application/json" || media.ends_with("+json") {
                Bytes::from(event.to_string())
            } else if media == "application/octet-stream" {
                let b64 = event.as_str().ok_or_else(mismatch)?;
                Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| mismatch())?,
                )
            } else {
                return Err(events_ser(format!(
                    "error: unsupported contentType {content_type:?} for entry {id}"
                )));
            };
        let mut metadata = request.clone();
        if let Some(Value::Object(m)) = field("metadata") {
            for (k, v) in m {
                metadata.insert(
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                );
            }
        }
        Ok(Self {
            id,
            content_type,
            data,
            metadata,
        })
    }
}
