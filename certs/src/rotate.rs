//! Rotating a CA directory without an outage, in three steps an operator runs in turn
//! (`outrider ca rotate add|switch|retire`):
//!
//! 1. **add** creates the next issuer in `DIR/next/` (a new root, or an intermediate under a new
//!    offline root) and adds its root to `DIR/bundle.pem`. Nothing issues from it yet; sidecars
//!    learn to trust it (the CA service hands the bundle out within a second).
//! 2. **switch** makes the next issuer the one that signs (`DIR/ca.crt`, `DIR/ca.key`); the old
//!    one moves to `DIR/previous/`. Peers of either root keep accepting each other, since every
//!    bundle holds both.
//! 3. **retire**, once every certificate from the old root has been renewed (at least one
//!    workload certificate lifetime after the switch), removes the roots the current issuer does
//!    not chain to from the bundle, and the old issuer's files.
//!
//! Every file is replaced whole (written beside it, then renamed); the one moment two files
//! disagree (the key renamed before the certificate) is refused by [`DevCa::load`], which checks
//! that they pair, so a CA service reloading meanwhile keeps issuing from what it had.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::ca::{BUNDLE, CA_CERT, CA_KEY, fill_random, hex};
use crate::verify::Roots;
use crate::{
    CreatedAuthority, DevCa, Error, NewAuthority, SpiffeId, TrustBundle, create_authority,
};

const NEXT: &str = "next";
const PREVIOUS: &str = "previous";
/// When the last switch happened (seconds since the Unix epoch).
const SWITCHED_AT: &str = "switched-at";

/// Step 1: a new issuer in `DIR/next/`, its root added to the bundle. Returns the new CA and
/// how many roots the bundle holds now.
pub fn rotate_add(
    dir: &Path,
    lifetime: Duration,
    root: Option<(&Path, &Path)>,
) -> Result<(CreatedAuthority, usize), Error> {
    let current = DevCa::load(dir)?;
    let next = dir.join(NEXT);
    if next.exists() {
        return Err(refused(
            &next,
            "a rotation is under way: run `outrider ca rotate switch` first",
        ));
    }
    let created = create_authority(&NewAuthority {
        dir: &next,
        lifetime,
        root,
    })?;
    let added = TrustBundle::from_pem_file(&next.join(BUNDLE))?;
    let bundle = current.trust_bundle().union(&added);
    replace_file(&dir.join(BUNDLE), bundle.to_pem().as_bytes(), 0o644)?;
    Ok((created, bundle.certs().len()))
}

/// Step 2: the next issuer signs from now on; the old one is kept in `DIR/previous/` until
/// retired. Refused unless the bundle already holds the next issuer's root.
pub fn rotate_switch(dir: &Path) -> Result<(), Error> {
    let next_dir = dir.join(NEXT);
    if finish_switch(dir, &next_dir)? {
        return Ok(());
    }
    if !next_dir.join(CA_KEY).is_file() {
        return Err(refused(
            dir,
            "no rotation under way: run `outrider ca rotate add` first",
        ));
    }
    let next = DevCa::load(&next_dir)?;
    let current = DevCa::load(dir)?;
    if !chains_to(&next, &current.trust_bundle()) {
        return Err(refused(
            &dir.join(BUNDLE),
            "does not hold the next issuer's root; run `outrider ca rotate add` again",
        ));
    }
    let previous = dir.join(PREVIOUS);
    if previous.exists() {
        fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
    }
    crate::ca::write_dir(
        &previous,
        &[
            (CA_CERT, &read(&dir.join(CA_CERT))?, 0o644),
            (CA_KEY, &read(&dir.join(CA_KEY))?, 0o600),
        ],
    )?;
    // Recorded first, so that whatever happens below, `retire` waits its grace period.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    replace_file(&dir.join(SWITCHED_AT), format!("{now}\n").as_bytes(), 0o644)?;
    // The key first: until the certificate follows, the pair does not load and the CA service
    // keeps the issuer it has. A switch cut off in between is finished by running it again.
    for name in [CA_KEY, CA_CERT] {
        fs::rename(next_dir.join(name), dir.join(name))
            .map_err(|e| Error::io(dir.join(name), e))?;
    }
    fs::remove_dir_all(&next_dir).map_err(|e| Error::io(&next_dir, e))?;
    let switched = DevCa::load(dir)?;
    if !chains_to(&switched, &switched.trust_bundle()) {
        return Err(refused(dir, "the switched CA does not chain to its bundle"));
    }
    Ok(())
}

/// Finishes a switch that was cut off: between its two renames (the next key in place, its
/// certificate still in `next/`), or after them (`next/` left without either). Returns
/// whether there was one.
fn finish_switch(dir: &Path, next_dir: &Path) -> Result<bool, Error> {
    let cert = next_dir.join(CA_CERT);
    if !next_dir.exists() || next_dir.join(CA_KEY).exists() {
        return Ok(false);
    }
    if cert.is_file() {
        let key =
            fs::read_to_string(dir.join(CA_KEY)).map_err(|e| Error::io(dir.join(CA_KEY), e))?;
        let der = TrustBundle::from_pem_file(&cert)?.certs()[0].clone();
        let pairs = rcgen::KeyPair::from_pem(&key).is_ok_and(|k| {
            crate::ca::public_key_is(&der, &rcgen::PublicKeyData::subject_public_key_info(&k))
        });
        if !pairs {
            return Ok(false);
        }
        fs::rename(&cert, dir.join(CA_CERT)).map_err(|e| Error::io(dir.join(CA_CERT), e))?;
    }
    let switched = DevCa::load(dir)?;
    if !chains_to(&switched, &switched.trust_bundle()) {
        return Err(refused(dir, "the switched CA does not chain to its bundle"));
    }
    fs::remove_dir_all(next_dir).map_err(|e| Error::io(next_dir, e))?;
    // A switch begun by an older binary may not have recorded its time: now, to be safe.
    if !dir.join(SWITCHED_AT).exists() {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        replace_file(&dir.join(SWITCHED_AT), format!("{now}\n").as_bytes(), 0o644)?;
    }
    Ok(true)
}

/// Step 3: removes from the bundle every root the current issuer does not chain to, at least
/// `grace` after the switch, and the previous issuer's files. Returns how many roots were
/// removed.
pub fn rotate_retire(dir: &Path, grace: Duration) -> Result<usize, Error> {
    if dir.join(NEXT).exists() {
        return Err(refused(
            dir,
            "a rotation is under way: run `outrider ca rotate switch` first",
        ));
    }
    let switched_at = dir.join(SWITCHED_AT);
    if let Ok(text) = fs::read_to_string(&switched_at) {
        let secs = text.trim().parse().map_err(|_| {
            refused(
                &switched_at,
                "unreadable; it should hold the switch's Unix time",
            )
        })?;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let since = SystemTime::now().duration_since(at).unwrap_or_default();
        if since < grace {
            return Err(refused(
                dir,
                &format!(
                    "switched {}s ago; certificates from the old root may still be in use for up to --grace {}s (the longest workload certificate lifetime)",
                    since.as_secs(),
                    grace.as_secs()
                ),
            ));
        }
    }
    let current = DevCa::load(dir)?;
    let bundle = current.trust_bundle();
    let kept: Vec<_> = bundle
        .certs()
        .iter()
        .filter(|root| chains_to(&current, &TrustBundle::from_certs(vec![(*root).clone()])))
        .cloned()
        .collect();
    if kept.is_empty() {
        return Err(refused(
            &dir.join(BUNDLE),
            "holds no root the current issuer chains to",
        ));
    }
    // Zero when only an intermediate was rotated under the same root: then only the previous
    // issuer's files go.
    let removed = bundle.certs().len() - kept.len();
    if removed > 0 {
        replace_file(
            &dir.join(BUNDLE),
            TrustBundle::from_certs(kept).to_pem().as_bytes(),
            0o644,
        )?;
    }
    let previous = dir.join(PREVIOUS);
    if previous.exists() {
        fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
    }
    let _ = fs::remove_file(&switched_at);
    Ok(removed)
}

/// Whether a workload certificate from `ca` verifies against `bundle`.
fn chains_to(ca: &DevCa, bundle: &TrustBundle) -> bool {
    let Ok(id) = SpiffeId::new("check.invalid", "default", "ca-rotate") else {
        return false;
    };
    let Ok(cert) = ca.issue(&id, Duration::from_secs(60)) else {
        return false;
    };
    Roots::new(bundle, id.trust_domain())
        .is_ok_and(|roots| roots.check_own(&cert.chain, &id).is_ok())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

fn refused(path: &Path, what: &str) -> Error {
    Error::Pem {
        path: path.to_owned(),
        what: what.to_owned(),
    }
}

/// Replaces `path` whole: written to a private file beside it, synced, renamed over it.
pub(crate) fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let mut rnd = [0u8; 6];
    fill_random(&mut rnd);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp: PathBuf = path.with_file_name(format!(".{name}.{}", hex(&rnd)));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(contents).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}
