//! From a `Component` document to a running configuration store.

use std::sync::Arc;
use std::time::Duration;

use super::{ConfigurationStore, PostgresConfiguration, RedisConfiguration};
use crate::component::{field_error as err, unsupported_type};
use crate::state::{deadline_setting, literal_metadata, redis_settings};
use crate::{Component, ComponentError};

/// An opened configuration component.
#[derive(Clone)]
pub struct ConfigurationComponent {
    /// Its name (`metadata.name`).
    pub name: String,
    /// Its type, e.g. `configuration.redis`.
    pub type_: String,
    /// Its version, e.g. `v1`.
    pub version: String,
    /// The store.
    pub store: Arc<dyn ConfigurationStore>,
}

/// Opens a configuration component: connects to its server. Errors name the field.
pub async fn open(c: &Component) -> Result<ConfigurationComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    let store: Arc<dyn ConfigurationStore> = match c.spec.type_.as_str() {
        "configuration.redis" => {
            let settings = redis_settings(&md)?;
            let store = RedisConfiguration::connect(&settings).await.map_err(|e| {
                err(
                    "spec.metadata.redisHost",
                    format!("{}:{}: {e}", settings.host, settings.port),
                )
            })?;
            Arc::new(store)
        }
        "configuration.postgresql" => {
            let conn = (md.get("connectionstring").filter(|v| !v.is_empty()))
                .ok_or_else(|| err("spec.metadata.connectionString", "is required"))?;
            let table = (md.get("table").filter(|v| !v.is_empty()))
                .ok_or_else(|| err("spec.metadata.table", "is required"))?;
            let channel = (md.get("notifychannel").or(md.get("pgnotifychannel")))
                .filter(|v| !v.is_empty())
                .cloned();
            if let Some(c) = &channel {
                super::postgres::check_channel(c)
                    .map_err(|e| err("spec.metadata.notifyChannel", e))?;
            }
            let timeout = md.get("timeout").map(String::as_str);
            let timeout = deadline_setting(
                timeout,
                Duration::from_secs(20),
                "spec.metadata.timeout",
                "20s",
            )?;
            let store = PostgresConfiguration::connect(conn, table, channel, timeout)
                .await
                .map_err(|e| err("spec.metadata.connectionString", e.to_string()))?;
            Arc::new(store)
        }
        other => return Err(unsupported_type(other, "configuration store")),
    };
    md.warn_unread(&c.metadata.name, &c.spec.type_);
    Ok(ConfigurationComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: c.spec.version_or_v1(),
        store,
    })
}
