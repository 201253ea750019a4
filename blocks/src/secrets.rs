//! The secrets building block: secret stores and the `Component`s that open them.
//!
//! A secret is a name with a map of values (`{"password": "…"}`); simple stores answer
//! `{name: value}`. Stores: `secretstores.local.file` (a JSON file, nested objects flattened into
//! names joined by `nestedSeparator`, or with `multiValued` one secret per top-level key) and
//! `secretstores.local.env` (environment variables, optionally under a `prefix`). Values never
//! appear in errors or logs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::state::literal_metadata;
use crate::{Component, ComponentError};

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
    let err = |field: &str, message: String| {
        vec![ComponentError {
            field: field.into(),
            message,
        }]
    };
    let store: Arc<dyn SecretStore> = match c.spec.type_.as_str() {
        "secretstores.local.file" => {
            let file = md
                .get("secretsfile")
                .filter(|f| !f.trim().is_empty())
                .ok_or_else(|| {
                    err(
                        "spec.metadata.secretsFile",
                        "is required (a JSON file)".into(),
                    )
                })?;
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
        other => {
            return Err(err(
                "spec.type",
                format!("{other:?} is not a secret store type this build supports"),
            ));
        }
    };
    Ok(SecretStoreComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: if c.spec.version.is_empty() {
            "v1".into()
        } else {
            c.spec.version.clone()
        },
        store,
    })
}

/// `secretstores.local.file`: secrets read from a JSON file.
pub struct LocalFile {
    path: PathBuf,
    separator: String,
    multi_valued: bool,
    secrets: std::sync::RwLock<BTreeMap<String, Secret>>,
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for LocalFile {
    // Names the file only: secret values never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalFile {
    /// Reads the file now; fails if it is missing or not a JSON object.
    pub fn load(path: PathBuf, separator: String, multi_valued: bool) -> Result<Self, String> {
        let secrets = read_file(&path, &separator, multi_valued)?;
        Ok(Self {
            path,
            separator,
            multi_valued,
            secrets: std::sync::RwLock::new(secrets),
            watcher: Default::default(),
        })
    }

    /// Reads the file again whenever its directory changes (the directory, not the file: editors
    /// replace files and Kubernetes swaps a `..data` symlink). A file that does not parse is
    /// reported and the last good secrets stay.
    pub fn watch(this: &Arc<Self>) -> notify::Result<()> {
        use notify::Watcher as _;
        let dir = this
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
        let weak = Arc::downgrade(this);
        let mut watcher = notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                let (Ok(event), Some(store)) = (event, weak.upgrade()) else {
                    return;
                };
                // Only changes to the file itself, or to Kubernetes' `..data`-style links, matter.
                let ours = event.paths.iter().any(|p| {
                    p.file_name() == store.path.file_name()
                        || p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(".."))
                });
                if event.kind.is_access() || !ours {
                    return;
                }
                match store.reload() {
                    Ok(()) => {
                        tracing::info!(file = %store.path.display(), "secrets file read again")
                    }
                    Err(e) => {
                        tracing::warn!(file = %store.path.display(), error = %e, "secrets file unreadable; keeping the last good secrets");
                    }
                }
            },
        )?;
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        *this
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(watcher);
        Ok(())
    }

    /// Reads the file again; on failure the secrets read last stay and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = read_file(&self.path, &self.separator, self.multi_valued)?;
        *self
            .secrets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

fn read_file(
    path: &std::path::Path,
    separator: &str,
    multi_valued: bool,
) -> Result<BTreeMap<String, Secret>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(top) = v else {
        return Err("the secrets file must hold a JSON object".into());
    };
    let mut out = BTreeMap::new();
    for (name, value) in top {
        if multi_valued && let Value::Object(_) = value {
            // One secret per top-level key, its nested values flattened into its keys.
            let mut keys = BTreeMap::new();
            flatten("", &value, separator, &mut keys);
            out.insert(name, keys);
        } else if multi_valued {
            out.insert(name.clone(), Secret::from([(name, scalar(&value))]));
        } else {
            let mut flat = BTreeMap::new();
            flatten(&name, &value, separator, &mut flat);
            for (k, v) in flat {
                out.insert(k.clone(), Secret::from([(k, v)]));
            }
        }
    }
    Ok(out)
}

/// Objects and arrays become names joined by `separator` (arrays by index).
fn flatten(prefix: &str, v: &Value, separator: &str, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}{separator}{k}")
        }
    };
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| flatten(&join(k), v, separator, out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&join(&i.to_string()), v, separator, out)),
        scalar_value => {
            out.insert(prefix.to_owned(), scalar(scalar_value));
        }
    }
}

/// A string as it is; numbers, booleans and null as their JSON text.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl SecretStore for LocalFile {
    fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let secrets = self
            .secrets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        secrets
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(name.to_owned()))
    }

    fn bulk(&self) -> Result<BTreeMap<String, Secret>, SecretError> {
        Ok(self
            .secrets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }
}

/// `secretstores.local.env`: secrets from the sidecar's environment.
pub struct LocalEnv {
    prefix: String,
}

/// Never served: the sidecar's own credentials.
fn hidden(var: &str) -> bool {
    var == "APP_API_TOKEN" || var.starts_with("DAPR_")
}

impl SecretStore for LocalEnv {
    fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let var = format!("{}{name}", self.prefix);
        // Like daprd: an unset variable is an empty value, not an error.
        let value = if hidden(&var) {
            String::new()
        } else {
            std::env::var(&var).unwrap_or_default()
        };
        Ok(Secret::from([(name.to_owned(), value)]))
    }

    fn bulk(&self) -> Result<BTreeMap<String, Secret>, SecretError> {
        Ok(std::env::vars()
            .filter(|(k, _)| !hidden(k))
            .filter_map(|(k, v)| {
                k.strip_prefix(&self.prefix)
                    .map(|name| (name.to_owned(), v))
            })
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, v)| (name.clone(), Secret::from([(name, v)])))
            .collect())
    }
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
    let mut errors = Vec::new();
    let fallback = default_store();
    let store = match c
        .auth
        .as_ref()
        .map(|a| a.secret_store.as_str())
        .filter(|s| !s.is_empty())
    {
        None => Some(&fallback),
        Some(name) => stores.get(name),
    };
    for (i, item) in out.spec.metadata.iter_mut().enumerate() {
        let field = format!("spec.metadata[{i}] ({})", item.name);
        let component = &c.metadata.name;
        let problem = |message: String| ComponentError {
            field: field.clone(),
            message: format!("component {component:?}: {message}"),
        };
        if item.value.is_some() {
            continue;
        }
        if let Some(var) = &item.env_ref {
            match std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty() && !hidden(var))
            {
                Some(v) => item.value = Some(Value::String(v)),
                None => errors.push(problem(format!(
                    "envRef {var:?}: the variable is not set (or not allowed)"
                ))),
            }
            continue;
        }
        let Some(reference) = &item.secret_key_ref else {
            continue;
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
            errors.push(problem("secretKeyRef needs a name".into()));
            continue;
        }
        let Some(store) = store else {
            let wanted = c
                .auth
                .as_ref()
                .map(|a| a.secret_store.clone())
                .unwrap_or_default();
            errors.push(problem(format!(
                "secretKeyRef {name:?}: auth.secretStore {wanted:?} is not a secret store here"
            )));
            continue;
        };
        match store.store.get(name) {
            Ok(secret) => match secret.get(key).filter(|v| !v.is_empty()) {
                Some(v) => item.value = Some(Value::String(v.clone())),
                None => errors.push(problem(format!(
                    "secretKeyRef {name:?} has no key {key:?} with a value in secret store {:?}",
                    store.name
                ))),
            },
            Err(e) => errors.push(problem(format!(
                "secretKeyRef {name:?} in secret store {:?}: {e}",
                store.name
            ))),
        }
        item.secret_key_ref = None;
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str, separator: &str, multi: bool) -> LocalFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(&path, json).unwrap();
        let store = LocalFile::load(path, separator.into(), multi).unwrap();
        drop(dir.keep());
        store
    }

    const NESTED: &str = r#"{"db": {"user": "app", "password": "s3cret", "hosts": ["a", "b"]},
        "port": 5432, "tls": true, "plain": "value"}"#;

    #[test]
    fn nested_values_are_flattened_with_the_separator() {
        let s = file(NESTED, ":", false);
        assert_eq!(
            s.get("db:password").unwrap(),
            Secret::from([("db:password".into(), "s3cret".into())])
        );
        assert_eq!(s.get("db:hosts:1").unwrap()["db:hosts:1"], "b");
        assert_eq!(s.get("plain").unwrap()["plain"], "value");
        assert_eq!(
            s.get("port").unwrap()["port"],
            "5432",
            "numbers as their JSON text"
        );
        assert_eq!(s.get("tls").unwrap()["tls"], "true");
        assert_eq!(s.get("db"), Err(SecretError::NotFound("db".into())));
        let dotted = file(NESTED, ".", false);
        assert_eq!(dotted.get("db.user").unwrap()["db.user"], "app");
        assert_eq!(s.bulk().unwrap().len(), 7);
    }

    #[test]
    fn multi_valued_secrets_keep_their_keys() {
        let s = file(NESTED, ":", true);
        let db = s.get("db").unwrap();
        assert_eq!(
            (
                db["user"].as_str(),
                db["password"].as_str(),
                db["hosts:0"].as_str()
            ),
            ("app", "s3cret", "a")
        );
        assert_eq!(
            s.get("plain").unwrap(),
            Secret::from([("plain".into(), "value".into())])
        );
        assert_eq!(s.get("port").unwrap()["port"], "5432");
        assert!(matches!(s.get("db:user"), Err(SecretError::NotFound(_))));
    }

    #[test]
    fn a_bad_file_is_refused_and_a_bad_reload_keeps_the_last_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        assert!(
            LocalFile::load(path.clone(), ":".into(), false).is_err(),
            "missing"
        );
        std::fs::write(&path, "[1]").unwrap();
        assert!(
            LocalFile::load(path.clone(), ":".into(), false)
                .unwrap_err()
                .contains("object")
        );
        std::fs::write(&path, r#"{"a": "1"}"#).unwrap();
        let s = LocalFile::load(path.clone(), ":".into(), false).unwrap();
        std::fs::write(&path, "{not json").unwrap();
        assert!(s.reload().is_err());
        assert_eq!(s.get("a").unwrap()["a"], "1", "the last good secrets stay");
        std::fs::write(&path, r#"{"a": "2"}"#).unwrap();
        s.reload().unwrap();
        assert_eq!(s.get("a").unwrap()["a"], "2");
    }

    #[test]
    fn references_resolve_through_the_named_store_or_fail_naming_the_secret() {
        let files = SecretStoreComponent {
            name: "files".into(),
            type_: "secretstores.local.file".into(),
            version: "v1".into(),
            store: Arc::new(file(NESTED, ":", true)),
        };
        let stores = BTreeMap::from([("files".to_owned(), files)]);
        let component = |auth: &str, md: Value| -> Component {
            let mut doc = serde_json::json!({"metadata": {"name": "c"}, "spec": {"type": "state.redis", "metadata": md}});
            if !auth.is_empty() {
                doc["auth"] = serde_json::json!({"secretStore": auth});
            }
            serde_json::from_value(doc).unwrap()
        };
        let c = component(
            "files",
            serde_json::json!([
                {"name": "redisHost", "value": "localhost:6379"},
                {"name": "redisPassword", "secretKeyRef": {"name": "db", "key": "password"}},
                {"name": "user", "secretKeyRef": {"name": "plain"}},
            ]),
        );
        let resolved = resolve_references(&c, &stores).unwrap();
        let values: Vec<Option<&str>> = resolved
            .spec
            .metadata
            .iter()
            .map(|m| m.value.as_ref().and_then(Value::as_str))
            .collect();
        assert_eq!(
            values,
            [Some("localhost:6379"), Some("s3cret"), Some("value")]
        );
        let bad = component(
            "files",
            serde_json::json!([
                {"name": "redisPassword", "secretKeyRef": {"name": "db", "key": "nokey"}},
                {"name": "other", "secretKeyRef": {"name": "absent", "key": "k"}},
            ]),
        );
        let errs = resolve_references(&bad, &stores).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].field.contains("redisPassword") && errs[0].message.contains("\"nokey\""),
            "{errs:?}"
        );
        assert!(
            errs[1].message.contains("secret absent not found"),
            "{errs:?}"
        );
        assert!(
            errs.iter().all(|e| !e.message.contains("s3cret")),
            "no value in errors"
        );
        let elsewhere = component(
            "vault",
            serde_json::json!([{"name": "p", "secretKeyRef": {"name": "x"}}]),
        );
        assert!(
            resolve_references(&elsewhere, &stores).unwrap_err()[0]
                .message
                .contains("\"vault\"")
        );
        // Without auth.secretStore the environment answers.
        let env = component(
            "",
            serde_json::json!([{"name": "p", "secretKeyRef": {"name": "PATH"}}, {"name": "q", "envRef": "PATH"}]),
        );
        let resolved = resolve_references(&env, &stores).unwrap();
        assert!(resolved.spec.metadata.iter().all(|m| {
            m.value
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        }));
        let hidden_ref = component(
            "",
            serde_json::json!([{"name": "q", "envRef": "DAPR_API_TOKEN"}]),
        );
        assert!(resolve_references(&hidden_ref, &stores).is_err());
    }

    #[test]
    fn a_watched_file_serves_its_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, r#"{"a": "1"}"#).unwrap();
        let store = Arc::new(LocalFile::load(path.clone(), ":".into(), false).unwrap());
        LocalFile::watch(&store).unwrap();
        // Written elsewhere and renamed into place, as editors and Kubernetes do.
        let tmp = dir.path().join("s.json.tmp");
        std::fs::write(&tmp, r#"{"a": "2", "b": "3"}"#).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.get("b").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the change was not picked up"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(store.get("a").unwrap()["a"], "2");
    }

    #[test]
    fn scopes_follow_daprds_precedence() {
        let scope = |default: &str, allowed: &[&str], denied: &[&str]| SecretScope {
            store_name: "s".into(),
            default_access: default.into(),
            allowed_secrets: allowed.iter().map(|s| (*s).to_owned()).collect(),
            denied_secrets: denied.iter().map(|s| (*s).to_owned()).collect(),
        };
        // (default, allowed, denied, secret) → allowed?
        type Row<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a str, bool);
        let table: [Row; 10] = [
            ("", &[], &[], "x", true),
            ("allow", &[], &[], "x", true),
            ("deny", &[], &[], "x", false),
            ("DENY", &[], &[], "x", false),
            ("deny", &["x"], &[], "x", true),
            ("deny", &["x"], &[], "y", false),
            ("allow", &["x"], &[], "y", false),
            ("allow", &[], &["x"], "x", false),
            ("allow", &["x"], &["x"], "x", true),
            ("whatever", &[], &[], "x", true),
        ];
        for (default, allowed, denied, secret, want) in table {
            let scopes = SecretScopes::new(vec![scope(default, allowed, denied)]).unwrap();
            assert_eq!(
                scopes.allows("s", secret),
                want,
                "{default:?} {allowed:?} {denied:?} {secret}"
            );
            assert!(
                scopes.allows("other-store", secret),
                "stores without an entry allow all"
            );
        }
        let twice =
            SecretScopes::new(vec![scope("", &[], &[]), scope("deny", &[], &[])]).unwrap_err();
        assert_eq!(twice[0].field, "spec.secrets.scopes[1].storeName");
        assert!(SecretScopes::new(vec![SecretScope::default()]).is_err());
    }

    #[test]
    fn env_secrets_hide_the_sidecars_own() {
        let env = LocalEnv {
            prefix: String::new(),
        };
        // PATH is always set in tests; DAPR_ and APP_API_TOKEN never come out.
        assert!(!env.get("PATH").unwrap()["PATH"].is_empty());
        assert_eq!(
            env.get("OUTRIDER_SURELY_UNSET_VARIABLE").unwrap()["OUTRIDER_SURELY_UNSET_VARIABLE"],
            ""
        );
        assert!(env.bulk().unwrap().keys().all(|k| !hidden(k)));
        assert!(hidden("DAPR_API_TOKEN") && hidden("APP_API_TOKEN") && !hidden("APP_PORT"));
        let prefixed = LocalEnv {
            prefix: "PA".into(),
        };
        assert!(
            prefixed.bulk().unwrap().contains_key("TH"),
            "the prefix is stripped"
        );
    }
}
