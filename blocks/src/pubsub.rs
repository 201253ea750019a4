//! The pub/sub building block: the CloudEvent envelope apps publish and receive, and (as the
//! building block grows) the broker components and their delivery contract.

pub mod broker;
pub mod cloudevent;
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
pub use rabbitmq::{RabbitMqPubSub, RabbitMqSettings};
pub use redis::{RedisPubSub, RedisStreamSettings};
pub use scopes::TopicScopes;
