//! From a `Component` document to a running lock store, and daprd's key layout for lock
//! resources (`keyPrefix`).

use std::sync::Arc;

use super::{LockStore, MemoryLock, RedisLock};
use crate::component::{field_error as err, unsupported_type};
use crate::state::{literal_metadata, redis_settings};
use crate::{Component, ComponentError};

/// The separator daprd puts between the parts of a lock key; no part may contain it.
const SEPARATOR: &str = "||";

/// `keyPrefix`: what goes between `lock||` and the resource id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPrefix {
    /// `appid` (the default): the app id, so each app has its own locks.
    AppId,
    /// `name`: the component's name, so apps sharing the component share locks.
    Name,
    /// `none`: nothing, so every app of the store shares locks.
    None,
    /// Anything else: that text (lower-cased, as daprd does).
    Custom(String),
}

impl KeyPrefix {
    /// Reads the setting; `None` is the default. A prefix holding `||` is refused.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let v = value.unwrap_or("").trim().to_ascii_lowercase();
        Ok(match v.as_str() {
            "" | "appid" => Self::AppId,
            "name" => Self::Name,
            "none" => Self::None,
            _ if v.contains(SEPARATOR) => {
                return Err(format!("{v:?} contains {SEPARATOR:?}"));
            }
            _ => Self::Custom(v),
        })
    }
}

/// An opened lock component.
#[derive(Clone)]
pub struct LockComponent {
    /// Its name (`metadata.name`).
    pub name: String,
    /// Its type, e.g. `lock.redis`.
    pub type_: String,
    /// Its version, e.g. `v1`.
    pub version: String,
    /// The store.
    pub store: Arc<dyn LockStore>,
    /// Its `keyPrefix`.
    pub prefix: KeyPrefix,
}

impl LockComponent {
    /// The key of `resource_id` for app `app_id` in daprd's layout (`lock||<prefix>||<id>`, or
    /// `lock||<id>` with `none`); an id holding `||` is refused, as it could reach another
    /// app's keys.
    pub fn key(&self, resource_id: &str, app_id: &str) -> Result<String, String> {
        if resource_id.contains(SEPARATOR) {
            return Err(format!(
                "input key/keyPrefix {resource_id:?} can't contain {SEPARATOR:?}"
            ));
        }
        let prefix = match &self.prefix {
            KeyPrefix::AppId => app_id,
            KeyPrefix::Name => &self.name,
            KeyPrefix::None => return Ok(format!("lock{SEPARATOR}{resource_id}")),
            KeyPrefix::Custom(p) => p,
        };
        Ok(format!("lock{SEPARATOR}{prefix}{SEPARATOR}{resource_id}"))
    }
}

/// Opens a lock component: connects to its server, if it has one. Errors name the field.
pub async fn open(c: &Component) -> Result<LockComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    let prefix = KeyPrefix::parse(md.get("keyprefix").map(String::as_str))
        .map_err(|e| err("spec.metadata.keyPrefix", e))?;
    let store: Arc<dyn LockStore> = match c.spec.type_.as_str() {
        "lock.in-memory" => Arc::new(MemoryLock::new()),
        "lock.redis" => {
            let settings = redis_settings(&md)?;
            let store = RedisLock::connect(&settings).await.map_err(|e| {
                err(
                    "spec.metadata.redisHost",
                    format!("{}:{}: {e}", settings.host, settings.port),
                )
            })?;
            Arc::new(store)
        }
        other => return Err(unsupported_type(other, "lock store")),
    };
    md.warn_unread(&c.metadata.name, &c.spec.type_);
    Ok(LockComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: c.spec.version_or_v1(),
        store,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(prefix: KeyPrefix) -> LockComponent {
        LockComponent {
            name: "locks".into(),
            type_: "lock.in-memory".into(),
            version: "v1".into(),
            store: Arc::new(MemoryLock::new()),
            prefix,
        }
    }

    #[test]
    fn keys_follow_the_prefix_strategy() {
        let cases = [
            (None, "lock||app||r"),
            (Some("AppID"), "lock||app||r"),
            (Some("name"), "lock||locks||r"),
            (Some("none"), "lock||r"),
            (Some("Shared"), "lock||shared||r"),
        ];
        for (setting, want) in cases {
            let c = component(KeyPrefix::parse(setting).unwrap());
            assert_eq!(c.key("r", "app").unwrap(), want, "{setting:?}");
        }
        assert!(KeyPrefix::parse(Some("a||b")).is_err());
        let c = component(KeyPrefix::AppId);
        assert!(c.key("a||b", "app").unwrap_err().contains("can't contain"));
        assert_eq!(c.key("a|b", "app").unwrap(), "lock||app||a|b");
    }
}
