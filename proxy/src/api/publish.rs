//! `POST|PUT /v1.0/publish/{pubsub}/{topic…}`: wraps the body in a CloudEvent (unless
//! `metadata.rawPayload` is true) and hands it to the broker (api.md §4.1, §4.2).

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use outrider_blocks::pubsub::{Message, PublishContext, envelope};
use outrider_filters::trace::TraceContext;

use super::ApiState;
use super::meta::no_content;
use super::state::query_metadata;
use crate::errors::ApiError;
use crate::http::Body;

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

/// `true`/`false` as Go's `strconv.ParseBool` reads them.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

pub(super) async fn publish(
    s: &ApiState,
    name: &str,
    topic: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if name.is_empty() {
        return Err(err(StatusCode::NOT_FOUND, "ERR_PUBSUB_EMPTY", "pubsub name is empty"));
    }
    if s.pubsubs.is_empty() {
        return Err(err(StatusCode::BAD_REQUEST, "ERR_PUBSUB_NOT_CONFIGURED", "no pubsub is configured"));
    }
    let Some(c) = s.pubsubs.get(name) else {
        return Err(err(StatusCode::NOT_FOUND, "ERR_PUBSUB_NOT_FOUND", format!("pubsub {name} not found")));
    };
    if topic.is_empty() {
        return Err(err(StatusCode::NOT_FOUND, "ERR_TOPIC_NAME_EMPTY", format!("topic is empty in pubsub {name}")));
    }
    if !c.scopes.may_publish(topic) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "ERR_PUBSUB_FORBIDDEN",
            format!("topic {topic} is not allowed for app id {}", s.app_id),
        ));
    }
    let metadata = query_metadata(req.uri().query());
    let raw = match metadata.get("rawPayload") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                "ERR_PUBSUB_REQUEST_METADATA",
                format!("failed deserializing metadata: rawPayload {v:?} is not a boolean"),
            )
        })?,
    };
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let trace = req.extensions().get::<TraceContext>().copied();
    let tracestate = req.headers().get("tracestate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let limit = usize::try_from(s.max_body_size).unwrap_or(usize::MAX);
    let body = Limited::new(req.into_body(), limit).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            err(StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_READ", format!("the body is larger than {limit} bytes"))
        } else {
            err(StatusCode::BAD_REQUEST, "ERR_BODY_READ", format!("failed reading the body: {e}"))
        }
    })?;
    let body = body.to_bytes();
    let data = if raw {
        body
    } else {
        let traceparent = trace.map(|t| t.to_string()).unwrap_or_default();
        let ctx = PublishContext {
            app_id: &s.app_id,
            pubsub: name,
            topic,
            traceparent: &traceparent,
            tracestate: &tracestate,
            now: std::time::SystemTime::now(),
            id: uuid::Uuid::new_v4().to_string(),
        };
        let ce = envelope(&ctx, content_type.as_deref(), &body, &metadata)
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "ERR_PUBSUB_CLOUD_EVENTS_SER", e.to_string()))?;
        bytes::Bytes::from(ce.to_string())
    };
    c.broker.publish(Message { topic: c.broker_topic(topic), data, metadata }).await.map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            format!("error when publish to topic {topic} in pubsub {name}: {e}"),
        )
    })?;
    Ok(no_content())
}
