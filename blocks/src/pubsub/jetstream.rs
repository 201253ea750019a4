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

mod names;
mod subscriber;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use super::broker::{
    Handler, Message, PubSub, PubSubError, SubscribeRequest, Subscription, broker_call,
    broker_error,
};
use super::consumer::Consumer;
use crate::fault::Fault;
use crate::state::BoxFuture;
pub(crate) use names::nats_name;
use names::{check_topic, header_name_ok, is_nats_header, subject_matches};
use subscriber::Sub;

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

/// The name its errors start with.
const BROKER: &str = "nats";

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
        let client = broker_call(
            BROKER,
            settings.timeout,
            "connecting",
            options.connect(addrs),
        )
        .await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.timeout)
            .build(client);
        // Fail now, not at the first publish, when the server has no JetStream.
        // (A raw request: the typed account info of this client does not parse older servers'.)
        let info = broker_call(
            BROKER,
            settings.timeout,
            "JetStream info",
            js.client().request("$JS.API.INFO", Bytes::new()),
        )
        .await
        .map_err(|e| match e {
            PubSubError::Broker(f) => PubSubError::Broker(
                f.map_message(|m| format!("{m} (is JetStream enabled on the server?)")),
            ),
            other => other,
        })?;
        let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap_or_default();
        if let Some(e) = info.get("error") {
            return Err(PubSubError::Broker(Fault::new(format!(
                "nats: JetStream is not available: {e}"
            ))));
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

    /// The stream holding `topic`, created when none does and none was named; learnt once.
    async fn stream_for(&self, topic: &str) -> Result<String, PubSubError> {
        let known = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .cloned();
        if let Some(name) = known {
            return Ok(name);
        }
        let name = match &self.settings.stream_name {
            Some(name) => self.named_stream(name, topic).await?,
            None => self.stream_taking(topic).await?,
        };
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned(), name.clone());
        Ok(name)
    }

    /// The operator's stream `name`, which must take `topic`.
    async fn named_stream(&self, name: &str, topic: &str) -> Result<String, PubSubError> {
        let (timeout, what) = (self.settings.timeout, format!("stream {name:?}"));
        let mut stream = broker_call(BROKER, timeout, &what, self.js.get_stream(name)).await?;
        let info = broker_call(BROKER, timeout, &what, stream.info()).await?;
        if !info
            .config
            .subjects
            .iter()
            .any(|pattern| subject_matches(pattern, topic))
        {
            return Err(PubSubError::Broker(Fault::new(format!(
                "nats: stream {name:?} does not take subject {topic:?} (its subjects: {:?})",
                info.config.subjects
            ))));
        }
        Ok(name.to_owned())
    }

    /// Whichever stream takes `topic`, else a new stream of its own.
    async fn stream_taking(&self, topic: &str) -> Result<String, PubSubError> {
        use jetstream::context::GetStreamByNameErrorKind::NotFound;
        let s = &self.settings;
        let found = tokio::time::timeout(s.timeout, self.js.stream_by_subject(topic)).await;
        match found {
            Ok(Ok(name)) => Ok(name),
            Ok(Err(e)) if e.kind() == NotFound => {
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
                let what = format!("creating a stream for {topic:?}");
                let created = broker_call(
                    BROKER,
                    s.timeout,
                    &what,
                    self.js.get_or_create_stream(config),
                )
                .await?;
                Ok(created.cached_info().config.name.clone())
            }
            Ok(Err(e)) => Err(broker_error(
                BROKER,
                &format!("finding the stream of {topic:?}"),
                e,
            )),
            Err(_) => Err(PubSubError::Broker(Fault::new(format!(
                "nats: no answer within {:?}",
                s.timeout
            )))),
        }
    }
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
                let ack = broker_call(
                    BROKER,
                    timeout,
                    "publishing",
                    this.js.publish_with_headers(msg.topic, headers, msg.data),
                )
                .await?;
                // The stream's acknowledgement: the message is stored.
                broker_call(
                    BROKER,
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
            let sub = Arc::new(Sub {
                this,
                consumer_name,
                topic: req.topic,
                consumer: Consumer::new(handler, req.concurrency),
            });
            // Create the consumer before answering, so messages published from now on are
            // certain to reach this group.
            let pull = sub.pull_consumer().await?;
            sub.consumer.spawn(sub.clone().run(pull));
            Ok(sub.consumer.subscription())
        })
    }
}
