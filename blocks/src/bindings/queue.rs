//! `bindings.mqtt3` and `bindings.rabbitmq`: input and output bindings on the brokers pub/sub
//! already speaks, with their acknowledgement rules (an event is acknowledged only after the
//! app took it; one it failed is delivered again).
//!
//! MQTT: one topic, subscribed with QoS 1 by the client `<consumerID>-consumer` in a session
//! that outlives the connection (`cleanSession` false by default), so a sidecar killed with
//! events unacknowledged gets them again when it comes back; each event carries its `topic` as
//! metadata; `create` publishes to the component's topic or the request's `topic` metadata.
//! RabbitMQ: one queue (`queueName`), declared as configured and consumed one event at a time;
//! a failed event goes back on the queue; `create` publishes to it through the default exchange
//! (`ttlInSeconds`, `priority`, `contentType`, `messageID`, `correlationID` and `type` metadata
//! set the message's properties; other metadata travels as headers).

use std::sync::Arc;
use std::time::Duration;

use super::{
    BindingError, Handler, InputBinding, InvokeRequest, InvokeResponse, Message, OutputBinding,
    Subscription,
};
use crate::component::{Settings, field_error as err, redact_userinfo};
use crate::pubsub::{
    MqttPubSub, MqttSettings, PubSub, PubSubError, QueueMode, RabbitMqPubSub, RabbitMqSettings,
    SubscribeRequest,
};
use crate::state::BoxFuture;
use crate::{ComponentError, Fault};

/// A binding on a broker: reads one topic or queue, publishes to it.
pub struct QueueBinding {
    broker: Arc<dyn PubSub>,
    topic: String,
    group: String,
    concurrency: usize,
    /// MQTT: events carry their topic, and a request may name another one.
    topic_metadata: bool,
}

fn broker_error(e: PubSubError) -> BindingError {
    match e {
        PubSubError::BadRequest(m) => BindingError::BadRequest(m),
        PubSubError::Broker(f) => BindingError::Failed(f),
        PubSubError::Full(m) => BindingError::Failed(Fault::new(m)),
    }
}

impl InputBinding for QueueBinding {
    fn read(&self, handler: Handler) -> BoxFuture<Result<Subscription, BindingError>> {
        let handler: Handler = if self.topic_metadata {
            Arc::new(move |mut msg: Message| {
                msg.metadata.insert("topic".into(), msg.topic.clone());
                handler(msg)
            })
        } else {
            handler
        };
        let req = SubscribeRequest {
            topic: self.topic.clone(),
            group: self.group.clone(),
            concurrency: self.concurrency,
        };
        let subscribing = self.broker.subscribe(req, handler);
        Box::pin(async move { subscribing.await.map_err(broker_error) })
    }
}

impl OutputBinding for QueueBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create"]
    }

    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> BoxFuture<Result<Option<InvokeResponse>, BindingError>> {
        let topic = match req
            .metadata
            .get("topic")
            .filter(|t| self.topic_metadata && !t.is_empty())
        {
            Some(t) => t.clone(),
            None => self.topic.clone(),
        };
        let msg = Message {
            topic,
            data: req.data,
            metadata: req.metadata,
        };
        let publishing = self.broker.publish(msg);
        Box::pin(async move { publishing.await.map(|()| None).map_err(broker_error) })
    }
}

/// The TLS settings both brokers' bindings take (and this build refuses).
const TLS_FIELDS: &[(&str, &str)] = &[
    ("cacert", "spec.metadata.caCert"),
    ("clientcert", "spec.metadata.clientCert"),
    ("clientkey", "spec.metadata.clientKey"),
];

/// The settings each TLS field names: refused, as this build speaks to brokers in the clear.
fn refuse_tls(md: &Settings, fields: &[(&str, &str)]) -> Result<(), Vec<ComponentError>> {
    for (key, field) in fields {
        if md.get(key).is_some_and(|v| !v.is_empty()) {
            return Err(err(
                field,
                "TLS to the broker is not supported by this build",
            ));
        }
    }
    Ok(())
}

fn required<'a>(
    md: &'a Settings,
    key: &str,
    field: &str,
    says: &str,
) -> Result<&'a String, Vec<ComponentError>> {
    md.get(key)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| err(field, says))
}

fn flag(md: &Settings, key: &str, field: &str) -> Result<Option<bool>, Vec<ComponentError>> {
    match md.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some("true" | "1" | "True" | "TRUE") => Ok(Some(true)),
        Some("false" | "0" | "False" | "FALSE") => Ok(Some(false)),
        Some(v) => Err(err(field, format!("{v:?} is not true or false"))),
    }
}

/// Opens `bindings.mqtt3`.
pub(crate) async fn open_mqtt(
    name: &str,
    md: &Settings,
) -> Result<QueueBinding, Vec<ComponentError>> {
    let url = required(md, "url", "spec.metadata.url", "missing url")?;
    let (host, port, credentials) = crate::pubsub::mqtt_url(url).map_err(|e| {
        err(
            "spec.metadata.url",
            format!("{:?}: {e}", redact_userinfo(url)),
        )
    })?;
    let topic = required(md, "topic", "spec.metadata.topic", "missing topic")?.clone();
    let consumer = required(
        md,
        "consumerid",
        "spec.metadata.consumerID",
        "missing consumerID",
    )?;
    if flag(md, "retain", "spec.metadata.retain")? == Some(true) {
        return Err(err(
            "spec.metadata.retain",
            "retained messages are not supported",
        ));
    }
    refuse_tls(
        md,
        &[
            ("cacert", "spec.metadata.caCert"),
            ("clientcert", "spec.metadata.clientCert"),
            ("clientkey", "spec.metadata.clientKey"),
        ],
    )?;
    if md.get("qos").is_some() {
        tracing::warn!(
            component = name,
            "qos is deprecated and ignored: MQTT bindings use QoS 1"
        );
    }
    if md.get("backoffmaxretries").is_some_and(|v| !v.is_empty()) {
        tracing::warn!(
            component = name,
            "backOffMaxRetries is not honoured: an event the app fails is handed to it again, with a growing delay, until it takes it"
        );
    }
    let clean_session = flag(md, "cleansession", "spec.metadata.cleanSession")?.unwrap_or(false);
    let settings = MqttSettings {
        host,
        port,
        credentials,
        qos: rumqttc::QoS::AtLeastOnce,
        client_id: Some(format!("{consumer}-consumer")),
        clean_session,
        shared: false,
        keep_alive: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        // A kept session holds what is published while the binding is paused or restarting.
        keep_subscribed: !clean_session,
    };
    let shown = format!("{}:{}", settings.host, settings.port);
    let broker = MqttPubSub::connect(settings)
        .await
        .map_err(|e| err("spec.metadata.url", format!("{shown}: {e}")))?;
    Ok(QueueBinding {
        broker: Arc::new(broker),
        topic,
        group: consumer.clone(),
        concurrency: 8,
        topic_metadata: true,
    })
}

/// A whole number setting, when given.
fn count(md: &Settings, key: &str, field: &str) -> Result<Option<u64>, Vec<ComponentError>> {
    match md.get(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => (v.trim().parse().map(Some))
            .map_err(|_| err(field, format!("{v:?} is not a whole number"))),
    }
}

/// Opens `bindings.rabbitmq`.
pub(crate) async fn open_rabbitmq(
    name: &str,
    md: &Settings,
) -> Result<QueueBinding, Vec<ComponentError>> {
    let settings = rabbitmq_settings(name, md)?;
    let uri = settings.uri.clone();
    let queue = required(
        md,
        "queuename",
        "spec.metadata.queueName",
        "missing queue Name",
    )?;
    let shown = redact_userinfo(&uri);
    let broker = RabbitMqPubSub::connect(settings).await.map_err(|e| {
        let e = e.to_string().replace(&uri, &shown);
        err("spec.metadata.host", format!("{shown}: {e}"))
    })?;
    Ok(QueueBinding {
        broker: Arc::new(broker),
        topic: queue.clone(),
        group: String::new(),
        concurrency: 1,
        topic_metadata: false,
    })
}

/// `bindings.rabbitmq`'s metadata: the broker, and how its queue is declared.
fn rabbitmq_settings(name: &str, md: &Settings) -> Result<RabbitMqSettings, Vec<ComponentError>> {
    let uri = required(md, "host", "spec.metadata.host", "missing host address")?.clone();
    refuse_tls(md, TLS_FIELDS)?;
    if flag(md, "externalsasl", "spec.metadata.externalSasl")? == Some(true)
        || flag(md, "saslexternal", "spec.metadata.saslExternal")? == Some(true)
    {
        let says = "external SASL is not supported by this build";
        return Err(err("spec.metadata.externalSasl", says));
    }
    let prefetch = match count(md, "prefetchcount", "spec.metadata.prefetchCount")? {
        None | Some(0) => None,
        Some(n) => Some(
            u16::try_from(n)
                .map_err(|_| err("spec.metadata.prefetchCount", format!("{n} is above 65535")))?,
        ),
    };
    let max_priority = match count(md, "maxpriority", "spec.metadata.maxPriority")? {
        None => None,
        Some(p) => Some(
            u8::try_from(p)
                .map_err(|_| err("spec.metadata.maxPriority", format!("{p} is above 255")))?,
        ),
    };
    let ttl = match md
        .get("ttlinseconds")
        .or(md.get("ttl"))
        .filter(|v| !v.trim().is_empty())
    {
        None => None,
        Some(v) => {
            let d = crate::component::metadata_duration(v, Duration::from_secs(1))
                .filter(|d| d.as_secs() >= 1 && d.subsec_nanos() == 0)
                .ok_or_else(|| {
                    let says = format!("{v:?} is not a whole number of seconds (at least 1)");
                    err("spec.metadata.ttlInSeconds", says)
                })?;
            Some(d.as_secs())
        }
    };
    for key in ["reconnectwaitinseconds", "reconnectwait"] {
        if md.get(key).is_some_and(|v| !v.is_empty()) {
            tracing::warn!(
                component = name,
                setting = key,
                "not honoured: reconnecting backs off on its own schedule"
            );
        }
    }
    let flag_or = |key: &str, field: &str, default: bool| -> Result<bool, Vec<ComponentError>> {
        Ok(flag(md, key, field)?.unwrap_or(default))
    };
    Ok(RabbitMqSettings {
        uri,
        durable: flag_or("durable", "spec.metadata.durable", false)?,
        delete_when_unused: flag_or("deletewhenunused", "spec.metadata.deleteWhenUnused", false)?,
        delivery_mode: 2,
        prefetch_count: prefetch,
        publisher_confirm: true,
        requeue_delay: Duration::from_millis(200),
        max_len: None,
        max_len_bytes: None,
        queue_ttl_seconds: ttl,
        connection_name: format!("outrider binding {name}"),
        timeout: Duration::from_secs(5),
        queue_mode: QueueMode::On {
            exclusive: flag_or("exclusive", "spec.metadata.exclusive", false)?,
            max_priority,
        },
    })
}
