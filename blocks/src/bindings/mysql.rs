//! `bindings.mysql`: `exec` and `query` on MariaDB or MySQL with bound parameters (`?`).
//!
//! Parameters bind as the JSON gives them: `null` as NULL, booleans as 1/0, whole numbers as
//! integers, other numbers as doubles, strings as strings, arrays and objects as their JSON text.
//! A `query` answers rows as daprd does: a JSON array of objects keyed by column name, NULL
//! columns left out, and `null` when there is no row; integers and floats are numbers; decimals,
//! text and times of day are strings; dates and datetimes are RFC 3339 in UTC; binary columns
//! are base64.

use std::sync::Arc;

use base64::Engine as _;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Pool, Row, Value};
use serde_json::{Map, Value as Json};

use super::BindingError;
use super::sql::{Engine, SqlBinding, push_bounded};
use crate::component::field_error as err;
use crate::mysql::{fault, is_refusal, parse_dsn, pool};
use crate::state::BoxFuture;

/// The charset number of binary strings.
const BINARY: u16 = 63;

struct MySql {
    pool: Pool,
}

/// Opens a component: `url` (the Go driver's DSN), `maxOpenConns` (default 8).
pub(crate) async fn open(
    name: &str,
    md: &crate::component::Settings,
) -> Result<SqlBinding, Vec<crate::ComponentError>> {
    let url = (md.get("url").filter(|v| !v.is_empty()))
        .ok_or_else(|| err("spec.metadata.url", "missing MySql connection string"))?;
    if let Some(p) = md.get("pempath").filter(|v| !v.is_empty()) {
        return Err(err(
            "spec.metadata.pemPath",
            format!("{p:?}: TLS to MariaDB/MySQL is not supported by this build"),
        ));
    }
    let max = match md.get("maxopenconns").filter(|v| !v.is_empty()) {
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            err(
                "spec.metadata.maxOpenConns",
                format!("{v:?} is not a positive number"),
            )
        })?,
        None => 8,
    };
    for unused in ["maxidleconns", "connmaxlifetime", "connmaxidletime"] {
        if md.get(unused).is_some_and(|v| !v.is_empty()) {
            tracing::warn!(
                component = name,
                setting = unused,
                "not honoured: idle connections are closed by the pool's own policy"
            );
        }
    }
    connect(url, max, std::time::Duration::from_secs(20))
        .await
        .map_err(|e| err("spec.metadata.url", e))
}

/// Connects with daprd's connection string (the Go driver's DSN); at most `max` connections.
async fn connect(
    url: &str,
    max: usize,
    timeout: std::time::Duration,
) -> Result<SqlBinding, String> {
    let dsn = parse_dsn(url)?;
    let pool = pool(&dsn, None, max);
    let ping = async {
        let mut c = pool.get_conn().await?;
        c.ping().await
    };
    let limit = dsn.connect_timeout.unwrap_or(timeout);
    match tokio::time::timeout(limit, ping).await {
        Ok(Ok(())) => Ok(SqlBinding::new(Arc::new(MySql { pool }))),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {limit:?}")),
    }
}

fn failed(e: mysql_async::Error) -> BindingError {
    if is_refusal(&e) {
        return BindingError::BadRequest(format!("error executing query: {e}"));
    }
    BindingError::Failed(fault("error executing query", e))
}

/// A JSON parameter as a value to bind.
fn param(v: &Json) -> Value {
    match v {
        Json::Null => Value::NULL,
        Json::Bool(b) => Value::Int(i64::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Double(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Value::Bytes(s.clone().into_bytes()),
        other => Value::Bytes(other.to_string().into_bytes()),
    }
}

impl Engine for MySql {
    fn exec(&self, sql: String, params: Vec<Json>) -> BoxFuture<Result<u64, BindingError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut c = pool.get_conn().await.map_err(failed)?;
            let params: Vec<Value> = params.iter().map(param).collect();
            let result = c.exec_iter(sql, params).await.map_err(failed)?;
            let n = result.affected_rows();
            result.drop_result().await.map_err(failed)?;
            Ok(n)
        })
    }

    fn query(&self, sql: String, params: Vec<Json>) -> BoxFuture<Result<Vec<u8>, BindingError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut c = pool.get_conn().await.map_err(failed)?;
            let params: Vec<Value> = params.iter().map(param).collect();
            let mut result = c.exec_iter(sql, params).await.map_err(failed)?;
            let mut out = b"[".to_vec();
            let mut rows = 0usize;
            let mut outcome = Ok(());
            while let Some(row) = result.next().await.map_err(failed)? {
                let text = object(row).to_string();
                let sep = if rows == 0 { "" } else { "," };
                rows += 1;
                if let Err(e) = push_bounded(&mut out, format!("{sep}{text}").as_bytes()) {
                    outcome = Err(e);
                    break;
                }
            }
            result.drop_result().await.map_err(failed)?;
            outcome?;
            out.push(b']');
            // As daprd: no row is `null`, not an empty array.
            Ok(if rows == 0 { b"null".to_vec() } else { out })
        })
    }

    fn close(&self) -> BoxFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move {
            if let Err(e) = pool.disconnect().await {
                tracing::warn!(error = %e, "closing the MySQL binding's connections failed");
            }
        })
    }
}

/// A row as an object keyed by column name, NULL columns left out.
fn object(row: Row) -> Json {
    let columns = row.columns();
    let mut out = Map::new();
    for (column, value) in columns.iter().zip(row.unwrap()) {
        if let Some(v) = render(column, value) {
            out.insert(column.name_str().into_owned(), v);
        }
    }
    Json::Object(out)
}

/// One value as JSON; `None` for NULL.
fn render(column: &Column, value: Value) -> Option<Json> {
    let text = |b: Vec<u8>| Json::String(String::from_utf8_lossy(&b).into_owned());
    Some(match value {
        Value::NULL => return None,
        Value::Int(i) => Json::from(i),
        Value::UInt(u) => Json::from(u),
        Value::Float(f) => Json::from(f64::from(f)),
        Value::Double(f) => Json::from(f),
        Value::Bytes(b) => match column.column_type() {
            ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => text(b),
            _ if column.character_set() == BINARY
                && !column.flags().contains(ColumnFlags::NUM_FLAG) =>
            {
                Json::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            _ => text(b),
        },
        Value::Date(y, mo, d, h, mi, s, us) => {
            let fraction = if us == 0 {
                String::new()
            } else {
                format!(".{us:06}").trim_end_matches('0').to_owned()
            };
            Json::String(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}Z"
            ))
        }
        Value::Time(negative, days, h, mi, s, us) => {
            let sign = if negative { "-" } else { "" };
            let hours = days * 24 + u32::from(h);
            let fraction = if us == 0 {
                String::new()
            } else {
                format!(".{us:06}")
            };
            Json::String(format!("{sign}{hours:02}:{mi:02}:{s:02}{fraction}"))
        }
    })
}
