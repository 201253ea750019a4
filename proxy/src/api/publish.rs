//! Publishing (api.md §4.1–4.3), whatever the transport: which pub/sub and topic a request may
//! publish to (in daprd's order of checks), `rawPayload` and `ttlInSeconds`, the CloudEvent
//! envelope, the broker call with its metrics, and daprd's error codes. Requests and results are
//! shaped after `PublishEventRequest` and `BulkPublishRequest`. Not here: bodies, headers,
//! query strings — `api::http::publish` decodes those.
//!
//! The codec first finds the target ([`single`], [`bulk_target`]) from what the path and query
//! name, before it reads the body, as daprd checks them.

use bytes::Bytes;
use http::StatusCode;
use outrider_blocks::pubsub::{
    EnvelopeError, Message, Metadata, PubSubComponent, PubSubError, PublishContext, envelope,
    message_ttl, parse_bool,
};

use super::ApiState;
use crate::errors::ApiError;

/// A pub/sub and topic the app may publish to, and the request's metadata.
pub(crate) struct Target<'a> {
    pubsub: &'a PubSubComponent,
    name: &'a str,
    topic: &'a str,
    metadata: Metadata,
}

/// The target of a single publish, and whether its body goes to the broker as it is.
pub(crate) struct Single<'a> {
    target: Target<'a>,
    raw: bool,
}

/// What the publisher's request carries besides the body, for the envelope.
#[derive(Default)]
pub(crate) struct Origin {
    pub(crate) traceparent: String,
    pub(crate) tracestate: String,
}

impl Origin {
    /// The trace context the call carries (continued by the trace layer) and its `tracestate`.
    pub(crate) fn new(
        trace: Option<&outrider_filters::trace::TraceContext>,
        tracestate: Option<&str>,
    ) -> Self {
        Origin {
            traceparent: trace.map(ToString::to_string).unwrap_or_default(),
            tracestate: tracestate.unwrap_or_default().to_owned(),
        }
    }
}

/// The rest of `PublishEventRequest`: the event and its content type.
pub(crate) struct PublishEventRequest {
    pub(crate) data: Bytes,
    pub(crate) data_content_type: Option<String>,
    pub(crate) origin: Origin,
}

/// The rest of `BulkPublishRequest`: the entries, checked in order before any is published.
pub(crate) struct BulkPublishRequest<I> {
    pub(crate) entries: I,
    pub(crate) origin: Origin,
}

/// `BulkPublishRequestEntry`: its metadata is laid over the request's.
pub(crate) struct BulkPublishRequestEntry {
    pub(crate) entry_id: String,
    pub(crate) event: Bytes,
    pub(crate) content_type: String,
    pub(crate) metadata: Metadata,
}

/// `BulkPublishResponseFailedEntry`.
pub(crate) struct BulkPublishResponseFailedEntry {
    pub(crate) entry_id: String,
    pub(crate) error: String,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

/// A bulk publish the app got wrong.
pub(crate) fn events_ser(message: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", message)
}

/// The target of a single publish: an unknown pub/sub is 404; then `metadata` is checked.
pub(crate) fn single<'a>(
    s: &'a ApiState,
    name: &'a str,
    topic: &'a str,
    metadata: Metadata,
) -> Result<Single<'a>, ApiError> {
    let target = target(s, name, topic, StatusCode::NOT_FOUND, metadata)?;
    let raw = raw_payload(&target.metadata)?;
    Ok(Single { target, raw })
}

/// The target of a bulk publish: an unknown pub/sub is 400, as in daprd.
pub(crate) fn bulk_target<'a>(
    s: &'a ApiState,
    name: &'a str,
    topic: &'a str,
    metadata: Metadata,
) -> Result<Target<'a>, ApiError> {
    target(s, name, topic, StatusCode::BAD_REQUEST, metadata)
}

/// The pub/sub and topic, checked in daprd's order. An unknown pub/sub is `not_found`.
fn target<'a>(
    s: &'a ApiState,
    name: &'a str,
    topic: &'a str,
    not_found: StatusCode,
    metadata: Metadata,
) -> Result<Target<'a>, ApiError> {
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
    let Some(pubsub) = s.pubsubs.get(name) else {
        return Err(err(
            not_found,
            "ERR_PUBSUB_NOT_FOUND",
            format!("pubsub {name} is not found"),
        ));
    };
    if topic.is_empty() {
        return Err(err(
            StatusCode::NOT_FOUND,
            "ERR_TOPIC_NAME_EMPTY",
            format!("topic is empty in pubsub {name}"),
        ));
    }
    if !pubsub.scopes.may_publish(topic) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "ERR_PUBSUB_FORBIDDEN",
            format!("topic {topic} is not allowed for app id {}", s.app_id),
        ));
    }
    Ok(Target {
        pubsub,
        name,
        topic,
        metadata,
    })
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

impl Origin {
    /// The broker's bytes for one event: the body itself when raw, else its CloudEvent.
    fn wrap(
        &self,
        s: &ApiState,
        to: &Target<'_>,
        content_type: Option<&str>,
        body: Bytes,
        metadata: &Metadata,
        raw: bool,
    ) -> Result<Bytes, ApiError> {
        if raw {
            return Ok(body);
        }
        let ctx = PublishContext {
            app_id: &s.app_id,
            pubsub: to.name,
            topic: to.topic,
            traceparent: &self.traceparent,
            tracestate: &self.tracestate,
            now: std::time::SystemTime::now(),
            id: uuid::Uuid::new_v4().to_string(),
        };
        let event =
            envelope(&ctx, content_type, &body, metadata).map_err(|e| envelope_failed(&e))?;
        Ok(Bytes::from(event.to_string()))
    }
}

fn envelope_failed(e: &EnvelopeError) -> ApiError {
    err(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_PUBSUB_CLOUD_EVENTS_SER",
        e.to_string(),
    )
}

/// Publishes one event.
pub(crate) async fn publish(
    s: &ApiState,
    to: Single<'_>,
    req: PublishEventRequest,
) -> Result<(), ApiError> {
    let Single { target: t, raw } = to;
    let content_type = req.data_content_type.as_deref();
    let data = req
        .origin
        .wrap(s, &t, content_type, req.data, &t.metadata, raw)?;
    let start = std::time::Instant::now();
    let published = t
        .pubsub
        .broker
        .publish(Message {
            topic: t.pubsub.broker_topic(t.topic),
            data,
            metadata: t.metadata,
        })
        .await;
    s.pubsub_metrics
        .egress(t.name, t.topic, published.is_ok(), start);
    count_full(t.name, published.as_ref().err());
    published.map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            format!(
                "error when publish to topic {} in pubsub {}: {e}",
                t.topic, t.name
            ),
        )
    })
}

/// Checks every entry, then publishes each on its own; the ones that failed are returned.
pub(crate) async fn publish_bulk<I>(
    s: &ApiState,
    to: Target<'_>,
    req: BulkPublishRequest<I>,
) -> Result<Vec<BulkPublishResponseFailedEntry>, ApiError>
where
    I: IntoIterator<Item = Result<BulkPublishRequestEntry, ApiError>>,
{
    let messages = messages(s, &to, req)?;
    let (start, count) = (std::time::Instant::now(), messages.len());
    let mut failed = Vec::new();
    for (entry_id, msg) in messages {
        let published = to.pubsub.broker.publish(msg).await;
        count_full(to.name, published.as_ref().err());
        if let Err(e) = published {
            failed.push(BulkPublishResponseFailedEntry {
                entry_id,
                error: e.to_string(),
            });
        }
    }
    s.pubsub_metrics
        .egress_bulk(to.name, to.topic, count, failed.is_empty(), start);
    Ok(failed)
}

/// The broker's message of every entry, by entry id; each id must be given, and only once.
fn messages<I>(
    s: &ApiState,
    to: &Target<'_>,
    req: BulkPublishRequest<I>,
) -> Result<Vec<(String, Message)>, ApiError>
where
    I: IntoIterator<Item = Result<BulkPublishRequestEntry, ApiError>>,
{
    let mut seen = std::collections::BTreeSet::new();
    let mut messages = Vec::new();
    for entry in req.entries {
        let e = entry?;
        if e.entry_id.is_empty() || !seen.insert(e.entry_id.clone()) {
            return Err(events_ser(
                "error: entryId is duplicated or not present for entry",
            ));
        }
        let mut metadata = to.metadata.clone();
        metadata.extend(e.metadata);
        let raw = raw_payload(&metadata)?;
        let data = req
            .origin
            .wrap(s, to, Some(&e.content_type), e.event, &metadata, raw)?;
        let topic = to.pubsub.broker_topic(to.topic);
        messages.push((
            e.entry_id,
            Message {
                topic,
                data,
                metadata,
            },
        ));
    }
    Ok(messages)
}

/// Counts publishes refused because a subscriber had no room left (in-memory broker).
fn count_full(pubsub: &str, e: Option<&PubSubError>) {
    if let Some(PubSubError::Full(_)) = e {
        crate::telemetry::metrics::PUBLISH_FULL
            .counter(&[("component", pubsub.to_owned())])
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_metadata_is_checked_ttl_first() {
        let md = |pairs: &[(&str, &str)]| -> Metadata {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let ok = [
            (md(&[]), false),
            (md(&[("rawPayload", "true")]), true),
            (md(&[("rawPayload", "F"), ("ttlInSeconds", "5")]), false),
        ];
        for (metadata, raw) in ok {
            assert_eq!(raw_payload(&metadata).unwrap(), raw, "{metadata:?}");
        }
        let bad = [
            md(&[("rawPayload", "yes")]),
            md(&[("ttlInSeconds", "0")]),
            // Both wrong: the TTL is reported.
            md(&[("rawPayload", "yes"), ("ttlInSeconds", "soon")]),
        ];
        for metadata in bad {
            let e = raw_payload(&metadata).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "ERR_PUBSUB_REQUEST_METADATA"),
                "{metadata:?}"
            );
        }
        let e = raw_payload(&md(&[("rawPayload", "yes"), ("ttlInSeconds", "soon")])).unwrap_err();
        assert!(e.message.starts_with("ttlInSeconds"), "{}", e.message);
    }
}
