//! One RabbitMQ subscription: a channel of its own consuming the group's queue (declared and
//! bound first, and again after a failure), the ack or delayed nack each outcome becomes, and
//! the stop that cancels, drains and closes the channel. Slots and backoff are the shared
//! [`Consumer`]'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use super::{BROKER, RabbitMqPubSub, not_connected};
use crate::pubsub::broker::{Handler, Message, Metadata, Outcome, PubSubError, broker_call};
use crate::pubsub::consumer::{Answered, Backoff, Consumer, Delivery};

/// One running subscription.
pub(super) struct Sub {
    pub(super) this: RabbitMqPubSub,
    pub(super) topic: String,
    pub(super) queue: String,
    /// Its consume loop (which closes the channel last) and deliveries with their acks.
    pub(super) consumer: Consumer,
}

/// A message handed to the app.
struct Delivered {
    sub: Arc<Sub>,
    delivery: lapin::message::Delivery,
}

impl Sub {
    /// A channel consuming the group's queue, declaring the topology first.
    pub(super) async fn consume(&self) -> Result<(Channel, lapin::Consumer), PubSubError> {
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
        if self.this.settings.queue_mode != super::QueueMode::Off {
            // The queue topology: the queue alone, consumed directly.
            let (options, args) = self.this.queue_options();
            let what = format!("declaring queue {:?}", self.queue);
            broker_call(
                BROKER,
                t,
                &what,
                ch.queue_declare(queue.clone(), options, args),
            )
            .await?;
            return self.start_consuming(ch, queue).await;
        }
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
        let (options, args) = self.this.queue_options();
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
        self.start_consuming(ch, queue).await
    }

    /// Starts consuming `queue` on `ch`.
    async fn start_consuming(
        &self,
        ch: Channel,
        queue: ShortString,
    ) -> Result<(Channel, lapin::Consumer), PubSubError> {
        let t = self.this.settings.timeout;
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

    pub(super) async fn run(self: Arc<Self>, first: (Channel, lapin::Consumer)) {
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
