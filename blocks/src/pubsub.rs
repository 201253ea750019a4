//! The pub/sub building block: the CloudEvent envelope apps publish and receive, and (as the
//! building block grows) the broker components and their delivery contract.

pub mod broker;
pub mod cloudevent;
mod consumer;
mod jetstream;
pub mod memory;
mod mqtt;
mod open;
mod rabbitmq;
mod redis;
pub mod routing;
mod scopes;

pub use broker::{
    Handler, Message, Metadata, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription,
};
pub use cloudevent::{
    EnvelopeError, PublishContext, envelope, expired, media_type, message_ttl, parse_bool,
    raw_event, wants_raw,
};
pub use jetstream::{JetStreamPubSub, JetStreamSettings, NatsAuth};
pub use memory::MemoryPubSub;
pub use mqtt::{MqttPubSub, MqttSettings};
pub use open::{ConsumerContext, PubSubComponent, consumer_id, open};
pub(crate) use open::{Fields, mqtt_url};
pub use rabbitmq::{QueueMode, RabbitMqPubSub, RabbitMqSettings};
pub use redis::{RedisPubSub, RedisStreamSettings};
pub use scopes::TopicScopes;

/// FNV-1a: a hash stable across builds and platforms, for broker names derived from topics.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
