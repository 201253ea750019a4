//! The Dapr `Subscription` resource (`dapr.io/v1alpha1` with `spec.route`, `dapr.io/v2alpha1`
//! with `spec.routes`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ComponentError;
use crate::component::ObjectMeta;

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
}

/// v2alpha1 `routes`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Routes {
    /// CEL rules (not supported yet).
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
    /// The route, with a leading `/`.
    pub path: String,
    /// The dead-letter topic, if any.
    pub dead_letter: String,
    /// Subscription metadata.
    pub metadata: BTreeMap<String, String>,
}

impl SubscriptionDoc {
    /// Validates the document; every problem is reported with its field.
    pub fn validate(&self) -> Result<Declared, Vec<ComponentError>> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: String| errs.push(ComponentError { field: field.into(), message });
        let s = &self.spec;
        if self.metadata.name.is_empty() {
            err("metadata.name", "is required".into());
        }
        if s.pubsubname.is_empty() {
            err("spec.pubsubname", "is required".into());
        }
        if s.topic.is_empty() {
            err("spec.topic", "is required".into());
        }
        if s.routes.as_ref().is_some_and(|r| !r.rules.is_empty()) {
            err("spec.routes.rules", "routing rules (CEL match) are not supported yet; use routes.default".into());
        }
        let route =
            s.routes.as_ref().map(|r| r.default.clone()).filter(|d| !d.is_empty()).unwrap_or_else(|| s.route.clone());
        if route.is_empty() {
            err("spec.routes.default", "a route is required (spec.route in v1alpha1)".into());
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let path = if route.starts_with('/') { route } else { format!("/{route}") };
        Ok(Declared {
            name: self.metadata.name.clone(),
            pubsub: s.pubsubname.clone(),
            topic: s.topic.clone(),
            path,
            dead_letter: s.dead_letter_topic.clone(),
            metadata: s.metadata.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> SubscriptionDoc {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        serde_json::from_value(v).unwrap()
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
            (d.path.as_str(), d.dead_letter.as_str(), d.metadata["rawPayload"].as_str()),
            ("/d", "dead", "true")
        );
    }

    #[test]
    fn problems_name_their_fields() {
        let bad = parse(
            "kind: Subscription\nmetadata: {name: ''}\nspec:\n  routes: {rules: [{match: 'event.type == \"x\"', path: /x}]}\n",
        );
        let fields: Vec<String> = bad.validate().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["metadata.name", "spec.pubsubname", "spec.topic", "spec.routes.rules", "spec.routes.default"]
        );
    }
}
