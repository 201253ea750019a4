//! Many keys read at once, with the memory the answer may take bounded (security rule 11). Each
//! distinct key is read once, at most `parallelism` reads run at a time, and each read goes to
//! the codec's [`BulkSink`] as it completes, in the order the keys were named — the codec encodes
//! the answer as it grows, and the operation refuses it once it is too large.

use std::collections::HashSet;

use futures_util::StreamExt as _;
use http::StatusCode;
use outrider_blocks::state::{Item, Metadata, StateError};

use super::call::{Counted, call_get};
use super::{Store, bad};
use crate::api::ApiState;
use crate::errors::ApiError;

/// Reads run at most this many at once, whatever the request asks.
const MAX_PARALLELISM: usize = 64;
/// Distinct keys one request may name.
pub(super) const MAX_KEYS: usize = 10_000;
/// The largest answer one request may build: past it, the request is refused.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The longest one request may read for, however slow the store.
pub(super) const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30);

/// `GetBulkStateRequest`.
pub(crate) struct GetBulkStateRequest {
    /// Keys as the app names them; a key named twice is read once.
    pub(crate) keys: Vec<String>,
    /// Reads at once; 10 when not given.
    pub(crate) parallelism: Option<u64>,
    pub(crate) metadata: Metadata,
}

/// Where the reads of a bulk request go, in the order of the keys: the codec's encoding of the
/// answer (`BulkStateItem`s).
pub(crate) trait BulkSink {
    /// Adds the read of one key.
    fn push(&mut self, key: &str, read: Result<Option<Item>, StateError>);
    /// The size of the answer so far, in bytes of the codec's encoding.
    fn len(&self) -> usize;
}

/// Reads every distinct key into `out`.
pub(crate) async fn bulk(
    s: &ApiState,
    store: &Store<'_>,
    req: GetBulkStateRequest,
    out: &mut impl BulkSink,
) -> Result<(), ApiError> {
    let keys = distinct_keys(req.keys)?;
    let stored = keys
        .iter()
        .map(|k| store.stored_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let parallelism = req
        .parallelism
        .map_or(10, |n| n as usize)
        .clamp(1, MAX_PARALLELISM);
    let _permit = s.heavy_permit("ERR_STATE_BULK_GET").await?;
    let who = Counted::from(s);
    let md = req.metadata;
    let mut reads = futures_util::stream::iter(stored)
        .map(|k| call_get(who, store.c, k, md.clone()))
        .buffered(parallelism);
    let deadline = tokio::time::Instant::now() + MAX_DURATION;
    for key in &keys {
        let Ok(next) = tokio::time::timeout_at(deadline, reads.next()).await else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_STATE_BULK_GET",
                format!(
                    "reading {} keys took longer than {}s",
                    keys.len(),
                    MAX_DURATION.as_secs()
                ),
            ));
        };
        let Some(read) = next else { break };
        out.push(key, read);
        if out.len() > MAX_ANSWER_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ERR_STATE_BULK_GET",
                format!(
                    "the values of these keys take more than {MAX_ANSWER_BYTES} bytes; ask for fewer keys at once"
                ),
            ));
        }
    }
    Ok(())
}

/// The keys, each kept once in the order first named, at most [`MAX_KEYS`].
pub(super) fn distinct_keys(keys: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for k in keys {
        if seen.insert(k.clone()) {
            out.push(k);
        }
    }
    if out.len() > MAX_KEYS {
        return Err(bad(
            "ERR_MALFORMED_REQUEST",
            format!("at most {MAX_KEYS} distinct keys can be read at once"),
        ));
    }
    Ok(out)
}
