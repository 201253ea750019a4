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
        !expired(&e, now + Duration::from_secs(89)) && expired(&e, now + Duration::from_secs(91))
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
