//! From a `Component` document to a running binding.

use std::path::Path;
use std::sync::Arc;

use super::{LocalStorage, OutputBinding, RedisBinding};
use crate::component::{field_error as err, unsupported_type};
use crate::state::{literal_metadata, redis_settings};
use crate::{Component, ComponentError};

/// An opened binding component.
#[derive(Clone)]
pub struct BindingComponent {
    /// Its name (`metadata.name`): the `{name}` of `/v1.0/bindings/{name}`.
    pub name: String,
    /// Its type, e.g. `bindings.redis`.
    pub type_: String,
    /// Its version, e.g. `v1`.
    pub version: String,
    /// Its output side.
    pub output: Arc<dyn OutputBinding>,
}

/// `direction` when given: it must include `output` (input bindings are not served yet).
fn check_direction(value: Option<&String>) -> Result<(), Vec<ComponentError>> {
    let Some(v) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(());
    };
    let parts: Vec<String> = v
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = parts.iter().find(|p| *p != "input" && *p != "output") {
        return Err(err(
            "spec.metadata.direction",
            format!("{bad:?} is not input or output"),
        ));
    }
    if !parts.iter().any(|p| p == "output") {
        return Err(err(
            "spec.metadata.direction",
            format!("{v:?}: input bindings are not served by this build yet"),
        ));
    }
    Ok(())
}

/// Opens a binding component. Errors name the field.
pub async fn open(c: &Component) -> Result<BindingComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    check_direction(md.get("direction"))?;
    let output: Arc<dyn OutputBinding> = match c.spec.type_.as_str() {
        "bindings.localstorage" => {
            let root = (md.get("rootpath").filter(|v| !v.is_empty()))
                .ok_or_else(|| err("spec.metadata.rootPath", "is required"))?;
            Arc::new(
                LocalStorage::open(Path::new(root))
                    .map_err(|e| err("spec.metadata.rootPath", e))?,
            )
        }
        "bindings.redis" => {
            let settings = redis_settings(&md)?;
            let binding = RedisBinding::connect(&settings).await.map_err(|e| {
                err(
                    "spec.metadata.redisHost",
                    format!("{}:{}: {e}", settings.host, settings.port),
                )
            })?;
            Arc::new(binding)
        }
        other => return Err(unsupported_type(other, "binding")),
    };
    md.warn_unread(&c.metadata.name, &c.spec.type_);
    Ok(BindingComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: c.spec.version_or_v1(),
        output,
    })
}
