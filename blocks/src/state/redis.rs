//! `state.redis`: Dapr's layout and semantics on Redis.
//!
//! Each key is a hash with `data` (the value) and `version` (the ETag, an integer incremented on
//! every write), as daprd stores it, so both can share a database. Every operation is one Lua
//! script, so compare-and-set is atomic; a transaction is one script that checks every step
//! before applying any. The connection manager reconnects by itself; each call has a response
//! timeout instead of hanging on a dead server.
//!
//! As daprd's Redis store, and unlike the other stores, an ETag on a key that does not exist
//! matches: the write creates the key (version 1), a delete does nothing. The SDKs rely on it
//! (a save with the ETag of a value read before it expired, a delete retried).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{RedisError, Script, Value};

use crate::deadline;
use crate::fault::Fault;

use super::{
    BoxFuture, Concurrency, Consistency, DeleteRequest, Features, Item, Metadata, Operation,
    SetRequest, StateError, StateStore, rfc3339, ttl_of,
};

/// Reads a key: `{data, version-or-false, pttl}`; legacy plain strings have no version.
const GET: &str = r#"
local t = redis.call("TYPE", KEYS[1])["ok"]
if t == "none" then return false end
if t == "string" then return {redis.call("GET", KEYS[1]), false, redis.call("PTTL", KEYS[1])} end
if t ~= "hash" then return redis.error_reply("WRONGTYPE not a state key") end
local d = redis.call("HMGET", KEYS[1], "data", "version")
return {d[1], d[2], redis.call("PTTL", KEYS[1])}
"#;

/// Shared by set and transactions: checks an operation against `cur` (the version, or false)
/// and returns whether its ETag (or first-write) condition holds.
const CHECK: &str = r#"
local function check(cur, kind, etag, first)
  if etag ~= "" then
    return (not cur) or cur == etag
  elseif kind == "s" and cur and first == "1" then
    return false
  end
  return true
end
local function version(key)
  local t = redis.call("TYPE", key)["ok"]
  if t == "hash" then return redis.call("HGET", key, "version") end
  if t == "none" then return false end
  return "0"
end
local function apply(key, kind, data, ttl)
  if kind == "d" then redis.call("DEL", key) return end
  if redis.call("TYPE", key)["ok"] ~= "hash" then redis.call("DEL", key) end
  redis.call("HSET", key, "data", data)
  redis.call("HINCRBY", key, "version", 1)
  local n = tonumber(ttl)
  if n > 0 then redis.call("PEXPIRE", key, n) else redis.call("PERSIST", key) end
end
"#;

/// One operation: ARGV = kind, data, etag, first-write, ttl-ms. Answers how many operations it
/// applied: [`ETAG_MISMATCH`] when the condition did not hold.
const ONE: &str = r#"
if not check(version(KEYS[1]), ARGV[1], ARGV[3], ARGV[4]) then return 0 end
apply(KEYS[1], ARGV[1], ARGV[2], ARGV[5])
return 1
"#;

/// Many operations, all or none: ARGV holds five values per operation, KEYS one key each.
/// Answers how many it applied: [`ETAG_MISMATCH`] (none) when any condition did not hold.
const MANY: &str = r#"
local seen = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  local cur = seen[k]
  if cur == nil then cur = version(k) end
  local b = (i - 1) * 5
  if not check(cur, ARGV[b + 1], ARGV[b + 3], ARGV[b + 4]) then return 0 end
  if ARGV[b + 1] == "d" then seen[k] = false else seen[k] = tostring((tonumber(cur) or 0) + 1) end
end
for i = 1, #KEYS do
  local b = (i - 1) * 5
  apply(KEYS[i], ARGV[b + 1], ARGV[b + 2], ARGV[b + 5])
end
return #KEYS
"#;

/// What the write scripts answer when an ETag (or first-write) condition did not hold: no
/// operation applied. A reply rather than a script error, so it is told apart by value, whatever
/// the server's version does to error messages.
const ETAG_MISMATCH: i64 = 0;

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    /// Every operation's deadline: a dead server must not stall callers while the connection
    /// manager reconnects.
    timeout: Duration,
    default_ttl: Option<Duration>,
    get: Script,
    one: Script,
    many: Script,
}

/// How to reach Redis (component metadata, already validated).
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `redisUsername` (ACL).
    pub username: Option<String>,
    /// `redisPassword`.
    pub password: Option<String>,
    /// `redisDB`.
    pub db: i64,
    /// `enableTLS`.
    pub tls: bool,
    /// `insecureSkipTLSVerify`: accept any server certificate (logged as a warning).
    pub insecure_skip_verify: bool,
    /// How long one command may take.
    pub timeout: Duration,
    /// `ttlInSeconds` applied when a request has none.
    pub default_ttl: Option<Duration>,
}

impl RedisSettings {
    /// A plain connection to `host:port`: no credentials, database 0, no TLS, five seconds per
    /// command, no default TTL.
    pub fn plain(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            username: None,
            password: None,
            db: 0,
            tls: false,
            insecure_skip_verify: false,
            timeout: Duration::from_secs(5),
            default_ttl: None,
        }
    }
}

/// A client for the server `s` describes (address, TLS, credentials, database); shared by the
/// Redis state store and the Redis Streams broker.
pub(crate) fn client_for(s: &RedisSettings) -> redis::RedisResult<redis::Client> {
    let addr = if s.tls {
        if s.insecure_skip_verify {
            tracing::warn!(host = %s.host, "redis TLS certificate verification is off (insecureSkipTLSVerify)");
        }
        redis::ConnectionAddr::TcpTls {
            host: s.host.clone(),
            port: s.port,
            insecure: s.insecure_skip_verify,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(s.host.clone(), s.port)
    };
    let mut settings = redis::RedisConnectionInfo::default().set_db(s.db);
    if let Some(u) = &s.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &s.password {
        settings = settings.set_password(p);
    }
    let info = redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(settings);
    redis::Client::open(info)
}

/// A reconnecting connection to the server `s` describes; the server must answer now (later
/// outages are ridden out by reconnecting). Shared by the Redis components that take short
/// commands (state, lock).
pub(crate) async fn manager_for(s: &RedisSettings) -> Result<ConnectionManager, Fault> {
    let at = format!("redis at {}:{}", s.host, s.port);
    let client = client_for(s).map_err(|e| Fault::caused_by(format!("{at}: {e}"), e))?;
    // Short reconnect cycles: callers are bounded by `timeout` anyway, and a short cycle
    // notices a recovered server sooner.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(s.timeout))
        .set_connection_timeout(Some(s.timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let connecting = async {
        let made = client.get_connection_manager_with_config(config).await;
        made.map_err(|e| Fault::caused_by(format!("{at}: {e}"), e))
    };
    deadline::bounded(s.timeout, connecting, |t| {
        Fault::new(format!("{at}: no answer within {t:?}"))
    })
    .await
}

/// Running out of time on a Redis call, reported as the client reports its own I/O timeouts.
fn no_answer(timeout: Duration) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {timeout:?}"),
    ))
}

fn store_error(e: RedisError) -> StateError {
    let message = if e.is_timeout() {
        format!("redis: timed out: {e}")
    } else {
        format!("redis: {e}")
    };
    StateError::Store(Fault::caused_by(message, e))
}

/// Runs a write script under `timeout`: a mismatched ETag is the script's answer, not an error.
async fn run_script(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<i64>>,
) -> Result<(), StateError> {
    match deadline::bounded(timeout, call, no_answer).await {
        Ok(ETAG_MISMATCH) => Err(StateError::EtagMismatch(
            "the etag does not match the current version".into(),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(store_error(e)),
    }
}

/// Redis ETags are integers: anything else cannot match and is refused as invalid (400).
fn check_etag(etag: &Option<String>) -> Result<String, StateError> {
    match etag {
        None => Ok(String::new()),
        Some(e) if e.parse::<u64>().is_ok() => Ok(e.clone()),
        Some(e) => Err(StateError::EtagInvalid(format!("{e:?} is not a number"))),
    }
}

/// The five script arguments of one operation.
fn args_of(op: &Operation, default_ttl: Option<Duration>) -> Result<[Vec<u8>; 5], StateError> {
    Ok(match op {
        Operation::Upsert(r) => {
            let ttl = match ttl_of(&r.metadata)? {
                Some(d) => d,
                // An explicit negative TTL means "never"; absent means the component's default.
                None if r
                    .metadata
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("ttlInSeconds")) =>
                {
                    Duration::ZERO
                }
                None => default_ttl.unwrap_or_default(),
            };
            let first = if r.options.concurrency == Concurrency::FirstWrite {
                "1"
            } else {
                "0"
            };
            [
                b"s".to_vec(),
                r.value.to_vec(),
                check_etag(&r.etag)?.into_bytes(),
                first.into(),
                ttl.as_millis().to_string().into_bytes(),
            ]
        }
        Operation::Delete(r) => [
            b"d".to_vec(),
            Vec::new(),
            check_etag(&r.etag)?.into_bytes(),
            b"0".to_vec(),
            b"0".to_vec(),
        ],
    })
}

/// Whether any operation asks for strong consistency.
fn strong(ops: &[Operation]) -> bool {
    ops.iter().any(|op| {
        let o = match op {
            Operation::Upsert(r) => r.options,
            Operation::Delete(r) => r.options,
        };
        o.consistency == Consistency::Strong
    })
}

/// Strong consistency: wait (at most a second, as daprd does) until every connected replica
/// has the write. Without replicas there is nothing to wait for.
async fn wait_for_replicas(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await?;
    let replicas = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    if let Some(n) = replicas.filter(|n| *n > 0) {
        let _acked: i64 = redis::cmd("WAIT")
            .arg(n)
            .arg(1000)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

fn key_of(op: &Operation) -> &str {
    match op {
        Operation::Upsert(r) => &r.key,
        Operation::Delete(r) => &r.key,
    }
}

impl RedisStore {
    /// Connects (the server must answer now; later outages are ridden out by reconnecting).
    pub async fn connect(s: &RedisSettings) -> Result<Self, StateError> {
        let conn = manager_for(s).await.map_err(StateError::Store)?;
        Ok(Self {
            conn,
            timeout: s.timeout,
            default_ttl: s.default_ttl,
            get: Script::new(GET),
            one: Script::new(&format!("{CHECK}{ONE}")),
            many: Script::new(&format!("{CHECK}{MANY}")),
        })
    }
}

impl StateStore for RedisStore {
    fn features(&self) -> Features {
        Features {
            query: false,
            ..Features::ALL
        }
    }

    fn get(&self, key: String, _metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>> {
        let (mut conn, script, timeout) = (self.conn.clone(), self.get.clone(), self.timeout);
        Box::pin(async move {
            let read = script.key(&key);
            let v: Value = deadline::bounded(timeout, read.invoke_async(&mut conn), no_answer)
                .await
                .map_err(store_error)?;
            let Value::Array(parts) = v else {
                return Ok(None);
            };
            let bytes = |v: &Value| match v {
                Value::BulkString(b) => Some(b.clone()),
                Value::SimpleString(s) => Some(s.clone().into_bytes()),
                _ => None,
            };
            let data = parts.first().and_then(bytes).unwrap_or_default();
            let etag = parts
                .get(1)
                .and_then(bytes)
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let mut metadata = Metadata::new();
            if let Some(Value::Int(ms)) = parts.get(2)
                && *ms > 0
            {
                let at = SystemTime::now() + Duration::from_millis(ms.unsigned_abs());
                metadata.insert("ttlExpireTime".into(), rfc3339(at));
            }
            Ok(Some(Item {
                data: Bytes::from(data),
                etag,
                metadata,
            }))
        })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>> {
        self.run(&self.one, vec![Operation::Upsert(req)])
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>> {
        self.run(&self.one, vec![Operation::Delete(req)])
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        if ops.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.run(&self.many, ops)
    }
}

impl RedisStore {
    /// Runs `script` with a key and its arguments per operation, then waits for replicas when
    /// any operation asked for strong consistency.
    fn run(&self, script: &Script, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        let (mut conn, script, ttl, timeout) = (
            self.conn.clone(),
            script.clone(),
            self.default_ttl,
            self.timeout,
        );
        Box::pin(async move {
            let mut inv = script.prepare_invoke();
            for op in &ops {
                inv.key(key_of(op));
                for a in args_of(op, ttl)? {
                    inv.arg(a);
                }
            }
            run_script(timeout, inv.invoke_async(&mut conn)).await?;
            if strong(&ops) {
                deadline::bounded(timeout, wait_for_replicas(&mut conn), no_answer)
                    .await
                    .map_err(store_error)?;
            }
            Ok(())
        })
    }
}
