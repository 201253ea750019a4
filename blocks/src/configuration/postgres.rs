//! `configuration.postgresql`: items are rows of a table the user creates (`key`, `value`,
//! `version`, `metadata` JSON); watches `LISTEN` on a channel that the table's trigger
//! `pg_notify`s with `{"action", "data": <the row>}`, as daprd's component documents it.
//!
//! Several rows of one key are allowed; the one with the highest numeric version wins, as in
//! daprd. A notification only names the key: the watch reads it again, so it never sends an
//! older state after a newer one, and a deleted row is sent as an empty item (daprd sends the
//! old row), as a deleted Redis key is. Each watch holds a connection of its own for `LISTEN`;
//! at most [`MAX_WATCHES`] run per store, so subscriptions cannot use up the server's
//! connections.

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use serde_json::Value;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_postgres::{AsyncMessage, NoTls, Notification};
use tokio_util::sync::CancellationToken;

use super::{
    ConfigError, ConfigurationStore, Item, Items, Keys, Updates, Watch, backoff, catch_up,
    send_change,
};
use crate::deadline;
use crate::fault::Fault;
use crate::state::BoxFuture;

/// The PostgreSQL configuration store.
#[derive(Clone)]
pub struct PostgresConfiguration {
    pool: Pool,
    cfg: tokio_postgres::Config,
    /// The table, quoted.
    table: String,
    /// The component's `notifyChannel`, if set.
    channel: Option<String>,
    timeout: Duration,
    /// One permit per running watch.
    watches: Arc<Semaphore>,
}

/// Watches (each with a connection of its own) that may run at once per store.
pub(crate) const MAX_WATCHES: usize = 16;

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> ConfigError {
    ConfigError::Store(Fault::caused_by(format!("postgresql: {e}"), e))
}

/// `name` (optionally `schema.name`) of letters, digits and `_`, quoted.
fn quoted_table(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('.').collect();
    let ok = parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !ok {
        return Err(format!(
            "{name:?} must be a table name (or schema.table) of letters, digits and '_'"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// A notify channel as daprd accepts it: lower-case letters, digits, `.`, `/`, `_`; at most 63
/// bytes.
pub(crate) fn check_channel(channel: &str) -> Result<(), String> {
    let ok = !channel.is_empty()
        && channel.len() <= 63
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"./_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "notifyChannel {channel:?} must be 1 to 63 lower-case letters, digits, '.', '/' or '_'"
        ))
    }
}

/// Keys as daprd accepts them: letters, digits, `.`, `/`, `_`.
fn check_keys(keys: &[String]) -> Result<(), ConfigError> {
    match keys.iter().find(|k| {
        !k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./_".contains(&b))
    }) {
        Some(k) => Err(ConfigError::BadRequest(format!("invalid key : {k:?}"))),
        None => Ok(()),
    }
}

/// A JSON object's values as strings (strings as they are, anything else as its JSON text).
fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let s = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), s)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn numeric(version: &str) -> i64 {
    version.parse().unwrap_or(-1)
}

impl PostgresConfiguration {
    /// Connects with a libpq-style connection string; the table must exist.
    pub async fn connect(
        conn: &str,
        table: &str,
        channel: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let quoted = quoted_table(table).map_err(ConfigError::BadRequest)?;
        if let Some(c) = &channel {
            check_channel(c).map_err(ConfigError::BadRequest)?;
        }
        let mut cfg: tokio_postgres::Config = conn
            .parse()
            .map_err(|e| ConfigError::BadRequest(format!("connectionString: {e}")))?;
        cfg.connect_timeout(timeout);
        let pool = crate::state::postgres_pool(cfg.clone(), 8, None).map_err(failed)?;
        let store = Self {
            pool,
            cfg,
            table: quoted,
            channel,
            timeout,
            watches: Arc::new(Semaphore::new(MAX_WATCHES)),
        };
        let exists = async {
            let client = store.pool.get().await.map_err(failed)?;
            let q = format!("SELECT 1 FROM {} LIMIT 0", store.table);
            client.query(&q, &[]).await.map_err(|e| {
                ConfigError::BadRequest(format!("the table {table:?} cannot be read: {e}"))
            })
        };
        deadline::bounded(timeout, exists, ConfigError::Timeout).await?;
        Ok(store)
    }

    async fn read(&self, keys: &[String]) -> Result<Items, ConfigError> {
        check_keys(keys)?;
        self.read_unchecked(keys).await
    }

    /// [`Self::read`] of keys the server named (bound as parameters, whatever they hold).
    async fn read_unchecked(&self, keys: &[String]) -> Result<Items, ConfigError> {
        let client = self.pool.get().await.map_err(failed)?;
        let columns = "key::text, value::text, version::text, metadata::text";
        let rows = if keys.is_empty() {
            let q = format!("SELECT {columns} FROM {}", self.table);
            client.query(&q, &[]).await
        } else {
            let q = format!("SELECT {columns} FROM {} WHERE key = ANY($1)", self.table);
            client.query(&q, &[&keys]).await
        }
        .map_err(failed)?;
        let mut items = Items::new();
        for row in rows {
            let key: Option<String> = row.get(0);
            let Some(key) = key else { continue };
            let metadata: Option<String> = row.get(3);
            let metadata = metadata.and_then(|m| serde_json::from_str::<Value>(&m).ok());
            let item = Item {
                value: row.get::<_, Option<String>>(1).unwrap_or_default(),
                version: row.get::<_, Option<String>>(2).unwrap_or_default(),
                metadata: strings(metadata.as_ref()),
            };
            let newer = items
                .get(&key)
                .is_none_or(|had: &Item| numeric(&item.version) > numeric(&had.version));
            if newer {
                items.insert(key, item);
            }
        }
        Ok(items)
    }

    /// A connection listening on `channel` (its client: dropping it closes the connection), and
    /// the notifications it receives (at most 64 waiting; the connection is not read further
    /// until they are taken).
    async fn listen(&self, channel: &str) -> Result<Listening, ConfigError> {
        let (client, mut connection) = self.cfg.connect(NoTls).await.map_err(failed)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let AsyncMessage::Notification(n) = m
                    && tx.send(n).await.is_err()
                {
                    return;
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .map_err(failed)?;
        Ok((client, rx))
    }

    /// The watch: each notification for a watched key sent on; on a lost connection, listen
    /// again (with backoff) and send what changed meanwhile.
    async fn watch(
        self,
        req: Keys,
        channel: String,
        mut listening: Listening,
        mut seen: Items,
        updates: Updates,
        stop: CancellationToken,
    ) {
        loop {
            loop {
                let note = tokio::select! {
                    () = stop.cancelled() => return,
                    note = listening.1.recv() => note,
                };
                let Some(note) = note else { break };
                // The notification names the key; its state is read again, so that a watch
                // behind its notifications sends the latest state, never an older one.
                let Some(key) = key_of(note.payload()) else {
                    tracing::warn!(
                        channel,
                        "a notification that is not a row change was ignored"
                    );
                    continue;
                };
                if !req.keys.is_empty() && !req.keys.contains(&key) {
                    continue;
                }
                let one = [key.clone()];
                let reread = deadline::bounded(
                    self.timeout,
                    self.read_unchecked(&one),
                    ConfigError::Timeout,
                );
                let reread = tokio::select! {
                    () = stop.cancelled() => return,
                    r = reread => r,
                };
                let item = match reread {
                    Ok(mut items) => items.remove(&key).unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(key, error = %e, "reading a changed configuration key failed");
                        continue;
                    }
                };
                let named = !req.keys.is_empty();
                if !send_change(&updates, &stop, named, &mut seen, key, item).await {
                    return;
                }
            }
            tracing::warn!("the configuration watch lost its PostgreSQL connection; reconnecting");
            listening = match self
                .relisten(&req, &channel, &mut seen, &updates, &stop)
                .await
            {
                Some(l) => l,
                None => return,
            };
        }
    }

    /// Listens again until it works (or the watch stops), then sends the watched keys that
    /// changed while it was away.
    async fn relisten(
        &self,
        req: &Keys,
        channel: &str,
        seen: &mut Items,
        updates: &Updates,
        stop: &CancellationToken,
    ) -> Option<Listening> {
        let mut attempt = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(backoff(attempt)) => {}
            }
            attempt += 1;
            let Ok(Ok(listening)) = tokio::time::timeout(self.timeout, self.listen(channel)).await
            else {
                continue;
            };
            if req.keys.is_empty() {
                return Some(listening);
            }
            let Ok(now) = self.get(req.clone()).await else {
                continue;
            };
            if !catch_up(updates, stop, seen, now, &req.keys).await {
                return None;
            }
            tracing::info!("the configuration watch is listening again");
            return Some(listening);
        }
    }
}

/// Runs `work` holding `permit`.
async fn held(permit: OwnedSemaphorePermit, work: impl Future<Output = ()>) {
    work.await;
    drop(permit);
}

/// A listening connection's client and its notifications.
type Listening = (tokio_postgres::Client, mpsc::Receiver<Notification>);

/// The key a trigger's notification names: `{"action", "data": {"key", …}}`, field names in
/// any case.
fn key_of(payload: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(payload.as_bytes()).ok()?;
    let Value::Object(row) = v.get("data")? else {
        return None;
    };
    let key = row.iter().find(|(k, _)| k.eq_ignore_ascii_case("key"))?.1;
    key.as_str().map(str::to_owned)
}

impl ConfigurationStore for PostgresConfiguration {
    fn get(&self, req: Keys) -> BoxFuture<Result<Items, ConfigError>> {
        let this = self.clone();
        Box::pin(async move {
            let timeout = this.timeout;
            deadline::bounded(timeout, this.read(&req.keys), ConfigError::Timeout).await
        })
    }

    fn subscribe(&self, req: Keys, updates: Updates) -> BoxFuture<Result<Watch, ConfigError>> {
        let this = self.clone();
        Box::pin(async move {
            check_keys(&req.keys)?;
            let asked = (req.metadata.iter())
                .find(|(k, _)| k.eq_ignore_ascii_case("pgNotifyChannel"))
                .map(|(_, v)| v.clone());
            let Some(channel) = this.channel.clone().or(asked) else {
                return Err(ConfigError::BadRequest(
                    "notifyChannel must be set in the component's metadata or the request's \
                     (pgNotifyChannel)"
                        .into(),
                ));
            };
            check_channel(&channel).map_err(ConfigError::BadRequest)?;
            let permit = this.watches.clone().try_acquire_owned().map_err(|_| {
                ConfigError::BadRequest(format!(
                    "{MAX_WATCHES} subscriptions are open on this store already, each holding a \
                     connection; unsubscribe some"
                ))
            })?;
            let listening =
                deadline::bounded(this.timeout, this.listen(&channel), ConfigError::Timeout);
            let listening = listening.await?;
            let seen = if req.keys.is_empty() {
                Items::new()
            } else {
                this.get(req.clone()).await?
            };
            let stop = CancellationToken::new();
            let watch = this.watch(req, channel, listening, seen, updates, stop.clone());
            tokio::spawn(held(permit, watch));
            Ok(Watch::new(stop))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_their_key() {
        let upsert = r#"{"table":"cfg","action":"UPDATE","data":{"KEY":"a","value":"on"}}"#;
        assert_eq!(key_of(upsert).as_deref(), Some("a"));
        let delete = r#"{"action":"DELETE","data":{"key":"b"}}"#;
        assert_eq!(key_of(delete).as_deref(), Some("b"));
        for bad in [
            "not json",
            r#"{"data":"x"}"#,
            r#"{"data":{"value":"v"}}"#,
            r#"{"data":{"key":1}}"#,
        ] {
            assert!(key_of(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked_and_quoted() {
        assert_eq!(quoted_table("cfg").unwrap(), "\"cfg\"");
        assert_eq!(quoted_table("app.cfg").unwrap(), "\"app\".\"cfg\"");
        for bad in ["", "a;b", "a.b.c", "c\"fg", "a b"] {
            assert!(quoted_table(bad).is_err(), "{bad:?}");
        }
        assert!(check_channel("config").is_ok());
        assert!(check_channel("Config").is_err());
        assert!(check_channel("a\"; DROP").is_err());
        assert!(check_keys(&["a/b.c_d".into()]).is_ok());
        assert!(check_keys(&["a'b".into()]).is_err());
    }
}
