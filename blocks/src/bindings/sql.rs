//! What the SQL output bindings (`bindings.postgresql`, `bindings.mysql`) share: the operations
//! `exec`, `query` and `close`, the request's `sql` and `params` metadata, and the answer's
//! metadata, as daprd's bindings shape them. Parameters are always bound by the database, never
//! spliced into the statement; a result larger than [`MAX_RESULT`] is an error, not a partial
//! answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;

use super::gotime::{duration_text, rfc3339_nano};
use super::{BindingError, InvokeRequest, InvokeResponse, Metadata, OutputBinding};
use crate::state::BoxFuture;

/// The largest `query` answer (its JSON text), in bytes.
pub(crate) const MAX_RESULT: usize = 64 << 20;

/// A database the SQL bindings run statements on.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Runs `sql` with `params` bound; the rows it changed.
    fn exec(&self, sql: String, params: Vec<Value>) -> BoxFuture<Result<u64, BindingError>>;
    /// Runs `sql` with `params` bound; the rows as one JSON document (at most [`MAX_RESULT`]).
    fn query(&self, sql: String, params: Vec<Value>) -> BoxFuture<Result<Vec<u8>, BindingError>>;
    /// Closes every connection.
    fn close(&self) -> BoxFuture<()>;
}

/// An SQL output binding over an [`Engine`].
pub struct SqlBinding {
    engine: Arc<dyn Engine>,
    closed: Arc<AtomicBool>,
}

impl SqlBinding {
    pub(crate) fn new(engine: Arc<dyn Engine>) -> Self {
        Self {
            engine,
            closed: Arc::default(),
        }
    }
}

/// `params`: a JSON array of values, bound in order.
fn params(metadata: &Metadata) -> Result<Vec<Value>, BindingError> {
    let Some(text) = metadata.get("params").filter(|p| !p.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(values)) => Ok(values),
        Ok(_) => Err(BindingError::BadRequest(
            "invalid metadata property params: not a JSON array".into(),
        )),
        Err(e) => Err(BindingError::BadRequest(format!(
            "invalid metadata property params: failed to unserialize into an array: {e}"
        ))),
    }
}

impl OutputBinding for SqlBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["exec", "query", "close"]
    }

    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> BoxFuture<Result<Option<InvokeResponse>, BindingError>> {
        let (engine, closed) = (self.engine.clone(), self.closed.clone());
        Box::pin(async move {
            if closed.load(Ordering::Acquire) {
                return Err(BindingError::BadRequest("component is closed".into()));
            }
            if req.operation == "close" {
                closed.store(true, Ordering::Release);
                engine.close().await;
                return Ok(None);
            }
            let sql = req
                .metadata
                .get("sql")
                .filter(|s| !s.trim().is_empty())
                .cloned()
                .ok_or_else(|| BindingError::BadRequest("required metadata not set: sql".into()))?;
            let params = params(&req.metadata)?;
            let (began, clock) = (Utc::now(), Instant::now());
            let mut metadata = Metadata::from([
                ("operation".to_owned(), req.operation.clone()),
                ("sql".to_owned(), sql.clone()),
            ]);
            let data = match req.operation.as_str() {
                "exec" => {
                    let rows = engine.exec(sql, params).await?;
                    metadata.insert("rows-affected".to_owned(), rows.to_string());
                    Bytes::new()
                }
                _ => Bytes::from(engine.query(sql, params).await?),
            };
            metadata.insert("start-time".to_owned(), rfc3339_nano(began));
            metadata.insert("end-time".to_owned(), rfc3339_nano(Utc::now()));
            metadata.insert("duration".to_owned(), duration_text(clock.elapsed()));
            Ok(Some(InvokeResponse { data, metadata }))
        })
    }
}

/// Appends `item` (JSON text) to `out`, failing once the result would pass [`MAX_RESULT`].
pub(crate) fn push_bounded(out: &mut Vec<u8>, item: &[u8]) -> Result<(), BindingError> {
    if out.len() + item.len() + 1 > MAX_RESULT {
        return Err(BindingError::BadRequest(format!(
            "the result is larger than {MAX_RESULT} bytes; select fewer rows or columns"
        )));
    }
    out.extend_from_slice(item);
    Ok(())
}
