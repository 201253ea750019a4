//! From a `Component` document to a running broker.

mod brokers;
mod fields;

use std::sync::Arc;
use std::time::Duration;

use super::{MemoryPubSub, PubSub, RedisPubSub, RedisStreamSettings, TopicScopes};
use crate::component::{field_error as err, unsupported_type};
use crate::state::{client_for, literal_metadata, redis_settings};
use crate::{Component, ComponentError};
pub(crate) use brokers::mqtt_url;
use brokers::{open_jetstream, open_mqtt, open_rabbitmq};
pub(crate) use fields::Fields;

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
    /// The consumer group subscriptions join: `consumerID` with its tokens replaced, or the app
    /// id. Apps in one group compete for messages.
    pub consumer_group: String,
    /// Prepended to every topic on the broker: the namespace when a metadata value uses
    /// `{namespace}`, so namespaces sharing a broker do not see each other's messages.
    pub topic_prefix: String,
    /// Which topics this app may publish to and subscribe to.
    pub scopes: TopicScopes,
    /// Deliveries of one subscription in flight at once (`concurrency`; `single` is one).
    pub concurrency: usize,
}

impl PubSubComponent {
    /// The broker's name for the app's `topic`.
    pub fn broker_topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }
}

/// Who is opening a component, for `consumerID`'s tokens.
#[derive(Clone, Copy, Debug)]
pub struct ConsumerContext<'a> {
    /// The app id, for `{appID}` (and the default).
    pub app_id: &'a str,
    /// The namespace: `{namespace}` becomes `<namespace>.<app id>`.
    pub namespace: &'a str,
    /// The pod name (env `POD_NAME`), for `{podName}`.
    pub pod_name: Option<&'a str>,
}

/// `consumerID` with its tokens replaced (`{appID}`, `{namespace}`, `{uuid}`, `{podName}`); the
/// app id when not set. Fails only for `{podName}` with no pod name.
pub fn consumer_id(configured: Option<&str>, cx: ConsumerContext<'_>) -> Result<String, String> {
    let Some(v) = configured.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(cx.app_id.to_owned());
    };
    let mut v = v
        .replace("{appID}", cx.app_id)
        .replace("{namespace}", &format!("{}.{}", cx.namespace, cx.app_id));
    // Each `{uuid}` gets a UUID of its own.
    while v.contains("{uuid}") {
        v = v.replacen("{uuid}", &uuid::Uuid::new_v4().to_string(), 1);
    }
    if v.contains("{podName}") {
        let pod = cx
            .pod_name
            .filter(|p| !p.is_empty())
            .ok_or("{podName} needs the POD_NAME environment variable")?;
        v = v.replace("{podName}", pod);
    }
    Ok(v)
}

/// Deliveries in flight per subscription unless `concurrency` says otherwise (daprd's default).
const DEFAULT_CONCURRENCY: usize = 10;
const MAX_CONCURRENCY: usize = 10_000;

/// A bare number in a duration field means milliseconds (daprd's Redis and NATS fields).
const MILLIS: Duration = Duration::from_millis(1);

fn clamp_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Opens a pub/sub component for `app_id` in `namespace`. Errors name the field.
pub async fn open(
    c: &Component,
    app_id: &str,
    namespace: &str,
) -> Result<PubSubComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    let pod_name = std::env::var("POD_NAME").ok();
    let cx = ConsumerContext {
        app_id,
        namespace,
        pod_name: pod_name.as_deref(),
    };
    let group = consumer_id(md.get("consumerid").map(String::as_str), cx).map_err(|e| {
        err(
            "spec.metadata.consumerID",
            format!("{:?}: {e}", md["consumerid"]),
        )
    })?;
    let topic_prefix = if md.values().any(|v| v.contains("{namespace}")) {
        namespace.to_owned()
    } else {
        String::new()
    };
    let scopes = TopicScopes::from_metadata(&md, app_id);
    let fields = Fields(&md);
    let concurrency = concurrency_of(&fields)?;
    let broker: Arc<dyn PubSub> = match c.spec.type_.as_str() {
        "pubsub.in-memory" => Arc::new(MemoryPubSub::named(&c.metadata.name)),
        "pubsub.redis" => Arc::new(open_redis(&md, &fields, &group).await?),
        "pubsub.jetstream" => Arc::new(open_jetstream(&fields, app_id).await?),
        "pubsub.rabbitmq" => Arc::new(open_rabbitmq(&fields, app_id).await?),
        "pubsub.mqtt3" => Arc::new(open_mqtt(&fields).await?),
        other => return Err(unsupported_type(other, "pub/sub")),
    };
    md.warn_unread(&c.metadata.name, &c.spec.type_);
    Ok(PubSubComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: c.spec.version_or_v1(),
        broker,
        consumer_group: group,
        topic_prefix,
        scopes,
        concurrency,
    })
}

/// `concurrency`: `single` (one), `parallel` (the default) or a number of deliveries.
fn concurrency_of(f: &Fields<'_>) -> Result<usize, Vec<ComponentError>> {
    Ok(match f.get("concurrency") {
        None => DEFAULT_CONCURRENCY,
        Some(v) if v.eq_ignore_ascii_case("single") => 1,
        Some(v) if v.eq_ignore_ascii_case("parallel") => DEFAULT_CONCURRENCY,
        Some(v) => match v.parse::<usize>() {
            Ok(n @ 1..=MAX_CONCURRENCY) => n,
            _ => {
                let message = format!(
                    "{v:?} is not single, parallel or a number from 1 to {MAX_CONCURRENCY}"
                );
                return Err(err("spec.metadata.concurrency", message));
            }
        },
    })
}

/// `pubsub.redis`: Redis Streams on the state store's connection settings, with `group` as the
/// consumer name.
async fn open_redis(
    md: &crate::component::Settings,
    f: &Fields<'_>,
    group: &str,
) -> Result<RedisPubSub, Vec<ComponentError>> {
    let redis = redis_settings(md)?;
    let client = client_for(&redis).map_err(|e| err("spec.metadata.redisHost", e.to_string()))?;
    let settings = RedisStreamSettings {
        client,
        // daprd uses the consumer id as both the group and the consumer name.
        consumer: group.to_owned(),
        processing_timeout: f.duration("processingTimeout", MILLIS, Duration::from_secs(60))?,
        redeliver_interval: f.duration("redeliverInterval", MILLIS, Duration::from_secs(15))?,
        queue_depth: f.count("queueDepth")?.map_or(100, clamp_usize),
        max_len_approx: f.count("maxLenApprox")?,
        timeout: redis.timeout,
    };
    let broker = RedisPubSub::connect(settings).await.map_err(|e| {
        err(
            "spec.metadata.redisHost",
            format!("{}:{}: {e}", redis.host, redis.port),
        )
    })?;
    Ok(broker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_ids() {
        let cx = ConsumerContext {
            app_id: "orders",
            namespace: "prod",
            pod_name: None,
        };
        assert_eq!(consumer_id(None, cx).unwrap(), "orders");
        assert_eq!(consumer_id(Some(" "), cx).unwrap(), "orders");
        assert_eq!(consumer_id(Some("{namespace}"), cx).unwrap(), "prod.orders");
        assert_eq!(
            consumer_id(Some("{appID}-v2-{appID}"), cx).unwrap(),
            "orders-v2-orders"
        );
        let two = consumer_id(Some("{uuid}/{uuid}"), cx).unwrap();
        let (a, b) = two.split_once('/').unwrap();
        assert!(
            uuid::Uuid::parse_str(a).is_ok() && uuid::Uuid::parse_str(b).is_ok() && a != b,
            "{two}"
        );
        assert_eq!(consumer_id(Some("shared"), cx).unwrap(), "shared");
        let a = consumer_id(Some("{uuid}"), cx).unwrap();
        assert!(uuid::Uuid::parse_str(&a).is_ok() && a != consumer_id(Some("{uuid}"), cx).unwrap());
        assert!(
            consumer_id(Some("{podName}"), cx)
                .unwrap_err()
                .contains("POD_NAME")
        );
        let pod = ConsumerContext {
            pod_name: Some("orders-7f9"),
            ..cx
        };
        assert_eq!(consumer_id(Some("{podName}"), pod).unwrap(), "orders-7f9");
    }
}
