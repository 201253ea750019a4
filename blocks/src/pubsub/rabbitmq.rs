//! `pubsub.rabbitmq`: AMQP 0-9-1 with daprd's topology.
//!
//! A topic is a fanout exchange named after it; a consumer group is a queue named
//! `<group>-<topic>` bound to that exchange, so instances of one group compete for the queue
//! and every group gets every message. Exchanges and queues are durable and messages persistent
//! by default (a queue outlives its consumers, so nothing is lost while an app is down).
//! Publish waits for the broker's confirm. Each subscription consumes on a channel of its own
//! with a prefetch of its concurrency (or `prefetchCount`); a message is acked when the app's
//! answer is success or drop and nacked back onto the queue (after `requeueDelay`) on retry.
//! Stopping cancels the consumer, lets in-flight deliveries finish, then closes the channel,
//! which hands every message it still held back to the queue.
//!
//! Ordering: queue order for one consumer with concurrency one; a requeued message goes back
//! to its place at the head, so it is delivered again before later ones.

mod subscriber;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::broker::{
    Handler, Message, PubSub, PubSubError, SubscribeRequest, Subscription, broker_call,
};
use super::consumer::Consumer;
use crate::fault::Fault;
use crate::state::BoxFuture;
use subscriber::Sub;

/// How to reach RabbitMQ and how to lay out its queues.
#[derive(Clone, Debug)]
pub struct RabbitMqSettings {
    /// `amqp://user:password@host:port/vhost` (`amqps://` for TLS).
    pub uri: String,
    /// Exchanges and queues survive a broker restart.
    pub durable: bool,
    /// Queues are deleted when their last consumer leaves (messages published meanwhile are
    /// lost), and exchanges when their last queue does.
    pub delete_when_unused: bool,
    /// 2 = persistent messages, 1 = transient.
    pub delivery_mode: u8,
    /// Unacknowledged messages one subscription may hold (default: its concurrency).
    pub prefetch_count: Option<u16>,
    /// Wait for the broker's confirm on publish.
    pub publisher_confirm: bool,
    /// How long a message answered with retry waits before it goes back on the queue.
    pub requeue_delay: Duration,
    /// `x-max-length` of queues declared here.
    pub max_len: Option<u64>,
    /// `x-max-length-bytes` of queues declared here.
    pub max_len_bytes: Option<u64>,
    /// `x-message-ttl` (seconds) of queues declared here.
    pub queue_ttl_seconds: Option<u64>,
    /// The connection's name, shown by the broker.
    pub connection_name: String,
    /// The deadline of each broker call.
    pub timeout: Duration,
    /// A queue named after the topic, published to through the default exchange and consumed
    /// directly (`bindings.rabbitmq`), instead of daprd's fanout exchange per topic.
    pub queue_mode: QueueMode,
}

/// The queue of the queue topology (`bindings.rabbitmq`): its extra declaration settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum QueueMode {
    /// daprd's pub/sub topology: a fanout exchange per topic, a queue per group.
    #[default]
    Off,
    /// One queue named after the topic.
    On {
        /// Only this connection may use the queue; it goes with the connection.
        exclusive: bool,
        /// `x-max-priority`, when given.
        max_priority: Option<u8>,
    },
}

/// The connection and the publishing channel, made again after a failure.
struct Link {
    conn: Arc<Connection>,
    publisher: Channel,
    /// Exchanges declared on this connection.
    exchanges: HashSet<String>,
}

/// The RabbitMQ broker.
#[derive(Clone)]
pub struct RabbitMqPubSub {
    settings: Arc<RabbitMqSettings>,
    link: Arc<Mutex<Option<Link>>>,
}

/// The name its errors start with.
const BROKER: &str = "rabbitmq";

fn not_connected() -> PubSubError {
    PubSubError::Broker(Fault::new("rabbitmq: not connected"))
}

/// AMQP names are short strings: at most 255 bytes.
fn amqp_name(what: &str, name: &str) -> Result<ShortString, PubSubError> {
    if name.is_empty() || name.len() > 255 {
        return Err(PubSubError::BadRequest(format!(
            "{what} {name:?} must be 1 to 255 bytes for RabbitMQ"
        )));
    }
    Ok(ShortString::from(name))
}

impl RabbitMqPubSub {
    /// Connects (the broker must answer now; later outages are ridden out by reconnecting).
    pub async fn connect(settings: RabbitMqSettings) -> Result<Self, PubSubError> {
        let me = Self {
            settings: Arc::new(settings),
            link: Arc::default(),
        };
        drop(me.link().await?);
        Ok(me)
    }

    async fn open_connection(&self) -> Result<Arc<Connection>, PubSubError> {
        let s = &self.settings;
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(s.connection_name.clone()));
        let conn = broker_call(
            BROKER,
            s.timeout,
            "connecting",
            Connection::connect(&s.uri, props),
        )
        .await?;
        Ok(Arc::new(conn))
    }

    /// The live connection and publishing channel, connecting again when they failed.
    async fn link(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Link>>, PubSubError> {
        let mut link = self.link.lock().await;
        let alive = link
            .as_ref()
            .is_some_and(|l| l.conn.status().connected() && l.publisher.status().connected());
        if !alive {
            *link = None;
            let conn = self.open_connection().await?;
            let timeout = self.settings.timeout;
            let publisher =
                broker_call(BROKER, timeout, "opening a channel", conn.create_channel()).await?;
            if self.settings.publisher_confirm {
                broker_call(
                    BROKER,
                    timeout,
                    "enabling publisher confirms",
                    publisher.confirm_select(ConfirmSelectOptions::default()),
                )
                .await?;
            }
            *link = Some(Link {
                conn,
                publisher,
                exchanges: HashSet::new(),
            });
        }
        Ok(link)
    }

    fn exchange_options(&self) -> ExchangeDeclareOptions {
        // With `deletedWhenUnused`, an exchange goes when its last queue does.
        ExchangeDeclareOptions {
            durable: self.settings.durable,
            auto_delete: self.settings.delete_when_unused,
            ..ExchangeDeclareOptions::default()
        }
    }

    /// How queues are declared here: durability, auto-delete and the `x-` limits.
    fn queue_options(&self) -> (QueueDeclareOptions, FieldTable) {
        let s = &self.settings;
        let mut args = FieldTable::default();
        let mut exclusive = false;
        if let QueueMode::On {
            exclusive: e,
            max_priority,
        } = &s.queue_mode
        {
            exclusive = *e;
            if let Some(p) = max_priority {
                args.insert(
                    ShortString::from("x-max-priority"),
                    AMQPValue::ShortShortUInt(*p),
                );
            }
        }
        let mut limit = |key: &str, v: Option<u64>| {
            if let Some(v) = v.and_then(|v| i64::try_from(v).ok()) {
                args.insert(ShortString::from(key), AMQPValue::LongLongInt(v));
            }
        };
        limit("x-max-length", s.max_len);
        limit("x-max-length-bytes", s.max_len_bytes);
        limit(
            "x-message-ttl",
            s.queue_ttl_seconds.map(|secs| secs.saturating_mul(1000)),
        );
        let options = QueueDeclareOptions {
            durable: s.durable,
            auto_delete: s.delete_when_unused,
            exclusive,
            ..Default::default()
        };
        (options, args)
    }

    /// Declares what a publish to `topic` needs: its fanout exchange, or in the queue
    /// topology its queue (the default exchange drops what no queue takes).
    async fn declare(
        &self,
        link: &Link,
        topic: &str,
        name: ShortString,
    ) -> Result<(), PubSubError> {
        let timeout = self.settings.timeout;
        if self.settings.queue_mode != QueueMode::Off {
            let (options, args) = self.queue_options();
            let declare = link.publisher.queue_declare(name, options, args);
            let what = format!("declaring queue {topic:?}");
            return broker_call(BROKER, timeout, &what, declare).await.map(drop);
        }
        let declare = link.publisher.exchange_declare(
            name,
            ExchangeKind::Fanout,
            self.exchange_options(),
            FieldTable::default(),
        );
        let what = format!("declaring exchange {topic:?}");
        broker_call(BROKER, timeout, &what, declare).await
    }

    async fn publish_once(&self, msg: &Message) -> Result<(), PubSubError> {
        let exchange = amqp_name("topic", &msg.topic)?;
        let timeout = self.settings.timeout;
        let mut guard = self.link().await?;
        let link = guard.as_mut().ok_or_else(not_connected)?;
        let queue_mode = self.settings.queue_mode != QueueMode::Off;
        if !link.exchanges.contains(&msg.topic) {
            self.declare(link, &msg.topic, exchange.clone()).await?;
            link.exchanges.insert(msg.topic.clone());
        }
        let mut headers = FieldTable::default();
        for (k, v) in &msg.metadata {
            if !k.is_empty() && k.len() <= 255 {
                headers.insert(
                    ShortString::from(k.as_str()),
                    AMQPValue::LongString(LongString::from(v.as_str())),
                );
            }
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(self.settings.delivery_mode)
            .with_headers(headers);
        if queue_mode {
            props = queue_properties(props, &msg.metadata)?;
        }
        // The queue topology publishes through the default exchange, routed by queue name.
        let (exchange, routing_key) = if queue_mode {
            (ShortString::from(""), exchange)
        } else {
            (exchange, ShortString::from(""))
        };
        let publisher = link.publisher.clone();
        drop(guard); // confirms of concurrent publishes overlap
        let confirm = broker_call(
            BROKER,
            timeout,
            "publishing",
            publisher.basic_publish(
                exchange,
                routing_key,
                // The queue topology's message must reach its queue, or come back as an error.
                BasicPublishOptions {
                    mandatory: queue_mode,
                    ..BasicPublishOptions::default()
                },
                &msg.data,
                props,
            ),
        )
        .await?;
        let confirmation =
            broker_call(BROKER, timeout, "waiting for the broker's confirm", confirm).await?;
        if let lapin::Confirmation::Ack(Some(_)) = confirmation {
            // Routed nowhere (its queue went away since it was declared): declare it again.
            guard_reset(&self.link).await;
            return Err(PubSubError::Broker(Fault::new(format!(
                "rabbitmq: no queue took the message for {:?}",
                msg.topic
            ))));
        }
        if confirmation.is_nack() {
            return Err(PubSubError::Broker(Fault::new(format!(
                "rabbitmq: the broker refused the message on {:?}",
                msg.topic
            ))));
        }
        Ok(())
    }
}

/// Forgets what was declared on the connection (a queue gone since), so it is declared again.
async fn guard_reset(link: &Mutex<Option<Link>>) {
    if let Some(l) = link.lock().await.as_mut() {
        l.exchanges.clear();
    }
}

/// A message's AMQP properties from its metadata, as `bindings.rabbitmq` reads them:
/// `ttlInSeconds` (expiry), `priority` (0 to 255), `contentType`, `messageID`, `correlationID`
/// and `type` (names in any case).
fn queue_properties(
    mut props: BasicProperties,
    md: &super::broker::Metadata,
) -> Result<BasicProperties, PubSubError> {
    let bad = |m: String| PubSubError::BadRequest(m);
    for (k, v) in md {
        match k.to_ascii_lowercase().as_str() {
            "ttlinseconds" => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| bad(format!("ttlInSeconds {v:?} is not a number of seconds")))?;
                props =
                    props.with_expiration(ShortString::from(secs.saturating_mul(1000).to_string()));
            }
            "priority" => {
                let p: u8 = v
                    .parse()
                    .map_err(|_| bad(format!("priority {v:?} is not a number from 0 to 255")))?;
                props = props.with_priority(p);
            }
            "contenttype" => props = props.with_content_type(ShortString::from(v.as_str())),
            "messageid" => props = props.with_message_id(ShortString::from(v.as_str())),
            "correlationid" => props = props.with_correlation_id(ShortString::from(v.as_str())),
            "type" => props = props.with_type(ShortString::from(v.as_str())),
            _ => {}
        }
    }
    Ok(props)
}

impl PubSub for RabbitMqPubSub {
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>> {
        let this = self.clone();
        Box::pin(async move {
            match this.publish_once(&msg).await {
                Err(PubSubError::Broker(first)) => {
                    // One more try on a fresh connection: a broker restart closes the old one
                    // and this publish should not be the call that finds out.
                    *this.link.lock().await = None;
                    this.publish_once(&msg).await.map_err(|e| match e {
                        PubSubError::Broker(again) => PubSubError::Broker(
                            again.map_message(|m| format!("{m} (before: {first})")),
                        ),
                        other => other,
                    })
                }
                other => other,
            }
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>> {
        let this = self.clone();
        Box::pin(async move {
            let queue = match this.settings.queue_mode {
                QueueMode::Off => format!("{}-{}", req.group, req.topic),
                QueueMode::On { .. } => req.topic.clone(),
            };
            amqp_name("queue", &queue)?;
            amqp_name("topic", &req.topic)?;
            let sub = Arc::new(Sub {
                this,
                topic: req.topic,
                queue,
                consumer: Consumer::new(handler, req.concurrency),
            });
            // Declare and bind before answering: messages published from now on reach the group.
            let consuming = sub.consume().await?;
            sub.consumer.spawn(sub.clone().run(consuming));
            Ok(sub.consumer.subscription())
        })
    }
}
