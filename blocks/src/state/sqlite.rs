//! `state.sqlite`: a durable store in one SQLite file; the default `statestore` when a sidecar
//! starts without resources.
//!
//! Compare-and-set is a single conditional statement, so it is atomic; transactions are SQLite
//! transactions (`BEGIN IMMEDIATE`). Expiry is stored in milliseconds; expired rows are invisible
//! at once and swept periodically. Calls run on tokio's blocking pool over one connection.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    BoxFuture, Concurrency, DeleteRequest, Features, Item, Metadata, Operation, Query, QueryPage, SetRequest,
    StateError, StateStore, new_etag, rfc3339, run_query, ttl_of,
};

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    table: Arc<str>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn db_error(e: rusqlite::Error) -> StateError {
    StateError::Store(format!("sqlite: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with a table `table` (letters, digits
    /// and `_` only).
    pub fn open(path: &Path, table: &str) -> Result<Self, StateError> {
        if table.is_empty() || !table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(StateError::BadRequest(format!("tableName {table:?} must be letters, digits and '_'")));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Store(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(db_error)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_error)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_error)?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                key TEXT NOT NULL PRIMARY KEY,
                value BLOB NOT NULL,
                etag TEXT NOT NULL,
                expires_ms INTEGER NULL
            );"
        ))
        .map_err(db_error)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), table: table.into() })
    }

    /// Runs `f` on the connection, off the async runtime.
    fn blocking<T, F>(&self, f: F) -> BoxFuture<Result<T, StateError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, StateError> + Send + 'static,
    {
        let (conn, table) = (self.conn.clone(), self.table.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut c, &table)
            })
            .await
            .map_err(|e| StateError::Store(format!("sqlite task failed: {e}")))?
        })
    }

    /// Deletes expired rows; returns how many.
    pub fn sweep_expired(&self) -> BoxFuture<Result<usize, StateError>> {
        self.blocking(|c, t| {
            c.execute(&format!("DELETE FROM {t} WHERE expires_ms IS NOT NULL AND expires_ms <= ?1"), params![now_ms()])
                .map_err(db_error)
        })
    }
}

fn apply_set(c: &Connection, t: &str, req: &SetRequest, now: i64) -> Result<(), StateError> {
    let expires = ttl_of(&req.metadata)?.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    let etag = new_etag();
    let value: &[u8] = &req.value;
    let changed = match (&req.etag, req.options.concurrency) {
        (Some(want), _) => c.execute(
            &format!(
                "UPDATE {t} SET value = ?1, etag = ?2, expires_ms = ?3
                 WHERE key = ?4 AND etag = ?5 AND (expires_ms IS NULL OR expires_ms > ?6)"
            ),
            params![value, etag, expires, req.key, want, now],
        ),
        // Insert, or replace only a row that has expired.
        (None, Concurrency::FirstWrite) => c.execute(
            &format!(
                "INSERT INTO {t} (key, value, etag, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag,
                   expires_ms = excluded.expires_ms
                 WHERE {t}.expires_ms IS NOT NULL AND {t}.expires_ms <= ?5"
            ),
            params![req.key, value, etag, expires, now],
        ),
        (None, Concurrency::LastWrite) => c.execute(
            &format!(
                "INSERT INTO {t} (key, value, etag, expires_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag,
                   expires_ms = excluded.expires_ms"
            ),
            params![req.key, value, etag, expires],
        ),
    }
    .map_err(db_error)?;
    if changed == 0 {
        return Err(StateError::EtagMismatch(match &req.etag {
            Some(want) => format!("etag {want:?} does not match"),
            None => "first-write: the key already exists".into(),
        }));
    }
    Ok(())
}

fn apply_delete(c: &Connection, t: &str, req: &DeleteRequest, now: i64) -> Result<(), StateError> {
    match &req.etag {
        Some(want) => {
            let n = c
                .execute(
                    &format!(
                        "DELETE FROM {t} WHERE key = ?1 AND etag = ?2 AND (expires_ms IS NULL OR expires_ms > ?3)"
                    ),
                    params![req.key, want, now],
                )
                .map_err(db_error)?;
            if n == 0 {
                return Err(StateError::EtagMismatch(format!("etag {want:?} does not match")));
            }
        }
        None => {
            c.execute(&format!("DELETE FROM {t} WHERE key = ?1"), params![req.key]).map_err(db_error)?;
        }
    }
    Ok(())
}

impl StateStore for SqliteStore {
    fn features(&self) -> Features {
        Features { etag: true, transactional: true, ttl: true, query: true }
    }

    fn get(&self, key: String, _metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>> {
        self.blocking(move |c, t| {
            let row = c
                .query_row(
                    &format!("SELECT value, etag, expires_ms FROM {t} WHERE key = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)"),
                    params![key, now_ms()],
                    |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?)),
                )
                .optional()
                .map_err(db_error)?;
            Ok(row.map(|(data, etag, expires)| {
                let mut metadata = Metadata::new();
                if let Some(ms) = expires.and_then(|ms| u64::try_from(ms).ok()) {
                    metadata.insert("ttlExpireTime".into(), rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)));
                }
                Item { data: Bytes::from(data), etag: Some(etag), metadata }
            }))
        })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>> {
        self.blocking(move |c, t| apply_set(c, t, &req, now_ms()))
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>> {
        self.blocking(move |c, t| apply_delete(c, t, &req, now_ms()))
    }

    fn query(&self, prefix: String, query: Query) -> BoxFuture<Result<QueryPage, StateError>> {
        self.blocking(move |c, t| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT key, value, etag FROM {t}
                     WHERE substr(key, 1, ?2) = ?1 AND (expires_ms IS NULL OR expires_ms > ?3) ORDER BY key"
                ))
                .map_err(db_error)?;
            let len = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![prefix, len, now_ms()], |r| {
                    Ok((r.get::<_, String>(0)?, Bytes::from(r.get::<_, Vec<u8>>(1)?), Some(r.get::<_, String>(2)?)))
                })
                .map_err(db_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_error)?;
            Ok(run_query(rows, &query))
        })
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        self.blocking(move |c, t| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
            let now = now_ms();
            for op in &ops {
                match op {
                    Operation::Upsert(req) => apply_set(&tx, t, req, now)?,
                    Operation::Delete(req) => apply_delete(&tx, t, req, now)?,
                }
            }
            // Dropping the transaction on an error above rolls it back.
            tx.commit().map_err(db_error)
        })
    }
}
