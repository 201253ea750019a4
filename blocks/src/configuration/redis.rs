//! `configuration.redis`: items are Redis strings in daprd's `value||version` form; watches are
//! keyspace notifications (`__keyspace@<db>__:<key>`), after which the key is read again.
//!
//! Keyspace notifications are off on a default server. Like daprd's component this one turns on
//! the classes it needs (`K`, `g`, `$`, `x`, `e`) when a watch starts, but it adds them to what
//! the server already has instead of replacing it; a server that refuses `CONFIG` is warned
//! about, since watches then hear nothing.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::{
    ConfigError, ConfigurationStore, Item, Items, Keys, Updates, Watch, backoff, catch_up,
    send_change,
};
use crate::deadline;
use crate::fault::Fault;
use crate::state::{BoxFuture, RedisSettings, client_for, manager_for};

/// The notification classes watches need: keyspace events for generic commands (DEL, EXPIRE,
/// RENAME), strings, expiry and eviction.
const CLASSES: &str = "Kg$xe";

/// The largest number of keys a read of every item goes through.
const SCAN_LIMIT: usize = 100_000;

/// The Redis configuration store.
#[derive(Clone)]
pub struct RedisConfiguration {
    conn: ConnectionManager,
    client: redis::Client,
    db: i64,
    timeout: Duration,
}

fn failed(e: redis::RedisError) -> ConfigError {
    ConfigError::Store(Fault::caused_by(format!("redis: {e}"), e))
}

/// daprd's `value||version`: the value before the first `||`, the version after it (up to a
/// second one).
fn parse(raw: &str) -> Item {
    let mut parts = raw.split("||");
    Item {
        value: parts.next().unwrap_or_default().to_owned(),
        version: parts.next().unwrap_or_default().to_owned(),
        metadata: Default::default(),
    }
}

impl RedisConfiguration {
    /// Connects; the server must answer now.
    pub async fn connect(s: &RedisSettings) -> Result<Self, ConfigError> {
        let conn = manager_for(s).await.map_err(ConfigError::Store)?;
        let client = client_for(s).map_err(failed)?;
        Ok(Self {
            conn,
            client,
            db: s.db,
            timeout: s.timeout,
        })
    }

    async fn read(&self, keys: Keys) -> Result<Items, ConfigError> {
        let mut conn = self.conn.clone();
        let keys = if keys.keys.is_empty() {
            scan_all(&mut conn).await?
        } else {
            keys.keys
        };
        let mut items = Items::new();
        for key in keys {
            // Keys of other types (state hashes, streams) are not configuration: left out.
            match conn.get::<_, Option<String>>(&key).await {
                Ok(Some(raw)) => {
                    let item = parse(&raw);
                    // daprd leaves out items whose value is empty.
                    if !item.value.is_empty() {
                        items.insert(key, item);
                    }
                }
                Ok(None) => {}
                Err(e) if e.code() == Some("WRONGTYPE") => {}
                Err(e) => return Err(failed(e)),
            }
        }
        Ok(items)
    }

    /// Turns on the notification classes watches need, keeping the server's others.
    async fn enable_notifications(&self) {
        let mut conn = self.conn.clone();
        let current: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut conn)
            .await;
        let result = match current {
            Ok(pair) => {
                let have = pair.get(1).cloned().unwrap_or_default();
                let missing: String = CLASSES.chars().filter(|c| !have.contains(*c)).collect();
                if missing.is_empty() {
                    return;
                }
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("notify-keyspace-events")
                    .arg(format!("{have}{missing}"))
                    .query_async::<()>(&mut conn)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(
                error = %e,
                "could not turn on Redis keyspace notifications; configuration watches hear \
                 nothing until the server's notify-keyspace-events includes {CLASSES}"
            );
        }
    }
}

/// Every key of the database, by SCAN (KEYS would block the server); at most [`SCAN_LIMIT`].
async fn scan_all(conn: &mut ConnectionManager) -> Result<Vec<String>, ConfigError> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(failed)?;
        keys.extend(batch);
        if keys.len() > SCAN_LIMIT {
            return Err(ConfigError::BadRequest(format!(
                "the database holds more than {SCAN_LIMIT} keys; name the keys to read"
            )));
        }
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

impl ConfigurationStore for RedisConfiguration {
    fn get(&self, req: Keys) -> BoxFuture<Result<Items, ConfigError>> {
        let this = self.clone();
        Box::pin(async move {
            let timeout = this.timeout;
            deadline::bounded(timeout, this.read(req), ConfigError::Timeout).await
        })
    }

    fn subscribe(&self, req: Keys, updates: Updates) -> BoxFuture<Result<Watch, ConfigError>> {
        let this = self.clone();
        Box::pin(async move {
            this.enable_notifications().await;
            let stop = CancellationToken::new();
            // Subscribed before returning, so no change after the answer is missed.
            let first = deadline::bounded(this.timeout, this.listen(&req.keys), |t| {
                failed(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {t:?}"),
                )))
            });
            let pubsub = first.await?;
            let seen = if req.keys.is_empty() {
                Items::new()
            } else {
                this.read(req.clone()).await?
            };
            tokio::spawn(this.watch(req, pubsub, seen, updates, stop.clone()));
            Ok(Watch::new(stop))
        })
    }
}

impl RedisConfiguration {
    /// A pub/sub connection listening to the keys' notifications (every key's when none).
    async fn listen(&self, keys: &[String]) -> Result<redis::aio::PubSub, ConfigError> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(failed)?;
        let channel = |k: &str| format!("__keyspace@{}__:{k}", self.db);
        if keys.is_empty() {
            pubsub.psubscribe(channel("*")).await.map_err(failed)?;
        } else {
            for k in keys {
                pubsub.subscribe(channel(k)).await.map_err(failed)?;
            }
        }
        Ok(pubsub)
    }

    /// The watch: each notification's key read again and sent; on a lost connection, listen
    /// again (with backoff) and send what changed meanwhile.
    async fn watch(
        self,
        req: Keys,
        mut pubsub: redis::aio::PubSub,
        mut seen: Items,
        updates: Updates,
        stop: CancellationToken,
    ) {
        let prefix = format!("__keyspace@{}__:", self.db);
        loop {
            let mut messages = pubsub.into_on_message();
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => return,
                    msg = messages.next() => msg,
                };
                let Some(msg) = msg else { break };
                let Some(key) = msg.get_channel_name().strip_prefix(&prefix) else {
                    continue;
                };
                let one = Keys {
                    keys: vec![key.to_owned()],
                    metadata: req.metadata.clone(),
                };
                let item = match self.get(one).await {
                    Ok(mut items) => items.remove(key).unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(key, error = %e, "reading a changed configuration key failed");
                        continue;
                    }
                };
                let named = !req.keys.is_empty();
                if !send_change(&updates, &stop, named, &mut seen, key.to_owned(), item).await {
                    return;
                }
            }
            tracing::warn!("the configuration watch lost its Redis connection; reconnecting");
            pubsub = match self.relisten(&req, &mut seen, &updates, &stop).await {
                Some(p) => p,
                None => return,
            };
        }
    }

    /// Listens again until it works (or the watch stops), then sends the watched keys that
    /// changed while it was away.
    async fn relisten(
        &self,
        req: &Keys,
        seen: &mut Items,
        updates: &Updates,
        stop: &CancellationToken,
    ) -> Option<redis::aio::PubSub> {
        let mut attempt = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(backoff(attempt)) => {}
            }
            attempt += 1;
            let Ok(Ok(pubsub)) = tokio::time::timeout(self.timeout, self.listen(&req.keys)).await
            else {
                continue;
            };
            // A restarted server has forgotten the notification settings.
            self.enable_notifications().await;
            if req.keys.is_empty() {
                return Some(pubsub);
            }
            let Ok(now) = self.get(req.clone()).await else {
                continue;
            };
            if !catch_up(updates, stop, seen, now, &req.keys).await {
                return None;
            }
            tracing::info!("the configuration watch is listening again");
            return Some(pubsub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_versions_in_daprds_form() {
        let cases = [
            ("on", "on", ""),
            ("on||3", "on", "3"),
            ("a||3||extra", "a", "3"),
            ("||7", "", "7"),
        ];
        for (raw, value, version) in cases {
            let item = parse(raw);
            assert_eq!(
                (item.value.as_str(), item.version.as_str()),
                (value, version)
            );
        }
    }
}
