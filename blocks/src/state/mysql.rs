//! `state.mysql`: state in a MariaDB or MySQL table, in daprd's layout, so a table daprd wrote
//! can be read here and the other way round: `id`, `value` (JSON: the value itself when it is
//! JSON, else its base64 as a JSON string with `isbinary` set), `eTag` (a UUID), `expiredate`.
//!
//! The database (`schemaName`, default `dapr_state_store`) and table (`tableName`, default
//! `state`) are created on first use while holding a named server lock, so sidecars starting
//! together do not race. Keys compare byte for byte (the `id` column is binary-collated) where
//! daprd's table follows the server's case-insensitive default. Compare-and-set and first-write
//! are single conditional statements; transactions are SQL transactions; expired rows are
//! invisible at once and swept periodically. Queries read the prefix's rows in key order and
//! match them here, as the other SQL stores do. Every operation is bounded by the timeout.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Row, TxOpts, Value};

use super::{
    BoxFuture, Concurrency, DeleteRequest, Features, Item, Metadata, Operation, Query, QueryPage,
    RowScan, SetRequest, StateError, StateStore, new_etag, rfc3339, ttl_of,
};
use crate::deadline;
use crate::mysql::{Dsn, fault, is_refusal, parse_dsn, pool};

/// Connections kept at most.
const MAX_CONNECTIONS: usize = 16;

/// The MariaDB/MySQL store.
#[derive(Clone)]
pub struct MySqlStore {
    pool: Pool,
    /// `` `schema`.`table` ``.
    table: Arc<str>,
    timeout: Duration,
}

fn db_error(e: mysql_async::Error) -> StateError {
    if is_refusal(&e) {
        return StateError::BadRequest(format!("mysql: {e}"));
    }
    StateError::Store(fault("mysql", e))
}

/// A schema or table name: letters, digits and `_`, at most 64 bytes.
fn identifier(what: &str, name: &str) -> Result<String, StateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(StateError::BadRequest(format!(
            "{what} {name:?} must be 1 to 64 letters, digits and '_'"
        )));
    }
    Ok(format!("`{name}`"))
}

impl MySqlStore {
    /// Connects with daprd's connection string and creates the database and table if needed.
    pub async fn connect(
        conn: &str,
        schema: &str,
        table: &str,
        timeout: Duration,
    ) -> Result<Self, StateError> {
        let dsn: Dsn = parse_dsn(conn)
            .map_err(|e| StateError::BadRequest(format!("connectionString: {e}")))?;
        let (schema_q, table_q) = (
            identifier("schemaName", schema)?,
            identifier("tableName", table)?,
        );
        let store = Self {
            pool: pool(&dsn, None, MAX_CONNECTIONS),
            table: format!("{schema_q}.{table_q}").into(),
            timeout: dsn.connect_timeout.map_or(timeout, |t| t.max(timeout)),
        };
        // Lock names are at most 64 characters.
        let lock = format!(
            "outrider-state-{:016x}",
            crate::pubsub::fnv1a(&format!("{schema}.{table}"))
        );
        let create = store.create(schema_q, lock);
        deadline::bounded(store.timeout, create, StateError::Timeout).await?;
        Ok(store)
    }

    async fn create(&self, schema: String, lock: String) -> Result<(), StateError> {
        let mut c = self.pool.get_conn().await.map_err(db_error)?;
        // Serialise creators across sidecars; the lock goes with the session if it ends first.
        let wait = self.timeout.as_secs().max(1);
        let got: Option<i64> = c
            .exec_first("SELECT GET_LOCK(?, ?)", (&lock, wait))
            .await
            .map_err(db_error)?;
        if got != Some(1) {
            return Err(StateError::Timeout(self.timeout));
        }
        let t = &self.table;
        let created = async {
            c.query_drop(format!("CREATE DATABASE IF NOT EXISTS {schema}")).await?;
            c.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
                    value JSON NOT NULL,
                    isbinary BOOLEAN NOT NULL,
                    insertDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    updateDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
                    eTag VARCHAR(36) NOT NULL,
                    expiredate TIMESTAMP(6) NULL,
                    INDEX expiredate_idx (expiredate)
                )"
            ))
            .await
        }
        .await;
        let released = c.exec_drop("SELECT RELEASE_LOCK(?)", (&lock,)).await;
        created.map_err(db_error)?;
        released.map_err(db_error)
    }

    /// Runs `op` on a pooled connection within the store's timeout (waiting for one counts).
    fn with_conn<T, F, Fut>(&self, op: F) -> BoxFuture<Result<T, StateError>>
    where
        T: 'static,
        F: FnOnce(Self, Conn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StateError>> + Send,
    {
        let this = self.clone();
        Box::pin(deadline::bounded(
            this.timeout,
            async move {
                let conn = this.pool.get_conn().await.map_err(db_error)?;
                op(this, conn).await
            },
            StateError::Timeout,
        ))
    }

    /// Deletes expired rows; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64, StateError> {
        let sweep = async {
            let mut c = self.pool.get_conn().await.map_err(db_error)?;
            let sql = format!(
                "DELETE FROM {} WHERE expiredate IS NOT NULL AND expiredate <= CURRENT_TIMESTAMP(6)",
                self.table
            );
            c.query_drop(sql).await.map_err(db_error)?;
            Ok(c.affected_rows())
        };
        deadline::bounded(self.timeout, sweep, StateError::Timeout).await
    }
}

/// Rows that have not expired.
const LIVE: &str = "(expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP(6))";

/// A value as daprd stores it: its JSON text, or its base64 as a JSON string (binary).
fn encode(value: &[u8]) -> (String, bool) {
    match std::str::from_utf8(value) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            (text.to_owned(), false)
        }
        _ => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(value);
            (serde_json::Value::String(b64).to_string(), true)
        }
    }
}

/// A stored value back as bytes.
fn decode(text: Vec<u8>, binary: bool) -> Result<Bytes, StateError> {
    if !binary {
        return Ok(Bytes::from(text));
    }
    let bad = |why: String| StateError::Store(crate::fault::Fault::new(why));
    let s: String = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("mysql: a binary value is not a JSON string: {e}")))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(Bytes::from)
        .map_err(|e| bad(format!("mysql: a binary value is not base64: {e}")))
}

/// The expiry of a write, as SQL taking the TTL's microseconds (bound), or NULL.
fn expiry(md: &Metadata) -> Result<(&'static str, Option<i64>), StateError> {
    Ok(match ttl_of(md)? {
        Some(d) => (
            "TIMESTAMPADD(MICROSECOND, ?, CURRENT_TIMESTAMP(6))",
            Some(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        ),
        None => ("NULL", None),
    })
}

async fn apply_set(c: &mut impl Queryable, t: &str, r: &SetRequest) -> Result<(), StateError> {
    let (value, binary) = encode(&r.value);
    let (expires, ttl) = expiry(&r.metadata)?;
    let etag = new_etag();
    let mut params: Vec<Value> = vec![value.into(), etag.into(), binary.into()];
    params.extend(ttl.map(Value::from));
    let sql = match (&r.etag, r.options.concurrency) {
        (Some(want), _) => {
            params.extend([Value::from(r.key.as_str()), Value::from(want.as_str())]);
            format!(
                "UPDATE {t} SET value = ?, eTag = ?, isbinary = ?, expiredate = {expires}
                 WHERE id = ? AND eTag = ? AND {LIVE}"
            )
        }
        // Inserted, or an expired row replaced; a live row stays and nothing changes. The
        // expiry is assigned last: the conditions before it read the old one.
        (None, Concurrency::FirstWrite) => {
            params.insert(0, Value::from(r.key.as_str()));
            let dead = "(expiredate IS NOT NULL AND expiredate <= CURRENT_TIMESTAMP(6))";
            format!(
                "INSERT INTO {t} (id, value, eTag, isbinary, expiredate) VALUES (?, ?, ?, ?, {expires})
                 ON DUPLICATE KEY UPDATE value = IF({dead}, VALUES(value), value),
                   eTag = IF({dead}, VALUES(eTag), eTag), isbinary = IF({dead}, VALUES(isbinary), isbinary),
                   expiredate = IF({dead}, VALUES(expiredate), expiredate)"
            )
        }
        (None, Concurrency::LastWrite) => {
            params.insert(0, Value::from(r.key.as_str()));
            format!(
                "INSERT INTO {t} (id, value, eTag, isbinary, expiredate) VALUES (?, ?, ?, ?, {expires})
                 ON DUPLICATE KEY UPDATE value = VALUES(value), eTag = VALUES(eTag),
                   isbinary = VALUES(isbinary), expiredate = VALUES(expiredate)"
            )
        }
    };
    if changed(c, sql, params).await? == 0 {
        return Err(StateError::EtagMismatch(match &r.etag {
            Some(want) => format!("etag {want:?} does not match"),
            None => "first-write: the key already exists".into(),
        }));
    }
    Ok(())
}

async fn apply_delete(
    c: &mut impl Queryable,
    t: &str,
    r: &DeleteRequest,
) -> Result<(), StateError> {
    match &r.etag {
        Some(want) => {
            let sql = format!("DELETE FROM {t} WHERE id = ? AND eTag = ? AND {LIVE}");
            let params = vec![Value::from(r.key.as_str()), Value::from(want.as_str())];
            if changed(c, sql, params).await? == 0 {
                return Err(StateError::EtagMismatch(format!(
                    "etag {want:?} does not match"
                )));
            }
        }
        None => {
            let sql = format!("DELETE FROM {t} WHERE id = ?");
            c.exec_drop(sql, (r.key.as_str(),))
                .await
                .map_err(db_error)?;
        }
    }
    Ok(())
}

/// Runs one statement; the rows it changed.
async fn changed(
    c: &mut impl Queryable,
    sql: String,
    params: Vec<Value>,
) -> Result<u64, StateError> {
    let result = c.exec_iter(sql, params).await.map_err(db_error)?;
    let n = result.affected_rows();
    result.drop_result().await.map_err(db_error)?;
    Ok(n)
}

/// A column read as bytes (text and JSON come as bytes), or `None` for NULL.
fn bytes_of(row: &mut Row, i: usize) -> Option<Vec<u8>> {
    match row.take::<Value, _>(i)? {
        Value::Bytes(b) => Some(b),
        Value::NULL => None,
        other => Some(other.as_sql(true).into_bytes()),
    }
}

impl StateStore for MySqlStore {
    fn features(&self) -> Features {
        Features::ALL
    }

    fn get(&self, key: String, _metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>> {
        self.with_conn(move |this, mut c| async move {
            let sql = format!(
                "SELECT value, eTag, isbinary, CAST(UNIX_TIMESTAMP(expiredate) AS CHAR) FROM {} WHERE id = ? AND {LIVE}",
                this.table
            );
            let Some(mut row) = c.exec_first::<Row, _, _>(sql, (key,)).await.map_err(db_error)? else {
                return Ok(None);
            };
            let binary = row.take::<Option<bool>, _>(2).flatten().unwrap_or(false);
            let data = decode(bytes_of(&mut row, 0).unwrap_or_default(), binary)?;
            let etag = bytes_of(&mut row, 1).map(|e| String::from_utf8_lossy(&e).into_owned());
            let mut metadata = Metadata::new();
            let expires = bytes_of(&mut row, 3)
                .and_then(|t| String::from_utf8_lossy(&t).parse::<f64>().ok());
            if let Some(secs) = expires {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0));
                metadata.insert("ttlExpireTime".into(), rfc3339(at));
            }
            Ok(Some(Item { data, etag, metadata }))
        })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>> {
        self.with_conn(move |this, mut c| async move { apply_set(&mut c, &this.table, &req).await })
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>> {
        self.with_conn(
            move |this, mut c| async move { apply_delete(&mut c, &this.table, &req).await },
        )
    }

    fn query(&self, prefix: String, query: Query) -> BoxFuture<Result<QueryPage, StateError>> {
        self.with_conn(move |this, mut c| async move {
            // Prefix match, every wildcard escaped with `!` (whatever the server's sql_mode): by
            // the column's collation, which an index serves, then byte for byte (a table daprd
            // made compares keys without regard to case).
            let pattern: String = prefix
                .chars()
                .flat_map(|ch| match ch {
                    '%' | '_' | '!' => vec!['!', ch],
                    ch => vec![ch],
                })
                .chain(['%'])
                .collect();
            let sql = format!(
                "SELECT id, value, eTag, isbinary FROM {} WHERE id LIKE ? ESCAPE '!' \
                 AND CAST(id AS BINARY) LIKE CAST(? AS BINARY) ESCAPE '!' AND {LIVE} ORDER BY id",
                this.table
            );
            let params = (pattern.clone(), pattern);
            let mut result = c.exec_iter(sql, params).await.map_err(db_error)?;
            let mut scan = RowScan::new(&query);
            let mut outcome = Ok(());
            while let Some(mut row) = result.next().await.map_err(db_error)? {
                let key = bytes_of(&mut row, 0).unwrap_or_default();
                let binary = row.take::<Option<bool>, _>(3).flatten().unwrap_or(false);
                // Binary values are not JSON: they match no query.
                if binary {
                    continue;
                }
                let value = Bytes::from(bytes_of(&mut row, 1).unwrap_or_default());
                let etag = bytes_of(&mut row, 2).map(|e| String::from_utf8_lossy(&e).into_owned());
                let key = String::from_utf8_lossy(&key).into_owned();
                match scan.offer((key, value, etag)) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            result.drop_result().await.map_err(db_error)?;
            outcome.map(|()| scan.finish())
        })
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        self.with_conn(move |this, mut c| async move {
            let mut tx = c
                .start_transaction(TxOpts::default())
                .await
                .map_err(db_error)?;
            for op in &ops {
                match op {
                    Operation::Upsert(r) => apply_set(&mut tx, &this.table, r).await?,
                    Operation::Delete(r) => apply_delete(&mut tx, &this.table, r).await?,
                }
            }
            // Dropping the transaction on an error above rolls it back.
            tx.commit().await.map_err(db_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stored_as_daprd_stores_them() {
        assert_eq!(encode(br#"{"a":1}"#), (r#"{"a":1}"#.to_owned(), false));
        assert_eq!(encode(b"42"), ("42".to_owned(), false));
        assert_eq!(
            encode(b"plain text"),
            (r#""cGxhaW4gdGV4dA==""#.to_owned(), true)
        );
        assert_eq!(encode(&[0xff, 0]), (r#""/wA=""#.to_owned(), true));
        for v in [&b"plain text"[..], &[0xff, 0], br#"{"a":1}"#] {
            let (text, binary) = encode(v);
            assert_eq!(&decode(text.into_bytes(), binary).unwrap()[..], v);
        }
    }
}
