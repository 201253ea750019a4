//! One JetStream subscription: the group's durable pull consumer (made again when it or its
//! stream disappears), the pull loop, and the ack kind each outcome becomes. The handler's
//! outcome, slots and backoff are the shared [`Consumer`]'s.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{BROKER, JetStreamPubSub, is_nats_header};
use crate::pubsub::broker::{Handler, Message, Metadata, Outcome, PubSubError, broker_call};
use crate::pubsub::consumer::{Answered, Backoff, Consumer, Delivery, keeping_claim};

/// One running subscription.
pub(super) struct Sub {
    pub(super) this: JetStreamPubSub,
    pub(super) consumer_name: String,
    pub(super) topic: String,
    /// Its pull loop and deliveries (each with its acknowledgement).
    pub(super) consumer: Consumer,
}

/// A message handed to the app.
struct Pulled {
    sub: Arc<Sub>,
    message: jetstream::Message,
}

impl Sub {
    /// The group's durable consumer, created when missing (also after it was deleted).
    pub(super) async fn pull_consumer(
        &self,
    ) -> Result<consumer::Consumer<pull::Config>, PubSubError> {
        let s = &self.this.settings;
        let config = pull::Config {
            durable_name: Some(self.consumer_name.clone()),
            deliver_policy: s.deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait: s.ack_wait,
            max_deliver: s.max_deliver,
            max_ack_pending: s.max_ack_pending,
            filter_subject: self.topic.clone(),
            ..Default::default()
        };
        let stream_name = self.this.stream_for(&self.topic).await?;
        let what = format!(
            "consumer {:?} on stream {stream_name:?}",
            self.consumer_name
        );
        let made = async {
            let js = &self.this.js;
            let stream = broker_call(
                BROKER,
                s.timeout,
                &what,
                js.get_stream_no_info(&stream_name),
            )
            .await?;
            let create = stream.get_or_create_consumer(&self.consumer_name, config);
            broker_call(BROKER, s.timeout, &what, create).await
        };
        let result = made.await;
        if result.is_err() {
            self.this.forget_stream(&self.topic); // gone streams are found or made again next time
        }
        result
    }

    pub(super) async fn run(self: Arc<Self>, mut pull: consumer::Consumer<pull::Config>) {
        let mut backoff = Backoff::new();
        loop {
            match self.pull_until_broken(&pull, &mut backoff).await {
                Pulling::Stopped => return,
                Pulling::Broken => {}
            }
            if !backoff.wait(self.consumer.stop()).await {
                return;
            }
            match self.pull_consumer().await {
                Ok(c) => pull = c,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "recreating the consumer failed; retrying")
                }
            }
        }
    }

    /// Pulls and dispatches messages until the subscription stops or the pull breaks.
    async fn pull_until_broken(
        self: &Arc<Self>,
        pull: &consumer::Consumer<pull::Config>,
        backoff: &mut Backoff,
    ) -> Pulling {
        let settings = &self.this.settings;
        let pulled = pull
            .stream()
            // No more than can be handled at once: a message waiting here gets no progress
            // signal and would be redelivered elsewhere after ackWait.
            .max_messages_per_batch(settings.queue_depth.min(self.consumer.concurrency()).max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match pulled {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "pulling messages failed; retrying");
                return Pulling::Broken;
            }
        };
        loop {
            let next = tokio::select! {
                biased;
                () = self.consumer.stop().cancelled() => return Pulling::Stopped,
                m = messages.next() => m,
            };
            match next {
                Some(Ok(m)) => {
                    backoff.reset();
                    if !self.clone().dispatch(m).await {
                        return Pulling::Stopped;
                    }
                }
                Some(Err(e)) if matches!(e.kind(), pull::MessagesErrorKind::MissingHeartbeat) => {
                    tracing::debug!(topic = %self.topic, "missed a heartbeat from the server; pulling on");
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, consumer = %self.consumer_name, error = %e, "pulling messages failed; resubscribing");
                    return Pulling::Broken;
                }
                None => return Pulling::Broken,
            }
        }
    }

    /// Hands one message to the handler (bounded); returns false once stopped.
    async fn dispatch(self: Arc<Self>, message: jetstream::Message) -> bool {
        let Some(slot) = self.consumer.slot().await else {
            // Stopping: hand it back at once rather than after `ackWait`.
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return false;
        };
        let consumer = self.consumer.clone();
        consumer.deliver(slot, Pulled { sub: self, message });
        true
    }
}

/// How a pull ended.
enum Pulling {
    /// The subscription stopped.
    Stopped,
    /// The pull failed or ended: make the consumer again after a backoff.
    Broken,
}

impl Delivery for Pulled {
    // An ack is one independent publish and a stop waits for the tasks, not for slots.
    const FREE_BEFORE_ANSWER: bool = true;

    /// Runs the handler, telling the server the work is in progress every third of `ackWait`.
    async fn handle(&self, handler: &Handler) -> Outcome {
        let (topic, m) = (&self.sub.topic, &self.message);
        let handled = handler(message_of(topic, m));
        keeping_claim(handled, self.sub.this.settings.ack_wait / 3, || async {
            if let Err(e) = m.ack_with(AckKind::Progress).await {
                tracing::debug!(topic = %topic, error = %e, "signalling progress failed");
            }
        })
        .await
    }

    /// Success acks, drop terminates (never redelivered), retry naks with `nakDelay`.
    async fn answer(&self, outcome: Outcome) -> Answered {
        let settings = &self.sub.this.settings;
        let kind = match outcome {
            Outcome::Success => AckKind::Ack,
            Outcome::Drop => AckKind::Term,
            Outcome::Retry => AckKind::Nak(Some(settings.nak_delay)),
        };
        let ack = self.message.ack_with(kind);
        if let Err(e) = broker_call(BROKER, settings.timeout, "acknowledging", ack).await {
            // Not acknowledged: it is delivered again after ackWait, which at-least-once allows.
            tracing::warn!(topic = %self.sub.topic, error = %e, "acknowledging failed");
        }
        Answered::Done
    }
}

fn message_of(topic: &str, m: &jetstream::Message) -> Message {
    let mut metadata = Metadata::new();
    if let Some(headers) = &m.headers {
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            if let Some(v) = values.first().filter(|_| !is_nats_header(name)) {
                metadata.insert(name.to_owned(), v.as_str().to_owned());
            }
        }
    }
    Message {
        topic: topic.to_owned(),
        data: Bytes::clone(&m.payload),
        metadata,
    }
}
