//! The pub/sub building block: the CloudEvent envelope apps publish and receive, and (as the
//! building block grows) the broker components and their delivery contract.

pub mod cloudevent;

pub use cloudevent::{EnvelopeError, PublishContext, envelope, media_type};
