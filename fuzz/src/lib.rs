//! What each fuzz target checks, shared by the targets in `fuzz_targets/` (run by `make fuzz`)
//! and by `tests/replay.rs` (run by `make test`), which replays the kept corpus and random inputs
//! through the same functions on stable Rust.
//!
//! Each check takes arbitrary bytes, must never panic on them, and asserts a property of the
//! code under test beyond "does not crash": the framing guard only holds bytes back, and how
//! input is split changes at most when it judges; the canonical path is a fixed point that noise cannot move and
//! the access decision follows it; a SPIFFE id prints as what it parsed from; an envelope always
//! carries the CloudEvent fields; the streaming query engine agrees with a plain sort; resource
//! documents load or fail with field errors.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use serde_json::{Value, json};

use outrider::fuzzing as guard;

/// The framing guard: however the bytes are split, it passes only a prefix of the input (or a
/// prefix and then the head hyper refuses), and two splittings never disagree on what passes
/// or on why a connection was refused. A head is judged when a line of it ends, so a split run
/// may still hold bytes that the run of the whole input has judged already.
pub fn framing(data: &[u8]) {
    let (split, input) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let poison: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";
    let run = |step: usize| {
        let mut f = guard::Framing::default();
        let mut out = BytesMut::new();
        for piece in input.chunks(step) {
            f.feed(piece, &mut out);
        }
        let refused = f.refused();
        let mut passed = out.to_vec();
        if refused.is_some_and(|r| r != guard::Refusal::BadChunk) {
            assert!(
                passed.ends_with(poison),
                "a refused head is replaced by one hyper refuses"
            );
            passed.truncate(passed.len() - poison.len());
        }
        assert!(
            input.starts_with(&passed),
            "the guard altered the bytes it passed"
        );
        (passed, refused)
    };
    let (whole, whole_refused) = run(input.len().max(1));
    let (pieces, pieces_refused) = run(split);
    assert!(
        whole.starts_with(&pieces) || pieces.starts_with(&whole),
        "splitting the input changed what passed"
    );
    if let (Some(a), Some(b)) = (whole_refused, pieces_refused) {
        assert_eq!(a, b, "splitting the input changed why it was refused");
    }
}

/// Paths and access decisions: the canonical form is a fixed point, extra slashes, `.`
/// segments and percent-encoded letters do not change it, and policy decides on it alone.
pub fn path_acl(data: &[u8]) {
    use outrider_filters::normalize::{canonical_path, route_path};
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = canonical_path(raw) {
        assert_eq!(
            canonical_path(&c).as_ref(),
            Ok(&c),
            "canonical form of {raw:?} is not a fixed point"
        );
        let noisy = format!("/.{}", raw.replace('/', "//"));
        if raw.starts_with('/') {
            assert_eq!(
                canonical_path(&noisy).as_ref(),
                Ok(&c),
                "{noisy:?} and {raw:?} differ"
            );
        }
        let acl = shop_policy();
        let caller = outrider_policy::Caller {
            app_id: "a".into(),
            namespace: "default".into(),
            trust_domain: "public".into(),
        };
        for verb in ["GET", "POST"] {
            let once = acl.decide(Some(&caller), &c, verb);
            let twice = acl.decide(Some(&caller), &canonical_path(&c).unwrap_or_default(), verb);
            assert_eq!(once.action, twice.action);
            if c.to_ascii_lowercase().starts_with("/admin/") {
                assert!(!once.allowed(), "{raw:?} reached the admin operations");
            }
        }
    }
    if let Ok(r) = route_path(raw) {
        assert_eq!(
            route_path(&r).as_ref(),
            Ok(&r),
            "route form of {raw:?} is not a fixed point"
        );
    }
}

/// A policy with a denied `/admin/**` under an allowing default.
fn shop_policy() -> outrider_policy::AccessControl {
    let spec = json!({
        "defaultAction": "deny",
        "trustDomain": "public",
        "policies": [{"appId": "a", "namespace": "default", "trustDomain": "public", "defaultAction": "allow",
            "operations": [
                {"name": "/admin/**", "httpVerb": ["*"], "action": "deny"},
                {"name": "/orders/*", "httpVerb": ["GET"], "action": "allow"},
            ]}],
    });
    let spec =
        outrider_policy::AccessControlSpec::parse(&spec, "fuzz.yaml").expect("a valid policy");
    outrider_policy::AccessControl::merge([spec]).expect("one policy merges")
}

/// SPIFFE ids: what parses prints back as itself and parses again to the same id.
pub fn spiffe_id(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = s.parse::<outrider_certs::SpiffeId>() {
        let printed = id.to_string();
        assert_eq!(
            printed.parse::<outrider_certs::SpiffeId>().as_ref(),
            Ok(&id)
        );
        let again = outrider_certs::SpiffeId::new(id.trust_domain(), id.namespace(), id.app_id());
        assert_eq!(again.as_ref(), Ok(&id), "{s:?}");
    }
}

/// The publish envelope: any body under any content type and metadata either is refused as a
/// malformed CloudEvent or becomes an object with the fields subscribers rely on.
pub fn cloudevent(data: &[u8]) {
    // First line: content type; second: `k=v&k=v` metadata; the rest: the body.
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let content_type = parts
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let metadata: BTreeMap<String, String> = parts
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    let body = parts.next().unwrap_or_default();
    let ctx = outrider_blocks::pubsub::PublishContext {
        app_id: "a",
        pubsub: "pubsub",
        topic: "orders",
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate: "",
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        id: "fixed-id".into(),
    };
    let ct = (!content_type.is_empty()).then_some(content_type.as_ref());
    let Ok(event) = outrider_blocks::pubsub::envelope(&ctx, ct, body, &metadata) else {
        return;
    };
    let obj = event.as_object().expect("an envelope is an object");
    for field in ["specversion", "source", "type", "topic", "pubsubname"] {
        assert!(obj.contains_key(field), "no {field} in {event}");
    }
    // A CloudEvent the app sent keeps its own id, or its lack of one, as daprd passes it on;
    // every other envelope gets one.
    if outrider_blocks::pubsub::media_type(&content_type) != "application/cloudevents+json" {
        assert!(obj.contains_key("id"), "no id in {event}");
    }
    // It serialises, and reads back as the same value.
    let text = serde_json::to_vec(&event).expect("an envelope serialises");
    assert_eq!(
        serde_json::from_slice::<Value>(&text).ok().as_ref(),
        Some(&event)
    );
}

/// Queries: any JSON either fails to parse or runs, and the streaming engine keeps the same
/// page, in the same order, with the same next-page token, as filtering and sorting everything.
pub fn state_query(data: &[u8]) {
    use outrider_blocks::state::Query;
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(query) = Query::parse(&doc) else {
        return;
    };
    let rows = sample_rows();
    let (page, token) = query.run(rows.clone());
    let got: Vec<usize> = page.into_iter().map(|(i, _)| i).collect();
    let (want, want_token) = reference_run(&query, rows);
    assert_eq!(got, want, "query {doc}");
    assert_eq!(token, want_token, "query {doc}");
}

/// Rows of varied shapes, by index.
fn sample_rows() -> Vec<(usize, Value)> {
    let values = [
        json!({"a": 1, "b": "x", "c": {"d": true}}),
        json!({"a": 2.5, "b": "y"}),
        json!({"a": "1", "b": "x", "c": {"d": false}}),
        json!({"a": null}),
        json!({"b": ["x"], "a": -3}),
        json!("text"),
        json!({"a": 1, "b": "z", "c": {"d": 3}}),
        json!({"a": 1e300, "b": ""}),
        json!({"a": 2, "b": "x"}),
        json!([1, 2]),
    ];
    values.into_iter().enumerate().collect()
}

/// The plain evaluation the streaming engine must agree with: filter all, stable-sort all,
/// then cut the page out.
fn reference_run(
    q: &outrider_blocks::state::Query,
    rows: Vec<(usize, Value)>,
) -> (Vec<usize>, Option<String>) {
    let mut rows: Vec<_> = rows
        .into_iter()
        .filter(|(_, v)| q.filter.as_ref().is_none_or(|f| f.matches(v)))
        .collect();
    rows.sort_by(|(_, a), (_, b)| {
        for s in &q.sort {
            let get = |v: &Value| s.path.iter().try_fold(v, |v, seg| v.get(seg)).cloned();
            let (x, y) = (get(a), get(b));
            let o = reference_order(x.as_ref(), y.as_ref());
            let o = if s.desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    let total = rows.len();
    let page: Vec<usize> = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit.unwrap_or(usize::MAX))
        .map(|(i, _)| i)
        .collect();
    let end = q.offset + page.len();
    (
        page,
        (q.limit.is_some() && end < total).then(|| end.to_string()),
    )
}

/// Order as the query language defines it: numbers by value, strings lexically, booleans false
/// first; values of different kinds by kind, missing (or null) first.
fn reference_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(_) => 4,
        }
    }
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(f64::NAN)
            .partial_cmp(&y.as_f64().unwrap_or(f64::NAN))
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Resource files: any text is read as YAML documents the way the sidecar reads its resources
/// directory and Configuration, and each Component, Subscription, Resiliency and access control
/// either loads or fails with errors that name a field.
pub fn resources(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = serde_saphyr::from_multiple::<Value>(text) else {
        return;
    };
    for doc in docs {
        resource(doc);
    }
}

/// One document: a component, subscription, resiliency or access control resource is parsed
/// and validated, and every problem must name its field.
fn resource(doc: Value) {
    match doc.get("kind").and_then(Value::as_str) {
        Some("Component") => {
            if let Ok(c) = serde_json::from_value::<outrider_blocks::Component>(doc) {
                for e in c.validate() {
                    assert!(
                        !e.field.is_empty(),
                        "a component error names no field: {}",
                        e.message
                    );
                }
            }
        }
        Some("Subscription") => {
            if let Ok(s) =
                serde_json::from_value::<outrider_blocks::subscription::SubscriptionDoc>(doc)
                && let Err(errs) = s.validate()
            {
                assert!(
                    errs.iter().all(|e| !e.field.is_empty()),
                    "a subscription error names no field"
                );
            }
        }
        Some("Resiliency") => {
            if let Err(errs) = outrider_filters::resiliency::Resiliency::parse(&doc) {
                assert!(
                    errs.iter().all(|e| !e.field.is_empty()),
                    "a resiliency error names no field"
                );
            }
        }
        Some("Configuration") => {
            let spec = doc
                .get("spec")
                .and_then(|s| s.get("accessControl"))
                .cloned()
                .unwrap_or(Value::Null);
            if let Ok(spec) = outrider_policy::AccessControlSpec::parse(&spec, "fuzz.yaml")
                && let Ok(acl) = outrider_policy::AccessControl::merge([spec])
            {
                let _ = acl.decide(None, "/orders/1", "GET");
            }
        }
        _ => {}
    }
}
