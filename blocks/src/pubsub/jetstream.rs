//! `pubsub.jetstream`: NATS JetStream with durable pull consumers.
//!
//! A topic is a NATS subject. Publish waits for the stream's acknowledgement, so a message the
//! call reported as published is stored. The stream holding a topic is the one named by
//! `streamName` (which must exist and take the subject), else whichever stream already takes
//! the subject, else a stream of that topic's own, created on first use.
//!
//! Each consumer group is one durable consumer per topic (`<group>-<topic>`, filtered on the
//! subject), pulled by every instance of the group: instances compete, groups each get every
//! message, and a new group starts from the stream's first message (`deliverPolicy: all`).
//! Acknowledgement is explicit and sent only with the final outcome: success acks, drop
//! terminates the message (never redelivered), retry naks it with a delay. While a handler runs
//! the subscriber sends in-progress signals every third of `ackWait`, so a slow handler keeps its
//! message; a sidecar that dies mid-delivery leaves it to be redelivered after `ackWait`.
//!
//! Ordering: per subject in publish order for one puller; with concurrency above one or several
//! instances, deliveries overlap and a redelivered message comes after later ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, AckKind, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::broker::{
    Handler, Message, Metadata, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::state::BoxFuture;

/// How to reach NATS and how to consume.
#[derive(Clone, Debug)]
pub struct JetStreamSettings {
    /// `nats://host:port` (user and password may be in the URL), comma-separated for a cluster.
    pub url: String,
    /// How the connection authenticates beyond the URL.
    pub auth: NatsAuth,
    /// The connection's name, shown by the server.
    pub connection_name: Option<String>,
    /// The stream every topic lives in, when the operator made one.
    pub stream_name: Option<String>,
    /// The durable consumer's name prefix; the consumer group when not set.
    pub durable_name: Option<String>,
    /// Where a new consumer starts.
    pub deliver_policy: DeliverPolicy,
    /// How long a delivered message may go without an answer before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries of one message before the server gives up on it (-1: no limit).
    pub max_deliver: i64,
    /// Unacknowledged messages the consumer allows across all instances (0: the server's default).
    pub max_ack_pending: i64,
    /// Messages pulled per request: the prefetch bound.
    pub queue_depth: usize,
    /// How long a message answered with retry waits before it is delivered again.
    pub nak_delay: Duration,
    /// Streams created here keep messages in memory instead of on disk.
    pub memory_storage: bool,
    /// Replicas of streams created here.
    pub replicas: usize,
    /// The deadline of publish and management calls.
    pub timeout: Duration,
}

/// NATS credentials.
#[derive(Clone, Debug, Default)]
pub enum NatsAuth {
    /// None beyond what the URL carries.
    #[default]
    None,
    /// A token.
    Token(String),
    /// A user JWT and the nkey seed that signs for it (decentralised auth).
    Jwt {
        /// The user JWT.
        jwt: String,
        /// The user's nkey seed.
        seed: String,
    },
}

/// The JetStream broker.
#[derive(Clone)]
pub struct JetStreamPubSub {
    js: jetstream::Context,
    settings: Arc<JetStreamSettings>,
    /// Topic → the stream holding it, learnt once.
    streams: Arc<Mutex<HashMap<String, String>>>,
}

fn broker_error(what: &str, e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Broker(format!("nats: {what}: {e}"))
}

async fn bounded<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, PubSubError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r.map_err(|e| broker_error(what, e)),
        Err(_) => Err(PubSubError::Broker(format!(
            "nats: {what}: no answer within {timeout:?}"
        ))),
    }
}

/// A name the server accepts for streams and consumers: `[A-Za-z0-9_-]`, with a hash of the
/// original appended when anything had to be replaced, so distinct topics stay distinct.
pub(crate) fn nats_name(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == raw {
        return clean;
    }
    // FNV-1a: stable across builds and platforms.
    let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{clean}-{:08x}", hash as u32)
}

fn check_topic(topic: &str) -> Result<(), PubSubError> {
    let bad = topic.is_empty()
        || topic.starts_with('.')
        || topic.ends_with('.')
        || topic.contains("..")
        || topic
            .chars()
            .any(|c| c.is_whitespace() || c == '*' || c == '>');
    if bad {
        return Err(PubSubError::BadRequest(format!(
            "{topic:?} is not a NATS subject (no spaces, wildcards or empty tokens)"
        )));
    }
    Ok(())
}

impl JetStreamPubSub {
    /// Connects (the server must answer now; later outages are ridden out by reconnecting).
    pub async fn connect(settings: JetStreamSettings) -> Result<Self, PubSubError> {
        let mut options = match &settings.auth {
            NatsAuth::None => async_nats::ConnectOptions::new(),
            NatsAuth::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
            NatsAuth::Jwt { jwt, seed } => {
                // The client reads a JWT and its seed from the credentials-file layout.
                let creds = format!(
                    "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
                     -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
                );
                async_nats::ConnectOptions::with_credentials(&creds)
                    .map_err(|e| PubSubError::BadRequest(format!("jwt/seedKey: {e}")))?
            }
        };
        options = options
            .connection_timeout(settings.timeout)
            .request_timeout(Some(settings.timeout));
        if let Some(name) = &settings.connection_name {
            options = options.name(name);
        }
        let addrs: Vec<async_nats::ServerAddr> = settings
            .url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                PubSubError::BadRequest(format!(
                    "natsURL {:?}: {e}",
                    crate::component::redact_userinfo(&settings.url)
                ))
            })?;
        let client = bounded(settings.timeout, "connecting", options.connect(addrs)).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.timeout)
            .build(client);
        // Fail now, not at the first publish, when the server has no JetStream.
        // (A raw request: the typed account info of this client does not parse older servers'.)
        let info = bounded(
            settings.timeout,
            "JetStream info",
            js.client().request("$JS.API.INFO", Bytes::new()),
        )
        .await
        .map_err(|e| PubSubError::Broker(format!("{e} (is JetStream enabled on the server?)")))?;
        let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap_or_default();
        if let Some(e) = info.get("error") {
            return Err(PubSubError::Broker(format!(
                "nats: JetStream is not available: {e}"
            )));
        }
        Ok(Self {
            js,
            settings: Arc::new(settings),
            streams: Arc::default(),
        })
    }

    fn forget_stream(&self, topic: &str) {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(topic);
    }

    /// The stream holding `topic`, created when none does and none was named.
    async fn stream_for(&self, topic: &str) -> Result<String, PubSubError> {
        if let Some(name) = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
        {
            return Ok(name.clone());
        }
        let s = &self.settings;
        let name = if let Some(name) = &s.stream_name {
            let mut stream = bounded(
                s.timeout,
                &format!("stream {name:?}"),
                self.js.get_stream(name),
            )
            .await?;
            let info = bounded(s.timeout, &format!("stream {name:?}"), stream.info()).await?;
            if !info
                .config
                .subjects
                .iter()
                .any(|pattern| subject_matches(pattern, topic))
            {
                return Err(PubSubError::Broker(format!(
                    "nats: stream {name:?} does not take subject {topic:?} (its subjects: {:?})",
                    info.config.subjects
                )));
            }
            name.clone()
        } else {
            match tokio::time::timeout(s.timeout, self.js.stream_by_subject(topic)).await {
                Ok(Ok(name)) => name,
                Ok(Err(e))
                    if e.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound =>
                {
                    let config = stream::Config {
                        name: nats_name(topic),
                        subjects: vec![topic.to_owned()],
                        storage: if s.memory_storage {
                            stream::StorageType::Memory
                        } else {
                            stream::StorageType::File
                        },
                        num_replicas: s.replicas.max(1),
                        ..Default::default()
                    };
                    let created = bounded(
                        s.timeout,
                        &format!("creating a stream for {topic:?}"),
                        self.js.get_or_create_stream(config),
                    )
                    .await?;
                    created.cached_info().config.name.clone()
                }
                Ok(Err(e)) => {
                    return Err(broker_error(&format!("finding the stream of {topic:?}"), e));
                }
                Err(_) => {
                    return Err(PubSubError::Broker(format!(
                        "nats: no answer within {:?}",
                        s.timeout
                    )));
                }
            }
        };
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), name.clone());
        Ok(name)
    }
}

/// Whether a stream's subject pattern (`*` one token, `>` the rest) covers `subject`.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Publish metadata travels as headers; these are the client's and server's own.
fn is_nats_header(name: &str) -> bool {
    name.as_bytes()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"nats-"))
}

/// Whether `name` can be a NATS header name (printable ASCII without `:`; the client asserts it).
fn header_name_ok(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

impl PubSub for JetStreamPubSub {
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>> {
        let this = self.clone();
        Box::pin(async move {
            check_topic(&msg.topic)?;
            this.stream_for(&msg.topic).await?;
            let topic = msg.topic.clone();
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in &msg.metadata {
                if !is_nats_header(k) && header_name_ok(k) {
                    headers.insert(k.as_str(), v.replace(['\r', '\n'], " "));
                }
            }
            let timeout = this.settings.timeout;
            let published = async {
                let ack = bounded(
                    timeout,
                    "publishing",
                    this.js.publish_with_headers(msg.topic, headers, msg.data),
                )
                .await?;
                // The stream's acknowledgement: the message is stored.
                bounded(
                    timeout,
                    "waiting for the stream's acknowledgement",
                    ack.into_future(),
                )
                .await
                .map(drop)
            };
            let result = published.await;
            if result.is_err() {
                // The stream may be gone (deleted, or in memory across a restart): look it up again.
                this.forget_stream(&topic);
            }
            result
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>> {
        let this = self.clone();
        Box::pin(async move {
            check_topic(&req.topic)?;
            this.stream_for(&req.topic).await?;
            let durable = this.settings.durable_name.as_deref().unwrap_or(&req.group);
            let consumer_name = nats_name(&format!("{durable}-{}", req.topic));
            let token = CancellationToken::new();
            let sub = Arc::new(Sub {
                this,
                consumer_name,
                topic: req.topic,
                handler,
                concurrency: req.concurrency.max(1),
                limit: Arc::new(Semaphore::new(req.concurrency.max(1))),
                stop: token.clone(),
                tasks: TaskTracker::new(),
            });
            // Create the consumer before answering, so messages published from now on are
            // certain to reach this group.
            let consumer = sub.consumer().await?;
            let tasks = sub.tasks.clone();
            tasks.spawn(sub.run(consumer));
            Ok(Subscription::tracked(token, tasks))
        })
    }
}

/// One running subscription.
struct Sub {
    this: JetStreamPubSub,
    consumer_name: String,
    topic: String,
    handler: Handler,
    concurrency: usize,
    limit: Arc<Semaphore>,
    stop: CancellationToken,
    /// Its pull loop and deliveries (each with its acknowledgement).
    tasks: TaskTracker,
}

impl Sub {
    /// The group's durable consumer, created when missing (also after it was deleted).
    async fn consumer(&self) -> Result<consumer::Consumer<pull::Config>, PubSubError> {
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
            let stream = bounded(
                s.timeout,
                &what,
                self.this.js.get_stream_no_info(&stream_name),
            )
            .await?;
            bounded(
                s.timeout,
                &what,
                stream.get_or_create_consumer(&self.consumer_name, config),
            )
            .await
        };
        let result = made.await;
        if result.is_err() {
            self.this.forget_stream(&self.topic); // gone streams are found or made again next time
        }
        result
    }

    async fn run(self: Arc<Self>, mut consumer: consumer::Consumer<pull::Config>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let pulled = consumer
                .stream()
                // No more than can be handled at once: a message waiting here gets no progress
                // signal and would be redelivered elsewhere after ackWait.
                .max_messages_per_batch(self.this.settings.queue_depth.min(self.concurrency).max(1))
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            match pulled {
                Ok(mut messages) => loop {
                    let next = tokio::select! {
                        biased;
                        () = self.stop.cancelled() => return,
                        m = messages.next() => m,
                    };
                    match next {
                        Some(Ok(m)) => {
                            backoff = Duration::from_millis(100);
                            if !self.clone().dispatch(m).await {
                                return;
                            }
                        }
                        Some(Err(e))
                            if matches!(e.kind(), pull::MessagesErrorKind::MissingHeartbeat) =>
                        {
                            tracing::debug!(topic = %self.topic, "missed a heartbeat from the server; pulling on");
                        }
                        Some(Err(e)) => {
                            tracing::warn!(topic = %self.topic, consumer = %self.consumer_name, error = %e, "pulling messages failed; resubscribing");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "pulling messages failed; retrying")
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match self.consumer().await {
                Ok(c) => consumer = c,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "recreating the consumer failed; retrying")
                }
            }
        }
    }

    /// Hands one message to the handler (bounded); returns false once stopped.
    async fn dispatch(self: Arc<Self>, m: jetstream::Message) -> bool {
        let permit = tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            p = self.limit.clone().acquire_owned() => p.ok(),
        };
        let Some(permit) = permit else {
            // Stopping: hand it back at once rather than after `ackWait`.
            let _ = m.ack_with(AckKind::Nak(None)).await;
            return false;
        };
        let tasks = self.tasks.clone();
        tasks.spawn(async move {
            let outcome = self.handle_keeping_claim(&m).await;
            drop(permit);
            let kind = match outcome {
                Outcome::Success => AckKind::Ack,
                Outcome::Drop => AckKind::Term,
                Outcome::Retry => AckKind::Nak(Some(self.this.settings.nak_delay)),
            };
            let timeout = self.this.settings.timeout;
            if let Err(e) = bounded(timeout, "acknowledging", m.ack_with(kind)).await {
                // Not acknowledged: it is delivered again after ackWait, which at-least-once allows.
                tracing::warn!(topic = %self.topic, error = %e, "acknowledging failed");
            }
        });
        true
    }

    /// Runs the handler, telling the server the work is in progress every third of `ackWait`.
    async fn handle_keeping_claim(&self, m: &jetstream::Message) -> Outcome {
        let handled = (self.handler)(message_of(&self.topic, m));
        tokio::pin!(handled);
        let every = self.this.settings.ack_wait / 3;
        if every.is_zero() {
            return handled.await;
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                outcome = &mut handled => return outcome,
                _ = tick.tick() => {
                    if let Err(e) = m.ack_with(AckKind::Progress).await {
                        tracing::debug!(topic = %self.topic, error = %e, "signalling progress failed");
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_accepts() {
        assert_eq!(nats_name("orders"), "orders");
        assert_eq!(nats_name("app-1_x"), "app-1_x");
        let dotted = nats_name("orders.new");
        assert!(
            dotted.starts_with("orders_new-") && dotted != nats_name("orders_new"),
            "{dotted}"
        );
        assert_ne!(nats_name("a.b"), nats_name("a/b"));
        assert!(
            nats_name("a b*>")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
    }

    #[test]
    fn subject_patterns() {
        assert!(subject_matches("orders", "orders"));
        assert!(!subject_matches("orders", "orders.new"));
        assert!(subject_matches("orders.*", "orders.new"));
        assert!(!subject_matches("orders.*", "orders.new.eu"));
        assert!(subject_matches("orders.>", "orders.new.eu"));
        assert!(!subject_matches("orders.>", "orders"));
        assert!(subject_matches(">", "anything.at.all"));
    }

    #[test]
    fn topics_that_are_not_subjects_are_refused() {
        for bad in ["", "a b", "orders.*", "orders.>", ".a", "a.", "a..b"] {
            assert!(
                matches!(check_topic(bad), Err(PubSubError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(check_topic("orders.eu/new").is_ok());
    }

    #[test]
    fn metadata_that_cannot_be_a_header_is_left_out() {
        assert!(is_nats_header("Nats-Msg-Id") && !is_nats_header("ééé") && !is_nats_header("nat"));
        assert!(header_name_ok("x-trace") && header_name_ok("cloudevent.id"));
        for bad in ["", "caf\u{e9}", "a b", "a\tb", "a:b"] {
            assert!(!header_name_ok(bad), "{bad:?}");
        }
    }
}
