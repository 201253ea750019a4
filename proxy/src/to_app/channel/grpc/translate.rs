//! What a gRPC app is sent and answers, from and to what the sidecar has: pure functions.
//! CloudEvents as `TopicEventRequest`s and batch entries, the app's subscriptions as the JSON of
//! `/dapr/subscribe`, routes, and the HTTP status of a gRPC code.

use bytes::Bytes;
use http::StatusCode;
use outrider_blocks::pubsub::Outcome;
use outrider_proto::runtime::v1 as rt;
use prost_types::value::Kind as ValueKind;
use serde_json::{Value, json};

/// The route an app named, from the path of the sidecar's request for it: one `/` was put in
/// front of it (see [`subscriptions_json`]).
pub(super) fn route_of(path: &str) -> String {
    path.strip_prefix('/').unwrap_or(path).to_owned()
}

/// A JSON object of strings, as metadata; anything else is none.
fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A batch (`{"id", "type", "topic", "pubsubname", "metadata", "entries"}`) as
/// `TopicEventBulkRequest` for the route `path`.
pub(super) fn bulk_request(batch: &Value, path: String) -> rt::TopicEventBulkRequest {
    let text = |k: &str| {
        batch
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (pubsub, topic) = (text("pubsubname"), text("topic"));
    let entries = (batch.get("entries").and_then(Value::as_array))
        .map(|entries| {
            entries
                .iter()
                .map(|e| bulk_entry(e, &pubsub, &topic, &path))
                .collect()
        })
        .unwrap_or_default();
    rt::TopicEventBulkRequest {
        id: text("id"),
        entries,
        metadata: string_map(batch.get("metadata")),
        topic,
        pubsub_name: pubsub,
        r#type: text("type"),
        path,
    }
}

/// One entry of a batch: its CloudEvent, or its bytes when the event is not one.
fn bulk_entry(e: &Value, pubsub: &str, topic: &str, path: &str) -> rt::TopicEventBulkRequestEntry {
    use rt::topic_event_bulk_request_entry::Event;
    let text = |k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let event = match e.get("event") {
        Some(ev @ Value::Object(_)) => match topic_event(ev.clone(), pubsub, topic, path) {
            Ok(t) => Event::CloudEvent(rt::TopicEventCeRequest {
                id: t.id,
                source: t.source,
                r#type: t.r#type,
                spec_version: t.spec_version,
                data_content_type: t.data_content_type,
                data: t.data,
                extensions: t.extensions,
            }),
            Err(_) => Event::Bytes(Bytes::from(ev.to_string())),
        },
        Some(Value::String(s)) => Event::Bytes(Bytes::from(s.clone())),
        Some(other) => Event::Bytes(Bytes::from(other.to_string())),
        None => Event::Bytes(Bytes::new()),
    };
    rt::TopicEventBulkRequestEntry {
        entry_id: text("entryId"),
        event: Some(event),
        content_type: text("contentType"),
        metadata: string_map(e.get("metadata")),
    }
}

/// The HTTP status of a gRPC code, as HTTP gateways convert them.
pub(super) fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::Ok => StatusCode::OK,
        C::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted => StatusCode::CONFLICT,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The app's subscriptions in the JSON form of `/dapr/subscribe`. A route is the path the app
/// named with one `/` put in front (an empty default is `/`), whatever it starts with:
/// deliveries give the app its own path back ([`route_of`]), and the metadata API lists it.
pub(super) fn subscriptions_json(list: rt::ListTopicSubscriptionsResponse) -> Value {
    let route = |p: &str| format!("/{p}");
    let subs: Vec<Value> = list
        .subscriptions
        .into_iter()
        .map(|s| {
            let routes = s.routes.unwrap_or_default();
            let rules: Vec<Value> = routes
                .rules
                .iter()
                .map(|r| json!({"match": r.r#match, "path": route(&r.path)}))
                .collect();
            let mut v = json!({
                "pubsubname": s.pubsub_name,
                "topic": s.topic,
                "metadata": s.metadata,
                "routes": {"rules": rules, "default": route(&routes.default)},
            });
            if !s.dead_letter_topic.is_empty() {
                v["deadLetterTopic"] = json!(s.dead_letter_topic);
            }
            if let Some(b) = s.bulk_subscribe.filter(|b| b.enabled) {
                v["bulkSubscribe"] = json!({
                    "enabled": true,
                    "maxMessagesCount": b.max_messages_count,
                    "maxAwaitDurationMs": b.max_await_duration_ms,
                });
            }
            v
        })
        .collect();
    Value::Array(subs)
}

/// A CloudEvent as `TopicEventRequest`: its fields, its data as bytes (`data_base64` decoded,
/// text as it is, JSON as its text), and its other attributes as extensions. `Err` when the
/// event is not a JSON object.
pub(crate) fn topic_event(
    event: Value,
    pubsub: &str,
    topic: &str,
    path: &str,
) -> Result<rt::TopicEventRequest, Outcome> {
    let Value::Object(mut fields) = event else {
        return Err(Outcome::Retry);
    };
    let mut text = |k: &str| match fields.remove(k) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let (id, source, type_, spec_version) = (
        text("id"),
        text("source"),
        text("type"),
        text("specversion"),
    );
    let data_content_type = text("datacontenttype");
    let data = data_of(
        &data_content_type,
        fields.remove("data"),
        fields.remove("data_base64"),
    );
    let extensions = prost_types::Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k, proto_value(v)))
            .collect(),
    };
    Ok(rt::TopicEventRequest {
        id,
        source,
        r#type: type_,
        spec_version,
        data_content_type,
        data,
        topic: topic.to_owned(),
        pubsub_name: pubsub.to_owned(),
        path: path.to_owned(),
        extensions: Some(extensions),
    })
}

fn data_of(content_type: &str, data: Option<Value>, base64: Option<Value>) -> Bytes {
    use base64::Engine as _;
    if let Some(Value::String(b)) = base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(Bytes::from)
            .unwrap_or_default();
    }
    match data {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if !content_type.contains("json") => Bytes::from(s),
        Some(v) => Bytes::from(v.to_string()),
    }
}

/// A JSON value as a `google.protobuf.Value`.
pub(crate) fn proto_value(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => ValueKind::NullValue(0),
        Value::Bool(b) => ValueKind::BoolValue(b),
        Value::Number(n) => ValueKind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => ValueKind::StringValue(s),
        Value::Array(a) => ValueKind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(proto_value).collect(),
        }),
        Value::Object(o) => ValueKind::StructValue(prost_types::Struct {
            fields: o.into_iter().map(|(k, v)| (k, proto_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_events_become_topic_events() {
        let e = json!({
            "id": "1", "source": "orders", "type": "com.dapr.event.sent", "specversion": "1.0",
            "datacontenttype": "application/json", "data": {"n": 1}, "topic": "t",
            "traceparent": "00-aa-bb-01", "custom": [1, true]
        });
        let t = topic_event(e, "pubsub", "t", "").unwrap();
        assert_eq!(
            (t.id.as_str(), t.source.as_str(), t.spec_version.as_str()),
            ("1", "orders", "1.0")
        );
        assert_eq!(&t.data[..], br#"{"n":1}"#);
        let ext = t.extensions.unwrap().fields;
        assert!(
            ext.contains_key("traceparent")
                && ext.contains_key("custom")
                && ext.contains_key("topic")
        );
        assert!(!ext.contains_key("data") && !ext.contains_key("id"));
        // Text stays text; base64 is decoded.
        let text = topic_event(
            json!({"datacontenttype": "text/plain", "data": "hi"}),
            "p",
            "t",
            "",
        )
        .unwrap();
        assert_eq!(&text.data[..], b"hi");
        let raw = topic_event(json!({"data_base64": "AAEC"}), "p", "t", "").unwrap();
        assert_eq!(&raw.data[..], &[0, 1, 2]);
        assert!(topic_event(json!([1]), "p", "t", "").is_err());
    }

    #[test]
    fn subscriptions_read_as_the_json_answer() {
        let list = rt::ListTopicSubscriptionsResponse {
            subscriptions: vec![rt::TopicSubscription {
                pubsub_name: "pubsub".into(),
                topic: "orders".into(),
                routes: Some(rt::TopicRoutes {
                    rules: vec![rt::TopicRule {
                        r#match: "event.type == \"x\"".into(),
                        path: "x".into(),
                    }],
                    default: String::new(),
                }),
                dead_letter_topic: "dead".into(),
                ..Default::default()
            }],
        };
        let v = subscriptions_json(list);
        assert_eq!(v[0]["routes"]["default"], "/");
        assert_eq!(v[0]["routes"]["rules"][0]["path"], "/x");
        assert_eq!(v[0]["deadLetterTopic"], "dead");
        let (specs, refused) = crate::to_app::subscriptions::parse(&v);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(
            (specs[0].path.as_str(), specs[0].rules[0].path.as_str()),
            ("/", "/x")
        );
    }
}
