//! Policy files per namespace, and their hot reload.
//!
//! Under `--policies-path` each namespace has a directory of YAML files:
//! `<root>/<namespace>/*.yaml`. Their documents are `Configuration` resources whose
//! `spec.accessControl` applies only to callees in that namespace; a sidecar reads only its own
//! namespace's directory, so one namespace's policy can never decide for another. The sidecar's
//! own `--config` access control, when it has one, is merged in first.
//!
//! The root is watched. A change reloads the whole set; a set with any problem is reported and
//! the last good one stays in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::{AccessControl, AccessControlSpec, Problem};

/// How long the directory must stay quiet after a change before it is read again, so an editor's
/// write-rename-chmod sequence causes one reload.
const SETTLE: Duration = Duration::from_millis(150);

/// Where a sidecar's access control comes from.
#[derive(Clone, Debug)]
pub struct Sources {
    /// `spec.accessControl` of the sidecar's `--config`, if any.
    pub config: Option<AccessControlSpec>,
    /// The `--policies-path` root, if given.
    pub root: Option<PathBuf>,
    /// The sidecar's namespace: only `<root>/<namespace>/` applies.
    pub namespace: String,
}

impl Sources {
    /// The directory of this namespace's policy files.
    pub fn namespace_dir(&self) -> Option<PathBuf> {
        self.root.as_ref().map(|r| r.join(&self.namespace))
    }

    /// Reads every source and merges them. A namespace without a directory has no files.
    pub fn load(&self) -> Result<AccessControl, Vec<Problem>> {
        let mut specs: Vec<AccessControlSpec> = self.config.iter().cloned().collect();
        let mut problems = Vec::new();
        if let Some(dir) = self.namespace_dir() {
            for file in yaml_files(&dir, &mut problems) {
                read_file(&file, &mut specs, &mut problems);
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        AccessControl::merge(specs)
    }
}

/// `*.yaml` and `*.yml` directly in `dir`, by name; none when `dir` does not exist.
fn yaml_files(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(Problem::new(dir.display().to_string(), e.to_string()));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|d| d.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn read_file(path: &Path, specs: &mut Vec<AccessControlSpec>, problems: &mut Vec<Problem>) {
    let at = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return problems.push(Problem::new(at, e.to_string())),
    };
    let docs: Vec<Value> = match serde_saphyr::from_multiple(&text) {
        Ok(d) => d,
        Err(e) => return problems.push(Problem::new(at, format!("not valid YAML: {e}"))),
    };
    for (i, doc) in docs.iter().enumerate() {
        let at = if docs.len() == 1 {
            at.clone()
        } else {
            format!("{at} (document {})", i + 1)
        };
        if doc.is_null() {
            continue;
        }
        match doc.get("kind").and_then(Value::as_str) {
            Some("Configuration") => {}
            other => {
                problems.push(Problem::new(
                    format!("{at}: kind"),
                    format!(
                        "{} is not Configuration (policy files hold Configuration documents)",
                        other.map_or_else(|| "nothing".to_owned(), |k| format!("{k:?}"))
                    ),
                ));
                continue;
            }
        }
        let value = doc.pointer("/spec/accessControl").unwrap_or(&Value::Null);
        match AccessControlSpec::parse(value, &at) {
            Ok(spec) => specs.push(spec),
            Err(errs) => problems.extend(
                errs.into_iter()
                    .map(|e| Problem::new(format!("{at}: {}", e.field), e.message)),
            ),
        }
    }
}

/// What the reloads so far came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reloads that were applied.
    pub applied: u64,
    /// Reloads that were refused.
    pub refused: u64,
    /// The problems of the latest reload when it was refused; empty once a reload succeeds.
    pub problems: Vec<String>,
}

/// A running watch on the policy files; dropping it stops reloading.
pub struct Watching {
    status: watch::Receiver<ReloadStatus>,
    _watcher: Option<notify::RecommendedWatcher>,
    /// Keeps the channel open when there is nothing to watch.
    _sender: Option<watch::Sender<Arc<AccessControl>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watching {
    /// The outcome of the reloads so far.
    pub fn status(&self) -> watch::Receiver<ReloadStatus> {
        self.status.clone()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts watching `sources.root` (which must exist) from `initial`, the set loaded at start.
/// Each valid change is published on the returned receiver; an invalid one is logged with
/// every problem and counted, and the receiver keeps the last good set. Must be called inside a
/// tokio runtime.
pub fn watch(
    sources: Sources,
    initial: Arc<AccessControl>,
) -> notify::Result<(watch::Receiver<Arc<AccessControl>>, Watching)> {
    let (tx, rx) = watch::channel(initial);
    let (status_tx, status) = watch::channel(ReloadStatus::default());
    let Some(root) = sources.root.clone() else {
        // Nothing to watch: the set never changes.
        return Ok((
            rx,
            Watching {
                status,
                _watcher: None,
                _sender: Some(tx),
                task: None,
            },
        ));
    };
    let dir = sources
        .namespace_dir()
        .expect("a root gives a namespace dir");
    let (watcher, mut changed) = watch_dir(&root, dir)?;
    let task = tokio::spawn(async move {
        while changed.recv().await.is_some() {
            // Let a burst of events settle into one reload.
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, changed.recv()).await {}
            reload(&sources, &tx, &status_tx);
        }
    });
    Ok((
        rx,
        Watching {
            status,
            _watcher: Some(watcher),
            _sender: None,
            task: Some(task),
        },
    ))
}

/// Watches `root` recursively for changes that touch `dir` (or a parent of it); each one, and
/// one right away, is a message on the returned receiver.
fn watch_dir(
    root: &Path,
    dir: PathBuf,
) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher as _;
    let (changed_tx, changed) = mpsc::channel::<()>(1);
    let kick = changed_tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access()
            || !event
                .paths
                .iter()
                .any(|p| p.starts_with(&dir) || dir.starts_with(p))
        {
            return;
        }
        // A full channel already holds a pending reload.
        let _ = changed_tx.try_send(());
    })?;
    watcher.watch(root, notify::RecursiveMode::Recursive)?;
    // Read once more now that the watch is on: an edit between the first read and this point
    // would otherwise wait for the next one.
    let _ = kick.try_send(());
    Ok((watcher, changed))
}

fn reload(
    sources: &Sources,
    tx: &watch::Sender<Arc<AccessControl>>,
    status: &watch::Sender<ReloadStatus>,
) {
    let dir = sources.namespace_dir().unwrap_or_default();
    match sources.load() {
        Ok(acl) => {
            tracing::info!(
                dir = %dir.display(),
                policies = acl.policy_count(),
                default_action = %acl.default_action(),
                "access policies reloaded"
            );
            metrics::counter!("outrider_policy_reloads_total", "result" => "success").increment(1);
            tx.send_replace(Arc::new(acl));
            status.send_modify(|s| {
                s.applied += 1;
                s.problems.clear();
            });
        }
        Err(problems) => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            tracing::error!(
                dir = %dir.display(),
                problems = %list.join("; "),
                "access policies not reloaded: the last good set stays in force"
            );
            metrics::counter!("outrider_policy_reloads_total", "result" => "failure").increment(1);
            status.send_modify(|s| {
                s.refused += 1;
                s.problems = list;
            });
        }
    }
}

#[cfg(test)]
mod tests;
