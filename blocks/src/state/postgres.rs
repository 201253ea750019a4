//! `state.postgresql`: state in a PostgreSQL table.
//!
//! The table (default `state`) is created on first use under a transaction-scoped advisory lock,
//! so sidecars starting together do not race. Compare-and-set is one conditional statement;
//! transactions are SQL transactions. ETags are random UUIDs; expiry is a timestamp, invisible
//! at once and swept periodically. Every operation is bounded by the component's timeout.
//! Values that are JSON are also kept as JSONB, and queries run in SQL over that column.

mod sql;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::deadline;
use crate::fault::Fault;

use super::{
    BoxFuture, Concurrency, DeleteRequest, Features, Item, Metadata, Operation, Query, QueryPage,
    Row, SetRequest, StateError, StateStore, new_etag, rfc3339, ttl_of,
};

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    table: std::sync::Arc<str>,
    timeout: Duration,
}

fn pg_error(e: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Store(Fault::caused_by(format!("postgresql: {e}"), e))
}

impl PostgresStore {
    /// Connects with a libpq-style connection string (`host=… user=… dbname=…` or a
    /// `postgres://` URL) and creates the table if needed.
    pub async fn connect(conn: &str, table: &str, timeout: Duration) -> Result<Self, StateError> {
        if table.is_empty()
            || table.len() > 63
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(StateError::BadRequest(format!(
                "tableName {table:?} must be letters, digits and '_'"
            )));
        }
        let mut cfg: tokio_postgres::Config = conn
            .parse()
            .map_err(|e| StateError::BadRequest(format!("connectionString: {e}")))?;
        cfg.connect_timeout(timeout);
        let pool = pool(cfg, 16, None).map_err(pg_error)?;
        let store = Self {
            pool,
            table: table.into(),
            timeout,
        };
        deadline::bounded(timeout, store.create_table(), StateError::Timeout).await?;
        Ok(store)
    }

    async fn create_table(&self) -> Result<(), StateError> {
        let mut client = self.pool.get().await.map_err(pg_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Serialise creators: CREATE TABLE IF NOT EXISTS alone can race on the type catalog.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("outrider-state-{}", self.table)],
        )
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
            ALTER TABLE {t} ADD COLUMN IF NOT EXISTS value_json JSONB NULL;
            CREATE INDEX IF NOT EXISTS {t}_expires_at ON {t} (expires_at) WHERE expires_at IS NOT NULL;"
        ))
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    /// Runs `op` on a pooled client within the store's timeout (waiting for the client counts).
    fn with_client<T, F, Fut>(&self, op: F) -> BoxFuture<Result<T, StateError>>
    where
        T: 'static,
        F: FnOnce(Self, deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StateError>> + Send,
    {
        let this = self.clone();
        Box::pin(deadline::bounded(
            this.timeout,
            async move {
                let client = this.pool.get().await.map_err(pg_error)?;
                op(this, client).await
            },
            StateError::Timeout,
        ))
    }

    /// Deletes expired rows; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64, StateError> {
        let client = self.pool.get().await.map_err(pg_error)?;
        client
            .execute(
                &format!("DELETE FROM {} WHERE expires_at <= now()", self.table),
                &[],
            )
            .await
            .map_err(pg_error)
    }
}

/// A pool of at most `max` connections made with `cfg` (no TLS, connections recycled without a
/// check), shared by every PostgreSQL component; waiting for a connection and making one are
/// bounded by `limit` when given.
pub(crate) fn pool(
    cfg: tokio_postgres::Config,
    max: usize,
    limit: Option<Duration>,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let builder = Pool::builder(Manager::from_config(cfg, NoTls, recycling)).max_size(max);
    match limit {
        Some(t) => builder
            .wait_timeout(Some(t))
            .create_timeout(Some(t))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build(),
        None => builder.build(),
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
    // JSON values are also stored as JSONB, for queries; anything else is bytes only.
    let json: Option<&str> = serde_json::from_slice::<serde::de::IgnoredAny>(value)
        .ok()
        .and_then(|_| std::str::from_utf8(value).ok());
    let expires =
        "CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $4::float8) END";
    let n = match (&r.etag, r.options.concurrency) {
        (Some(want), _) => {
            c.execute(
                &format!(
                    "UPDATE {t} SET value = $2, etag = $3, expires_at = {expires}, value_json = $6::text::jsonb
                     WHERE key = $1 AND etag = $5 AND (expires_at IS NULL OR expires_at > now())"
                ),
                &[&r.key, &value, &etag, &ttl, want, &json],
            )
            .await
        }
        (None, Concurrency::FirstWrite) => {
            c.execute(
                &format!(
                    "INSERT INTO {t} (key, value, etag, expires_at, value_json) VALUES ($1, $2, $3, {expires}, $5::text::jsonb)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag,
                       expires_at = excluded.expires_at, value_json = excluded.value_json
                     WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= now()"
                ),
                &[&r.key, &value, &etag, &ttl, &json],
            )
            .await
        }
        (None, Concurrency::LastWrite) => {
            c.execute(
                &format!(
                    "INSERT INTO {t} (key, value, etag, expires_at, value_json) VALUES ($1, $2, $3, {expires}, $5::text::jsonb)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag,
                       expires_at = excluded.expires_at, value_json = excluded.value_json"
                ),
                &[&r.key, &value, &etag, &ttl, &json],
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

async fn apply_delete(
    c: &impl GenericClient,
    t: &str,
    r: &DeleteRequest,
) -> Result<(), StateError> {
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
                return Err(StateError::EtagMismatch(format!(
                    "etag {want:?} does not match"
                )));
            }
        }
        None => {
            c.execute(&format!("DELETE FROM {t} WHERE key = $1"), &[&r.key])
                .await
                .map_err(pg_error)?;
        }
    }
    Ok(())
}

impl StateStore for PostgresStore {
    fn features(&self) -> Features {
        Features::ALL
    }

    fn get(&self, key: String, _metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>> {
        self.with_client(move |this, client| async move {
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
                Item {
                    data: Bytes::from(r.get::<_, Vec<u8>>(0)),
                    etag: Some(r.get(1)),
                    metadata,
                }
            }))
        })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>> {
        self.with_client(
            move |this, client| async move { apply_set(&client, &this.table, &req).await },
        )
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>> {
        self.with_client(move |this, client| async move {
            apply_delete(&client, &this.table, &req).await
        })
    }

    fn query(&self, prefix: String, query: Query) -> BoxFuture<Result<QueryPage, StateError>> {
        self.with_client(move |this, client| async move {
            let (stmt, params) = sql::SqlQuery::new(prefix).statement(&this.table, &query);
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            let rows = client.query(&stmt, &refs).await.map_err(pg_error)?;
            let mut items: Vec<Row> = rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        Bytes::from(r.get::<_, Vec<u8>>(1)),
                        Some(r.get::<_, String>(2)),
                    )
                })
                .collect();
            let token = match query.limit {
                Some(limit) if items.len() > limit => {
                    items.truncate(limit);
                    Some((query.offset + limit).to_string())
                }
                _ => None,
            };
            Ok(QueryPage { items, token })
        })
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        self.with_client(move |this, mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            for op in &ops {
                match op {
                    Operation::Upsert(r) => apply_set(&tx, &this.table, r).await?,
                    Operation::Delete(r) => apply_delete(&tx, &this.table, r).await?,
                }
            }
            // Dropping the transaction on an error above rolls it back.
            tx.commit().await.map_err(pg_error)
        })
    }
}
