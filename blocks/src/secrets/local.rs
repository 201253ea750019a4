//! The local secret stores: `secretstores.local.file` (a JSON file, watched for changes) and
//! `secretstores.local.env` (the sidecar's environment). Opening them from component metadata
//! and scoping what an app may read belong to the parent module.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::{Secret, SecretError, SecretStore};

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
    pub(super) prefix: String,
}

/// Never served: the sidecar's own credentials.
pub(super) fn hidden(var: &str) -> bool {
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
