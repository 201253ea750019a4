//! The secrets building block: secret stores and the `Component`s that open them.
//!
//! A secret is a name with a map of values (`{"password": "…"}`); simple stores answer
//! `{name: value}`. Stores: `secretstores.local.file` (a JSON file, nested objects flattened into
//! names joined by `nestedSeparator`, or with `multiValued` one secret per top-level key) and
//! `secretstores.local.env` (environment variables, optionally under a `prefix`). Values never
//! appear in errors or logs.

mod local;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::component::{field_error as err, unsupported_type};
use crate::state::literal_metadata;
use crate::{Component, ComponentError, MetadataItem};
use local::hidden;
pub use local::{LocalEnv, LocalFile};

/// One secret: its values by key.
pub type Secret = BTreeMap<String, String>;

/// Why a secret could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The store has no secret of that name.
    #[error("secret {0} not found")]
    NotFound(String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

/// A secret store.
pub trait SecretStore: Send + Sync + 'static {
    /// The secret `name`.
    fn get(&self, name: &str) -> Result<Secret, SecretError>;
    /// Every secret, by name.
    fn bulk(&self) -> Result<BTreeMap<String, Secret>, SecretError>;
}

/// An opened secret store component.
#[derive(Clone)]
pub struct SecretStoreComponent {
    /// Its name.
    pub name: String,
    /// Its type, e.g. `secretstores.local.file`.
    pub type_: String,
    /// Its version.
    pub version: String,
    /// The store.
    pub store: Arc<dyn SecretStore>,
}

/// Opens a secret store component; `base` is the directory a relative `secretsFile` is read from.
pub fn open(
    c: &Component,
    base: &std::path::Path,
) -> Result<SecretStoreComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    let store: Arc<dyn SecretStore> = match c.spec.type_.as_str() {
        "secretstores.local.file" => {
            let file = md
                .get("secretsfile")
                .filter(|f| !f.trim().is_empty())
                .ok_or_else(|| err("spec.metadata.secretsFile", "is required (a JSON file)"))?;
            let separator = md
                .get("nestedseparator")
                .filter(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| ":".into());
            let multi_valued = match md
                .get("multivalued")
                .map(|v| v.trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("" | "false" | "0") => false,
                Some("true" | "1") => true,
                Some(v) => {
                    return Err(err(
                        "spec.metadata.multiValued",
                        format!("{v:?} is not true or false"),
                    ));
                }
            };
            let path = base.join(file);
            let store = LocalFile::load(path.clone(), separator, multi_valued).map_err(|e| {
                err(
                    "spec.metadata.secretsFile",
                    format!("{}: {e}", path.display()),
                )
            })?;
            let store = Arc::new(store);
            LocalFile::watch(&store).map_err(|e| {
                err(
                    "spec.metadata.secretsFile",
                    format!("watching {}: {e}", path.display()),
                )
            })?;
            store
        }
        "secretstores.local.env" => Arc::new(LocalEnv {
            prefix: md.get("prefix").cloned().unwrap_or_default(),
        }),
        other => return Err(unsupported_type(other, "secret store")),
    };
    md.warn_unread(&c.metadata.name, &c.spec.type_);
    Ok(SecretStoreComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: c.spec.version_or_v1(),
        store,
    })
}

/// One entry of `Configuration.spec.secrets.scopes`: which secrets of a store the app may read
/// through the API.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretScope {
    /// The secret store.
    #[serde(default)]
    pub store_name: String,
    /// `allow` (default) or `deny`, for secrets neither list names.
    #[serde(default)]
    pub default_access: String,
    /// When not empty, exactly these are allowed.
    #[serde(default)]
    pub allowed_secrets: Vec<String>,
    /// These are denied (unless `allowedSecrets` is given).
    #[serde(default)]
    pub denied_secrets: Vec<String>,
}

/// The scopes of every store; a store without an entry allows everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretScopes(BTreeMap<String, SecretScope>);

impl SecretScopes {
    /// Checks the list (each store once, named); errors name the entry.
    pub fn new(list: Vec<SecretScope>) -> Result<Self, Vec<ComponentError>> {
        let mut out = BTreeMap::new();
        let mut errors = Vec::new();
        for (i, scope) in list.into_iter().enumerate() {
            let field = format!("spec.secrets.scopes[{i}].storeName");
            if scope.store_name.is_empty() {
                errors.push(ComponentError {
                    field,
                    message: "is required".into(),
                });
            } else if out.contains_key(&scope.store_name) {
                errors.push(ComponentError {
                    field,
                    message: format!("{:?} has more than one entry", scope.store_name),
                });
            } else {
                out.insert(scope.store_name.clone(), scope);
            }
        }
        if errors.is_empty() {
            Ok(Self(out))
        } else {
            Err(errors)
        }
    }

    /// Whether the app may read `secret` from `store` through the API (daprd's precedence: an
    /// allow list decides alone; else a denied name is denied; else the default, where anything
    /// but `deny` allows).
    pub fn allows(&self, store: &str, secret: &str) -> bool {
        let Some(scope) = self.0.get(store) else {
            return true;
        };
        if !scope.allowed_secrets.is_empty() {
            return scope.allowed_secrets.iter().any(|s| s == secret);
        }
        if scope.denied_secrets.iter().any(|s| s == secret) {
            return false;
        }
        !scope.default_access.eq_ignore_ascii_case("deny")
    }
}

/// The store `secretKeyRef`s use when a component names none in `auth.secretStore`: the
/// sidecar's environment.
fn default_store() -> SecretStoreComponent {
    SecretStoreComponent {
        name: "(environment)".into(),
        type_: "secretstores.local.env".into(),
        version: "v1".into(),
        store: Arc::new(LocalEnv {
            prefix: String::new(),
        }),
    }
}

/// `c` with every `secretKeyRef` and `envRef` in its metadata replaced by the value it names.
/// References go to the store `auth.secretStore` names (the environment by default); `key`
/// defaults to the secret's name. A store, secret or key that does not exist, or an empty value,
/// is an error naming the field and the secret (never the value).
pub fn resolve_references(
    c: &Component,
    stores: &BTreeMap<String, SecretStoreComponent>,
) -> Result<Component, Vec<ComponentError>> {
    let mut out = c.clone();
    let store = c.auth.as_ref().map(|a| a.secret_store.as_str());
    let items = out
        .spec
        .metadata
        .iter_mut()
        .enumerate()
        .map(|(i, item)| (format!("spec.metadata[{i}] ({})", item.name), item));
    let owner = format!("component {:?}", c.metadata.name);
    resolve_items(items, store, stores, &owner)?;
    Ok(out)
}

/// Replaces the `secretKeyRef` or `envRef` of each `(field, item)` with the value it names, as
/// [`resolve_references`] does for a component's metadata: references go to `secret_store` (the
/// environment when `None` or empty). Errors name the field and `owner` (never a value).
pub fn resolve_items<'a>(
    items: impl IntoIterator<Item = (String, &'a mut MetadataItem)>,
    secret_store: Option<&str>,
    stores: &BTreeMap<String, SecretStoreComponent>,
    owner: &str,
) -> Result<(), Vec<ComponentError>> {
    let fallback = default_store();
    let wanted = secret_store.unwrap_or_default();
    let store = match secret_store.filter(|s| !s.is_empty()) {
        None => Some(&fallback),
        Some(name) => stores.get(name),
    };
    let mut errors = Vec::new();
    for (field, item) in items {
        if let Err(message) = resolve_item(item, store, wanted) {
            errors.push(ComponentError {
                field,
                message: format!("{owner}: {message}"),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Replaces one metadata item's `envRef` or `secretKeyRef` with the value it names, from `store`
/// (`None`: `auth.secretStore` named `wanted`, which is not here); the error says what is wrong.
fn resolve_item(
    item: &mut MetadataItem,
    store: Option<&SecretStoreComponent>,
    wanted: &str,
) -> Result<(), String> {
    if item.value.is_some() {
        return Ok(());
    }
    if let Some(var) = &item.env_ref {
        let value = std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty() && !hidden(var))
            .ok_or_else(|| format!("envRef {var:?}: the variable is not set (or not allowed)"))?;
        item.value = Some(Value::String(value));
        return Ok(());
    }
    let Some(reference) = &item.secret_key_ref else {
        return Ok(());
    };
    let name = reference
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = reference
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .unwrap_or(name);
    if name.is_empty() {
        return Err("secretKeyRef needs a name".into());
    }
    let Some(store) = store else {
        return Err(format!(
            "secretKeyRef {name:?}: auth.secretStore {wanted:?} is not a secret store here"
        ));
    };
    let found = match store.store.get(name) {
        Ok(secret) => secret
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| {
                format!(
                    "secretKeyRef {name:?} has no key {key:?} with a value in secret store {:?}",
                    store.name
                )
            }),
        Err(e) => Err(format!(
            "secretKeyRef {name:?} in secret store {:?}: {e}",
            store.name
        )),
    };
    item.secret_key_ref = None;
    item.value = Some(Value::String(found?));
    Ok(())
}

#[cfg(test)]
mod tests;
