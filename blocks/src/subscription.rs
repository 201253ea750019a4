//! The Dapr `Subscription` resource (`dapr.io/v1alpha1` with `spec.route`, `dapr.io/v2alpha1`
//! with `spec.routes`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ComponentError;
use crate::component::ObjectMeta;
use crate::pubsub::routing::{RouteRule, parse_rules};

/// A `Subscription` document as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDoc {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    pub spec: SubscriptionSpec,
    /// App ids it applies to; empty means all.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `spec` of a subscription.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    /// The pub/sub component.
    #[serde(default)]
    pub pubsubname: String,
    /// The topic.
    #[serde(default)]
    pub topic: String,
    /// v1alpha1: the route.
    #[serde(default)]
    pub route: String,
    /// v2alpha1: rules and a default route.
    #[serde(default)]
    pub routes: Option<Routes>,
    /// Where messages go when retries are exhausted.
    #[serde(default)]
    pub dead_letter_topic: String,
    /// Subscription metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `{enabled, maxMessagesCount, maxAwaitDurationMs}`: deliver in batches.
    #[serde(default)]
    pub bulk_subscribe: Option<serde_json::Value>,
}

/// Batched delivery: up to `max_messages` events per call to the app, sent once that many are
/// waiting or `max_await` after the first arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkSubscribe {
    /// Events per call.
    pub max_messages: usize,
    /// The longest an event waits for its batch to fill.
    pub max_await: std::time::Duration,
}

/// The largest batch accepted (each waiting event holds a broker delivery).
pub const MAX_BULK_MESSAGES: u64 = 10_000;

/// Reads `bulkSubscribe` as written: `None` when absent or not enabled.
pub fn parse_bulk(v: Option<&serde_json::Value>) -> Result<Option<BulkSubscribe>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = v.as_object() else {
        return Err(format!(
            "{v} is not an object {{enabled, maxMessagesCount, maxAwaitDurationMs}}"
        ));
    };
    let enabled = match obj.get("enabled") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => return Err(format!("enabled: {other} is not true or false")),
    };
    if !enabled {
        return Ok(None);
    }
    let number = |key: &str, default: u64, max: u64| -> Result<u64, String> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(n) => n
                .as_u64()
                .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("{key}: {n} is not a whole number from 1 to {max}")),
        }
    };
    let max_messages = number("maxMessagesCount", 100, MAX_BULK_MESSAGES)?;
    let max_await = number("maxAwaitDurationMs", 1000, 60_000)?;
    Ok(Some(BulkSubscribe {
        max_messages: usize::try_from(max_messages).unwrap_or(100),
        max_await: std::time::Duration::from_millis(max_await),
    }))
}

/// v2alpha1 `routes`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Routes {
    /// Routing rules `{match, path}`, tried in order.
    #[serde(default)]
    pub rules: Vec<serde_json::Value>,
    /// The route when no rule matches.
    #[serde(default)]
    pub default: String,
}

/// A validated subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// `metadata.name`.
    pub name: String,
    /// The pub/sub component.
    pub pubsub: String,
    /// The topic.
    pub topic: String,
    /// The default route, with a leading `/`; empty when only rules route.
    pub path: String,
    /// Routing rules before the default, in order.
    pub rules: Vec<RouteRule>,
    /// The dead-letter topic, if any.
    pub dead_letter: String,
    /// Subscription metadata.
    pub metadata: BTreeMap<String, String>,
    /// Batched delivery, when enabled.
    pub bulk: Option<BulkSubscribe>,
}

impl SubscriptionDoc {
    /// Validates the document; every problem is reported with its field.
    pub fn validate(&self) -> Result<Declared, Vec<ComponentError>> {
        let unnamed = self.metadata.name.is_empty().then(|| ComponentError {
            field: "metadata.name".into(),
            message: "is required".into(),
        });
        match (unnamed, self.spec.validate(&self.metadata.name)) {
            (None, checked) => checked,
            (Some(e), Ok(_)) => Err(vec![e]),
            (Some(e), Err(mut errs)) => {
                errs.insert(0, e);
                Err(errs)
            }
        }
    }
}

impl SubscriptionSpec {
    /// One item of an app's `GET /dapr/subscribe` answer: the same fields as a `Subscription`'s
    /// spec, read leniently as daprd reads them (a field of the wrong type counts as absent,
    /// metadata values that are not text are written as JSON).
    pub fn from_programmatic(item: &serde_json::Value) -> Self {
        use serde_json::Value;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let routes = item.get("routes").map(|r| Routes {
            rules: r
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            default: text(r.get("default")),
        });
        let metadata = item
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            pubsubname: text(item.get("pubsubname")),
            topic: text(item.get("topic")),
            route: text(item.get("route")),
            routes,
            dead_letter_topic: text(item.get("deadLetterTopic")),
            metadata,
            bulk_subscribe: item.get("bulkSubscribe").cloned(),
        }
    }

    /// Validates the spec of the subscription `name`; problems name fields under `spec.`.
    pub fn validate(&self, name: &str) -> Result<Declared, Vec<ComponentError>> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(ComponentError {
                field: field.into(),
                message,
            })
        };
        if self.pubsubname.is_empty() {
            err("spec.pubsubname", "is required".into());
        }
        if self.topic.is_empty() {
            err("spec.topic", "is required".into());
        }
        let rules = match self.routes.as_ref().map(|r| parse_rules(&r.rules)) {
            None => Vec::new(),
            Some(Ok(rules)) => rules,
            Some(Err(e)) => {
                err(
                    &format!("spec.routes.rules[{}]", e.index),
                    format!("{}: {}", e.expression, e.message),
                );
                Vec::new()
            }
        };
        let bulk = parse_bulk(self.bulk_subscribe.as_ref()).unwrap_or_else(|e| {
            err("spec.bulkSubscribe", e);
            None
        });
        let has_rules = self.routes.as_ref().is_some_and(|r| !r.rules.is_empty());
        let route = self.default_route();
        if route.is_empty() && !has_rules {
            err(
                "spec.routes.default",
                "a route is required (spec.route in v1alpha1)".into(),
            );
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Declared {
            name: name.to_owned(),
            pubsub: self.pubsubname.clone(),
            topic: self.topic.clone(),
            path: route,
            rules,
            dead_letter: self.dead_letter_topic.clone(),
            metadata: self.metadata.clone(),
            bulk,
        })
    }

    /// `routes.default`, else `route`, with a leading `/`; empty when only rules route.
    fn default_route(&self) -> String {
        let route = self
            .routes
            .as_ref()
            .map(|r| r.default.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.route.clone());
        if route.is_empty() || route.starts_with('/') {
            route
        } else {
            format!("/{route}")
        }
    }
}

/// An app's answer to `GET /dapr/subscribe`: the usable subscriptions, and the reason each other
/// one was refused.
pub fn programmatic(answer: &serde_json::Value) -> (Vec<Declared>, Vec<String>) {
    let Some(items) = answer.as_array() else {
        let got: String = answer.to_string().chars().take(80).collect();
        return (
            Vec::new(),
            vec![format!(
                "/dapr/subscribe must answer a JSON array, got {got}"
            )],
        );
    };
    let (mut usable, mut refused) = (Vec::new(), Vec::new());
    for (i, item) in items.iter().enumerate() {
        let spec = SubscriptionSpec::from_programmatic(item);
        if spec.pubsubname.is_empty() || spec.topic.is_empty() {
            refused.push(format!("item {i}: pubsubname and topic are required"));
            continue;
        }
        match spec.validate("") {
            Ok(d) => usable.push(d),
            Err(errs) => {
                // The app wrote JSON, not a resource: no `spec.` prefix, no v1alpha1 hint.
                let why: Vec<String> = errs
                    .iter()
                    .map(|e| match e.field.as_str() {
                        "spec.routes.default" => "no route".to_owned(),
                        field => format!("{}: {}", field.trim_start_matches("spec."), e.message),
                    })
                    .collect();
                refused.push(format!(
                    "{}/{}: {}",
                    spec.pubsubname,
                    spec.topic,
                    why.join("; ")
                ));
            }
        }
    }
    (usable, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> SubscriptionDoc {
        crate::from_yaml(yaml)
    }

    /// The fields a document's problems name, in order; it must have some.
    fn error_fields(doc: &SubscriptionDoc) -> Vec<String> {
        doc.validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn both_versions() {
        let v1 = parse(
            "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata: {name: s1}\nspec: {pubsubname: pubsub, topic: t, route: orders}\nscopes: [a]\n",
        );
        assert_eq!(v1.validate().unwrap().path, "/orders");
        assert_eq!(v1.scopes, ["a"]);
        let v2 = parse(
            "kind: Subscription\nmetadata: {name: s2}\nspec:\n  pubsubname: pubsub\n  topic: t\n  routes: {default: /d}\n  deadLetterTopic: dead\n  metadata: {rawPayload: \"true\"}\n",
        );
        let d = v2.validate().unwrap();
        assert_eq!(
            (
                d.path.as_str(),
                d.dead_letter.as_str(),
                d.metadata["rawPayload"].as_str()
            ),
            ("/d", "dead", "true")
        );
    }

    #[test]
    fn bulk_settings() {
        use serde_json::json;
        let ms = std::time::Duration::from_millis;
        assert_eq!(parse_bulk(None), Ok(None));
        assert_eq!(
            parse_bulk(Some(&json!({"enabled": false, "maxMessagesCount": 5}))),
            Ok(None)
        );
        assert_eq!(
            parse_bulk(Some(&json!({"enabled": true}))),
            Ok(Some(BulkSubscribe {
                max_messages: 100,
                max_await: ms(1000)
            }))
        );
        assert_eq!(
            parse_bulk(Some(
                &json!({"enabled": "true", "maxMessagesCount": "20", "maxAwaitDurationMs": 50})
            )),
            Ok(Some(BulkSubscribe {
                max_messages: 20,
                max_await: ms(50)
            }))
        );
        for bad in [
            json!({"enabled": true, "maxMessagesCount": 0}),
            json!({"enabled": true, "maxAwaitDurationMs": -1}),
            json!({"enabled": "yes"}),
            json!([1]),
            json!({"enabled": true, "maxMessagesCount": 10_001}),
        ] {
            assert!(parse_bulk(Some(&bad)).is_err(), "{bad}");
        }
        let doc = parse(
            "kind: Subscription\nmetadata: {name: b}\nspec: {pubsubname: pubsub, topic: t, route: /b, bulkSubscribe: {enabled: true, maxMessagesCount: 0}}\n",
        );
        assert_eq!(error_fields(&doc), ["spec.bulkSubscribe"]);
    }

    #[test]
    fn rules_route_before_the_default() {
        let doc = parse(
            "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: r}\nspec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    rules:\n    - {match: 'event.type == \"widget\"', path: /widgets}\n    - {match: 'event.data.price > 100', path: expensive}\n",
        );
        let d = doc.validate().unwrap();
        assert_eq!(d.path, "", "no default: only the rules route");
        let paths: Vec<&str> = d.rules.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/widgets", "/expensive"]);
    }

    #[test]
    fn problems_name_their_fields() {
        let bad = parse(
            "kind: Subscription\nmetadata: {name: ''}\nspec:\n  routes: {rules: [{match: 'event.type == \"x\"', path: /x}, {match: 'event.type ==', path: /y}]}\n",
        );
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "spec.pubsubname",
                "spec.topic",
                "spec.routes.rules[1]"
            ]
        );
        assert!(
            errors[3].message.contains("event.type ==") && errors[3].message.contains("CEL"),
            "{}",
            errors[3]
        );
        let none = parse(
            "kind: Subscription\nmetadata: {name: plain}\nspec: {pubsubname: pubsub, topic: orders}\n",
        );
        assert_eq!(error_fields(&none), ["spec.routes.default"]);
    }
}
