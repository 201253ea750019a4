//! Building blocks (state, pub/sub, secrets, locks, configuration, output bindings; input
//! bindings and actors later) and the components that implement them, chosen by Dapr
//! `Component` resources.
//!
//! This crate owns the `Component` and `Subscription` documents: their shape, their validation
//! and, as the building blocks land, the component implementations exposed as tower services.
//! It knows nothing about HTTP routing, the mesh or certificates.

pub mod actors;
pub mod bindings;
pub mod component;
pub mod configuration;
mod deadline;
pub mod fault;
pub mod lock;
mod mysql;
pub mod pubsub;
pub mod secrets;
pub mod state;
pub mod subscription;

pub use component::{Component, ComponentError, MetadataItem};
pub use fault::Fault;

/// A document read the way the sidecar reads resources: YAML, through a JSON value.
#[cfg(test)]
fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
    serde_json::from_value(v).unwrap()
}
