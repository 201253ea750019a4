//! `lock.redis`: one key per resource, its value the owner, set with `SET NX PX` so taking a
//! lock and giving it an expiry are one command; unlocking compares the owner and deletes in
//! one script. As daprd's component, a server with replicas is refused (a lock written to a
//! primary that fails over before replicating would be held twice).

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::{LockError, LockStore, TryLockRequest, UnlockRequest, UnlockStatus};
use crate::deadline;
use crate::fault::Fault;
use crate::state::{BoxFuture, RedisSettings, manager_for};

/// Deletes KEYS[1] if it holds ARGV[1]: 1 when deleted, -1 when absent, -2 when another owner's.
const UNLOCK: &str = r#"
local v = redis.call("GET", KEYS[1])
if not v then return -1 end
if v ~= ARGV[1] then return -2 end
return redis.call("DEL", KEYS[1])
"#;

/// The Redis lock store.
#[derive(Clone)]
pub struct RedisLock {
    conn: ConnectionManager,
    timeout: Duration,
    unlock: Script,
}

fn failed(e: redis::RedisError) -> LockError {
    LockError::Store(Fault::caused_by(format!("redis: {e}"), e))
}

impl RedisLock {
    /// Connects, and refuses a server that has replicas.
    pub async fn connect(s: &RedisSettings) -> Result<Self, LockError> {
        let mut conn = manager_for(s).await.map_err(LockError::Store)?;
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        let info = cmd.query_async::<String>(&mut conn);
        let info = deadline::bounded(s.timeout, info, |t| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {t:?}"),
            ))
        })
        .await;
        // A server that will not say (INFO refused by its ACL) is taken as having none, as
        // daprd does, with a warning.
        let replicas = match info {
            Ok(info) => info
                .lines()
                .find_map(|l| l.strip_prefix("connected_slaves:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0),
            Err(e) => {
                tracing::warn!(host = %s.host, error = %e, "could not ask Redis for its replicas (INFO); locks assume it has none");
                0
            }
        };
        if replicas > 0 {
            let f = Fault::new(format!(
                "redis at {}:{} has {replicas} replica(s); a lock could be held twice after a \
                 failover, so a server with replicas is not used for locks",
                s.host, s.port
            ));
            return Err(LockError::Store(f.permanent()));
        }
        Ok(Self {
            conn,
            timeout: s.timeout,
            unlock: Script::new(UNLOCK),
        })
    }
}

impl LockStore for RedisLock {
    fn try_lock(&self, req: TryLockRequest) -> BoxFuture<Result<bool, LockError>> {
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let ms = u64::try_from(req.expiry.as_millis()).unwrap_or(u64::MAX);
            let mut cmd = redis::cmd("SET");
            cmd.arg(&req.resource_id)
                .arg(&req.owner)
                .arg("NX")
                .arg("PX")
                .arg(ms);
            let set = cmd.query_async::<Option<String>>(&mut conn);
            match tokio::time::timeout(timeout, set).await {
                Ok(Ok(answer)) => Ok(answer.is_some()),
                Ok(Err(e)) => Err(failed(e)),
                Err(_) => Err(LockError::Timeout(timeout)),
            }
        })
    }

    fn unlock(&self, req: UnlockRequest) -> BoxFuture<Result<UnlockStatus, LockError>> {
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        let script = self.unlock.clone();
        Box::pin(async move {
            let mut call = script.key(&req.resource_id);
            call.arg(&req.owner);
            let run = call.invoke_async::<i64>(&mut conn);
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(n)) if n >= 0 => Ok(UnlockStatus::Success),
                Ok(Ok(-1)) => Ok(UnlockStatus::LockDoesNotExist),
                Ok(Ok(-2)) => Ok(UnlockStatus::LockBelongsToOthers),
                Ok(Ok(n)) => Err(LockError::Store(Fault::new(format!(
                    "redis: the unlock script answered {n}"
                )))),
                Ok(Err(e)) => Err(failed(e)),
                Err(_) => Err(LockError::Timeout(timeout)),
            }
        })
    }
}
