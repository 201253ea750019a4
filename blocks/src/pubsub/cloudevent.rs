//! Building the CloudEvent 1.0 envelope a published message travels in (api.md §4.2), as a
//! pure function.
//!
//! A body already in structured CloudEvents form (`application/cloudevents+json`) keeps its
//! fields; only the missing ones are filled (`source`, `type`, `specversion`, `time`, trace
//! context) and `topic`/`pubsubname` are set. Any other body gets a new envelope: `data` holds
//! parsed JSON for `application/json`, the text for other types, and `data_base64` replaces it
//! for `application/octet-stream`. `cloudevent.<field>` metadata overrides `id`, `source`,
//! `type`, `subject` and the trace fields. `ttlInSeconds` metadata adds `expiration`; a
//! subscriber drops events past it ([`expired`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// What an envelope needs besides the body.
#[derive(Clone, Debug)]
pub struct PublishContext<'a> {
    /// The publishing app (the default `source`).
    pub app_id: &'a str,
    /// The pub/sub component's name.
    pub pubsub: &'a str,
    /// The topic.
    pub topic: &'a str,
    /// The publish span's `traceparent`.
    pub traceparent: &'a str,
    /// Its `tracestate` (may be empty).
    pub tracestate: &'a str,
    /// Now.
    pub now: SystemTime,
    /// The event id to use when neither the body nor metadata gives one.
    pub id: String,
}

/// Why no envelope could be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A body sent as `application/cloudevents+json` is not a JSON object.
    #[error("the body is not a CloudEvent JSON object: {0}")]
    NotACloudEvent(String),
}

/// The media type of a Content-Type value: lower-case, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// TTLs longer than this (about a thousand years) are cut to it, so an expiration is always a
/// representable time.
const MAX_TTL_SECS: u64 = 1000 * 365 * 24 * 3600;

/// The message TTL of publish metadata (`ttlInSeconds`, a positive whole number), if any.
pub fn message_ttl(metadata: &BTreeMap<String, String>) -> Result<Option<Duration>, String> {
    if let Some(v) = metadata.get("ttlInSeconds").filter(|v| !v.is_empty()) {
        return match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some(Duration::from_secs(
                n.unsigned_abs().min(MAX_TTL_SECS),
            ))),
            Ok(n) => Err(format!(
                "ttlInSeconds value must be higher than zero: actual is {n}"
            )),
            Err(_) => Err(format!(
                "ttlInSeconds value must be a valid integer: actual is {v:?}"
            )),
        };
    }
    match metadata.get("ttl").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match go_duration(v) {
            Some(d) if !d.is_zero() => Ok(Some(d.min(Duration::from_secs(MAX_TTL_SECS)))),
            Some(_) => Err(format!(
                "ttl value must be higher than zero: actual is {v:?}"
            )),
            None => Err(format!(
                "ttl value must be a valid duration (e.g. 90s, 1h30m): actual is {v:?}"
            )),
        },
    }
}

/// A Go duration (`300ms`, `1.5h`, `2h45m`, `-1s`): a sequence of decimal numbers each with a
/// unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`). Negative durations and overflow give `None`.
pub(crate) fn go_duration(v: &str) -> Option<Duration> {
    let mut rest = v.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.starts_with('-') || rest.is_empty() {
        return None;
    }
    rest = rest.strip_prefix('+').unwrap_or(rest);
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        if number.is_empty() || number == "." {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = tail;
    }
    // Go's limit: about 292 years.
    (total.is_finite() && total < 9.2e9).then(|| Duration::from_secs_f64(total))
}

/// The CloudEvent a subscription with `rawPayload` gets for a message: the message's bytes as
/// `data_base64` in an envelope of the subscriber's sidecar's making, with the trace fields the
/// message's metadata carries.
pub fn raw_event(
    pubsub: &str,
    topic: &str,
    data: &[u8],
    metadata: &BTreeMap<String, String>,
) -> Value {
    let mut ce = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "specversion": "1.0",
        "datacontenttype": "application/octet-stream",
        "source": "Dapr",
        "type": "com.dapr.event.sent",
        "topic": topic,
        "pubsubname": pubsub,
        "data_base64": base64::engine::general_purpose::STANDARD.encode(data),
    });
    for key in ["traceparent", "traceid", "tracestate"] {
        if let Some(v) = metadata
            .get(key)
            .or_else(|| metadata.get(&format!("cloudevent.{key}")))
        {
            ce[key] = json!(v);
        }
    }
    ce
}

/// Whether a subscription's `rawPayload` metadata asks for raw messages.
pub fn wants_raw(metadata: &BTreeMap<String, String>) -> bool {
    metadata.get("rawPayload").and_then(|v| parse_bool(v)) == Some(true)
}

/// `true`/`false` as Go's `strconv.ParseBool` reads them (Dapr's metadata flags).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Whether the event's `expiration` (RFC 3339) is before `now`. Events without one, or with
/// one that does not parse, never expire.
pub fn expired(event: &Value, now: SystemTime) -> bool {
    let Some(at) = event.get("expiration").and_then(Value::as_str) else {
        return false;
    };
    match time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) {
        Ok(at) => time::OffsetDateTime::from(now) > at,
        Err(_) => false,
    }
}

fn set_if_absent(m: &mut Map<String, Value>, k: &str, v: Value) {
    m.entry(k.to_owned()).or_insert(v);
}

/// Builds the envelope of `body` published with `content_type` and request `metadata`.
pub fn envelope(
    ctx: &PublishContext<'_>,
    content_type: Option<&str>,
    body: &[u8],
    metadata: &BTreeMap<String, String>,
) -> Result<Value, EnvelopeError> {
    let over = |field: &str| {
        metadata
            .get(&format!("cloudevent.{field}"))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let content_type = content_type
        .filter(|c| !c.trim().is_empty())
        .unwrap_or("text/plain");
    let media = media_type(content_type);
    let now = crate::state::rfc3339(ctx.now);
    let traceparent = over("traceparent")
        .or(over("traceid"))
        .unwrap_or_else(|| ctx.traceparent.to_owned());
    let tracestate = over("tracestate").unwrap_or_else(|| ctx.tracestate.to_owned());
    // Checked by the publish route; an invalid value adds nothing here.
    let expiration = message_ttl(metadata)
        .ok()
        .flatten()
        .map(|ttl| crate::state::rfc3339(ctx.now + ttl));

    let common = Common {
        now,
        traceparent,
        tracestate,
        expiration,
    };
    if media == "application/cloudevents+json" {
        return structured(ctx, body, common);
    }

    let mut ce = Map::new();
    ce.insert(
        "id".into(),
        json!(over("id").unwrap_or_else(|| ctx.id.clone())),
    );
    ce.insert("specversion".into(), json!("1.0"));
    ce.insert(
        "type".into(),
        json!(over("type").unwrap_or_else(|| "com.dapr.event.sent".into())),
    );
    let source = over("source").unwrap_or_else(|| {
        if ctx.app_id.is_empty() {
            "Dapr".into()
        } else {
            ctx.app_id.to_owned()
        }
    });
    ce.insert("source".into(), json!(source));
    ce.insert("datacontenttype".into(), json!(content_type));
    insert_data(&mut ce, &media, body);
    ce.insert("topic".into(), json!(ctx.topic));
    ce.insert("pubsubname".into(), json!(ctx.pubsub));
    ce.insert("traceid".into(), json!(common.traceparent));
    ce.insert("traceparent".into(), json!(common.traceparent));
    ce.insert("tracestate".into(), json!(common.tracestate));
    ce.insert("time".into(), json!(common.now));
    if let Some(subject) = over("subject") {
        ce.insert("subject".into(), json!(subject));
    }
    if let Some(at) = common.expiration {
        ce.insert("expiration".into(), json!(at));
    }
    Ok(Value::Object(ce))
}

/// What both envelope forms carry: the publish time, trace context and expiry.
struct Common {
    now: String,
    traceparent: String,
    tracestate: String,
    expiration: Option<String>,
}

/// A body already in structured CloudEvents form: its fields kept, the missing ones filled.
fn structured(
    ctx: &PublishContext<'_>,
    body: &[u8],
    common: Common,
) -> Result<Value, EnvelopeError> {
    let Ok(Value::Object(mut ce)) = serde_json::from_slice::<Value>(body) else {
        return Err(EnvelopeError::NotACloudEvent(
            String::from_utf8_lossy(body).chars().take(64).collect(),
        ));
    };
    set_if_absent(&mut ce, "source", json!("Dapr"));
    set_if_absent(&mut ce, "type", json!("com.dapr.event.sent"));
    set_if_absent(&mut ce, "specversion", json!("1.0"));
    set_if_absent(&mut ce, "time", json!(common.now));
    if !ce.contains_key("traceid") {
        ce.insert("traceid".into(), json!(common.traceparent));
        ce.insert("traceparent".into(), json!(common.traceparent));
    }
    set_if_absent(&mut ce, "tracestate", json!(common.tracestate));
    ce.insert("topic".into(), json!(ctx.topic));
    ce.insert("pubsubname".into(), json!(ctx.pubsub));
    if let Some(at) = common.expiration {
        ce.insert("expiration".into(), json!(at));
    }
    Ok(Value::Object(ce))
}

/// The body as `data` (parsed JSON for `application/json`, else text) or `data_base64`.
fn insert_data(ce: &mut Map<String, Value>, media: &str, body: &[u8]) {
    match media {
        "application/json" => {
            let data = serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
            ce.insert("data".into(), data);
        }
        "application/octet-stream" => {
            ce.insert(
                "data_base64".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(body)),
            );
        }
        _ => {
            ce.insert("data".into(), json!(String::from_utf8_lossy(body)));
        }
    }
}

#[cfg(test)]
mod tests;
