//! The state building block: the [`StateStore`] contract every state component implements, and
//! what the API layer needs around it (key prefixing, features, opening components).
//!
//! Stores work on bytes and opaque ETags; JSON, HTTP and Dapr's error codes belong to the API
//! layer. A store declares its [`Features`]; the API refuses operations a store does not declare
//! (for example transactions) instead of letting the store half-do them.

mod encrypt;
mod memory;
mod mysql;
mod open;
mod postgres;
mod prefix;
mod query;
mod redis;
mod service;
mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::fault::Fault;

pub use encrypt::{Encrypted, EncryptionKey};
pub use memory::MemoryStore;
pub use mysql::MySqlStore;
pub use open::{Layered, OpenContext, StateComponent, open};
pub(crate) use open::{deadline_setting, literal_metadata, redis_settings};
pub use postgres::PostgresStore;
pub(crate) use postgres::pool as postgres_pool;
pub use prefix::{KeyPrefix, KeyPrefixError};
pub use query::{Filter, Query, QueryError, Sort};
pub use redis::{RedisSettings, RedisStore};
pub(crate) use redis::{client_for, manager_for};
pub use service::{StateRequest, StateResponse, StateService};
pub use sqlite::SqliteStore;

/// A boxed, sendable future: the return type of every [`StateStore`] method.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Request metadata: `ttlInSeconds`, `contentType`, and store-specific settings.
pub type Metadata = BTreeMap<String, String>;

/// First-write or last-write concurrency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Concurrency {
    /// Without an ETag, a write replaces whatever is there.
    #[default]
    LastWrite,
    /// Without an ETag, a write succeeds only if the key does not exist.
    FirstWrite,
}

/// A consistency hint; stores without replicas treat both alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Eventual.
    #[default]
    Eventual,
    /// Strong.
    Strong,
}

/// Per-request options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Concurrency mode.
    pub concurrency: Concurrency,
    /// Consistency hint.
    pub consistency: Consistency,
}

/// A value as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The stored bytes, exactly as written.
    pub data: Bytes,
    /// The current ETag.
    pub etag: Option<String>,
    /// Response metadata (e.g. `ttlExpireTime`).
    pub metadata: Metadata,
}

/// Write `value` under `key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetRequest {
    /// The key, already prefixed.
    pub key: String,
    /// The bytes to store.
    pub value: Bytes,
    /// Write only if the current ETag is this one.
    pub etag: Option<String>,
    /// `ttlInSeconds` and store-specific metadata.
    pub metadata: Metadata,
    /// Concurrency and consistency.
    pub options: Options,
}

/// Delete `key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    /// The key, already prefixed.
    pub key: String,
    /// Delete only if the current ETag is this one.
    pub etag: Option<String>,
    /// Store-specific metadata.
    pub metadata: Metadata,
    /// Concurrency and consistency.
    pub options: Options,
}

/// One step of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Insert or update.
    Upsert(SetRequest),
    /// Delete.
    Delete(DeleteRequest),
}

/// What a store can do. Reported in the metadata API and enforced by the API layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// ETags and compare-and-set.
    pub etag: bool,
    /// Atomic multi-key transactions.
    pub transactional: bool,
    /// `ttlInSeconds`.
    pub ttl: bool,
    /// The query API.
    pub query: bool,
}

impl Features {
    /// Everything: etags, transactions, TTLs and queries.
    pub const ALL: Features = Features {
        etag: true,
        transactional: true,
        ttl: true,
        query: true,
    };

    /// Dapr's capability names.
    pub fn capabilities(&self) -> Vec<&'static str> {
        [
            (self.etag, "ETAG"),
            (self.transactional, "TRANSACTIONAL"),
            (self.ttl, "TTL"),
            (self.query, "QUERY_API"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Why a state operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The ETag did not match (or first-write found an existing key).
    #[error("possible etag mismatch. error from state store: {0}")]
    EtagMismatch(String),
    /// The ETag is not one this store could have issued.
    #[error("invalid etag value: {0}")]
    EtagInvalid(String),
    /// The request is malformed for this store (e.g. a bad `ttlInSeconds`).
    #[error("{0}")]
    BadRequest(String),
    /// The store does not support this operation.
    #[error("the state store does not support {0}")]
    NotSupported(&'static str),
    /// The store failed or is unreachable.
    #[error(transparent)]
    Store(Fault),
    /// The store did not answer in time.
    #[error("the state store did not answer within {0:?}")]
    Timeout(Duration),
}

impl StateError {
    /// Whether trying the call again may succeed: the store failed ([`Fault::is_retryable`]) or
    /// did not answer in time. Every other error is the store answering, and answers the same
    /// way next time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(fault) => fault.is_retryable(),
            Self::Timeout(_) => true,
            Self::EtagMismatch(_)
            | Self::EtagInvalid(_)
            | Self::BadRequest(_)
            | Self::NotSupported(_) => false,
        }
    }
}

/// A state store.
///
/// Contract, checked for every component by the conformance suite (`blocks/tests/state.rs`):
/// - `get` returns exactly the bytes last written, with an ETag when [`Features::etag`]; `None`
///   for a missing or expired key.
/// - Every successful write changes the ETag. A write or delete carrying an ETag succeeds only if
///   it matches the current one (a missing key matches nothing); without one, `FirstWrite` fails
///   on an existing key and `LastWrite` always succeeds. Compare-and-set is atomic.
/// - `delete` of a missing key without an ETag succeeds.
/// - `ttlInSeconds` (when [`Features::ttl`]) makes the key disappear after that many seconds; a
///   negative value means no expiry. A store without TTL refuses the metadata.
/// - `multi` (when [`Features::transactional`]) applies every operation or none, in order.
/// - Operations a store does not declare answer [`StateError::NotSupported`].
pub trait StateStore: Send + Sync + 'static {
    /// What this store supports.
    fn features(&self) -> Features;

    /// Reads `key`.
    fn get(&self, key: String, metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>>;

    /// Writes one value.
    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>>;

    /// Deletes one key.
    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>>;

    /// Applies `ops` atomically, in order.
    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        let _ = ops;
        Box::pin(async { Err(StateError::NotSupported("transactions")) })
    }

    /// Runs `query` over the JSON values of keys starting with `prefix` (when
    /// [`Features::query`]). Values that are not JSON never match.
    fn query(&self, prefix: String, query: Query) -> BoxFuture<Result<QueryPage, StateError>> {
        let _ = (prefix, query);
        Box::pin(async { Err(StateError::NotSupported("queries")) })
    }
}

/// A query candidate or result: stored key, value, ETag.
pub type Row = (String, Bytes, Option<String>);

/// One page of query results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryPage {
    /// Matching items: stored key, value, ETag.
    pub items: Vec<Row>,
    /// The token of the next page, if there is one.
    pub token: Option<String>,
}

/// The most value bytes one query may read before it is refused: a bound on its time.
pub const MAX_QUERY_SCAN_BYTES: u64 = 256 << 20;
/// The most value bytes one page of query results may hold.
pub const MAX_QUERY_PAGE_BYTES: usize = 64 << 20;

/// Runs a query over candidate rows (stored key, bytes, ETag) offered one at a time: the shared
/// engine of stores that filter in process. Only the rows the page can still hold are kept, and
/// the bytes read and kept are bounded.
pub(crate) struct RowScan<'q> {
    scan: query::Scan<'q, Row>,
    scanned: u64,
}

impl<'q> RowScan<'q> {
    pub(crate) fn new(query: &'q Query) -> Self {
        Self {
            scan: query::Scan::new(query, MAX_QUERY_PAGE_BYTES),
            scanned: 0,
        }
    }

    /// Offers one more row; `Ok(false)` when the page is known and scanning can stop.
    pub(crate) fn offer(&mut self, row: Row) -> Result<bool, StateError> {
        self.scanned += row.1.len() as u64;
        if self.scanned > MAX_QUERY_SCAN_BYTES {
            return Err(StateError::BadRequest(format!(
                "the query read more than {MAX_QUERY_SCAN_BYTES} bytes of values; narrow it with a filter or a smaller page"
            )));
        }
        // Values that are not JSON match no query.
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&row.1) else {
            return Ok(true);
        };
        let size = row.0.len() + row.1.len();
        match self.scan.offer(&value, row, size) {
            query::Offer::More => Ok(true),
            query::Offer::Enough => Ok(false),
            query::Offer::TooLarge => Err(StateError::BadRequest(format!(
                "the results take more than {MAX_QUERY_PAGE_BYTES} bytes; ask for a smaller page"
            ))),
        }
    }

    pub(crate) fn finish(self) -> QueryPage {
        let (items, token) = self.scan.finish();
        QueryPage { items, token }
    }
}

/// Reads `ttlInSeconds` from request metadata: `Ok(None)` when absent or negative (no expiry).
pub fn ttl_of(metadata: &Metadata) -> Result<Option<Duration>, StateError> {
    let Some(v) = metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ttlInSeconds"))
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    match v.trim().parse::<i64>() {
        Ok(n) if n < 0 => Ok(None),
        Ok(n) => Ok(Some(Duration::from_secs(n.unsigned_abs()))),
        Err(_) => Err(StateError::BadRequest(format!(
            "ttlInSeconds {v:?} is not a whole number of seconds"
        ))),
    }
}

/// The RFC 3339 form of an expiry time, as `ttlExpireTime` metadata.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A fresh random ETag.
pub(crate) fn new_etag() -> String {
    uuid::Uuid::new_v4().to_string()
}
