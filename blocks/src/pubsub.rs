//! The pub/sub building block: the CloudEvent envelope apps publish and receive, and (as the
//! building block grows) the broker components and their delivery contract.

pub mod broker;
pub mod cloudevent;
mod memory;
mod open;
mod redis;
mod scopes;

pub use broker::{Handler, Message, Metadata, Outcome, PubSub, PubSubError, SubscribeRequest, Subscription};
pub use cloudevent::{EnvelopeError, PublishContext, envelope, expired, media_type, message_ttl};
pub use memory::MemoryPubSub;
pub use open::{ConsumerContext, PubSubComponent, consumer_id, open};
pub use redis::{RedisPubSub, RedisStreamSettings};
pub use scopes::TopicScopes;
