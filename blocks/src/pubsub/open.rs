//! From a `Component` document to a running broker.

use std::sync::Arc;

use super::{MemoryPubSub, PubSub};
use crate::{Component, ComponentError};

/// An opened pub/sub component.
#[derive(Clone)]
pub struct PubSubComponent {
    /// Its name (`metadata.name`).
    pub name: String,
    /// Its type, e.g. `pubsub.in-memory`.
    pub type_: String,
    /// Its version.
    pub version: String,
    /// The broker.
    pub broker: Arc<dyn PubSub>,
}

/// Opens a pub/sub component. Errors name the field.
pub async fn open(c: &Component) -> Result<PubSubComponent, Vec<ComponentError>> {
    let broker: Arc<dyn PubSub> = match c.spec.type_.as_str() {
        "pubsub.in-memory" => Arc::new(MemoryPubSub::new()),
        other => {
            return Err(vec![ComponentError {
                field: "spec.type".into(),
                message: format!("{other:?} is not a pub/sub type this build supports"),
            }]);
        }
    };
    Ok(PubSubComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: if c.spec.version.is_empty() { "v1".into() } else { c.spec.version.clone() },
        broker,
    })
}
