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
    Fields, MqttPubSub, MqttSettings, PubSub, PubSubError, QueueMode, RabbitMqPubSub,
    RabbitMqSettings, SubscribeRequest,
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
const TLS_FIELDS: &[&str] = &["caCert", "clientCert", "clientKey"];

/// The TLS settings, refused: this build speaks to brokers in the clear.
fn refuse_tls(f: &Fields<'_>) -> Result<(), Vec<ComponentError>> {
    for name in TLS_FIELDS {
        if f.get(name).is_some() {
            let says = "TLS to the broker is not supported by this build";
            return Err(err(&format!("spec.metadata.{name}"), says));
        }
    }
    Ok(())
}

/// Opens `bindings.mqtt3`.
pub(crate) async fn open_mqtt(
    name: &str,
    md: &Settings,
) -> Result<QueueBinding, Vec<ComponentError>> {
    let f = Fields(md);
    let url = f.required("url", "tcp://localhost:1883")?;
    let (host, port, credentials) = crate::pubsub::mqtt_url(&url).map_err(|e| {
        err(
            "spec.metadata.url",
            format!("{:?}: {e}", redact_userinfo(&url)),
        )
    })?;
    let topic = f.required("topic", "orders")?;
    let consumer = f.required("consumerID", "orders-reader")?;
    if f.flag("retain")? == Some(true) {
        return Err(err(
            "spec.metadata.retain",
            "retained messages are not supported",
        ));
    }
    refuse_tls(&f)?;
    if f.get("qos").is_some() {
        tracing::warn!(
            component = name,
            "qos is deprecated and ignored: MQTT bindings use QoS 1"
        );
    }
    if f.get("backOffMaxRetries").is_some() {
        tracing::warn!(
            component = name,
            "backOffMaxRetries is not honoured: an event the app fails is handed to it again, with a growing delay, until it takes it"
        );
    }
    let clean_session = f.flag("cleanSession")?.unwrap_or(false);
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
        group: consumer,
        concurrency: 8,
        topic_metadata: true,
    })
}

/// Opens `bindings.rabbitmq`.
pub(crate) async fn open_rabbitmq(
    name: &str,
    md: &Settings,
) -> Result<QueueBinding, Vec<ComponentError>> {
    let settings = rabbitmq_settings(name, md)?;
    let uri = settings.uri.clone();
    let queue = Fields(md).required("queueName", "orders")?;
    let shown = redact_userinfo(&uri);
    let broker = RabbitMqPubSub::connect(settings).await.map_err(|e| {
        let e = e.to_string().replace(&uri, &shown);
        err("spec.metadata.host", format!("{shown}: {e}"))
    })?;
    Ok(QueueBinding {
        broker: Arc::new(broker),
        topic: queue,
        group: String::new(),
        concurrency: 1,
        topic_metadata: false,
    })
}

/// `bindings.rabbitmq`'s metadata: the broker, and how its queue is declared.
fn rabbitmq_settings(name: &str, md: &Settings) -> Result<RabbitMqSettings, Vec<ComponentError>> {
    let f = Fields(md);
    let uri = f.required("host", "amqp://guest:guest@localhost:5672")?;
    refuse_tls(&f)?;
    if f.flag("externalSasl")? == Some(true) || f.flag("saslExternal")? == Some(true) {
        let says = "external SASL is not supported by this build";
        return Err(err("spec.metadata.externalSasl", says));
    }
    let prefetch = match f.count("prefetchCount")? {
        None | Some(0) => None,
        Some(n) => Some(
            u16::try_from(n)
                .map_err(|_| err("spec.metadata.prefetchCount", format!("{n} is above 65535")))?,
        ),
    };
    let max_priority = match f.count("maxPriority")? {
        None => None,
        Some(p) => Some(
            u8::try_from(p)
                .map_err(|_| err("spec.metadata.maxPriority", format!("{p} is above 255")))?,
        ),
    };
    let ttl = match f.get("ttlInSeconds").or(f.get("ttl")) {
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
    for key in ["reconnectWaitInSeconds", "reconnectWait"] {
        if f.get(key).is_some() {
            tracing::warn!(
                component = name,
                setting = key,
                "not honoured: reconnecting backs off on its own schedule"
            );
        }
    }
    let flag_or =
        |name: &str| -> Result<bool, Vec<ComponentError>> { Ok(f.flag(name)?.unwrap_or(false)) };
    Ok(RabbitMqSettings {
        uri,
        durable: flag_or("durable")?,
        delete_when_unused: flag_or("deleteWhenUnused")?,
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
            exclusive: flag_or("exclusive")?,
            max_priority,
        },
    })
}
