//! `bindings.redis` (output): `create` (SET, with `ttlInSeconds`), `get` (GET, or GETDEL with
//! `delete: "true"`), `delete` (DEL) and `increment` (INCR) of the request's `key`, as daprd's
//! component does; the data is stored as given (the JSON text of the request's `data`).

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::{BindingError, InvokeRequest, InvokeResponse, OutputBinding};
use crate::fault::Fault;
use crate::state::{BoxFuture, RedisSettings, manager_for};

/// The Redis output binding.
#[derive(Clone)]
pub struct RedisBinding {
    conn: ConnectionManager,
    timeout: Duration,
}

fn failed(e: redis::RedisError) -> BindingError {
    BindingError::Failed(Fault::caused_by(format!("redis: {e}"), e))
}

impl RedisBinding {
    /// Connects; the server must answer now.
    pub async fn connect(s: &RedisSettings) -> Result<Self, BindingError> {
        let conn = manager_for(s).await.map_err(BindingError::Failed)?;
        Ok(Self {
            conn,
            timeout: s.timeout,
        })
    }

    async fn run(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let key = (req.metadata.get("key").filter(|k| !k.is_empty())).ok_or_else(|| {
            BindingError::BadRequest("redis binding: missing key in request metadata".into())
        })?;
        let ttl = match req.metadata.get("ttlInSeconds").filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(t.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                BindingError::BadRequest(format!(
                    "ttlInSeconds {t:?} is not a positive whole number"
                ))
            })?),
        };
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        match req.operation.as_str() {
            "create" => pipe.cmd("SET").arg(key).arg(req.data.as_ref()).ignore(),
            "increment" => pipe.cmd("INCR").arg(key).ignore(),
            "delete" => pipe.cmd("DEL").arg(key).ignore(),
            "get" => {
                let take = req.metadata.get("delete").is_some_and(|d| d == "true");
                let cmd = if take { "GETDEL" } else { "GET" };
                let value: Option<Vec<u8>> = redis::cmd(cmd)
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .map_err(failed)?;
                // daprd answers a missing key with an empty answer, not none.
                return Ok(Some(InvokeResponse {
                    data: value.map(Bytes::from).unwrap_or_default(),
                    metadata: Default::default(),
                }));
            }
            other => {
                return Err(BindingError::BadRequest(format!(
                    "invalid operation type: {other}"
                )));
            }
        };
        if let Some(secs) = ttl.filter(|_| req.operation != "delete") {
            pipe.cmd("EXPIRE").arg(key).arg(secs).ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(failed)?;
        Ok(None)
    }
}

impl OutputBinding for RedisBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create", "delete", "get", "increment"]
    }

    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> BoxFuture<Result<Option<InvokeResponse>, BindingError>> {
        let this = self.clone();
        Box::pin(async move {
            let timeout = this.timeout;
            match tokio::time::timeout(timeout, this.run(req)).await {
                Ok(r) => r,
                Err(_) => Err(BindingError::Timeout(timeout)),
            }
        })
    }
}
