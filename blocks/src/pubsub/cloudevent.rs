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
fn go_duration(v: &str) -> Option<Duration> {
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

    if media == "application/cloudevents+json" {
        let Ok(Value::Object(mut ce)) = serde_json::from_slice::<Value>(body) else {
            return Err(EnvelopeError::NotACloudEvent(
                String::from_utf8_lossy(body).chars().take(64).collect(),
            ));
        };
        set_if_absent(&mut ce, "source", json!("Dapr"));
        set_if_absent(&mut ce, "type", json!("com.dapr.event.sent"));
        set_if_absent(&mut ce, "specversion", json!("1.0"));
        set_if_absent(&mut ce, "time", json!(now));
        if !ce.contains_key("traceid") {
            ce.insert("traceid".into(), json!(traceparent));
            ce.insert("traceparent".into(), json!(traceparent));
        }
        set_if_absent(&mut ce, "tracestate", json!(tracestate));
        ce.insert("topic".into(), json!(ctx.topic));
        ce.insert("pubsubname".into(), json!(ctx.pubsub));
        if let Some(at) = expiration {
            ce.insert("expiration".into(), json!(at));
        }
        return Ok(Value::Object(ce));
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
    match media.as_str() {
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
    ce.insert("topic".into(), json!(ctx.topic));
    ce.insert("pubsubname".into(), json!(ctx.pubsub));
    ce.insert("traceid".into(), json!(traceparent));
    ce.insert("traceparent".into(), json!(traceparent));
    ce.insert("tracestate".into(), json!(tracestate));
    ce.insert("time".into(), json!(now));
    if let Some(subject) = over("subject") {
        ce.insert("subject".into(), json!(subject));
    }
    if let Some(at) = expiration {
        ce.insert("expiration".into(), json!(at));
    }
    Ok(Value::Object(ce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn ctx() -> PublishContext<'static> {
        PublishContext {
            app_id: "orders",
            pubsub: "pubsub",
            topic: "new-orders",
            traceparent: TP,
            tracestate: "k=v",
            now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            id: "fixed-id".into(),
        }
    }

    fn env(ct: Option<&str>, body: &[u8], md: &[(&str, &str)]) -> Value {
        let md: BTreeMap<String, String> = md
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        envelope(&ctx(), ct, body, &md).unwrap()
    }

    #[test]
    fn json_bodies_become_data() {
        let e = env(
            Some("application/json; charset=utf-8"),
            br#"{"qty":1.50,"big":12345678901234}"#,
            &[],
        );
        assert_eq!(e["data"], json!({"qty": 1.5, "big": 12345678901234u64}));
        assert_eq!(e["datacontenttype"], "application/json; charset=utf-8");
        for (k, v) in [
            ("id", "fixed-id"),
            ("source", "orders"),
            ("type", "com.dapr.event.sent"),
            ("specversion", "1.0"),
            ("topic", "new-orders"),
            ("pubsubname", "pubsub"),
            ("traceparent", TP),
            ("traceid", TP),
            ("tracestate", "k=v"),
            ("time", "2023-11-14T22:13:20Z"),
        ] {
            assert_eq!(e[k], v, "{k}");
        }
        assert!(e.get("subject").is_none() && e.get("data_base64").is_none());
        // Not actually JSON: kept as text.
        assert_eq!(
            env(Some("application/json"), b"{oops", &[])["data"],
            "{oops"
        );
    }

    #[test]
    fn text_binary_and_defaults() {
        let e = env(None, b"hello", &[]);
        assert_eq!(
            (e["data"].as_str(), e["datacontenttype"].as_str()),
            (Some("hello"), Some("text/plain"))
        );
        let e = env(Some("application/octet-stream"), b"\x00\xff", &[]);
        assert_eq!(e["data_base64"], "AP8=");
        assert!(e.get("data").is_none());
        let e = env(Some("application/xml"), b"<a/>", &[]);
        assert_eq!(e["data"], "<a/>");
    }

    #[test]
    fn metadata_overrides_fields() {
        let e = env(
            Some("text/plain"),
            b"x",
            &[
                ("cloudevent.id", "my-id"),
                ("cloudevent.source", "src"),
                ("cloudevent.type", "t"),
                ("cloudevent.subject", "s"),
                ("cloudevent.traceparent", "00-tp"),
                ("other", "ignored"),
            ],
        );
        assert_eq!(
            (
                e["id"].as_str(),
                e["source"].as_str(),
                e["type"].as_str(),
                e["subject"].as_str()
            ),
            (Some("my-id"), Some("src"), Some("t"), Some("s"))
        );
        assert_eq!(
            (e["traceparent"].as_str(), e["traceid"].as_str()),
            (Some("00-tp"), Some("00-tp"))
        );
    }

    #[test]
    fn structured_cloudevents_keep_their_fields() {
        let body = br#"{"id":"abc","source":"mine","type":"widget","specversion":"1.0","data":{"n":1},"traceid":"t1","topic":"spoofed"}"#;
        let e = env(Some("application/cloudevents+json"), body, &[]);
        assert_eq!(
            (e["id"].as_str(), e["source"].as_str(), e["type"].as_str()),
            (Some("abc"), Some("mine"), Some("widget"))
        );
        assert_eq!(e["data"], json!({"n": 1}));
        assert_eq!(e["traceid"], "t1", "a given traceid is kept");
        assert!(
            e.get("traceparent").is_none(),
            "traceparent is only added alongside a missing traceid"
        );
        assert_eq!(
            (e["topic"].as_str(), e["pubsubname"].as_str()),
            (Some("new-orders"), Some("pubsub")),
            "topic and pubsubname are always the real ones"
        );
        assert_eq!(e["time"], "2023-11-14T22:13:20Z");
        assert!(
            e.get("datacontenttype").is_none(),
            "not added to structured events"
        );
        let minimal = env(Some("application/cloudevents+json"), br#"{"data":1}"#, &[]);
        assert_eq!(
            (
                minimal["source"].as_str(),
                minimal["type"].as_str(),
                minimal["traceparent"].as_str()
            ),
            (Some("Dapr"), Some("com.dapr.event.sent"), Some(TP))
        );
        for bad in [&b"[1,2]"[..], b"not json", b"\"str\""] {
            let md = BTreeMap::new();
            assert!(
                envelope(&ctx(), Some("application/cloudevents+json"), bad, &md).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type("Application/JSON; charset=utf-8"),
            "application/json"
        );
        assert_eq!(media_type(""), "");
    }

    #[test]
    fn ttl_adds_an_expiration_that_expires() {
        let e = env(Some("text/plain"), b"x", &[("ttlInSeconds", "90")]);
        assert_eq!(e["expiration"], "2023-11-14T22:14:50Z");
        let now = ctx().now;
        assert!(
            !expired(&e, now + Duration::from_secs(89))
                && expired(&e, now + Duration::from_secs(91))
        );
        let ce = env(
            Some("application/cloudevents+json"),
            br#"{"id":"1"}"#,
            &[("ttlInSeconds", "1")],
        );
        assert_eq!(ce["expiration"], "2023-11-14T22:13:21Z");
        assert!(
            env(Some("text/plain"), b"x", &[])
                .get("expiration")
                .is_none()
        );
        assert!(
            !expired(&json!({"expiration": "not a time"}), now),
            "unreadable expirations never expire"
        );
    }

    #[test]
    fn raw_messages_get_an_envelope_for_raw_subscribers() {
        let md = BTreeMap::from([("traceparent".to_owned(), "00-aa-bb-01".to_owned())]);
        let e = raw_event("pubsub", "raw", b"\x00\xffhi", &md);
        assert_eq!(
            (
                e["data_base64"].as_str(),
                e["topic"].as_str(),
                e["pubsubname"].as_str()
            ),
            (Some("AP9oaQ=="), Some("raw"), Some("pubsub"))
        );
        assert_eq!(
            (e["source"].as_str(), e["type"].as_str()),
            (Some("Dapr"), Some("com.dapr.event.sent"))
        );
        assert_eq!(e["datacontenttype"], "application/octet-stream");
        assert_eq!(e["traceparent"], "00-aa-bb-01");
        assert!(uuid::Uuid::parse_str(e["id"].as_str().unwrap()).is_ok());
        assert!(wants_raw(&BTreeMap::from([(
            "rawPayload".to_owned(),
            "true".to_owned()
        )])));
        assert!(
            !wants_raw(&BTreeMap::from([(
                "rawPayload".to_owned(),
                "false".to_owned()
            )])) && !wants_raw(&BTreeMap::new())
        );
    }

    #[test]
    fn ttl_values() {
        let md = |v: &str| BTreeMap::from([("ttlInSeconds".to_owned(), v.to_owned())]);
        assert_eq!(message_ttl(&BTreeMap::new()), Ok(None));
        assert_eq!(message_ttl(&md("")), Ok(None));
        assert_eq!(message_ttl(&md("5")), Ok(Some(Duration::from_secs(5))));
        let huge = message_ttl(&md(&i64::MAX.to_string())).unwrap().unwrap();
        assert_eq!(huge, Duration::from_secs(MAX_TTL_SECS));
        let e = env(
            Some("text/plain"),
            b"x",
            &[("ttlInSeconds", &i64::MAX.to_string())],
        );
        assert!(e["expiration"].as_str().unwrap().starts_with("30"), "{e}");
        for bad in ["0", "-3", "1.5", "ten"] {
            assert!(message_ttl(&md(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttl_as_a_go_duration() {
        let ttl = |v: &str| message_ttl(&BTreeMap::from([("ttl".to_owned(), v.to_owned())]));
        let ms = Duration::from_millis;
        assert_eq!(ttl("90s"), Ok(Some(ms(90_000))));
        assert_eq!(ttl("1h30m"), Ok(Some(ms(5_400_000))));
        assert_eq!(ttl("1.5h"), Ok(Some(ms(5_400_000))));
        assert_eq!(ttl("300ms"), Ok(Some(ms(300))));
        assert_eq!(ttl("2m3.5s"), Ok(Some(ms(123_500))));
        for bad in [
            "0", "0s", "-1s", "90", "1d", "s", "1.2.3s", "1h-5m", "", " ",
        ] {
            assert!(
                bad.trim().is_empty() || ttl(bad).is_err(),
                "{bad:?} → {:?}",
                ttl(bad)
            );
        }
        assert_eq!(ttl(""), Ok(None));
        // ttlInSeconds wins when both are given.
        let both = BTreeMap::from([
            ("ttl".to_owned(), "1h".to_owned()),
            ("ttlInSeconds".to_owned(), "5".to_owned()),
        ]);
        assert_eq!(message_ttl(&both), Ok(Some(Duration::from_secs(5))));
        assert_eq!(
            ttl("2000000h"),
            Ok(Some(Duration::from_secs(7_200_000_000))),
            "within Go's range"
        );
        assert!(ttl("9999999999999999h").is_err(), "beyond Go's range");
    }
}
