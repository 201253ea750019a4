//! Credentials from files follow the files: when the trust bundle, the certificate chain or the
//! key is written anew (by cert-manager's csi-driver-spiffe, spiffe-helper, or by hand), the
//! three are read again and, if they fit together, installed at once for new connections; live
//! connections keep the certificate they were made with. A set that does not fit (truncated, a
//! key of another certificate, a chain the bundle does not vouch for) leaves the last good
//! credentials in force and is reported: a log line, a metric, the status page and the
//! metadata. Writers that replace a file in steps are covered: each step is judged, and the
//! last one, complete, is installed.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outrider_certs::{CredentialFiles, Credentials};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::telemetry::metrics as catalogue;

/// A burst of writes settles for this long before the files are read...
const SETTLE: Duration = Duration::from_millis(150);
/// ...but no longer than this, however busy the directory.
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// The files are read this often even without a change event (some file systems do not report
/// changes), and a set refused for a reason that time can cure (a certificate not valid yet) is
/// judged again.
const POLL: Duration = Duration::from_secs(10);

/// Starts following `files`, whose content with `fingerprint` is installed in `creds` now. The
/// watch lasts as long as the process. Without change events (the watch could not be set up),
/// the files are still read every [`POLL`].
pub(super) fn watch(creds: Credentials, files: CredentialFiles, fingerprint: u64) {
    let (watcher, mut changed) = match watch_dirs(&files) {
        Ok((w, rx)) => (Some(w), Some(rx)),
        Err(e) => {
            tracing::warn!(error = %e, every_secs = POLL.as_secs(), "cannot watch the certificate files; reading them periodically instead");
            (None, None)
        }
    };
    tokio::spawn(async move {
        // Dropping the watcher would end the events.
        let _watcher = watcher;
        let mut seen = Seen {
            installed: fingerprint,
            refused: None,
            reported: None,
        };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = recv(&mut changed) => settle(&mut changed).await,
                _ = poll.tick() => seen.refused = None,
            }
            reload(&creds, &files, &mut seen);
        }
    });
}

/// The next change event; never, once there are none.
async fn recv(changed: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match changed {
        Some(rx) => match rx.recv().await {
            Some(()) => Some(()),
            None => {
                // The watcher is gone: polling goes on.
                *changed = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Lets a burst of events settle, for at most [`SETTLE_AT_MOST`].
async fn settle(changed: &mut Option<mpsc::Receiver<()>>) {
    let Some(rx) = changed else { return };
    let until = Instant::now() + SETTLE_AT_MOST;
    while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {
        if Instant::now() >= until {
            return;
        }
    }
}

/// Watches the directories holding the files (not the files: writers often replace a file by
/// renaming another over it, and Kubernetes swaps a symbolic link to a new directory). Each
/// change there to one of the files, or to an entry whose name starts with `..` (Kubernetes'
/// `..data`), is a message on the returned receiver.
fn watch_dirs(
    files: &CredentialFiles,
) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher as _;
    let (tx, rx) = mpsc::channel::<()>(1);
    let paths = [&files.bundle, &files.chain, &files.key];
    let names: BTreeSet<OsString> = paths
        .iter()
        .filter_map(|p| p.file_name().map(ToOwned::to_owned))
        .collect();
    let ours = move |p: &Path| {
        p.file_name()
            .is_some_and(|n| names.contains(n) || n.as_encoded_bytes().starts_with(b".."))
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !event.kind.is_access() && event.paths.iter().any(|p| ours(p)) {
            // A full channel already holds a pending reading.
            let _ = tx.try_send(());
        }
    })?;
    let dirs: BTreeSet<PathBuf> = paths
        .into_iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    for dir in &dirs {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    Ok((watcher, rx))
}

/// The contents judged so far, by fingerprint.
struct Seen {
    /// What is in force.
    installed: u64,
    /// The latest content refused, and why; not judged again until it changes or the next poll.
    refused: Option<(u64, String)>,
    /// The latest problem logged and counted, so that one that persists is reported once.
    reported: Option<String>,
}

/// Reads the files, and installs them if they hold something new that fits together.
fn reload(creds: &Credentials, files: &CredentialFiles, seen: &mut Seen) {
    let outcome = files.read().map_err(|e| e.to_string()).and_then(|pem| {
        let fingerprint = pem.fingerprint();
        if fingerprint == seen.installed {
            // Back to what is in force (say, after a write that was undone).
            seen.refused = None;
            return Ok(None);
        }
        if let Some((refused, why)) = &seen.refused
            && *refused == fingerprint
        {
            return Err(why.clone());
        }
        match creds.install_files(files, &pem) {
            Ok(info) => {
                seen.installed = fingerprint;
                seen.refused = None;
                Ok(Some(info))
            }
            Err(e) => {
                seen.refused = Some((fingerprint, e.to_string()));
                Err(e.to_string())
            }
        }
    });
    match outcome {
        Ok(None) => {
            seen.reported = None;
            creds.set_files_status(Ok(()));
        }
        Ok(Some(info)) => {
            seen.reported = None;
            tracing::info!(
                serial = %info.serial,
                generation = info.generation,
                roots = creds.trust_roots(),
                "workload certificate reloaded from its files"
            );
            catalogue::CERT_RELOADS
                .counter(&[("result", "success".to_owned())])
                .increment(1);
            creds.set_files_status(Ok(()));
        }
        Err(why) => {
            if seen.reported.as_deref() != Some(why.as_str()) {
                tracing::error!(
                    error = %why,
                    "certificate files not reloaded: the last good credentials stay in force"
                );
                catalogue::CERT_RELOADS
                    .counter(&[("result", "failure".to_owned())])
                    .increment(1);
                seen.reported = Some(why.clone());
            }
            creds.set_files_status(Err(why));
        }
    }
}
