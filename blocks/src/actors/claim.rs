//! Exactly one activation: which host holds an actor, kept in the actor state store.
//!
//! Every host runs a **session**: a key with a short expiry that it renews every
//! [`SESSION_RENEW`]. An actor is active on the host named by its **claim**, a key that records
//! the holder's session; a claim whose session has expired is free to take, by compare-and-set on
//! the claim's ETag, so a host's death frees its actors within [`SESSION_TTL`] with a single
//! renewal per host, not one per actor. A host whose renewal fails (or comes too late) loses its
//! session: it must stop starting turns before the store could let another host take its claims,
//! which [`Session::valid`] tells from the local clock, counted from when the last successful
//! renewal was *sent*. A host that finds another's session expired leaves a tombstone in its
//! place before taking its claims, so that a late renewal cannot bring the session back (some
//! stores accept an ETag for a missing key); a renewal that finds the tombstone, or comes after
//! the session's local validity ended, loses the session for good.
//!
//! Nothing here needs more than the state store contract (first-write, ETags, `ttlInSeconds`),
//! so every store that offers those serves: Redis, PostgreSQL, MySQL, SQLite and memory.
//!
//! Keys start with `||`, which no app id can (an actor state key starts with the app id), so they
//! never meet the actors' own state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::state::{
    Concurrency, DeleteRequest, Metadata, Options, SetRequest, StateError, StateStore,
};

/// How long a session outlives its last renewal in the store.
pub const SESSION_TTL: Duration = Duration::from_secs(5);
/// How often a session is renewed.
pub const SESSION_RENEW: Duration = Duration::from_secs(1);
/// How long before the store's expiry a host stops trusting its own session: room for a clock
/// that runs a little fast and for the renewal's own trip.
const SESSION_MARGIN: Duration = Duration::from_millis(1500);
/// A claim outlives its last refresh by this long, so that claims of actors never called again
/// do not stay forever. A host refreshes the claims of its active actors well before.
pub const CLAIM_TTL: Duration = Duration::from_secs(3600);
/// How long an ended session's tombstone stays: far longer than any host trusts a session it
/// could not renew, so that no host renews its session back to life after others saw it end.
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);
/// What an ended session's key holds.
const TOMBSTONE: &[u8] = b"{\"ended\":true}";
/// How many times a race on a claim is tried again before the caller is told to retry.
const CLAIM_ATTEMPTS: usize = 4;

/// A host, as a claim names it: enough for another host to forward a call there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// The session: unique to one run of one sidecar.
    pub session: String,
    /// Its app id.
    pub app_id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its mesh address.
    pub address: String,
}

/// This host's session in the actor store.
pub struct Session {
    store: Arc<dyn StateStore>,
    me: Holder,
    state: Mutex<SessionState>,
}

struct SessionState {
    etag: Option<String>,
    /// Until when this host may start turns: the last good renewal's send time, plus the TTL,
    /// less the margin. `None` once lost.
    valid_until: Option<Instant>,
}

/// The session expired in the store, or was taken over: the host must drop every actor.
#[derive(Debug, thiserror::Error)]
#[error("the actor host session {0} was lost")]
pub struct SessionLost(pub String);

fn session_key(session: &str) -> String {
    format!("||actors||session||{session}")
}

fn claim_key(namespace: &str, actor_type: &str, id: &str) -> String {
    format!("||actors||claim||{namespace}||{actor_type}||{id}")
}

fn ttl(d: Duration) -> Metadata {
    Metadata::from([("ttlInSeconds".to_owned(), d.as_secs().to_string())])
}

fn first_write() -> Options {
    Options {
        concurrency: Concurrency::FirstWrite,
        ..Options::default()
    }
}

impl Session {
    /// Starts a session for `me` (whose `session` must be new: a UUID): written first-write, so a
    /// clash of ids is an error rather than a shared session.
    pub async fn start(store: Arc<dyn StateStore>, me: Holder) -> Result<Arc<Self>, StateError> {
        let sent = Instant::now();
        let key = session_key(&me.session);
        let value = Bytes::from(serde_json::to_vec(&me).unwrap_or_default());
        store
            .set(SetRequest {
                key: key.clone(),
                value: value.clone(),
                etag: None,
                metadata: ttl(SESSION_TTL),
                options: first_write(),
            })
            .await?;
        // Written once more at once, so that no renewal of this session carries the ETag a
        // newly made key starts with (which a tombstone also has on stores that number them).
        let first = store
            .get(key.clone(), Metadata::new())
            .await?
            .and_then(|i| i.etag);
        store
            .set(SetRequest {
                key: key.clone(),
                value,
                etag: first,
                metadata: ttl(SESSION_TTL),
                options: Options::default(),
            })
            .await?;
        let etag = store.get(key, Metadata::new()).await?.and_then(|i| i.etag);
        Ok(Arc::new(Self {
            store,
            me,
            state: Mutex::new(SessionState {
                etag,
                valid_until: Some(sent + SESSION_TTL - SESSION_MARGIN),
            }),
        }))
    }

    /// Who this host is.
    pub fn me(&self) -> &Holder {
        &self.me
    }

    /// Whether this host may start a turn now: its session is alive and was renewed recently
    /// enough that no other host can have taken its claims.
    pub fn valid(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.valid_until.is_some_and(|until| Instant::now() < until)
    }

    /// Renews the session. A store error leaves it as it was (it may still be valid for a
    /// while: the caller tries again); a session found expired or changed is lost for good.
    pub async fn renew(&self) -> Result<(), RenewError> {
        let etag = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match st.valid_until {
                Some(until) if Instant::now() < until => st.etag.clone(),
                // Too late: others may have ended it already. Never brought back.
                _ => {
                    drop(st);
                    return Err(self.lose());
                }
            }
        };
        let sent = Instant::now();
        let key = session_key(&self.me.session);
        let value = Bytes::from(serde_json::to_vec(&self.me).unwrap_or_default());
        let written = self
            .store
            .set(SetRequest {
                key: key.clone(),
                value,
                etag,
                metadata: ttl(SESSION_TTL),
                options: Options::default(),
            })
            .await;
        let mismatched = match written {
            Ok(()) => false,
            Err(StateError::EtagMismatch(_)) => true,
            Err(e) => return Err(RenewError::Store(e)),
        };
        let current = match self.store.get(key, Metadata::new()).await {
            Ok(Some(item)) if self.is_mine(&item.data) => item,
            Ok(_) => return Err(self.lose()),
            Err(e) => return Err(RenewError::Store(e)),
        };
        if mismatched {
            // An earlier renewal landed but its ETag was never read back: the session is still
            // this host's. Its ETag is taken up; validity is extended by the next renewal.
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.etag = current.etag;
            return Ok(());
        }
        let etag = current.etag;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.valid_until.is_some() {
            st.etag = etag;
            st.valid_until = Some(sent + SESSION_TTL - SESSION_MARGIN);
        }
        Ok(())
    }

    /// Whether a stored session or claim value names this host's session.
    fn is_mine(&self, data: &[u8]) -> bool {
        serde_json::from_slice::<Holder>(data).is_ok_and(|h| h.session == self.me.session)
    }

    fn lose(&self) -> RenewError {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.valid_until = None;
        RenewError::Lost(SessionLost(self.me.session.clone()))
    }

    /// Ends the session at a clean stop, so that this host's claims are free at once.
    pub async fn end(&self) {
        let etag = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.valid_until = None;
            st.etag.take()
        };
        let _ = self
            .store
            .delete(DeleteRequest {
                key: session_key(&self.me.session),
                etag,
                ..DeleteRequest::default()
            })
            .await;
    }

    /// Whether `session` (another host's) is alive in the store. One found gone is marked ended
    /// first (unless its host renewed it meanwhile), so that it stays gone.
    async fn alive(&self, session: &str) -> Result<bool, StateError> {
        let key = session_key(session);
        let live = |data: &[u8]| serde_json::from_slice::<Holder>(data).is_ok();
        if let Some(item) = self.store.get(key.clone(), Metadata::new()).await? {
            return Ok(live(&item.data));
        }
        let tombstone = SetRequest {
            key: key.clone(),
            value: Bytes::from_static(TOMBSTONE),
            etag: None,
            metadata: ttl(TOMBSTONE_TTL),
            options: first_write(),
        };
        match self.store.set(tombstone).await {
            Ok(()) => Ok(false),
            Err(StateError::EtagMismatch(_)) => Ok(self
                .store
                .get(key, Metadata::new())
                .await?
                .is_some_and(|i| live(&i.data))),
            Err(e) => Err(e),
        }
    }

    /// Takes the claim on actor `(actor_type, id)` in this host's namespace for this host: free,
    /// already ours, or left by a host whose session has ended. Another live host's claim is
    /// answered with that host.
    pub async fn claim(&self, actor_type: &str, id: &str) -> Result<Claimed, StateError> {
        let key = claim_key(&self.me.namespace, actor_type, id);
        for _ in 0..CLAIM_ATTEMPTS {
            let current = self.store.get(key.clone(), Metadata::new()).await?;
            let etag = match current {
                None => None,
                Some(item) => {
                    let holder: Option<Holder> = serde_json::from_slice(&item.data).ok();
                    match holder {
                        Some(h) if h.session == self.me.session => {
                            return Ok(Claimed::Mine(Claim {
                                key,
                                etag: item.etag,
                            }));
                        }
                        Some(h) if self.alive(&h.session).await? => return Ok(Claimed::Held(h)),
                        // Left by an ended session (or unreadable): taken over below, only if
                        // nobody else changes it first.
                        _ => Some(item.etag.unwrap_or_default()),
                    }
                }
            };
            let taken = self
                .store
                .set(SetRequest {
                    key: key.clone(),
                    value: Bytes::from(serde_json::to_vec(&self.me).unwrap_or_default()),
                    etag: etag.clone(),
                    metadata: ttl(CLAIM_TTL),
                    options: first_write(),
                })
                .await;
            match taken {
                Ok(()) => {
                    let etag = self.store.get(key.clone(), Metadata::new()).await?;
                    let etag = etag.and_then(|i| i.etag);
                    return Ok(Claimed::Mine(Claim { key, etag }));
                }
                Err(StateError::EtagMismatch(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Claimed::Contended)
    }

    /// Refreshes `claim`'s expiry; `false` if it is no longer this host's.
    pub async fn refresh(&self, claim: &mut Claim) -> Result<bool, StateError> {
        // Checked first: some stores accept an ETag for a missing key (and number ETags anew
        // for a key made again), so a write alone could bring back a claim given up meanwhile.
        match self.store.get(claim.key.clone(), Metadata::new()).await? {
            Some(item) if self.is_mine(&item.data) => {
                if item.etag != claim.etag {
                    // An earlier write of ours whose ETag was never read back.
                    claim.etag = item.etag;
                }
            }
            _ => return Ok(false),
        }
        let written = self
            .store
            .set(SetRequest {
                key: claim.key.clone(),
                value: Bytes::from(serde_json::to_vec(&self.me).unwrap_or_default()),
                etag: claim.etag.clone(),
                metadata: ttl(CLAIM_TTL),
                options: Options::default(),
            })
            .await;
        match written {
            Ok(()) => {}
            Err(StateError::EtagMismatch(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let now = self.store.get(claim.key.clone(), Metadata::new()).await?;
        claim.etag = now.and_then(|i| i.etag);
        Ok(true)
    }

    /// Gives `claim` up (at deactivation). Only this host's claim is removed: one taken over
    /// meanwhile stays.
    pub async fn release(&self, claim: Claim) -> Result<(), StateError> {
        let current = self.store.get(claim.key.clone(), Metadata::new()).await?;
        if !current.is_some_and(|i| self.is_mine(&i.data) && i.etag == claim.etag) {
            return Ok(());
        }
        match self
            .store
            .delete(DeleteRequest {
                key: claim.key,
                etag: claim.etag,
                ..DeleteRequest::default()
            })
            .await
        {
            Ok(()) | Err(StateError::EtagMismatch(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Why a renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The session is gone: every actor of this host must be dropped.
    #[error(transparent)]
    Lost(SessionLost),
    /// The store did not answer; the session may still be valid.
    #[error("renewing the actor host session: {0}")]
    Store(StateError),
}

/// A claim this host holds.
#[derive(Debug)]
pub struct Claim {
    key: String,
    etag: Option<String>,
}

/// The outcome of [`Session::claim`].
#[derive(Debug)]
pub enum Claimed {
    /// This host holds the actor now.
    Mine(Claim),
    /// Another live host holds it.
    Held(Holder),
    /// Other hosts kept changing the claim: try again later.
    Contended,
}
