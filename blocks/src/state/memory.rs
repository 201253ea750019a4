//! `state.in-memory`: a process-local store, for development and tests. Not durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use super::{
    BoxFuture, Concurrency, DeleteRequest, Features, Item, Metadata, Operation, Query, QueryPage,
    RowScan, SetRequest, StateError, StateStore, new_etag, rfc3339, ttl_of,
};

#[derive(Clone, Debug)]
struct Entry {
    data: Bytes,
    etag: String,
    expires: Option<SystemTime>,
}

impl Entry {
    fn live(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

/// The in-memory store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    items: Arc<Mutex<HashMap<String, Entry>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Reads `key` from the overlay of a transaction, then from the base map.
fn current<'a>(
    base: &'a HashMap<String, Entry>,
    overlay: &'a HashMap<String, Option<Entry>>,
    key: &str,
    now: SystemTime,
) -> Option<&'a Entry> {
    match overlay.get(key) {
        Some(e) => e.as_ref(),
        None => base.get(key),
    }
    .filter(|e| e.live(now))
}

fn check_set(cur: Option<&Entry>, req: &SetRequest) -> Result<(), StateError> {
    match (&req.etag, cur) {
        (Some(want), Some(e)) if *want == e.etag => Ok(()),
        (Some(want), _) => Err(StateError::EtagMismatch(format!(
            "etag {want:?} does not match"
        ))),
        (None, Some(_)) if req.options.concurrency == Concurrency::FirstWrite => Err(
            StateError::EtagMismatch("first-write: the key already exists".into()),
        ),
        (None, _) => Ok(()),
    }
}

fn check_delete(cur: Option<&Entry>, req: &DeleteRequest) -> Result<(), StateError> {
    match (&req.etag, cur) {
        (Some(want), Some(e)) if *want != e.etag => Err(StateError::EtagMismatch(format!(
            "etag {want:?} does not match"
        ))),
        (Some(want), None) => Err(StateError::EtagMismatch(format!(
            "etag {want:?} does not match: no such key"
        ))),
        _ => Ok(()),
    }
}

fn entry(req: &SetRequest, now: SystemTime) -> Result<Entry, StateError> {
    let expires = ttl_of(&req.metadata)?.map(|ttl| now + ttl);
    Ok(Entry {
        data: req.value.clone(),
        etag: new_etag(),
        expires,
    })
}

impl StateStore for MemoryStore {
    fn features(&self) -> Features {
        Features::ALL
    }

    fn get(&self, key: String, _metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>> {
        let items = self.items.clone();
        Box::pin(async move {
            let now = SystemTime::now();
            let mut map = items.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(e) if e.live(now) => {
                    let mut metadata = Metadata::new();
                    if let Some(t) = e.expires {
                        metadata.insert("ttlExpireTime".into(), rfc3339(t));
                    }
                    Ok(Some(Item {
                        data: e.data.clone(),
                        etag: Some(e.etag.clone()),
                        metadata,
                    }))
                }
                Some(_) => {
                    map.remove(&key);
                    Ok(None)
                }
                None => Ok(None),
            }
        })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>> {
        self.multi(vec![Operation::Upsert(req)])
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>> {
        self.multi(vec![Operation::Delete(req)])
    }

    fn query(&self, prefix: String, query: Query) -> BoxFuture<Result<QueryPage, StateError>> {
        let items = self.items.clone();
        Box::pin(async move {
            let now = SystemTime::now();
            // Values are shared, not copied: the candidates cost their keys, not their bytes.
            let mut rows = {
                let map = items.lock().unwrap_or_else(|p| p.into_inner());
                map.iter()
                    .filter(|(k, e)| k.starts_with(&prefix) && e.live(now))
                    .map(|(k, e)| (k.clone(), e.data.clone(), Some(e.etag.clone())))
                    .collect::<Vec<_>>()
            };
            rows.sort_by(|a, b| a.0.cmp(&b.0)); // a stable order for paging
            let mut scan = RowScan::new(&query);
            for (i, row) in rows.into_iter().enumerate() {
                if !scan.offer(row)? {
                    break;
                }
                // Parsing is CPU work: let other tasks run now and then.
                if i % 256 == 255 {
                    tokio::task::yield_now().await;
                }
            }
            Ok(scan.finish())
        })
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        let items = self.items.clone();
        Box::pin(async move {
            let now = SystemTime::now();
            let mut map = items.lock().unwrap_or_else(|p| p.into_inner());
            // Every step is checked against the state the steps before it leave; nothing is
            // applied unless all pass.
            let mut overlay: HashMap<String, Option<Entry>> = HashMap::new();
            for op in &ops {
                match op {
                    Operation::Upsert(req) => {
                        check_set(current(&map, &overlay, &req.key, now), req)?;
                        overlay.insert(req.key.clone(), Some(entry(req, now)?));
                    }
                    Operation::Delete(req) => {
                        check_delete(current(&map, &overlay, &req.key, now), req)?;
                        overlay.insert(req.key.clone(), None);
                    }
                }
            }
            for (k, v) in overlay {
                match v {
                    Some(e) => map.insert(k, e),
                    None => map.remove(&k),
                };
            }
            Ok(())
        })
    }
}
