//! From a `Component` document to a running state store.

use crate::component::Settings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{
    Encrypted, EncryptionKey, KeyPrefix, MemoryStore, MySqlStore, PostgresStore, RedisSettings,
    RedisStore, SqliteStore, StateStore,
};
use crate::component::{field_error as err, unsupported_type};
use crate::{Component, ComponentError};

/// What opening a component may depend on.
#[derive(Clone, Debug)]
pub struct OpenContext {
    /// This sidecar's app id (key prefixes).
    pub app_id: String,
    /// Its namespace (key prefixes).
    pub namespace: String,
    /// Where relative database files go.
    pub data_dir: PathBuf,
}

/// An opened state component.
#[derive(Clone)]
pub struct StateComponent {
    /// Its name (`metadata.name`).
    pub name: String,
    /// Its type, e.g. `state.sqlite`.
    pub type_: String,
    /// Its version, e.g. `v1`.
    pub version: String,
    /// The store.
    pub store: Arc<dyn StateStore>,
    /// What this app's keys are prefixed with, `||` included.
    pub prefix: String,
    /// The store's service wrapped in the layers the sidecar chose (resiliency policies); calls
    /// go through it when set.
    pub layered: Option<Layered>,
    /// `actorStateStore: "true"`: the store of actor state, claims and reminders.
    pub actor_store: bool,
}

/// A store's service behind layers, its errors the store's own again.
pub type Layered =
    tower::util::BoxCloneSyncService<super::StateRequest, super::StateResponse, super::StateError>;

impl StateComponent {
    /// The store as a tower service, for callers that wrap it in layers.
    pub fn service(&self) -> super::StateService {
        super::StateService::new(self.store.clone())
    }
}

/// The component's literal metadata, names lower-cased (Dapr matches them case-insensitively).
/// References to secrets and environment variables are refused until secrets land.
pub(crate) fn literal_metadata(c: &Component) -> Result<Settings, Vec<ComponentError>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, item) in c.spec.metadata.iter().enumerate() {
        let value = match (&item.value, &item.secret_key_ref, &item.env_ref) {
            (Some(serde_json::Value::String(s)), _, _) => s.clone(),
            (Some(v), _, _) => v.to_string(),
            (None, None, None) => String::new(),
            _ => {
                errors.push(ComponentError {
                    field: format!("spec.metadata[{i}]"),
                    // The sidecar resolves references before opening (`secrets::resolve_references`).
                    message: format!(
                        "{:?}: secretKeyRef/envRef was not resolved to a value",
                        item.name
                    ),
                });
                continue;
            }
        };
        out.insert(item.name.to_ascii_lowercase(), value);
    }
    if errors.is_empty() {
        Ok(Settings::new(out))
    } else {
        Err(errors)
    }
}

/// Opens a state component: connects to its server, if it has one. Must run inside a tokio
/// runtime (stores may start background tasks). Errors name the field.
pub async fn open(c: &Component, ctx: &OpenContext) -> Result<StateComponent, Vec<ComponentError>> {
    let md = literal_metadata(c)?;
    let prefix = KeyPrefix::parse(md.get("keyprefix").map(String::as_str))
        .map_err(|e| err("spec.metadata.keyPrefix", e.to_string()))?
        .prefix(&ctx.app_id, &c.metadata.name, &ctx.namespace);
    let store: Arc<dyn StateStore> = match c.spec.type_.as_str() {
        "state.in-memory" => Arc::new(MemoryStore::new()),
        "state.sqlite" => open_sqlite(&md, ctx)?,
        "state.redis" => {
            let settings = redis_settings(&md)?;
            let store = RedisStore::connect(&settings).await.map_err(|e| {
                err(
                    "spec.metadata.redisHost",
                    format!("{}:{}: {e}", settings.host, settings.port),
                )
            })?;
            Arc::new(store)
        }
        "state.postgresql" => open_postgres(&md).await?,
        "state.mysql" => open_mysql(&md).await?,
        other => return Err(unsupported_type(other, "state store")),
    };
    let store = encrypted(store, &md)?;
    let actor_store = match md.get("actorstatestore") {
        None => false,
        Some(v) => crate::pubsub::cloudevent::parse_bool(v).ok_or_else(|| {
            err(
                "spec.metadata.actorStateStore",
                format!("{v:?} is not a boolean"),
            )
        })?,
    };
    let features = store.features();
    if actor_store && !(features.etag && features.transactional) {
        return Err(err(
            "spec.metadata.actorStateStore",
            format!(
                "{} cannot hold actors: an actor state store needs ETags and transactions",
                c.spec.type_
            ),
        ));
    }
    md.warn_unread(&c.metadata.name, &c.spec.type_);
    Ok(StateComponent {
        name: c.metadata.name.clone(),
        type_: c.spec.type_.clone(),
        version: c.spec.version_or_v1(),
        store,
        prefix,
        layered: None,
        actor_store,
    })
}

/// `state.sqlite`: a database file under the data directory, swept for expired rows.
fn open_sqlite(
    md: &Settings,
    ctx: &OpenContext,
) -> Result<Arc<dyn StateStore>, Vec<ComponentError>> {
    let conn = md
        .get("connectionstring")
        .map(String::as_str)
        .unwrap_or("state.db");
    let path = sqlite_path(conn, &ctx.data_dir);
    let table = md.get("tablename").map(String::as_str).unwrap_or("state");
    let store = SqliteStore::open(&path, table).map_err(|e| {
        err(
            "spec.metadata.connectionString",
            format!("{}: {e}", path.display()),
        )
    })?;
    swept(md, store, |s| {
        Box::pin(async move { s.sweep_expired().await.map(drop) })
    })
}

/// `state.postgresql`: connects and creates the table, then sweeps expired rows.
async fn open_postgres(md: &Settings) -> Result<Arc<dyn StateStore>, Vec<ComponentError>> {
    let conn = md
        .get("connectionstring")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err("spec.metadata.connectionString", "is required"))?;
    let table = md.get("tablename").map(String::as_str).unwrap_or("state");
    let timeout = deadline_setting(
        md.get("timeout").map(String::as_str),
        Duration::from_secs(10),
        "spec.metadata.timeout",
        "10s",
    )?;
    let store = PostgresStore::connect(conn, table, timeout)
        .await
        .map_err(|e| err("spec.metadata.connectionString", e.to_string()))?;
    swept(md, store, |s| {
        Box::pin(async move { s.sweep_expired().await.map(drop) })
    })
}

/// `state.mysql`: connects, creates the database and table, then sweeps expired rows.
async fn open_mysql(md: &Settings) -> Result<Arc<dyn StateStore>, Vec<ComponentError>> {
    let conn = md
        .get("connectionstring")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err("spec.metadata.connectionString", "is required"))?;
    if let Some(p) = md.get("pempath").filter(|v| !v.is_empty()) {
        return Err(err(
            "spec.metadata.pemPath",
            format!("{p:?}: TLS to MariaDB/MySQL is not supported by this build"),
        ));
    }
    let schema = md
        .get("schemaname")
        .map_or("dapr_state_store", String::as_str);
    let table = md.get("tablename").map_or("state", String::as_str);
    // daprd keeps when it last swept in this table; the sweeper here needs none.
    md.get("metadatatablename");
    let timeout = deadline_setting(
        md.get("timeoutinseconds")
            .or(md.get("timeout"))
            .map(String::as_str),
        Duration::from_secs(20),
        "spec.metadata.timeoutInSeconds",
        "20",
    )?;
    let store = MySqlStore::connect(conn, schema, table, timeout)
        .await
        .map_err(|e| err("spec.metadata.connectionString", e.to_string()))?;
    swept(md, store, |s| {
        Box::pin(async move { s.sweep_expired().await.map(drop) })
    })
}

/// `store` behind AES-GCM when `primaryEncryptionKey` is set (`secondaryEncryptionKey` still
/// decrypts values written under an earlier key).
fn encrypted(
    store: Arc<dyn StateStore>,
    md: &Settings,
) -> Result<Arc<dyn StateStore>, Vec<ComponentError>> {
    Ok(
        match md.get("primaryencryptionkey").filter(|v| !v.is_empty()) {
            None => store,
            Some(primary) => {
                let primary = EncryptionKey::from_hex(primary)
                    .map_err(|e| err("spec.metadata.primaryEncryptionKey", e))?;
                let secondary = match md.get("secondaryencryptionkey").filter(|v| !v.is_empty()) {
                    Some(k) => Some(
                        EncryptionKey::from_hex(k)
                            .map_err(|e| err("spec.metadata.secondaryEncryptionKey", e))?,
                    ),
                    None => None,
                };
                Arc::new(Encrypted::new(store, primary, secondary))
            }
        },
    )
}

/// `store`, with `sweep` run on a copy of it every `cleanupInterval` (or
/// `cleanupIntervalInSeconds`; default 1h; `0` turns it off), for stores that only hide expired
/// rows on read.
fn swept<S: StateStore + Clone>(
    md: &Settings,
    store: S,
    sweep: fn(S) -> super::BoxFuture<Result<(), super::StateError>>,
) -> Result<Arc<dyn StateStore>, Vec<ComponentError>> {
    let every = match md
        .get("cleanupinterval")
        .or(md.get("cleanupintervalinseconds"))
        .map(String::as_str)
    {
        None | Some("") => Some(Duration::from_secs(3600)),
        Some(v) => parse_interval(v).ok_or_else(|| {
            err(
                "spec.metadata.cleanupInterval",
                format!("{v:?} is not a duration like 1h or 0 (off)"),
            )
        })?,
    };
    if let Some(every) = every {
        let sweeper = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = sweep(sweeper.clone()).await {
                    tracing::warn!(error = %e, "sweeping expired state failed");
                }
            }
        });
    }
    Ok(Arc::new(store))
}

/// Dapr's Redis metadata: `redisHost` (`host:port`), `redisPort`, `redisUsername`,
/// `redisPassword`, `redisDB`, `enableTLS`, `insecureSkipTLSVerify`, `ttlInSeconds`, and
/// `dialTimeout`/`readTimeout`. Cluster and sentinel modes are refused by name.
pub(crate) fn redis_settings(md: &Settings) -> Result<RedisSettings, Vec<ComponentError>> {
    let (host, port) = redis_address(md)?;
    let db = match nonempty(md, "redisdb") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| err("spec.metadata.redisDB", format!("{v:?} is not a number")))?,
    };
    let (timeout, default_ttl) = redis_times(md)?;
    Ok(RedisSettings {
        host,
        port,
        username: nonempty(md, "redisusername").map(str::to_owned),
        password: nonempty(md, "redispassword").map(str::to_owned),
        db,
        tls: flag(md, "enabletls", "enableTLS")?,
        insecure_skip_verify: flag(md, "insecureskiptlsverify", "insecureSkipTLSVerify")?,
        timeout,
        default_ttl,
    })
}

/// A metadata value (keys lower-cased), unless empty.
fn nonempty<'a>(md: &'a Settings, key: &str) -> Option<&'a str> {
    md.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// A true/false metadata value (false when absent); errors name the field as `name`.
fn flag(md: &Settings, key: &str, name: &str) -> Result<bool, Vec<ComponentError>> {
    match nonempty(md, key).map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(err(
            &format!("spec.metadata.{name}"),
            format!("{v:?} is not true or false"),
        )),
    }
}

/// `redisHost` (`host:port`, or a host with `redisPort`): one server, as cluster and sentinel
/// modes are refused.
fn redis_address(md: &Settings) -> Result<(String, u16), Vec<ComponentError>> {
    let host = nonempty(md, "redishost")
        .ok_or_else(|| err("spec.metadata.redisHost", "is required (host:port)"))?;
    if host.contains(',')
        || nonempty(md, "redistype").is_some_and(|t| t.eq_ignore_ascii_case("cluster"))
        || flag(md, "failover", "failover")?
    {
        return Err(err(
            "spec.metadata.redisHost",
            format!(
                "{host:?}: cluster and sentinel modes are not supported yet; give one host:port"
            ),
        ));
    }
    let default_port = match nonempty(md, "redisport") {
        None => 6379,
        Some(p) => p
            .parse()
            .map_err(|_| err("spec.metadata.redisPort", format!("{p:?} is not a port")))?,
    };
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (
            h,
            p.parse().map_err(|_| {
                err(
                    "spec.metadata.redisHost",
                    format!("{host:?} has a bad port"),
                )
            })?,
        ),
        _ => (host, default_port),
    };
    Ok((
        h.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port,
    ))
}

/// The command deadline (`readTimeout`, else `dialTimeout`; 5 s) and `ttlInSeconds`.
fn redis_times(md: &Settings) -> Result<(Duration, Option<Duration>), Vec<ComponentError>> {
    let timeout = deadline_setting(
        nonempty(md, "readtimeout").or(nonempty(md, "dialtimeout")),
        Duration::from_secs(5),
        "spec.metadata.readTimeout",
        "5s",
    )?;
    let default_ttl = match nonempty(md, "ttlinseconds") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Some(Duration::from_secs(n.unsigned_abs())),
            Ok(_) => None,
            Err(_) => {
                return Err(err(
                    "spec.metadata.ttlInSeconds",
                    format!("{v:?} is not a whole number"),
                ));
            }
        },
    };
    Ok((timeout, default_ttl))
}

/// `connectionString` of Dapr's SQLite component: a path, optionally as `file:` URI with query
/// options (ignored here). Relative paths are under the data directory.
fn sqlite_path(conn: &str, data_dir: &Path) -> PathBuf {
    let p = conn.strip_prefix("file:").unwrap_or(conn);
    let p = p.split('?').next().unwrap_or(p);
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        data_dir.join(p)
    }
}

/// A call deadline: `default` when `v` is missing or empty, else a duration other than zero;
/// anything else is an error at `field` with an example (`like`).
pub(crate) fn deadline_setting(
    v: Option<&str>,
    default: Duration,
    field: &str,
    like: &str,
) -> Result<Duration, Vec<ComponentError>> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match parse_interval(v) {
            Some(Some(d)) => Ok(d),
            _ => Err(err(field, format!("{v:?} is not a duration like {like}"))),
        },
    }
}

/// `1h`, `30m`, `90s`, `500ms`; `0` (or a zero duration) turns the sweeper off.
fn parse_interval(v: &str) -> Option<Option<Duration>> {
    let d = crate::component::metadata_duration(v, Duration::from_secs(1))?;
    Some((!d.is_zero()).then_some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_and_intervals() {
        let d = Path::new("/data");
        assert_eq!(sqlite_path("state.db", d), Path::new("/data/state.db"));
        assert_eq!(
            sqlite_path("file:/abs/x.db?_journal=WAL", d),
            Path::new("/abs/x.db")
        );
        assert_eq!(parse_interval("1h"), Some(Some(Duration::from_secs(3600))));
        assert_eq!(parse_interval("0"), Some(None));
        assert_eq!(parse_interval("soon"), None);
    }
}
