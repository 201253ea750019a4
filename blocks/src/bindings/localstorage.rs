//! `bindings.localstorage`: files under a root directory (`rootPath`), with daprd's operations
//! (`create`, `get`, `list`, `delete`) and shapes. The request's `fileName` is always inside
//! the root: `..` that would climb out of it and symlinks that lead out of it are refused, and
//! a leading `/` names a path under the root.
//!
//! As daprd: `create` writes the data unquoted when it is a JSON string, and base64-decoded
//! when that string is valid base64; without a `fileName` it picks a UUID; it answers
//! `{"fileName": <path under the root>}`. `list` answers the files under a directory (the root
//! by default) as a JSON array of their paths.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;

use super::{BindingError, InvokeRequest, InvokeResponse, OutputBinding};
use crate::fault::Fault;
use crate::state::BoxFuture;

/// The largest file `get` reads.
const MAX_READ: u64 = 64 << 20;

/// Roots daprd refuses, and so does this component.
const REFUSED_ROOTS: [&str; 4] = ["/proc", "/sys", "/boot", "/var/run/secrets"];

/// The local storage binding.
#[derive(Clone, Debug)]
pub struct LocalStorage {
    root: PathBuf,
}

fn io_failed(what: String, e: std::io::Error) -> BindingError {
    BindingError::Failed(Fault::caused_by(format!("{what}: {e}"), e).permanent())
}

impl LocalStorage {
    /// Opens (creating if needed) the root directory.
    pub fn open(root: &Path) -> Result<Self, String> {
        let root = if root.is_absolute() {
            root.to_owned()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("reading the current directory: {e}"))?
                .join(root)
        };
        // Checked as written and again once symlinks are resolved.
        let refused = |p: &Path| REFUSED_ROOTS.iter().any(|r| p.starts_with(Path::new(r)));
        let not_here = |p: &Path| format!("{} is not a place files may be written", p.display());
        if refused(&root) {
            return Err(not_here(&root));
        }
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let root = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        if !root.is_dir() {
            return Err(format!("{} is not a directory", root.display()));
        }
        if refused(&root) {
            return Err(not_here(&root));
        }
        Ok(Self { root })
    }

    /// The path of `name` under the root, refused if it leads outside it (by `..` or by a
    /// symlink).
    fn resolve(&self, name: &str) -> Result<PathBuf, BindingError> {
        let escape =
            || BindingError::BadRequest(format!("fileName {name:?} leads outside rootPath"));
        let mut rel = PathBuf::new();
        for part in Path::new(name).components() {
            match part {
                Component::Normal(p) => rel.push(p),
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(escape());
                    }
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let path = self.root.join(&rel);
        // The deepest part that exists, with its symlinks resolved, must still be inside.
        let mut existing = path.as_path();
        while !existing.exists() {
            match existing.parent() {
                Some(p) => existing = p,
                None => break,
            }
        }
        let real = existing
            .canonicalize()
            .map_err(|e| io_failed(name.into(), e))?;
        if !real.starts_with(&self.root) {
            return Err(escape());
        }
        Ok(path)
    }

    fn create(&self, name: &str, data: &[u8]) -> Result<Option<InvokeResponse>, BindingError> {
        let mut data = data.to_vec();
        if let Ok(s) = serde_json::from_slice::<String>(&data) {
            data = s.into_bytes();
        }
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&data) {
            data = decoded;
        }
        let path = self.resolve(name)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_failed(dir.display().to_string(), e))?;
        }
        // Written aside and renamed: a reader never sees half a file.
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&tmp, &data).map_err(|e| io_failed(path.display().to_string(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_failed(path.display().to_string(), e)
        })?;
        let rel = path.strip_prefix(&self.root).unwrap_or(&path);
        let body = serde_json::json!({ "fileName": rel.to_string_lossy() });
        Ok(Some(InvokeResponse {
            data: Bytes::from(body.to_string()),
            metadata: Default::default(),
        }))
    }

    fn get(&self, name: &str) -> Result<Option<InvokeResponse>, BindingError> {
        let path = self.resolve(name)?;
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                BindingError::BadRequest(format!("file not found: {}", path.display()))
            }
            _ => io_failed(path.display().to_string(), e),
        })?;
        if meta.len() > MAX_READ {
            return Err(BindingError::BadRequest(format!(
                "{} holds {} bytes, more than the {MAX_READ} a get reads",
                path.display(),
                meta.len()
            )));
        }
        let data = std::fs::read(&path).map_err(|e| io_failed(path.display().to_string(), e))?;
        Ok(Some(InvokeResponse {
            data: Bytes::from(data),
            metadata: Default::default(),
        }))
    }

    fn delete(&self, name: &str) -> Result<Option<InvokeResponse>, BindingError> {
        let path = self.resolve(name)?;
        if path == self.root {
            return Err(BindingError::BadRequest("fileName is required".into()));
        }
        std::fs::remove_file(&path).map_err(|e| io_failed(path.display().to_string(), e))?;
        Ok(None)
    }

    fn list(&self, name: &str) -> Result<Option<InvokeResponse>, BindingError> {
        let path = self.resolve(name)?;
        let mut files = Vec::new();
        let mut dirs = vec![path.clone()];
        if !path.is_dir() {
            return Err(BindingError::BadRequest(format!(
                "unable to list files as the file specified is not a directory: {}",
                path.display()
            )));
        }
        while let Some(dir) = dirs.pop() {
            let entries =
                std::fs::read_dir(&dir).map_err(|e| io_failed(dir.display().to_string(), e))?;
            for entry in entries.flatten() {
                let p = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(p),
                    Ok(_) => files.push(p.to_string_lossy().into_owned()),
                    Err(_) => {}
                }
            }
        }
        files.sort();
        Ok(Some(InvokeResponse {
            data: Bytes::from(serde_json::to_vec(&files).unwrap_or_default()),
            metadata: Default::default(),
        }))
    }
}

impl OutputBinding for LocalStorage {
    fn operations(&self) -> &'static [&'static str] {
        &["create", "get", "list", "delete"]
    }

    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> BoxFuture<Result<Option<InvokeResponse>, BindingError>> {
        let this = self.clone();
        Box::pin(async move {
            let run = move || {
                let name = req.metadata.get("fileName").cloned().unwrap_or_default();
                match req.operation.as_str() {
                    "create" if name.is_empty() => {
                        this.create(&uuid::Uuid::new_v4().to_string(), &req.data)
                    }
                    "create" => this.create(&name, &req.data),
                    "get" => this.get(&name),
                    "delete" => this.delete(&name),
                    "list" => this.list(&name),
                    other => Err(BindingError::BadRequest(format!(
                        "unsupported operation {other}"
                    ))),
                }
            };
            tokio::task::spawn_blocking(run)
                .await
                .unwrap_or_else(|e| Err(BindingError::Failed(Fault::new(e.to_string()))))
        })
    }
}
