//! Credentials from files follow the files: when the trust bundle, the certificate chain or the
//! key is written anew (by cert-manager's csi-driver-spiffe, spiffe-helper, or by hand), the
//! three are read again and, if they fit together, installed at once for new connections; live
//! connections keep the certificate they were made with. A set that does not fit (truncated, a
//! key of another certificate, a chain the bundle does not vouch for) leaves the last good
//! credentials in force and is reported: a log line, a metric, the status page and the
//! metadata. Writers that replace a file in steps are covered: each step is judged, and the
//! last one, complete, is installed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use outrider_certs::{CredentialFiles, Credentials};
use tokio::sync::mpsc;

use crate::telemetry::metrics as catalogue;

/// A burst of writes settles for this long before the files are read.
const SETTLE: Duration = Duration::from_millis(150);

/// The files are read this often even without a change event: some file systems (network
/// ones, some volume mounts) do not report changes.
const POLL: Duration = Duration::from_secs(10);

/// Starts following `files`, whose content with `fingerprint` is installed in `creds` now. The
/// watch lasts as long as the process.
pub(super) fn watch(
    creds: Credentials,
    files: CredentialFiles,
    fingerprint: u64,
) -> anyhow::Result<()> {
    let (watcher, mut changed) = watch_dirs(&files)?;
    tokio::spawn(async move {
        // Dropping the watcher would end the events.
        let _watcher = watcher;
        let mut seen = Seen {
            installed: fingerprint,
            refused: None,
        };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                got = changed.recv() => {
                    if got.is_none() {
                        return;
                    }
                    while let Ok(Some(())) = tokio::time::timeout(SETTLE, changed.recv()).await {}
                }
                _ = poll.tick() => {}
            }
            reload(&creds, &files, &mut seen);
        }
    });
    Ok(())
}

/// Watches the directories holding the files (not the files: writers often replace a file by
/// renaming another over it, and Kubernetes swaps a symbolic link to a new directory). Each
/// change there is a message on the returned receiver.
fn watch_dirs(
    files: &CredentialFiles,
) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher as _;
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reading.
            let _ = tx.try_send(());
        }
    })
    .context("watching the certificate files")?;
    let dirs: BTreeSet<PathBuf> = [&files.bundle, &files.chain, &files.key]
        .into_iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    for dir in &dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {} for certificate changes", dir.display()))?;
    }
    Ok((watcher, rx))
}

/// The contents judged so far, by fingerprint.
struct Seen {
    /// What is in force.
    installed: u64,
    /// The latest content refused, not judged again until it changes.
    refused: Option<u64>,
}

/// Reads the files, and installs them if they hold something new that fits together.
fn reload(creds: &Credentials, files: &CredentialFiles, seen: &mut Seen) {
    let result = files.read().and_then(|pem| {
        let fingerprint = pem.fingerprint();
        if fingerprint == seen.installed {
            // Back to what is in force (say, after a write that was undone).
            seen.refused = None;
            return Ok(None);
        }
        if seen.refused == Some(fingerprint) {
            return Ok(None);
        }
        match creds.install_files(files, &pem) {
            Ok(info) => {
                seen.installed = fingerprint;
                seen.refused = None;
                Ok(Some(info))
            }
            Err(e) => {
                seen.refused = Some(fingerprint);
                Err(e)
            }
        }
    });
    match result {
        Ok(None) if seen.refused.is_none() => creds.set_files_status(Ok(())),
        Ok(None) => {}
        Ok(Some(info)) => {
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
        Err(e) => {
            // A missing or unreadable file is read again at the next change or poll.
            tracing::error!(
                error = %e,
                "certificate files not reloaded: the last good credentials stay in force"
            );
            catalogue::CERT_RELOADS
                .counter(&[("result", "failure".to_owned())])
                .increment(1);
            creds.set_files_status(Err(e.to_string()));
        }
    }
}
