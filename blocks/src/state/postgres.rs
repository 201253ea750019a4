//! `state.postgresql`: state in a PostgreSQL table.
//!
//! The table (default `state`) is created on first use under a transaction-scoped advisory lock,
//! so sidecars starting together do not race. Compare-and-set is one conditional statement;
//! transactions are SQL transactions. ETags are random UUIDs; expiry is a timestamp, invisible
//! at once and swept periodically. Every operation is bounded by the component's timeout.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{
    BoxFuture, Concurrency, DeleteRequest, Features, Item, Metadata, Operation, Query, QueryPage, SetRequest,
    StateError, StateStore, new_etag, rfc3339, run_query, ttl_of,
};

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    table: std::sync::Arc<str>,
    timeout: Duration,
}

fn pg_error(e: impl std::fmt::Display) -> StateError {
    StateError::Store(format!("postgresql: {e}"))
}

/// Runs `call` under `timeout`.
async fn bounded<T>(timeout: Duration, call: impl Future<Output = Result<T, StateError>>) -> Result<T, StateError> {
    tokio::time::timeout(timeout, call).await.unwrap_or(Err(StateError::Timeout(timeout)))
}

impl PostgresStore {
    /// Connects with a libpq-style connection string (`host=… user=… dbname=…` or a
    /// `postgres://` URL) and creates the table if needed.
    pub async fn connect(conn: &str, table: &str, timeout: Duration) -> Result<Self, StateError> {
        if table.is_empty() || table.len() > 63 || !table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(StateError::BadRequest(format!("tableName {table:?} must be letters, digits and '_'")));
        }
        let mut cfg: tokio_postgres::Config =
            conn.parse().map_err(|e| StateError::BadRequest(format!("connectionString: {e}")))?;
        cfg.connect_timeout(timeout);
        let manager = Manager::from_config(cfg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(16).build().map_err(pg_error)?;
        let store = Self { pool, table: table.into(), timeout };
        bounded(timeout, store.create_table()).await?;
        Ok(store)
    }

    async fn create_table(&self) -> Result<(), StateError> {
        let mut client = self.pool.get().await.map_err(pg_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Serialise creators: CREATE TABLE IF NOT EXISTS alone can race on the type catalog.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("outrider-state-{}", self.table)])
            .await
            .map_err(pg_error)?;
        let t = &self.table;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                key TEXT NOT NULL PRIMARY KEY,
                value BYTEA NOT NULL,
                etag TEXT NOT NULL,
                expires_at TIMESTAMPTZ NULL
            );
            CREATE INDEX IF NOT EXISTS {t}_expires_at ON {t} (expires_at) WHERE expires_at IS NOT NULL;"
        ))
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    /// Deletes expired rows; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64, StateError> {
        let client = self.pool.get().await.map_err(pg_error)?;
        client.execute(&format!("DELETE FROM {} WHERE expires_at <= now()", self.table), &[]).await.map_err(pg_error)
    }
}

/// Seconds of TTL as a Postgres interval argument (`None` for no expiry).
fn ttl_secs(md: &Metadata) -> Result<Option<f64>, StateError> {
    Ok(ttl_of(md)?.map(|d| d.as_secs_f64()))
}

async fn apply_set(c: &impl GenericClient, t: &str, r: &SetRequest) -> Result<(), StateError> {
    let ttl = ttl_secs(&r.metadata)?;
    let etag = new_etag();
    let value: &[u8] = &r.value;
    let expires = "CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $4::float8) END";
    let n = match (&r.etag, r.options.concurrency) {
        (Some(want), _) => {
            c.execute(
                &format!(
                    "UPDATE {t} SET value = $2, etag = $3, expires_at = {expires}
                     WHERE key = $1 AND etag = $5 AND (expires_at IS NULL OR expires_at > now())"
                ),
                &[&r.key, &value, &etag, &ttl, want],
            )
            .await
        }
        (None, Concurrency::FirstWrite) => {
            c.execute(
                &format!(
                    "INSERT INTO {t} (key, value, etag, expires_at) VALUES ($1, $2, $3, {expires})
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag,
                       expires_at = excluded.expires_at
                     WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= now()"
                ),
                &[&r.key, &value, &etag, &ttl],
            )
            .await
        }
        (None, Concurrency::LastWrite) => {
            c.execute(
                &format!(
                    "INSERT INTO {t} (key, value, etag, expires_at) VALUES ($1, $2, $3, {expires})
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag,
                       expires_at = excluded.expires_at"
                ),
                &[&r.key, &value, &etag, &ttl],
            )
            .await
        }
    }
    .map_err(pg_error)?;
    if n == 0 {
        return Err(StateError::EtagMismatch(match &r.etag {
            Some(want) => format!("etag {want:?} does not match"),
            None => "first-write: the key already exists".into(),
        }));
    }
    Ok(())
}

async fn apply_delete(c: &impl GenericClient, t: &str, r: &DeleteRequest) -> Result<(), StateError> {
    match &r.etag {
        Some(want) => {
            let n = c
                .execute(
                    &format!(
                        "DELETE FROM {t} WHERE key = $1 AND etag = $2 AND (expires_at IS NULL OR expires_at > now())"
                    ),
                    &[&r.key, want],
                )
                .await
                .map_err(pg_error)?;
            if n == 0 {
                return Err(StateError::EtagMismatch(format!("etag {want:?} does not match")));
            }
        }
        None => {
            c.execute(&format!("DELETE FROM {t} WHERE key = $1"), &[&r.key]).await.map_err(pg_error)?;
        }
    }
    Ok(())
}

impl StateStore for PostgresStore {
    fn features(&self) -> Features {
        Features { etag: true, transactional: true, ttl: true, query: true }
    }

    fn get(&self, key: String, _metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>> {
        let this = self.clone();
        Box::pin(bounded(this.timeout, async move {
            let client = this.pool.get().await.map_err(pg_error)?;
            let row = client
                .query_opt(
                    &format!("SELECT value, etag, expires_at FROM {} WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())", this.table),
                    &[&key],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| {
                let mut metadata = Metadata::new();
                if let Some(at) = r.get::<_, Option<SystemTime>>(2) {
                    metadata.insert("ttlExpireTime".into(), rfc3339(at));
                }
                Item { data: Bytes::from(r.get::<_, Vec<u8>>(0)), etag: Some(r.get(1)), metadata }
            }))
        }))
    }

    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>> {
        let this = self.clone();
        Box::pin(bounded(this.timeout, async move {
            let client = this.pool.get().await.map_err(pg_error)?;
            apply_set(&client, &this.table, &req).await
        }))
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>> {
        let this = self.clone();
        Box::pin(bounded(this.timeout, async move {
            let client = this.pool.get().await.map_err(pg_error)?;
            apply_delete(&client, &this.table, &req).await
        }))
    }

    fn query(&self, prefix: String, query: Query) -> BoxFuture<Result<QueryPage, StateError>> {
        let this = self.clone();
        Box::pin(bounded(this.timeout, async move {
            let client = this.pool.get().await.map_err(pg_error)?;
            let rows = client
                .query(
                    &format!(
                        "SELECT key, value, etag FROM {} WHERE starts_with(key, $1)
                         AND (expires_at IS NULL OR expires_at > now()) ORDER BY key",
                        this.table
                    ),
                    &[&prefix],
                )
                .await
                .map_err(pg_error)?;
            let rows = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), Bytes::from(r.get::<_, Vec<u8>>(1)), Some(r.get::<_, String>(2))))
                .collect();
            Ok(run_query(rows, &query))
        }))
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        let this = self.clone();
        Box::pin(bounded(this.timeout, async move {
            let mut client = this.pool.get().await.map_err(pg_error)?;
            let tx = client.transaction().await.map_err(pg_error)?;
            for op in &ops {
                match op {
                    Operation::Upsert(r) => apply_set(&tx, &this.table, r).await?,
                    Operation::Delete(r) => apply_delete(&tx, &this.table, r).await?,
                }
            }
            // Dropping the transaction on an error above rolls it back.
            tx.commit().await.map_err(pg_error)
        }))
    }
}
