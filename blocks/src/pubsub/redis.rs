//! `pubsub.redis`: Redis Streams, with daprd's layout and semantics.
//!
//! Publish is `XADD <topic> [MAXLEN ~ n] * data <bytes> metadata <json>`. A subscription creates
//! its consumer group (`XGROUP CREATE … 0 MKSTREAM`, so a new group reads the stream's history),
//! reads with `XREADGROUP … BLOCK` on a connection of its own (a blocking read must not sit on
//! the shared connection nor under its response timeout), and acknowledges with `XACK` only
//! when the app's answer is final (success or drop). Messages left pending — a retry, a crash,
//! a sidecar killed mid-delivery — are claimed again with `XAUTOCLAIM` once idle for
//! `processingTimeout`, checked every `redeliverInterval`. A group that disappeared (`NOGROUP`)
//! is created again and reading resumes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::broker::{
    Handler, Message, Metadata, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
    broker_call, broker_error,
};
use super::consumer::{Answered, Backoff, Consumer, Delivery, keeping_claim};
use crate::state::BoxFuture;

/// How to reach Redis and how patient to be.
#[derive(Clone, Debug)]
pub struct RedisStreamSettings {
    /// A Redis client for the server (password, TLS and database already set).
    pub client: redis::Client,
    /// The consumer name within each group (the app id, as daprd uses).
    pub consumer: String,
    /// A pending message is claimed again once idle this long.
    pub processing_timeout: Duration,
    /// How often pending messages are looked for.
    pub redeliver_interval: Duration,
    /// Messages fetched per read.
    pub queue_depth: usize,
    /// `MAXLEN ~ n` on publish, if set.
    pub max_len_approx: Option<u64>,
    /// The deadline of publish and acknowledgement calls.
    pub timeout: Duration,
}

/// The Redis Streams broker.
#[derive(Clone)]
pub struct RedisPubSub {
    conn: ConnectionManager,
    settings: Arc<RedisStreamSettings>,
}

/// The name its errors start with.
const BROKER: &str = "redis";

/// A connection of a subscription's own for blocking reads: no response timeout.
async fn reader(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

impl RedisPubSub {
    /// Connects (the server must answer now; later outages are ridden out by reconnecting).
    pub async fn connect(settings: RedisStreamSettings) -> Result<Self, PubSubError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connecting = settings.client.get_connection_manager_with_config(config);
        let conn = broker_call(BROKER, settings.timeout, "", connecting).await?;
        Ok(Self {
            conn,
            settings: Arc::new(settings),
        })
    }
}

fn field(map: &std::collections::HashMap<String, Value>, name: &str) -> Option<Vec<u8>> {
    match map.get(name)? {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn message_of(topic: &str, entry: &StreamId) -> Message {
    let data = field(&entry.map, "data").unwrap_or_default();
    let metadata: Metadata = field(&entry.map, "metadata")
        .and_then(|m| serde_json::from_slice(&m).ok())
        .unwrap_or_default();
    Message {
        topic: topic.to_owned(),
        data: Bytes::from(data),
        metadata,
    }
}

impl PubSub for RedisPubSub {
    fn publish(&self, msg: Message) -> BoxFuture<Result<(), PubSubError>> {
        let (mut conn, s) = (self.conn.clone(), self.settings.clone());
        Box::pin(async move {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&msg.topic);
            if let Some(n) = s.max_len_approx {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*").arg("data").arg(msg.data.as_ref());
            if !msg.metadata.is_empty() {
                cmd.arg("metadata")
                    .arg(serde_json::to_vec(&msg.metadata).unwrap_or_default());
            }
            broker_call(BROKER, s.timeout, "", cmd.query_async::<String>(&mut conn))
                .await
                .map(drop)
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<Result<Subscription, PubSubError>> {
        let (mut conn, s) = (self.conn.clone(), self.settings.clone());
        Box::pin(async move {
            create_group(&mut conn, &req.topic, &req.group, s.timeout).await?;
            let reader = reader(&s.client)
                .await
                .map_err(|e| broker_error(BROKER, "", e))?;
            let sub = Arc::new(Sub {
                topic: req.topic,
                group: req.group,
                consumer: Consumer::new(handler, req.concurrency),
                conn,
                settings: s,
            });
            sub.consumer.spawn(sub.clone().read_loop(reader));
            // Zero turns redelivery off, as in daprd.
            if !sub.settings.processing_timeout.is_zero()
                && !sub.settings.redeliver_interval.is_zero()
            {
                sub.consumer.spawn(sub.clone().reclaim_loop());
            }
            Ok(sub.consumer.subscription())
        })
    }
}

async fn create_group(
    conn: &mut ConnectionManager,
    topic: &str,
    group: &str,
    timeout: Duration,
) -> Result<(), PubSubError> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(topic)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM");
    let create = async {
        match cmd.query_async::<()>(conn).await {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    };
    broker_call(BROKER, timeout, "", create).await
}

/// One running subscription.
struct Sub {
    topic: String,
    group: String,
    /// Its loops and deliveries (each with its acknowledgement).
    consumer: Consumer,
    conn: ConnectionManager,
    settings: Arc<RedisStreamSettings>,
}

/// A stream entry handed to the app.
struct Pending {
    sub: Arc<Sub>,
    entry: StreamId,
}

impl Sub {
    async fn read_loop(self: Arc<Self>, mut reader: MultiplexedConnection) {
        let mut backoff = Backoff::new();
        loop {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.settings.consumer)
                .arg("COUNT")
                .arg(self.settings.queue_depth)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg(&self.topic)
                .arg(">");
            let read = cmd.query_async::<Option<StreamReadReply>>(&mut reader);
            let reply = tokio::select! {
                biased;
                () = self.consumer.stop().cancelled() => return,
                r = read => r,
            };
            match reply {
                Ok(Some(reply)) => {
                    backoff.reset();
                    for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                        if !self.clone().dispatch(entry).await {
                            return;
                        }
                    }
                }
                Ok(None) => backoff.reset(),
                Err(e) if e.code() == Some("NOGROUP") => {
                    tracing::warn!(topic = %self.topic, group = %self.group, "the consumer group is gone; creating it again");
                    let mut conn = self.conn.clone();
                    let _ =
                        create_group(&mut conn, &self.topic, &self.group, self.settings.timeout)
                            .await;
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "reading the stream failed; retrying");
                    if !backoff.wait(self.consumer.stop()).await {
                        return;
                    }
                    if let Ok(c) = self::reader(&self.settings.client).await {
                        reader = c;
                    }
                }
            }
        }
    }

    async fn reclaim_loop(self: Arc<Self>) {
        let idle_ms =
            u64::try_from(self.settings.processing_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut tick = tokio::time::interval(self.settings.redeliver_interval);
        loop {
            tokio::select! {
                () = self.consumer.stop().cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.topic)
                .arg(&self.group)
                .arg(&self.settings.consumer)
                .arg(idle_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(self.settings.queue_depth);
            let claim = cmd.query_async::<StreamAutoClaimReply>(&mut conn);
            match broker_call(BROKER, self.settings.timeout, "", claim).await {
                Ok(reply) => {
                    for entry in reply.claimed {
                        if !self.clone().dispatch(entry).await {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(topic = %self.topic, error = %e, "claiming pending messages failed")
                }
            }
        }
    }

    /// Hands one entry to the handler (bounded); returns false once stopped (the entry stays
    /// pending, unacknowledged, for a later claim).
    async fn dispatch(self: Arc<Self>, entry: StreamId) -> bool {
        let Some(slot) = self.consumer.slot().await else {
            return false;
        };
        let consumer = self.consumer.clone();
        consumer.deliver(slot, Pending { sub: self, entry });
        true
    }
}

impl Delivery for Pending {
    // XACK is one independent command and a stop waits for the tasks, not for slots.
    const FREE_BEFORE_ANSWER: bool = true;

    /// Runs the handler; while it runs, re-claims the entry to this consumer (resetting its idle
    /// time) well before `processingTimeout`, so a slow delivery is never claimed and delivered
    /// again in parallel.
    async fn handle(&self, handler: &Handler) -> Outcome {
        let (sub, entry) = (&self.sub, &self.entry);
        let handled = handler(message_of(&sub.topic, entry));
        keeping_claim(handled, sub.settings.processing_timeout / 3, || async {
            let mut conn = sub.conn.clone();
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&sub.topic)
                .arg(&sub.group)
                .arg(&sub.settings.consumer)
                .arg(0)
                .arg(&entry.id)
                .arg("JUSTID");
            let claim = cmd.query_async::<Value>(&mut conn);
            if let Err(e) = broker_call(BROKER, sub.settings.timeout, "", claim).await {
                tracing::debug!(id = %entry.id, error = %e, "extending the claim failed");
            }
        })
        .await
    }

    /// Acknowledges a final answer; a retry stays pending until claimed again.
    async fn answer(&self, outcome: Outcome) -> Answered {
        if matches!(outcome, Outcome::Success | Outcome::Drop) {
            let (sub, id) = (&self.sub, &self.entry.id);
            let mut conn = sub.conn.clone();
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&sub.topic).arg(&sub.group).arg(id);
            let ack = cmd.query_async::<i64>(&mut conn);
            if let Err(e) = broker_call(BROKER, sub.settings.timeout, "", ack).await {
                // Not acknowledged: it will be delivered again, which at-least-once allows.
                tracing::warn!(topic = %sub.topic, id = %id, error = %e, "acknowledging failed");
            }
        }
        Answered::Done
    }
}
