//! `POST|PUT /v1.0/state/{store}/bulk`: `{"keys":[…],"parallelism":n,"metadata":{}}` →
//! `[{"key","data","etag","metadata"} | {"key","error"}]`. The answer is assembled as the reads
//! complete, from pieces that share each stored JSON value's bytes rather than parsing or
//! copying it, and sent as those pieces.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use outrider_blocks::state::{Item, StateError};
use serde_json::Value;

use super::{bad, field, read_json, string_map};
use crate::api::ApiState;
use crate::api::http::query_metadata;
use crate::api::state::{self, BulkSink, GetBulkStateRequest};
use crate::errors::ApiError;
use crate::net::http::{Body, chunks};

pub(in crate::api) async fn bulk(
    s: &ApiState,
    name: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let store = state::store(s, name)?;
    let mut metadata = query_metadata(req.uri().query());
    let body = read_json(s, req).await?;
    let Value::Object(obj) = &body else {
        return Err(bad("failed deserializing HTTP body: expected an object"));
    };
    let keys = keys(field(obj, "keys"))?;
    for (k, v) in string_map(field(obj, "metadata"), "metadata")? {
        metadata.entry(k).or_insert(v);
    }
    let parallelism = field(obj, "parallelism").and_then(Value::as_u64);
    let req = GetBulkStateRequest {
        keys,
        parallelism,
        metadata,
    };
    // The answer is a list of pieces: stored JSON values go in as they are, without a copy.
    let mut answer = Answer::default();
    answer.piece(Bytes::from_static(b"["));
    state::bulk(s, &store, req, &mut answer).await?;
    answer.piece(Bytes::from_static(b"]"));
    let mut rsp = Response::new(chunks(answer.pieces));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(rsp)
}

/// The `keys` field: strings.
fn keys(keys: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let keys = match keys {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(bad(format!("keys must be an array, got {other}"))),
    };
    keys.iter()
        .map(|k| {
            k.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("keys must be strings, got {k}")))
        })
        .collect()
}

/// The pieces of an answer, their total length, and how many entries they hold.
#[derive(Default)]
struct Answer {
    pieces: Vec<Bytes>,
    len: usize,
    entries: usize,
}

impl Answer {
    fn piece(&mut self, b: Bytes) {
        self.len += b.len();
        self.pieces.push(b);
    }

    /// Appends `v` as JSON.
    fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        // Strings and string maps always serialise.
        self.piece(serde_json::to_vec(v).map(Bytes::from).unwrap_or_default());
    }

    /// The fields of an item that was found.
    fn item(&mut self, item: Item) {
        self.piece(Bytes::from_static(b",\"data\":"));
        // Checked as text first: skipping over a JSON string does not check its UTF-8.
        if std::str::from_utf8(&item.data).is_ok()
            && serde_json::from_slice::<serde::de::IgnoredAny>(&item.data).is_ok()
        {
            self.piece(item.data);
        } else {
            self.json(&String::from_utf8_lossy(&item.data));
        }
        if let Some(e) = &item.etag {
            self.piece(Bytes::from_static(b",\"etag\":"));
            self.json(e);
        }
        if !item.metadata.is_empty() {
            self.piece(Bytes::from_static(b",\"metadata\":"));
            self.json(&item.metadata);
        }
    }
}

impl BulkSink for Answer {
    /// Appends one entry. Stored JSON goes in as it is; anything else as a string.
    fn push(&mut self, key: &str, read: Result<Option<Item>, StateError>) {
        if self.entries > 0 {
            self.piece(Bytes::from_static(b","));
        }
        self.entries += 1;
        self.piece(Bytes::from_static(b"{\"key\":"));
        self.json(key);
        match read {
            Ok(Some(item)) => self.item(item),
            Ok(None) => {}
            Err(e) => {
                self.piece(Bytes::from_static(b",\"error\":"));
                self.json(&e.to_string());
            }
        }
        self.piece(Bytes::from_static(b"}"));
    }

    fn len(&self) -> usize {
        self.len
    }
}
