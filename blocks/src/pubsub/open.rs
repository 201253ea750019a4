//! From a `Component` document to a running broker.

use std::sync::Arc;

use std::time::Duration;

use super::redis::millis_or_duration;
use super::{MemoryPubSub, PubSub, RedisPubSub, RedisStreamSettings};
use crate::state::{client_for, literal_metadata, redis_settings};
use crate::{Component, ComponentError};

/// An opened pub/sub component.
#[derive(Clone)]
pub struct PubSubComponent {
    /// Its name (`metadata.name`).
    pub name: String,
    /// Its type, e.g. `pubsub.in-memory`.
    pub type_: String,
    /// Its version.
    pub version: String,
    /// The broker.
    pub broker: Arc<dyn PubSub>,
    /// The consumer group subscriptions join: `consumerID` with `{namespace}` and `{appID}`
    /// replaced, or the app id. Apps in one group compete for messages.
    pub consumer_group: String,
}

/// `consumerID` with daprd's tokens replaced; the app id when not set.
pub fn consumer_id(configured: Option<&str>, app_id: &str, namespace: &str) -> String {
    match configured.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => v.replace("{appID}", app_id).replace("{namespace}", namespace),
        None => app_id.to_owned(),
    }
}

fn err(field: &str, message: impl Into<String>) -> Vec<ComponentError> {
    vec![ComponentError { field: field.into(), message: message.into() }]
}

/// Opens a pub/sub component for `app_id` in `namespace`. Errors name the field.
pub async fn open(c: &Component, app_id: &str, namespace: &str) -> Result<PubSubComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    let group = consumer_id(md.get("consumerid").map(String::as_str), app_id, namespace);
    let broker: Arc<dyn PubSub> = match c.spec.type_.as_str() {
        "pubsub.in-memory" => Arc::new(MemoryPubSub::new()),
        "pubsub.redis" => {
            let redis = redis_settings(&md)?;
            let duration = |name: &str, key: &str, default: Duration| match md.get(key).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => millis_or_duration(v).ok_or_else(|| {
                    err(&format!("spec.metadata.{name}"), format!("{v:?} is not a duration (e.g. 60s) or milliseconds"))
                }),
            };
            let count = |name: &str, key: &str| -> Result<Option<u64>, Vec<ComponentError>> {
                match md.get(key).filter(|v| !v.is_empty()) {
                    None => Ok(None),
                    Some(v) => v
                        .parse()
                        .map(Some)
                        .map_err(|_| err(&format!("spec.metadata.{name}"), format!("{v:?} is not a whole number"))),
                }
            };
            let client = client_for(&redis).map_err(|e| err("spec.metadata.redisHost", e.to_string()))?;
            let settings = RedisStreamSettings {
                client,
                // daprd uses the consumer id as both the group and the consumer name.
                consumer: group.clone(),
                processing_timeout: duration("processingTimeout", "processingtimeout", Duration::from_secs(60))?,
                redeliver_interval: duration("redeliverInterval", "redeliverinterval", Duration::from_secs(15))?,
                queue_depth: count("queueDepth", "queuedepth")?.map_or(100, |n| usize::try_from(n).unwrap_or(100)),
                max_len_approx: count("maxLenApprox", "maxlenapprox")?,
                timeout: redis.timeout,
            };
            let broker = RedisPubSub::connect(settings)
                .await
                .map_err(|e| err("spec.metadata.redisHost", format!("{}:{}: {e}", redis.host, redis.port)))?;
            Arc::new(broker)
        }
        other => {
            return Err(vec![ComponentError {
                field: "spec.type".into(),
                message: format!("{other:?} is not a pub/sub type this build supports"),
            }]);
        }
    };
    Ok(PubSubComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: if c.spec.version.is_empty() { "v1".into() } else { c.spec.version.clone() },
        broker,
        consumer_group: group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_ids() {
        assert_eq!(consumer_id(None, "orders", "prod"), "orders");
        assert_eq!(consumer_id(Some(" "), "orders", "prod"), "orders");
        assert_eq!(consumer_id(Some("{namespace}-{appID}-v2"), "orders", "prod"), "prod-orders-v2");
        assert_eq!(consumer_id(Some("shared"), "orders", "prod"), "shared");
    }
}
