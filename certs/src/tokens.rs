//! Join tokens: how a sidecar proves, once, which identity it may ask the CA service for.
//!
//! A token is bound to one `(namespace, app id)`, expires, and may be used a set number of times
//! (once by default). The CA keeps only a SHA-256 of each token's secret, one file per token in
//! `<ca-dir>/tokens/`, so a copy of that directory mints nothing. Redeeming takes an exclusive
//! lock on the directory: two CA processes, or two requests, cannot both spend the last use.
//!
//! Each use is spent on one key (the SHA-256 of the request's public key): a sidecar whose
//! answer was lost asks again with the same key and is served again, without spending another
//! use, until the token expires. A record stays until then; expired records are swept when
//! tokens are created.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::ca::{fill_random, hex};
use crate::{Error, spiffe};

/// Every token starts with this, so that a CA tells a join token from a JWT at a glance.
const PREFIX: &str = "ojt1";

/// What a new token allows.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// The namespace of the identity it obtains.
    pub namespace: String,
    /// The app id of the identity it obtains.
    pub app_id: String,
    /// How many certificates it may obtain (at least 1).
    pub uses: u32,
    /// How long it may be used.
    pub ttl: Duration,
}

/// The identity a redeemed token entitles its bearer to, within the CA's trust domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entitlement {
    /// The namespace.
    pub namespace: String,
    /// The app id.
    pub app_id: String,
}

/// Why a token was not accepted. The CA tells its client only that the token is not valid;
/// the reason is for its own log.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not of the form a token has.
    #[error("not a join token")]
    Malformed,
    /// No such token: never created, revoked or swept after expiry.
    #[error("unknown or revoked join token {0}")]
    Unknown(String),
    /// Every use was spent, on other keys.
    #[error("join token {0} is used up")]
    UsedUp(String),
    /// The secret does not match the token's id.
    #[error("wrong secret for join token {0}")]
    WrongSecret(String),
    /// Past its expiry.
    #[error("join token {0} expired")]
    Expired(String),
    /// A valid token, for another identity than the one asked for; nothing was spent.
    #[error("join token {id} is for app {app_id} in namespace {namespace}")]
    NotEntitled {
        /// The token's id.
        id: String,
        /// Its namespace.
        namespace: String,
        /// Its app id.
        app_id: String,
    },
    /// The token store could not be read or written.
    #[error(transparent)]
    Store(#[from] Error),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Record {
    namespace: String,
    app_id: String,
    uses_left: u32,
    /// Seconds since the Unix epoch.
    expires_at: u64,
    secret_sha256: String,
    /// The keys (SHA-256 of their SubjectPublicKeyInfo) uses were spent on.
    #[serde(default)]
    spent_for: Vec<String>,
}

/// The tokens of one CA directory.
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The tokens of the CA in `ca_dir`.
    pub fn new(ca_dir: &Path) -> Self {
        Self {
            dir: ca_dir.join("tokens"),
        }
    }

    /// Creates a token and returns it; it is shown once, only its hash is kept.
    pub fn create(&self, t: &NewToken) -> Result<String, Error> {
        for (what, v) in [("namespace", &t.namespace), ("app id", &t.app_id)] {
            if !spiffe::is_segment(v) {
                return Err(Error::Identity(format!(
                    "{what} {v:?}: letters, digits, '-' and '_' only"
                )));
            }
        }
        if t.uses == 0 || t.ttl.is_zero() {
            return Err(Error::Identity(
                "a token needs at least one use and a lifetime".into(),
            ));
        }
        if t.app_id == crate::CA_SERVICE_APP_ID {
            return Err(Error::Identity(format!(
                "{} is the CA service's own app id, in every namespace",
                crate::CA_SERVICE_APP_ID
            )));
        }
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        fill_random(&mut id);
        fill_random(&mut secret);
        let (id, secret) = (hex(&id), hex(&secret));
        let expires_at = SystemTime::now()
            .checked_add(t.ttl)
            .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(u64::MAX, |d| d.as_secs());
        let record = Record {
            namespace: t.namespace.clone(),
            app_id: t.app_id.clone(),
            uses_left: t.uses,
            expires_at,
            secret_sha256: sha256_hex(&secret),
            spent_for: Vec::new(),
        };
        let _lock = self.lock()?;
        self.sweep(SystemTime::now());
        self.write(&id, &record)?;
        Ok(format!("{PREFIX}.{id}.{secret}"))
    }

    /// Whether `token` would entitle the key `key` to what `wanted` accepts, spending nothing:
    /// the check made before anything is signed for it.
    pub fn check(
        &self,
        token: &str,
        key: &str,
        now: SystemTime,
        wanted: impl FnOnce(&Entitlement) -> bool,
    ) -> Result<Entitlement, TokenError> {
        let _lock = self.lock()?;
        self.judge(token, key, now, wanted).map(|(_, _, e)| e)
    }

    /// Spends one use of `token` on the key `key` (any stable fingerprint of it) and returns
    /// what it entitles to, if `wanted` accepts that; a token shown for another identity is
    /// refused and keeps its uses. A key a use was already spent on is served again for free.
    pub fn redeem(
        &self,
        token: &str,
        key: &str,
        now: SystemTime,
        wanted: impl FnOnce(&Entitlement) -> bool,
    ) -> Result<Entitlement, TokenError> {
        let _lock = self.lock()?;
        let (id, mut record, entitlement) = self.judge(token, key, now, wanted)?;
        if !record.spent_for.iter().any(|k| k == key) {
            record.uses_left -= 1;
            record.spent_for.push(key.to_owned());
            self.write(&id, &record)?;
        }
        Ok(entitlement)
    }

    /// Reads and judges a token's record (the store locked by the caller): its id, the record
    /// and what it entitles to, if the secret matches, it has not expired, `wanted` accepts it
    /// and it has a use left or one was spent on `key`.
    fn judge(
        &self,
        token: &str,
        key: &str,
        now: SystemTime,
        wanted: impl FnOnce(&Entitlement) -> bool,
    ) -> Result<(String, Record, Entitlement), TokenError> {
        let (id, secret) = parse(token.trim()).ok_or(TokenError::Malformed)?;
        let path = self.path(id);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TokenError::Unknown(id.to_owned()));
            }
            Err(e) => return Err(Error::io(&path, e).into()),
        };
        let record: Record = serde_json::from_slice(&text).map_err(|e| Error::Pem {
            path: path.clone(),
            what: format!("unreadable token record: {e}"),
        })?;
        let given = sha256_hex(secret);
        if !constant_time_eq(given.as_bytes(), record.secret_sha256.as_bytes()) {
            return Err(TokenError::WrongSecret(id.to_owned()));
        }
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now_secs >= record.expires_at {
            let _ = fs::remove_file(&path);
            return Err(TokenError::Expired(id.to_owned()));
        }
        let entitlement = Entitlement {
            namespace: record.namespace.clone(),
            app_id: record.app_id.clone(),
        };
        if !wanted(&entitlement) {
            return Err(TokenError::NotEntitled {
                id: id.to_owned(),
                namespace: entitlement.namespace,
                app_id: entitlement.app_id,
            });
        }
        if record.uses_left == 0 && !record.spent_for.iter().any(|k| k == key) {
            return Err(TokenError::UsedUp(id.to_owned()));
        }
        Ok((id.to_owned(), record, entitlement))
    }

    /// Removes the records of expired tokens (with the store locked).
    fn sweep(&self, now: SystemTime) {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let expired = fs::read(&path)
                .ok()
                .and_then(|t| serde_json::from_slice::<Record>(&t).ok())
                .is_some_and(|r| now >= r.expires_at);
            if expired {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Whether `token` looks like a join token (rather than, say, a JWT).
    pub fn is_join_token(token: &str) -> bool {
        token.trim().starts_with(PREFIX) && parse(token.trim()).is_some()
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Exclusive use of the store, across threads and processes; released when dropped.
    fn lock(&self) -> Result<fs::File, Error> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// Replaces a record whole: written beside it, then renamed over it.
    fn write(&self, id: &str, record: &Record) -> Result<(), Error> {
        let path = self.path(id);
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let json = serde_json::to_vec(record).map_err(|e| Error::Pem {
            path: path.clone(),
            what: e.to_string(),
        })?;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }
}

/// `ojt1.<16 hex id>.<64 hex secret>` → (id, secret).
fn parse(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.split('.');
    let (Some(PREFIX), Some(id), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let hex_of = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((id, secret))
}

fn sha256_hex(s: &str) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(_: &Entitlement) -> bool {
        true
    }

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        (dir, store)
    }

    fn new(uses: u32, ttl: Duration) -> NewToken {
        NewToken {
            namespace: "shop".into(),
            app_id: "orders".into(),
            uses,
            ttl,
        }
    }

    #[test]
    fn a_single_use_token_is_spent_once_on_one_key() {
        let (_d, store) = store();
        let token = store.create(&new(1, Duration::from_secs(60))).unwrap();
        assert!(TokenStore::is_join_token(&token));
        store.check(&token, "k0", SystemTime::now(), any).unwrap();
        let got = store.redeem(&token, "k1", SystemTime::now(), any).unwrap();
        assert_eq!(
            (got.namespace.as_str(), got.app_id.as_str()),
            ("shop", "orders")
        );
        assert!(matches!(
            store.redeem(&token, "k2", SystemTime::now(), any),
            Err(TokenError::UsedUp(_))
        ));
        // A check spends nothing.
        assert!(store.check(&token, "k2", SystemTime::now(), any).is_err());
        assert!(store.check(&token, "k1", SystemTime::now(), any).is_ok());
        // The same key again (its answer was lost): served, nothing more spent.
        store.redeem(&token, "k1", SystemTime::now(), any).unwrap();
        assert!(store.redeem(&token, "k3", SystemTime::now(), any).is_err());
    }

    #[test]
    fn uses_are_counted_and_expiry_holds() {
        let (d, store) = store();
        let token = store.create(&new(2, Duration::from_secs(60))).unwrap();
        store.redeem(&token, "k1", SystemTime::now(), any).unwrap();
        store.redeem(&token, "k2", SystemTime::now(), any).unwrap();
        assert!(store.redeem(&token, "k3", SystemTime::now(), any).is_err());
        let late = store.create(&new(5, Duration::from_secs(60))).unwrap();
        let later = SystemTime::now() + Duration::from_secs(61);
        assert!(matches!(
            store.redeem(&late, "k1", later, any),
            Err(TokenError::Expired(_))
        ));
        assert!(
            matches!(
                store.redeem(&late, "k1", SystemTime::now(), any),
                Err(TokenError::Unknown(_))
            ),
            "an expired token is removed"
        );
        // Creating a token sweeps the records of expired ones.
        let short = store.create(&new(1, Duration::from_secs(1))).unwrap();
        let (_, rest) = short.split_once('.').unwrap();
        let short_id = rest.split('.').next().unwrap();
        let record = d.path().join(format!("tokens/{short_id}.json"));
        assert!(record.exists());
        store.sweep(SystemTime::now() + Duration::from_secs(2));
        assert!(!record.exists());
    }

    #[test]
    fn a_wrong_secret_or_shape_is_refused_and_spends_nothing() {
        let (_d, store) = store();
        let token = store.create(&new(1, Duration::from_secs(60))).unwrap();
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", "0".repeat(64));
        assert!(matches!(
            store.redeem(&forged, "k1", SystemTime::now(), any),
            Err(TokenError::WrongSecret(_))
        ));
        for bad in [
            "",
            "ojt1",
            "ojt1.../..",
            "ojt1.zz.zz",
            &format!("{token}.x"),
        ] {
            assert!(
                matches!(
                    store.redeem(bad, "k1", SystemTime::now(), any),
                    Err(TokenError::Malformed)
                ),
                "{bad:?}"
            );
        }
        let payments = |e: &Entitlement| e.app_id == "payments";
        assert!(matches!(
            store.redeem(&token, "k1", SystemTime::now(), payments),
            Err(TokenError::NotEntitled { .. })
        ));
        // Its one use is still there.
        store.redeem(&token, "k2", SystemTime::now(), any).unwrap();
    }

    #[test]
    fn the_store_keeps_no_secret() {
        let (d, store) = store();
        let token = store.create(&new(3, Duration::from_secs(60))).unwrap();
        let secret = token.rsplit('.').next().unwrap();
        for entry in fs::read_dir(d.path().join("tokens")).unwrap() {
            let text = fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains(secret));
        }
        assert!(
            store
                .create(&NewToken {
                    app_id: "a/b".into(),
                    ..new(1, Duration::from_secs(1))
                })
                .is_err()
        );
        assert!(store.create(&new(0, Duration::from_secs(1))).is_err());
        let ca = NewToken {
            namespace: "elsewhere".into(),
            app_id: crate::CA_SERVICE_APP_ID.into(),
            ..new(1, Duration::from_secs(1))
        };
        assert!(store.create(&ca).is_err(), "the CA's app id is nobody's");
    }

    #[test]
    fn concurrent_redeems_spend_each_use_once() {
        let (_d, store) = store();
        let token = store.create(&new(3, Duration::from_secs(60))).unwrap();
        let won = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let store = &store;
                    let token = &token;
                    s.spawn(move || {
                        let key = format!("k{i}");
                        store.redeem(token, &key, SystemTime::now(), any).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|ok| *ok)
                .count()
        });
        assert_eq!(won, 3);
    }
}
