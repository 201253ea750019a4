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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::broker::{
    Handler, Message, Metadata, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
    broker_call,
};
use super::consumer::{Answered, Backoff, Consumer, Delivery};
use crate::fault::Fault;
use crate::state::BoxFuture;

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

    async fn publish_once(&self, msg: &Message) -> Result<(), PubSubError> {
        let exchange = amqp_name("topic", &msg.topic)?;
        let timeout = self.settings.timeout;
        let mut guard = self.link().await?;
        let link = guard.as_mut().ok_or_else(not_connected)?;
        if !link.exchanges.contains(&msg.topic) {
            let declare = link.publisher.exchange_declare(
                exchange.clone(),
                ExchangeKind::Fanout,
                self.exchange_options(),
                FieldTable::default(),
            );
            broker_call(
                BROKER,
                timeout,
                &format!("declaring exchange {:?}", msg.topic),
                declare,
            )
            .await?;
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
        let props = BasicProperties::default()
            .with_delivery_mode(self.settings.delivery_mode)
            .with_headers(headers);
        let publisher = link.publisher.clone();
        drop(guard); // confirms of concurrent publishes overlap
        let confirm = broker_call(
            BROKER,
            timeout,
            "publishing",
            publisher.basic_publish(
                exchange,
                ShortString::from(""),
                BasicPublishOptions::default(),
                &msg.data,
                props,
            ),
        )
        .await?;
        let confirmation =
            broker_call(BROKER, timeout, "waiting for the broker's confirm", confirm).await?;
        if confirmation.is_nack() {
            return Err(PubSubError::Broker(Fault::new(format!(
                "rabbitmq: the broker refused the message on {:?}",
                msg.topic
            ))));
        }
        Ok(())
    }
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
            let queue = format!("{}-{}", req.group, req.topic);
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

/// One running subscription.
struct Sub {
    this: RabbitMqPubSub,
    topic: String,
    queue: String,
    /// Its consume loop (which closes the channel last) and deliveries with their acks.
    consumer: Consumer,
}

/// A message handed to the app.
struct Delivered {
    sub: Arc<Sub>,
    delivery: lapin::message::Delivery,
}

impl Sub {
    /// A channel consuming the group's queue, declaring the topology first.
    async fn consume(&self) -> Result<(Channel, lapin::Consumer), PubSubError> {
        let s = &self.this.settings;
        let conn = {
            let guard = self.this.link().await?;
            guard
                .as_ref()
                .map(|l| l.conn.clone())
                .ok_or_else(not_connected)?
        };
        let t = s.timeout;
        let ch = broker_call(BROKER, t, "opening a channel", conn.create_channel()).await?;
        let prefetch = s
            .prefetch_count
            .unwrap_or_else(|| u16::try_from(self.consumer.concurrency()).unwrap_or(u16::MAX));
        broker_call(
            BROKER,
            t,
            "setting the prefetch",
            ch.basic_qos(prefetch, BasicQosOptions::default()),
        )
        .await?;
        let (exchange, queue) = (
            ShortString::from(self.topic.as_str()),
            ShortString::from(self.queue.as_str()),
        );
        let declare_exchange = ch.exchange_declare(
            exchange.clone(),
            ExchangeKind::Fanout,
            self.this.exchange_options(),
            FieldTable::default(),
        );
        broker_call(
            BROKER,
            t,
            &format!("declaring exchange {:?}", self.topic),
            declare_exchange,
        )
        .await?;
        let mut args = FieldTable::default();
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
            ..Default::default()
        };
        broker_call(
            BROKER,
            t,
            &format!("declaring queue {:?}", self.queue),
            ch.queue_declare(queue.clone(), options, args),
        )
        .await?;
        let bind = ch.queue_bind(
            queue.clone(),
            exchange,
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        broker_call(BROKER, t, &format!("binding queue {:?}", self.queue), bind).await?;
        let consume = ch.basic_consume(
            queue,
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        );
        let consumer = broker_call(
            BROKER,
            t,
            &format!("consuming queue {:?}", self.queue),
            consume,
        )
        .await?;
        Ok((ch, consumer))
    }

    async fn run(self: Arc<Self>, first: (Channel, lapin::Consumer)) {
        let mut next = Some(first);
        let mut backoff = Backoff::new();
        loop {
            if let Some((ch, mut consumer)) = next.take() {
                loop {
                    let item = tokio::select! {
                        biased;
                        () = self.consumer.stop().cancelled() => {
                            self.shut_down(&ch, &consumer).await;
                            return;
                        }
                        d = consumer.next() => d,
                    };
                    match item {
                        Some(Ok(delivery)) => {
                            backoff.reset();
                            self.clone().dispatch(delivery).await;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(topic = %self.topic, queue = %self.queue, error = %e, "consuming failed; reconnecting");
                            break;
                        }
                        None => {
                            tracing::warn!(topic = %self.topic, queue = %self.queue, "the broker ended the consumer; reconnecting");
                            break;
                        }
                    }
                }
            }
            if !backoff.wait(self.consumer.stop()).await {
                return;
            }
            match self.consume().await {
                Ok(c) => next = Some(c),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "resubscribing failed; retrying")
                }
            }
        }
    }

    /// Stops taking messages, waits for in-flight deliveries (bounded), then closes the
    /// channel: the broker puts back everything it still held for this consumer.
    async fn shut_down(&self, ch: &Channel, consumer: &lapin::Consumer) {
        let t = self.this.settings.timeout;
        let _ = broker_call(
            BROKER,
            t,
            "cancelling",
            ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
        )
        .await;
        self.consumer.drain(Duration::from_secs(30)).await;
        let _ = broker_call(
            BROKER,
            t,
            "closing the channel",
            ch.close(200, ShortString::from("unsubscribed")),
        )
        .await;
    }

    /// Hands one delivery to the handler, at most `concurrency` at once; unacknowledged once
    /// stopped (closing the channel puts it back on the queue).
    async fn dispatch(self: Arc<Self>, delivery: lapin::message::Delivery) {
        let Some(slot) = self.consumer.slot().await else {
            return;
        };
        let consumer = self.consumer.clone();
        consumer.deliver(
            slot,
            Delivered {
                sub: self,
                delivery,
            },
        );
    }
}

impl Delivery for Delivered {
    async fn handle(&self, handler: &Handler) -> Outcome {
        handler(message_of(&self.sub.topic, &self.delivery)).await
    }

    /// Acks a final answer; nacks a retry back onto the queue after `requeueDelay`.
    async fn answer(&self, outcome: Outcome) -> Answered {
        let settings = &self.sub.this.settings;
        let acker = &self.delivery.acker;
        let acked = match outcome {
            Outcome::Success | Outcome::Drop => {
                let ack = acker.ack(BasicAckOptions::default());
                broker_call(BROKER, settings.timeout, "acknowledging", ack).await
            }
            Outcome::Retry => {
                tokio::time::sleep(settings.requeue_delay).await;
                let requeue = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                broker_call(BROKER, settings.timeout, "requeueing", acker.nack(requeue)).await
            }
        };
        if let Err(e) = acked {
            // The channel is gone: the broker requeues the message itself.
            tracing::warn!(topic = %self.sub.topic, error = %e, "answering the broker failed");
        }
        Answered::Done
    }
}

fn message_of(topic: &str, d: &lapin::message::Delivery) -> Message {
    let mut metadata = Metadata::new();
    if let Some(headers) = d.properties.headers() {
        for (k, v) in headers.inner() {
            if let AMQPValue::LongString(s) = v {
                metadata.insert(k.to_string(), s.to_string());
            }
        }
    }
    Message {
        topic: topic.to_owned(),
        data: Bytes::copy_from_slice(&d.data),
        metadata,
    }
}
