//! `state.sqlite`: a durable store in one SQLite file; the default `statestore` when a sidecar
//! starts without resources.
//!
//! Compare-and-set is a single conditional statement, so it is atomic; transactions are SQLite
//! transactions (`BEGIN IMMEDIATE`). Expiry is stored in milliseconds; expired rows are invisible
//! at once and swept periodically. Calls run on tokio's blocking pool.
//!
//! Writes and key reads share one connection; queries read on a connection of their own, so in
//! WAL mode a long query never holds up a write. A query is evaluated row by row keeping only
//! its page, with string equality pushed into SQL, and stops when its caller gives up (a
//! progress handler watches a flag its future sets when dropped). The file uses incremental
//! auto-vacuum: each sweep hands the pages of deleted rows back to the file system.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, TransactionBehavior, params, params_from_iter,
};

use super::{
    BoxFuture, Concurrency, DeleteRequest, Features, Filter, Item, Metadata, Operation, Query,
    QueryPage, RowScan, SetRequest, StateError, StateStore, new_etag, rfc3339, ttl_of,
};
use crate::fault::Fault;

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Queries' own connection (read-only).
    reader: Arc<Mutex<Connection>>,
    table: Arc<str>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn db_error(e: rusqlite::Error) -> StateError {
    StateError::Store(Fault::caused_by(format!("sqlite: {e}"), e))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with a table `table` (letters, digits
    /// and `_` only).
    pub fn open(path: &Path, table: &str) -> Result<Self, StateError> {
        if table.is_empty()
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(StateError::BadRequest(format!(
                "tableName {table:?} must be letters, digits and '_'"
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StateError::Store(Fault::caused_by(format!("{}: {e}", dir.display()), e))
            })?;
        }
        let conn = Connection::open(path).map_err(db_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_error)?;
        let vacuum: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .map_err(db_error)?;
        if vacuum != INCREMENTAL {
            // A file made without it takes the mode only when rebuilt: once, at this start. A
            // rebuild needs room for a copy; without it the store works as before, only without
            // giving disk back.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(db_error)?;
            if let Err(e) = conn.execute_batch("VACUUM") {
                tracing::warn!(path = %path.display(), error = %e, "could not rebuild the state file for incremental vacuum");
            }
        }
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                key TEXT NOT NULL PRIMARY KEY,
                value BLOB NOT NULL,
                etag TEXT NOT NULL,
                expires_ms INTEGER NULL
            );"
        ))
        .map_err(db_error)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(db_error)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
            table: table.into(),
        })
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
            .map_err(|e| {
                StateError::Store(Fault::caused_by(format!("sqlite task failed: {e}"), e))
            })?
        })
    }

    /// Deletes expired rows, then gives the file's free pages back to the file system and
    /// truncates the write-ahead log; returns how many rows were deleted.
    pub fn sweep_expired(&self) -> BoxFuture<Result<usize, StateError>> {
        self.blocking(|c, t| {
            let n = c
                .execute(
                    &format!("DELETE FROM {t} WHERE expires_ms IS NOT NULL AND expires_ms <= ?1"),
                    params![now_ms()],
                )
                .map_err(db_error)?;
            let free: i64 = c
                .pragma_query_value(None, "freelist_count", |r| r.get(0))
                .map_err(db_error)?;
            if free > 0 {
                // Stepped to the end: each step may free only part of the list.
                let mut vacuum = c.prepare("PRAGMA incremental_vacuum").map_err(db_error)?;
                let mut steps = vacuum.query([]).map_err(db_error)?;
                while steps.next().map_err(db_error)?.is_some() {}
            }
            // Without waiting for a query that still reads the log (writes wait on this
            // connection meanwhile): the next sweep truncates it then.
            c.busy_timeout(Duration::ZERO).map_err(db_error)?;
            let checkpoint = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            c.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
            checkpoint.map_err(db_error)?;
            Ok(n)
        })
    }

    /// Reads the page of `query` among live rows under `prefix`, on the query connection.
    fn scan(&self, prefix: String, query: Query) -> BoxFuture<Result<QueryPage, StateError>> {
        let (reader, table) = (self.reader.clone(), self.table.clone());
        let abandoned = Arc::new(AtomicBool::new(false));
        let guard = Abandon(abandoned.clone());
        Box::pin(async move {
            let _abandon_when_dropped = guard;
            tokio::task::spawn_blocking(move || {
                let mut c = reader.lock().unwrap_or_else(|p| p.into_inner());
                // SQLite asks every few thousand steps whether to go on.
                let flag = abandoned.clone();
                let page = c
                    .progress_handler(4096, Some(move || flag.load(Ordering::Relaxed)))
                    .map_err(db_error)
                    .and_then(|()| scan_rows(&c, &table, &prefix, &query, &abandoned));
                // Removing a handler cannot fail.
                let _ = c.progress_handler(0, None::<fn() -> bool>);
                page
            })
            .await
            .map_err(|e| {
                StateError::Store(Fault::caused_by(format!("sqlite task failed: {e}"), e))
            })?
        })
    }
}

/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `IN` list pushed into SQL, and the most parameters pushed in all (SQLite caps
/// both expression depth and parameters).
const MAX_PUSHED_IN: usize = 256;
const MAX_PUSHED_ARGS: usize = 512;

/// `auto_vacuum = INCREMENTAL`.
const INCREMENTAL: i64 = 2;

/// Set when a query's future is dropped: its caller gave up, so its scan stops.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn scan_rows(
    c: &Connection,
    t: &str,
    prefix: &str,
    query: &Query,
    abandoned: &AtomicBool,
) -> Result<QueryPage, StateError> {
    let mut args: Vec<rusqlite::types::Value> = vec![
        prefix.to_owned().into(),
        i64::try_from(prefix.chars().count())
            .unwrap_or(i64::MAX)
            .into(),
        now_ms().into(),
    ];
    let mut narrowed = String::new();
    if let Some(f) = &query.filter {
        push_down(f, &mut narrowed, &mut args);
    }
    let mut stmt = c
        .prepare(&format!(
            "SELECT key, value, etag FROM {t}
             WHERE substr(key, 1, ?2) = ?1 AND (expires_ms IS NULL OR expires_ms > ?3){narrowed} ORDER BY key"
        ))
        .map_err(db_error)?;
    let mut rows = stmt.query(params_from_iter(args)).map_err(db_error)?;
    let mut scan = RowScan::new(query);
    while let Some(r) = rows.next().map_err(db_error)? {
        if abandoned.load(Ordering::Relaxed) {
            return Err(StateError::Store(Fault::new("the query was abandoned")));
        }
        let row = (
            r.get(0).map_err(db_error)?,
            Bytes::from(r.get::<_, Vec<u8>>(1).map_err(db_error)?),
            Some(r.get(2).map_err(db_error)?),
        );
        if !scan.offer(row)? {
            break;
        }
    }
    Ok(scan.finish())
}

/// Appends `AND <condition>` for each part of `f` SQLite can judge as well as the query does:
/// string equality and membership, alone or in an `AND`. What SQL lets through is checked again
/// row by row, so a condition here only has to be necessary, never sufficient. (One difference
/// remains: for a value with an object key given twice, SQLite reads the first occurrence and
/// the query the last.)
fn push_down(f: &Filter, sql: &mut String, args: &mut Vec<rusqlite::types::Value>) {
    let field = |path: &[String], args: &mut Vec<rusqlite::types::Value>| -> Option<String> {
        if path.iter().any(|seg| seg.contains('"'))
            || args.len() + MAX_PUSHED_IN + 2 > MAX_PUSHED_ARGS
        {
            return None;
        }
        let json_path = path
            .iter()
            .fold("$".to_owned(), |p, seg| format!("{p}.\"{seg}\""));
        args.push(json_path.into());
        let n = args.len();
        Some(format!(
            "CASE WHEN json_valid(CAST(value AS TEXT)) THEN json_extract(CAST(value AS TEXT), ?{n}) END"
        ))
    };
    match f {
        Filter::Eq(path, serde_json::Value::String(want)) => {
            if let Some(x) = field(path, args) {
                args.push(want.clone().into());
                sql.push_str(&format!(" AND {x} = ?{}", args.len()));
            }
        }
        // A long list is left to the row-by-row check: SQLite caps the parameters of a statement.
        Filter::In(path, wants)
            if (1..=MAX_PUSHED_IN).contains(&wants.len())
                && wants.iter().all(serde_json::Value::is_string) =>
        {
            if let Some(x) = field(path, args) {
                let mut slots = Vec::new();
                for w in wants.iter().filter_map(serde_json::Value::as_str) {
                    args.push(w.to_owned().into());
                    slots.push(format!("?{}", args.len()));
                }
                sql.push_str(&format!(" AND {x} IN ({})", slots.join(", ")));
            }
        }
        Filter::And(parts) => parts.iter().for_each(|p| push_down(p, sql, args)),
        _ => {}
    }
}

fn apply_set(c: &Connection, t: &str, req: &SetRequest, now: i64) -> Result<(), StateError> {
    let expires = ttl_of(&req.metadata)?
        .map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
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
                return Err(StateError::EtagMismatch(format!(
                    "etag {want:?} does not match"
                )));
            }
        }
        None => {
            c.execute(&format!("DELETE FROM {t} WHERE key = ?1"), params![req.key])
                .map_err(db_error)?;
        }
    }
    Ok(())
}

impl StateStore for SqliteStore {
    fn features(&self) -> Features {
        Features::ALL
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
        self.scan(prefix, query)
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        self.blocking(move |c, t| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error)?;
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
