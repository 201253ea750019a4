//! The configuration building block: the [`ConfigurationStore`] contract every configuration
//! component implements — read items by key, and watch keys for changes.
//!
//! An item is a value with a version and metadata, as daprd models it. A subscription is a
//! background watch that, on each change of a watched key, reads the key again and sends its
//! latest state down a bounded channel (so a slow app slows the watch) until the [`Watch`] is
//! dropped. Watches ride out the store going away: they reconnect with backoff and, for the keys
//! they name, send what changed while they were away.

mod open;
mod postgres;
mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::fault::Fault;
use crate::state::BoxFuture;

pub use open::{ConfigurationComponent, open};
pub use postgres::PostgresConfiguration;
pub use redis::RedisConfiguration;

/// Request metadata.
pub type Metadata = BTreeMap<String, String>;

/// One configuration item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    /// Its value.
    pub value: String,
    /// Its version, as the store keeps it (may be empty).
    pub version: String,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Items by key.
pub type Items = BTreeMap<String, Item>;

/// What to read or watch: these keys, or every key when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    /// The keys.
    pub keys: Vec<String>,
    /// Request metadata (store-specific).
    pub metadata: Metadata,
}

/// A configuration store failing, or refusing a request.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfigError {
    /// The request is not one this store can serve (a bad key, a missing setting).
    #[error("{0}")]
    BadRequest(String),
    /// The store failed or is unreachable.
    #[error(transparent)]
    Store(Fault),
    /// The store did not answer in time.
    #[error("the configuration store did not answer within {0:?}")]
    Timeout(Duration),
}

/// A running watch: dropping it ends it.
#[derive(Debug)]
pub struct Watch {
    stop: CancellationToken,
}

impl Watch {
    /// A watch ended by `stop`.
    pub(crate) fn new(stop: CancellationToken) -> Self {
        Self { stop }
    }

    /// A token cancelled when the watch ends, for work that should end with it.
    pub fn ended(&self) -> CancellationToken {
        self.stop.child_token()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where a watch sends what changed: the changed items (a deleted key as an empty item, as
/// daprd sends it).
pub type Updates = mpsc::Sender<Items>;

/// A configuration store.
///
/// Contract, checked for every component by the conformance suite
/// (`blocks/tests/configuration.rs`):
/// - `get` answers the items of the keys asked for that exist (every item when no key is
///   named); a key that does not exist is left out, not an error;
/// - `subscribe` starts a watch before it returns: after every later change of a watched key
///   (every key when none is named) the key's latest state is sent (changes close together may
///   arrive as one); a deleted key is sent as an empty item; nothing is sent for keys not
///   watched; for named keys, a state the watch already knew (when it started, or last sent)
///   is not sent again;
/// - a watch survives the store restarting: it reconnects and, for the keys it names, sends
///   the ones that changed while it was away;
/// - dropping the [`Watch`] ends the watch.
pub trait ConfigurationStore: Send + Sync {
    /// The items of `req.keys` (every item when empty).
    fn get(&self, req: Keys) -> BoxFuture<Result<Items, ConfigError>>;
    /// Watches `req.keys` (every key when empty), sending changes to `updates`.
    fn subscribe(&self, req: Keys, updates: Updates) -> BoxFuture<Result<Watch, ConfigError>>;
}

/// Sends `items` unless the watch is stopped first: whether the watch goes on.
async fn send(updates: &Updates, stop: &CancellationToken, items: Items) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        sent = updates.send(items) => sent.is_ok(),
    }
}

/// Sends the latest state of `key`, unless a watch of named keys already knew it (a change
/// seen both by catching up and by its notification, or a write of the same item). Whether the
/// watch goes on.
pub(crate) async fn send_change(
    updates: &Updates,
    stop: &CancellationToken,
    named: bool,
    seen: &mut Items,
    key: String,
    item: Item,
) -> bool {
    if named {
        if seen.get(&key) == Some(&item) {
            return true;
        }
        seen.insert(key.clone(), item.clone());
    }
    send(updates, stop, Items::from([(key, item)])).await
}

/// After reconnecting: sends the named keys whose state (`now`) differs from what the watch
/// knew. Whether the watch goes on.
pub(crate) async fn catch_up(
    updates: &Updates,
    stop: &CancellationToken,
    seen: &mut Items,
    now: Items,
    keys: &[String],
) -> bool {
    for (k, item) in changed_since(seen, now, keys) {
        if !send(updates, stop, Items::from([(k, item)])).await {
            return false;
        }
    }
    true
}

/// How long a watch waits before reconnecting: doubling from 100 ms to 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

/// The items of `now` that differ from `seen` (a key gone since is sent empty), for a watch
/// catching up after reconnecting; `seen` becomes `now`.
fn changed_since(seen: &mut Items, now: Items, keys: &[String]) -> Items {
    let mut out = Items::new();
    let gone = Item::default();
    for k in keys {
        // A key sent as deleted is as good as one never seen.
        match (seen.get(k).filter(|i| **i != gone), now.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (None, None) => {}
            (_, Some(b)) => {
                out.insert(k.clone(), b.clone());
            }
            (Some(_), None) => {
                out.insert(k.clone(), Item::default());
            }
        }
    }
    *seen = now;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: &str) -> Item {
        Item {
            value: v.into(),
            version: "1".into(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn catching_up_sends_only_what_changed() {
        let keys: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let mut seen: Items = [("a", "1"), ("b", "1"), ("c", "1")]
            .map(|(k, v)| (k.to_owned(), item(v)))
            .into();
        let now: Items = [("a", "1"), ("b", "2"), ("d", "new")]
            .map(|(k, v)| (k.to_owned(), item(v)))
            .into();
        let out = changed_since(&mut seen, now.clone(), &keys);
        let want: Items = [
            ("b".to_owned(), item("2")),
            ("c".to_owned(), Item::default()),
            ("d".to_owned(), item("new")),
        ]
        .into();
        assert_eq!(out, want);
        assert_eq!(seen, now);
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), Duration::from_secs(5));
    }
}
