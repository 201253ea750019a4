//! From a `Component` document to a running broker.

use std::sync::Arc;

use std::time::Duration;

use super::jetstream::{JetStreamPubSub, JetStreamSettings, NatsAuth};
use super::mqtt::{MqttPubSub, MqttSettings};
use super::rabbitmq::{RabbitMqPubSub, RabbitMqSettings};
use super::{MemoryPubSub, PubSub, RedisPubSub, RedisStreamSettings, TopicScopes};
use crate::component::{metadata_duration, redact_userinfo};
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

fn err(field: &str, message: impl Into<String>) -> Vec<ComponentError> {
    vec![ComponentError {
        field: field.into(),
        message: message.into(),
    }]
}

/// Deliveries in flight per subscription unless `concurrency` says otherwise (daprd's default).
const DEFAULT_CONCURRENCY: usize = 10;
const MAX_CONCURRENCY: usize = 10_000;

/// A bare number in a duration field means milliseconds (daprd's Redis and NATS fields).
const MILLIS: Duration = Duration::from_millis(1);

fn clamp_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Reads typed metadata fields (keys lower-cased); errors name the field and the value.
struct Fields<'a>(&'a std::collections::BTreeMap<String, String>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(&name.to_ascii_lowercase())
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    fn required(&self, name: &str, example: &str) -> Result<String, Vec<ComponentError>> {
        self.string(name).ok_or_else(|| {
            err(
                &format!("spec.metadata.{name}"),
                format!("is required (e.g. {example})"),
            )
        })
    }

    fn duration(
        &self,
        name: &str,
        bare: Duration,
        default: Duration,
    ) -> Result<Duration, Vec<ComponentError>> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => metadata_duration(v, bare).ok_or_else(|| {
                err(
                    &format!("spec.metadata.{name}"),
                    format!("{v:?} is not a duration (e.g. 30s or 500ms)"),
                )
            }),
        }
    }

    fn count(&self, name: &str) -> Result<Option<u64>, Vec<ComponentError>> {
        self.parsed(name, "a whole number")
    }

    fn int(&self, name: &str) -> Result<Option<i64>, Vec<ComponentError>> {
        self.parsed(name, "a whole number")
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, Vec<ComponentError>> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(v) => Err(err(
                &format!("spec.metadata.{name}"),
                format!("{v:?} is not true or false"),
            )),
        }
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, Vec<ComponentError>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                err(
                    &format!("spec.metadata.{name}"),
                    format!("{v:?} is not {what}"),
                )
            }),
        }
    }
}

async fn open_jetstream(
    f: &Fields<'_>,
    app_id: &str,
) -> Result<JetStreamPubSub, Vec<ComponentError>> {
    use async_nats::jetstream::consumer::DeliverPolicy;
    let url = f.required("natsURL", "nats://localhost:4222")?;
    let auth = match (f.string("jwt"), f.string("seedKey"), f.string("token")) {
        (Some(jwt), Some(seed), _) => NatsAuth::Jwt { jwt, seed },
        (Some(_), None, _) => return Err(err("spec.metadata.seedKey", "is required with jwt")),
        (None, Some(_), _) => return Err(err("spec.metadata.jwt", "is required with seedKey")),
        (None, None, Some(token)) => NatsAuth::Token(token),
        (None, None, None) => NatsAuth::None,
    };
    let policy_field = "spec.metadata.deliverPolicy";
    let deliver_policy = match f
        .get("deliverPolicy")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("all") => {
            if f.flag("deliverAll")? == Some(false) {
                DeliverPolicy::New
            } else {
                DeliverPolicy::All
            }
        }
        Some("last") => DeliverPolicy::Last,
        Some("new") => DeliverPolicy::New,
        Some("sequence") => DeliverPolicy::ByStartSequence {
            start_sequence: f
                .count("startSequence")?
                .ok_or_else(|| err(policy_field, "\"sequence\" needs startSequence"))?,
        },
        Some("time") => {
            let secs = f
                .int("startTime")?
                .ok_or_else(|| err(policy_field, "\"time\" needs startTime (Unix seconds)"))?;
            let start_time = time::OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| err("spec.metadata.startTime", format!("{secs}: {e}")))?;
            DeliverPolicy::ByStartTime { start_time }
        }
        Some(v) => {
            return Err(err(
                policy_field,
                format!("{v:?} is not one of all, last, new, sequence, time"),
            ));
        }
    };
    let settings = JetStreamSettings {
        url: url.clone(),
        auth,
        connection_name: Some(
            f.string("name")
                .unwrap_or_else(|| format!("outrider {app_id}")),
        ),
        stream_name: f.string("streamName"),
        durable_name: f.string("durableName"),
        deliver_policy,
        ack_wait: f.duration("ackWait", MILLIS, Duration::from_secs(30))?,
        max_deliver: f.int("maxDeliver")?.unwrap_or(-1),
        max_ack_pending: f.int("maxAckPending")?.unwrap_or(0),
        queue_depth: f.count("queueDepth")?.map_or(100, clamp_usize),
        nak_delay: f.duration("nakDelay", MILLIS, Duration::from_secs(1))?,
        memory_storage: f.flag("memoryStorage")?.unwrap_or(false),
        replicas: f.count("replicas")?.map_or(1, clamp_usize),
        timeout: f.duration("timeout", MILLIS, Duration::from_secs(5))?,
    };
    // The URL may carry a password: messages quote it redacted.
    let shown = redact_userinfo(&url);
    JetStreamPubSub::connect(settings)
        .await
        .map_err(|e| match e {
            super::PubSubError::BadRequest(m) => err("spec.metadata", m.replace(&url, &shown)),
            other => err(
                "spec.metadata.natsURL",
                format!("{shown}: {}", other.to_string().replace(&url, &shown)),
            ),
        })
}

async fn open_rabbitmq(
    f: &Fields<'_>,
    app_id: &str,
) -> Result<RabbitMqPubSub, Vec<ComponentError>> {
    // `connectionString`, or daprd's older split fields.
    let uri = match (
        f.string("connectionString"),
        f.string("host"),
        f.string("hostname"),
    ) {
        (Some(uri), _, _) | (None, Some(uri), _) => uri,
        (None, None, Some(host)) => {
            let protocol = f.string("protocol").unwrap_or_else(|| "amqp".into());
            match (f.string("username"), f.string("password")) {
                (Some(user), Some(password)) => format!("{protocol}://{user}:{password}@{host}"),
                (Some(user), None) => format!("{protocol}://{user}@{host}"),
                _ => format!("{protocol}://{host}"),
            }
        }
        (None, None, None) => {
            return Err(err(
                "spec.metadata.connectionString",
                "is required (e.g. amqp://guest:guest@localhost:5672)",
            ));
        }
    };
    if let Some(kind) = f
        .get("exchangeKind")
        .filter(|k| !k.eq_ignore_ascii_case("fanout"))
    {
        return Err(err(
            "spec.metadata.exchangeKind",
            format!("{kind:?}: only fanout exchanges are supported"),
        ));
    }
    let delivery_mode = match f.count("deliveryMode")? {
        None | Some(2) => 2,
        Some(0 | 1) => 1,
        Some(n) => {
            return Err(err(
                "spec.metadata.deliveryMode",
                format!("{n} is not 1 (transient) or 2 (persistent)"),
            ));
        }
    };
    let prefetch_count = match f.count("prefetchCount")? {
        None | Some(0) => None,
        Some(n) => Some(
            u16::try_from(n)
                .map_err(|_| err("spec.metadata.prefetchCount", format!("{n} is above 65535")))?,
        ),
    };
    let settings = RabbitMqSettings {
        uri: uri.clone(),
        durable: f.flag("durable")?.unwrap_or(true),
        delete_when_unused: f.flag("deletedWhenUnused")?.unwrap_or(false),
        delivery_mode,
        prefetch_count,
        publisher_confirm: f.flag("publisherConfirm")?.unwrap_or(true),
        requeue_delay: f.duration("requeueDelay", MILLIS, Duration::from_secs(1))?,
        max_len: f.count("maxLen")?,
        max_len_bytes: f.count("maxLenBytes")?,
        queue_ttl_seconds: f.count("ttlInSeconds")?,
        connection_name: format!("outrider {app_id}"),
        timeout: f.duration("timeout", MILLIS, Duration::from_secs(5))?,
    };
    // The URI may carry a password: messages quote it redacted.
    let shown = redact_userinfo(&uri);
    RabbitMqPubSub::connect(settings).await.map_err(|e| {
        err(
            "spec.metadata.connectionString",
            format!("{shown}: {}", e.to_string().replace(&uri, &shown)),
        )
    })
}

/// A user name and password.
type Credentials = (String, String);

/// `tcp://[user:password@]host[:port]` (or `mqtt://`) into host, port and credentials.
fn mqtt_url(url: &str) -> Result<(String, u16, Option<Credentials>), String> {
    let rest = match url.split_once("://") {
        Some(("tcp" | "mqtt", rest)) => rest,
        Some((scheme @ ("ssl" | "tls" | "mqtts" | "ws" | "wss"), _)) => {
            return Err(format!("{scheme}:// is not supported yet; use tcp://"));
        }
        Some((scheme, _)) => return Err(format!("unknown scheme {scheme:?}; use tcp://host:1883")),
        None => url,
    };
    let rest = rest.trim_end_matches('/');
    let (credentials, host_port) = match rest.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let decode = |v: &str| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (Some((decode(user), decode(password))), hp)
        }
        None => (None, rest),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port"))?,
        ),
        _ => (host_port, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((host.to_owned(), port, credentials))
}

async fn open_mqtt(f: &Fields<'_>) -> Result<MqttPubSub, Vec<ComponentError>> {
    let url = f.required("url", "tcp://localhost:1883")?;
    let (host, port, credentials) = mqtt_url(&url).map_err(|e| {
        err(
            "spec.metadata.url",
            format!("{:?}: {e}", redact_userinfo(&url)),
        )
    })?;
    let qos = match f.count("qos")? {
        None | Some(1) => rumqttc::QoS::AtLeastOnce,
        Some(0) => rumqttc::QoS::AtMostOnce,
        Some(2) => rumqttc::QoS::ExactlyOnce,
        Some(n) => return Err(err("spec.metadata.qos", format!("{n} is not 0, 1 or 2"))),
    };
    if f.flag("retain")? == Some(true) {
        return Err(err(
            "spec.metadata.retain",
            "retained messages are not supported",
        ));
    }
    let client_id = f.string("clientID");
    let settings = MqttSettings {
        host,
        port,
        credentials,
        qos,
        // A session kept across restarts needs a fixed client id to find it again.
        clean_session: f.flag("cleanSession")?.unwrap_or(client_id.is_none()),
        client_id,
        shared: f.flag("sharedSubscriptions")?.unwrap_or(true),
        keep_alive: f.duration("keepAlive", Duration::from_secs(1), Duration::from_secs(30))?,
        timeout: f.duration("timeout", MILLIS, Duration::from_secs(5))?,
    };
    let shown = format!("{}:{}", settings.host, settings.port);
    MqttPubSub::connect(settings)
        .await
        .map_err(|e| err("spec.metadata.url", format!("{shown}: {e}")))
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
    let concurrency = match fields.get("concurrency") {
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
    };
    let broker: Arc<dyn PubSub> = match c.spec.type_.as_str() {
        "pubsub.in-memory" => Arc::new(MemoryPubSub::new()),
        "pubsub.redis" => {
            let redis = redis_settings(&md)?;
            let client =
                client_for(&redis).map_err(|e| err("spec.metadata.redisHost", e.to_string()))?;
            let settings = RedisStreamSettings {
                client,
                // daprd uses the consumer id as both the group and the consumer name.
                consumer: group.clone(),
                processing_timeout: fields.duration(
                    "processingTimeout",
                    MILLIS,
                    Duration::from_secs(60),
                )?,
                redeliver_interval: fields.duration(
                    "redeliverInterval",
                    MILLIS,
                    Duration::from_secs(15),
                )?,
                queue_depth: fields.count("queueDepth")?.map_or(100, clamp_usize),
                max_len_approx: fields.count("maxLenApprox")?,
                timeout: redis.timeout,
            };
            let broker = RedisPubSub::connect(settings).await.map_err(|e| {
                err(
                    "spec.metadata.redisHost",
                    format!("{}:{}: {e}", redis.host, redis.port),
                )
            })?;
            Arc::new(broker)
        }
        "pubsub.jetstream" => Arc::new(open_jetstream(&fields, app_id).await?),
        "pubsub.rabbitmq" => Arc::new(open_rabbitmq(&fields, app_id).await?),
        "pubsub.mqtt3" => Arc::new(open_mqtt(&fields).await?),
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
        version: if c.spec.version.is_empty() {
            "v1".into()
        } else {
            c.spec.version.clone()
        },
        broker,
        consumer_group: group,
        topic_prefix,
        scopes,
        concurrency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls() {
        assert_eq!(
            mqtt_url("tcp://localhost:1883").unwrap(),
            ("localhost".into(), 1883, None)
        );
        assert_eq!(
            mqtt_url("mqtt://broker").unwrap(),
            ("broker".into(), 1883, None)
        );
        assert_eq!(
            mqtt_url("127.0.0.1:2883").unwrap(),
            ("127.0.0.1".into(), 2883, None)
        );
        assert_eq!(
            mqtt_url("tcp://app:p%40ss@[::1]:1884/").unwrap(),
            ("::1".into(), 1884, Some(("app".into(), "p@ss".into())))
        );
        assert!(
            mqtt_url("ssl://broker:8883")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(mqtt_url("http://broker").unwrap_err().contains("scheme"));
        assert!(mqtt_url("tcp://broker:port").unwrap_err().contains("port"));
        assert!(mqtt_url("tcp://").is_err());
    }

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
