//! Opening each networked broker from its component's fields: NATS JetStream, RabbitMQ and
//! MQTT (Redis shares its connection settings with the state store, in the parent module).
//! URLs that may carry passwords are quoted redacted.

use std::time::Duration;

use super::fields::Fields;
use super::{MILLIS, clamp_usize, err};
use crate::ComponentError;
use crate::component::redact_userinfo;
use crate::pubsub::PubSubError;
use crate::pubsub::jetstream::{JetStreamPubSub, JetStreamSettings, NatsAuth};
use crate::pubsub::mqtt::{MqttPubSub, MqttSettings};
use crate::pubsub::rabbitmq::{QueueMode, RabbitMqPubSub, RabbitMqSettings};

pub(super) async fn open_jetstream(
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
            PubSubError::BadRequest(m) => err("spec.metadata", m.replace(&url, &shown)),
            other => err(
                "spec.metadata.natsURL",
                format!("{shown}: {}", other.to_string().replace(&url, &shown)),
            ),
        })
}

pub(super) async fn open_rabbitmq(
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
        queue_mode: QueueMode::Off,
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
pub(crate) fn mqtt_url(url: &str) -> Result<(String, u16, Option<Credentials>), String> {
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

pub(super) async fn open_mqtt(f: &Fields<'_>) -> Result<MqttPubSub, Vec<ComponentError>> {
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
        keep_subscribed: false,
    };
    let shown = format!("{}:{}", settings.host, settings.port);
    MqttPubSub::connect(settings)
        .await
        .map_err(|e| err("spec.metadata.url", format!("{shown}: {e}")))
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
}
