//! `bindings.localstorage`: files under a root directory (`rootPath`), with daprd's operations
//! (`create`, `get`, `list`, `delete`) and shapes. The request's `fileName` is always inside
//! the root: every file and directory is opened relative to a handle on the root with
//! `openat2(RESOLVE_BENEATH)`, so the kernel refuses, at the moment of use, any path that would
//! leave it — by `..`, an absolute symlink, or a symlink swapped in between a check and a use.
//! A leading `/` names a path under the root.
//!
//! As daprd: `create` writes the data unquoted when it is a JSON string, and base64-decoded
//! when that string is valid base64; without a `fileName` it picks a UUID; it answers
//! `{"fileName": <path under the root>}`. `list` answers the files under a directory (the root
//! by default) as a JSON array of their paths. Calls run on blocking threads, at most
//! [`CONCURRENT`] at once per binding; `get` reads regular files only, of at most [`MAX_READ`]
//! bytes; `list` answers at most [`MAX_LISTED`] paths.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use tokio::sync::Semaphore;

use super::{BindingError, InvokeRequest, InvokeResponse, OutputBinding};
use crate::fault::Fault;
use crate::state::BoxFuture;

/// The largest file `get` reads.
pub(crate) const MAX_READ: u64 = 64 << 20;

/// The most paths `list` answers.
pub(crate) const MAX_LISTED: usize = 100_000;

/// Calls that may run at once per binding.
pub(crate) const CONCURRENT: usize = 8;

/// The longest `fileName`.
const MAX_NAME: usize = 4096;

/// Roots daprd refuses, and so does this component (with what they resolve to).
const REFUSED_ROOTS: [&str; 5] = ["/proc", "/sys", "/boot", "/var/run/secrets", "/run/secrets"];

/// The local storage binding.
#[derive(Clone, Debug)]
pub struct LocalStorage {
    root: PathBuf,
    dir: Arc<OwnedFd>,
    permits: Arc<Semaphore>,
}

fn failed(what: impl std::fmt::Display, e: impl Into<std::io::Error>) -> BindingError {
    let e = e.into();
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
        if refused(&root) {
            return Err(not_here(&root));
        }
        let dir = nix::fcntl::open(
            &root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            format!(
                "{} is not a directory that can be opened: {e}",
                root.display()
            )
        })?;
        Ok(Self {
            root,
            dir: Arc::new(dir),
            permits: Arc::new(Semaphore::new(CONCURRENT)),
        })
    }

    /// `name` as a path relative to the root, `..` resolved; refused if it climbs out.
    fn relative(name: &str) -> Result<PathBuf, BindingError> {
        if name.len() > MAX_NAME {
            return Err(BindingError::BadRequest(format!(
                "fileName is {} bytes long; at most {MAX_NAME}",
                name.len()
            )));
        }
        let mut rel = PathBuf::new();
        for part in Path::new(name).components() {
            match part {
                Component::Normal(p) => rel.push(p),
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(escape(name));
                    }
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        Ok(rel)
    }

    /// Opens `rel` beneath the root; the kernel refuses a path that resolves outside it.
    fn beneath(&self, rel: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, BindingError> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.dir.as_fd(), rel, how).map_err(|e| match e {
            Errno::EXDEV | Errno::ELOOP => escape(&rel.to_string_lossy()),
            Errno::ENOENT => BindingError::BadRequest(format!(
                "file not found: {}",
                self.root.join(rel).display()
            )),
            e => failed(self.root.join(rel).display(), e),
        })
    }

    fn create(&self, name: &str, data: &[u8]) -> Result<Option<InvokeResponse>, BindingError> {
        let rel = Self::relative(name)?;
        let Some(file) = rel.file_name() else {
            return Err(BindingError::BadRequest(format!(
                "fileName {name:?} names no file"
            )));
        };
        let mut data = data.to_vec();
        if let Ok(s) = serde_json::from_slice::<String>(&data) {
            data = s.into_bytes();
        }
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&data) {
            data = decoded;
        }
        // Each directory made inside the one above it, opened beneath the root.
        let mut made = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for part in parent.components() {
                let above =
                    self.beneath(&made, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())?;
                match mkdirat(
                    above.as_fd(),
                    part.as_os_str(),
                    Mode::from_bits_truncate(0o777),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(failed(self.root.join(&made).display(), e)),
                }
                made.push(part);
            }
        }
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NONBLOCK;
        let fd = self.beneath(&rel, flags, Mode::from_bits_truncate(0o666))?;
        if !is_regular(&fd)? {
            return Err(BindingError::BadRequest(format!(
                "{name:?} is not a regular file"
            )));
        }
        let path = self.root.join(&rel);
        std::fs::File::from(fd)
            .write_all(&data)
            .map_err(|e| failed(path.display(), e))?;
        let shown = Path::new(&made).join(file);
        let body = serde_json::json!({ "fileName": shown.to_string_lossy() });
        Ok(Some(InvokeResponse {
            data: Bytes::from(body.to_string()),
            metadata: Default::default(),
        }))
    }

    fn get(&self, name: &str) -> Result<Option<InvokeResponse>, BindingError> {
        let rel = Self::relative(name)?;
        // Non-blocking, so a FIFO cannot hold the thread; only regular files are read.
        let fd = self.beneath(&rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())?;
        let path = self.root.join(&rel);
        if !is_regular(&fd)? {
            return Err(BindingError::BadRequest(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_READ + 1)
            .read_to_end(&mut data)
            .map_err(|e| failed(path.display(), e))?;
        if data.len() as u64 > MAX_READ {
            return Err(BindingError::BadRequest(format!(
                "{} holds more than the {MAX_READ} bytes a get reads",
                path.display()
            )));
        }
        Ok(Some(InvokeResponse {
            data: Bytes::from(data),
            metadata: Default::default(),
        }))
    }

    fn delete(&self, name: &str) -> Result<Option<InvokeResponse>, BindingError> {
        let rel = Self::relative(name)?;
        let Some(file) = rel.file_name() else {
            return Err(BindingError::BadRequest("fileName is required".into()));
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = self.beneath(parent, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())?;
        // As os.Remove: a file, or an empty directory.
        let removed = match unlinkat(dir.as_fd(), file, UnlinkatFlags::NoRemoveDir) {
            Err(Errno::EISDIR) => unlinkat(dir.as_fd(), file, UnlinkatFlags::RemoveDir),
            other => other,
        };
        removed.map_err(|e| failed(self.root.join(&rel).display(), e))?;
        Ok(None)
    }

    fn list(&self, name: &str) -> Result<Option<InvokeResponse>, BindingError> {
        let rel = Self::relative(name)?;
        let top = self.beneath(&rel, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty());
        let top = top.map_err(|e| match e {
            BindingError::Failed(_) => BindingError::BadRequest(format!(
                "unable to list files as the file specified is not a directory: {}",
                self.root.join(&rel).display()
            )),
            e => e,
        })?;
        let mut files = Vec::new();
        let mut dirs = vec![(top, self.root.join(&rel))];
        while let Some((fd, path)) = dirs.pop() {
            let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| failed(path.display(), e))?;
            let mut subdirs = Vec::new();
            for entry in dir.iter().flatten() {
                let entry_name = entry.file_name().to_string_lossy().into_owned();
                if entry_name == "." || entry_name == ".." {
                    continue;
                }
                match entry.file_type() {
                    Some(nix::dir::Type::Directory) => subdirs.push(entry_name),
                    _ => files.push(path.join(&entry_name).to_string_lossy().into_owned()),
                }
                if files.len() > MAX_LISTED {
                    return Err(BindingError::BadRequest(format!(
                        "more than {MAX_LISTED} files under {}; list a directory below it",
                        self.root.join(&rel).display()
                    )));
                }
            }
            for sub in subdirs {
                // Not following symlinks: a directory entry is listed only if it is one.
                let how = OpenHow::new()
                    .flags(
                        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    )
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
                if let Ok(fd) = openat2(dir.as_fd(), sub.as_str(), how) {
                    dirs.push((fd, path.join(&sub)));
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

fn escape(name: &str) -> BindingError {
    BindingError::BadRequest(format!("fileName {name:?} leads outside rootPath"))
}

fn is_regular(fd: &OwnedFd) -> Result<bool, BindingError> {
    let st = fstat(fd.as_fd()).map_err(|e| failed("fstat", e))?;
    Ok(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG)
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
            let Ok(_permit) = this.permits.clone().acquire_owned().await else {
                return Err(BindingError::Failed(Fault::new("the binding is closed")));
            };
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
