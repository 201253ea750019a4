//! `POST|PUT /v1.0/state/{store}/bulk`: many keys read at once, with the memory the answer may
//! take bounded (security rule 11). Each distinct key is read once, at most `parallelism` reads
//! run at a time, and the answer is assembled as the reads complete from pieces that share each
//! stored JSON value's bytes rather than parsing or copying it.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_blocks::state::{Item, StateError};
use serde_json::Value;

use super::{
    ApiState, Counted, bad, call_get, field, query_metadata, read_json, store, stored_key,
    string_map,
};
use crate::errors::ApiError;
use crate::net::http::{Body, chunks};

/// Reads run at most this many at once, whatever the request asks.
const MAX_PARALLELISM: usize = 64;
/// Distinct keys one request may name.
const MAX_KEYS: usize = 10_000;
/// The largest answer one request may build: past it, the request is refused.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The longest one request may read for, however slow the store.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30);

/// `{"keys":[…],"parallelism":n,"metadata":{}}` → `[{"key","data","etag","metadata"} | {"key","error"}]`.
pub(in crate::api) async fn bulk(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let c = store(s, name)?;
    let mut md = query_metadata(req.uri().query());
    let body = read_json(s, req).await?;
    let Value::Object(obj) = &body else {
        return Err(bad(
            "ERR_MALFORMED_REQUEST",
            "failed deserializing HTTP body: expected an object",
        ));
    };
    let keys = distinct_keys(field(obj, "keys"))?;
    for (k, v) in string_map(field(obj, "metadata"), "metadata")? {
        md.entry(k).or_insert(v);
    }
    let stored = keys
        .iter()
        .map(|k| stored_key(c, k))
        .collect::<Result<Vec<_>, _>>()?;
    let parallelism = field(obj, "parallelism")
        .and_then(Value::as_u64)
        .map_or(10, |n| n as usize)
        .clamp(1, MAX_PARALLELISM);
    let _permit = s.heavy_permit("ERR_STATE_BULK_GET").await?;
    let who = Counted::from(s);
    let mut reads = futures_util::stream::iter(stored)
        .map(|k| call_get(who, c, k, md.clone()))
        .buffered(parallelism);
    // The answer is a list of pieces: stored JSON values go in as they are, without a copy.
    let mut answer = Answer::default();
    answer.push(Bytes::from_static(b"["));
    let deadline = tokio::time::Instant::now() + MAX_DURATION;
    for (i, key) in keys.iter().enumerate() {
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
        if i > 0 {
            answer.push(Bytes::from_static(b","));
        }
        write_entry(&mut answer, key, read);
        if answer.len > MAX_ANSWER_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ERR_STATE_BULK_GET",
                format!(
                    "the values of these keys take more than {MAX_ANSWER_BYTES} bytes; ask for fewer keys at once"
                ),
            ));
        }
    }
    answer.push(Bytes::from_static(b"]"));
    let mut rsp = Response::new(chunks(answer.pieces));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(rsp)
}

/// The pieces of an answer and their total length.
#[derive(Default)]
struct Answer {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Answer {
    fn push(&mut self, b: Bytes) {
        self.len += b.len();
        self.pieces.push(b);
    }

    /// Appends `v` as JSON.
    fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        // Strings and string maps always serialise.
        self.push(serde_json::to_vec(v).map(Bytes::from).unwrap_or_default());
    }
}

/// The `keys` field: strings, each kept once in the order first named, at most [`MAX_KEYS`].
fn distinct_keys(keys: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let keys = match keys {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(bad(
                "ERR_MALFORMED_REQUEST",
                format!("keys must be an array, got {other}"),
            ));
        }
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for k in keys {
        let k = k.as_str().ok_or_else(|| {
            bad(
                "ERR_MALFORMED_REQUEST",
                format!("keys must be strings, got {k}"),
            )
        })?;
        if seen.insert(k) {
            out.push(k.to_owned());
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

/// Appends one entry of the answer. Stored JSON goes in as it is; anything else as a string.
fn write_entry(out: &mut Answer, key: &str, read: Result<Option<Item>, StateError>) {
    out.push(Bytes::from_static(b"{\"key\":"));
    out.json(key);
    match read {
        Ok(Some(item)) => {
            out.push(Bytes::from_static(b",\"data\":"));
            // Checked as text first: skipping over a JSON string does not check its UTF-8.
            if std::str::from_utf8(&item.data).is_ok()
                && serde_json::from_slice::<serde::de::IgnoredAny>(&item.data).is_ok()
            {
                out.push(item.data);
            } else {
                out.json(&String::from_utf8_lossy(&item.data));
            }
            if let Some(e) = &item.etag {
                out.push(Bytes::from_static(b",\"etag\":"));
                out.json(e);
            }
            if !item.metadata.is_empty() {
                out.push(Bytes::from_static(b",\"metadata\":"));
                out.json(&item.metadata);
            }
        }
        Ok(None) => {}
        Err(e) => {
            out.push(Bytes::from_static(b",\"error\":"));
            out.json(&e.to_string());
        }
    }
    out.push(Bytes::from_static(b"}"));
}
