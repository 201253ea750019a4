//! `bindings.postgresql`: `exec` and `query` on PostgreSQL with bound parameters.
//!
//! Parameters travel in PostgreSQL's text format, so the server reads each as the type the
//! statement gives its placeholder (`$1`, `$2`, …), as it reads a literal: a JSON number binds to
//! an `int`, `numeric` or `float` placeholder alike, a string to any type it spells, `null` is
//! NULL, and arrays and objects bind as their JSON text. None is ever spliced into the statement.
//!
//! A `query` answers a JSON array of rows, each an array of its values in column order, as daprd
//! renders them: numbers (`numeric` exactly), strings, booleans, `json`/`jsonb` as JSON,
//! timestamps and dates as RFC 3339 in UTC, `bytea` as base64, a `uuid` as its 16 bytes, NULL as
//! `null`. A column of another type fails the query, naming it.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use deadpool_postgres::Pool;
use futures_util::{StreamExt as _, pin_mut};
use serde_json::Value;
use tokio_postgres::types::{Format, FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::BindingError;
use super::sql::{Engine, SqlBinding, push_bounded};
use crate::component::field_error as err;
use crate::fault::Fault;
use crate::state::BoxFuture;

/// Connections kept at most.
const MAX_CONNECTIONS: usize = 8;

/// A PostgreSQL database.
struct Postgres {
    pool: Pool,
}

/// Connects with a libpq connection string or `postgres://` URL; fails unless a connection can
/// be made within `timeout`.
async fn connect(conn: &str, timeout: Duration) -> Result<SqlBinding, String> {
    let mut cfg: tokio_postgres::Config = conn.parse().map_err(|e| format!("{e}"))?;
    cfg.connect_timeout(timeout);
    let pool = crate::state::postgres_pool(cfg, MAX_CONNECTIONS, Some(timeout))
        .map_err(|e| e.to_string())?;
    drop(pool.get().await.map_err(|e| e.to_string())?);
    Ok(SqlBinding::new(Arc::new(Postgres { pool })))
}

/// Opens a component: `connectionString` (or `url`), `timeout` for connecting (default 20s).
pub(crate) async fn open(
    md: &crate::component::Settings,
) -> Result<SqlBinding, Vec<crate::ComponentError>> {
    let field = "spec.metadata.connectionString";
    let conn = (md.get("connectionstring").or(md.get("url")))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err(field, "is required"))?;
    let timeout = md.get("timeout").or(md.get("timeoutinseconds"));
    let timeout = crate::state::deadline_setting(
        timeout.map(String::as_str),
        Duration::from_secs(20),
        "spec.metadata.timeout",
        "20s",
    )?;
    connect(conn, timeout).await.map_err(|e| err(field, e))
}

fn failed(e: impl Into<crate::fault::Cause> + std::fmt::Display) -> BindingError {
    BindingError::Failed(Fault::caused_by(format!("error executing query: {e}"), e))
}

impl Engine for Postgres {
    fn exec(&self, sql: String, params: Vec<Value>) -> BoxFuture<Result<u64, BindingError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let client = pool.get().await.map_err(failed)?;
            let params: Vec<Text> = params.iter().map(Text::of).collect();
            client
                .execute_raw(sql.as_str(), params.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(failed)
        })
    }

    fn query(&self, sql: String, params: Vec<Value>) -> BoxFuture<Result<Vec<u8>, BindingError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let client = pool.get().await.map_err(failed)?;
            let params: Vec<Text> = params.iter().map(Text::of).collect();
            let rows = client
                .query_raw(sql.as_str(), params.iter().map(|p| p as &dyn ToSql))
                .await
                .map_err(failed)?;
            pin_mut!(rows);
            let mut out = b"[".to_vec();
            let mut first = true;
            while let Some(row) = rows.next().await {
                let row = row.map_err(failed)?;
                let mut text = if first { b"[".to_vec() } else { b",[".to_vec() };
                first = false;
                for (i, column) in row.columns().iter().enumerate() {
                    if i > 0 {
                        text.push(b',');
                    }
                    let raw: Raw = row.try_get(i).map_err(failed)?;
                    let value = render(&raw).ok_or_else(|| {
                        BindingError::BadRequest(format!(
                            "column {:?} has type {}, which this binding does not render; \
                             cast it (e.g. ::text)",
                            column.name(),
                            column.type_()
                        ))
                    })?;
                    text.extend_from_slice(value.as_bytes());
                }
                text.push(b']');
                push_bounded(&mut out, &text)?;
            }
            out.push(b']');
            Ok(out)
        })
    }

    fn close(&self) -> BoxFuture<()> {
        self.pool.close();
        Box::pin(async {})
    }
}

/// A parameter in text format: the server reads it as its placeholder's type.
#[derive(Debug)]
struct Text(Option<String>);

impl Text {
    fn of(v: &Value) -> Self {
        Self(match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    }
}

impl ToSql for Text {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// A column's value as the server sent it (binary format), with its type.
struct Raw<'a> {
    ty: Type,
    bytes: Option<&'a [u8]>,
}

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Self {
            ty: ty.clone(),
            bytes: Some(raw),
        })
    }

    fn from_sql_null(ty: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Self {
            ty: ty.clone(),
            bytes: None,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Microseconds (timestamps) or days (dates) count from 2000-01-01 UTC.
const EPOCH_2000: i64 = 946_684_800;

/// The JSON text of one value; `None` for a type not rendered.
fn render(raw: &Raw<'_>) -> Option<String> {
    let Some(b) = raw.bytes else {
        return Some("null".into());
    };
    let string = |s: &str| Value::String(s.to_owned()).to_string();
    let be = |n: usize| b.get(..n);
    Some(match raw.ty {
        Type::BOOL => (b.first()? != &0).to_string(),
        Type::INT2 => i16::from_be_bytes(be(2)?.try_into().ok()?).to_string(),
        Type::INT4 => i32::from_be_bytes(be(4)?.try_into().ok()?).to_string(),
        Type::INT8 => i64::from_be_bytes(be(8)?.try_into().ok()?).to_string(),
        Type::OID => u32::from_be_bytes(be(4)?.try_into().ok()?).to_string(),
        Type::FLOAT4 => float(f64::from(f32::from_be_bytes(be(4)?.try_into().ok()?))),
        Type::FLOAT8 => float(f64::from_be_bytes(be(8)?.try_into().ok()?)),
        Type::NUMERIC => numeric(b)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            string(std::str::from_utf8(b).ok()?)
        }
        Type::JSON => json(b)?,
        Type::JSONB => json(b.strip_prefix(&[1])?)?,
        Type::BYTEA => string(&base64::engine::general_purpose::STANDARD.encode(b)),
        Type::UUID => Value::from(b.to_vec()).to_string(),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(be(8)?.try_into().ok()?);
            let t = chrono::DateTime::from_timestamp_micros(
                micros.checked_add(EPOCH_2000 * 1_000_000)?,
            )?;
            string(&super::gotime::rfc3339_nano(t))
        }
        Type::DATE => {
            let days = i64::from(i32::from_be_bytes(be(4)?.try_into().ok()?));
            let t = chrono::DateTime::from_timestamp(EPOCH_2000 + days * 86_400, 0)?;
            string(&super::gotime::rfc3339_nano(t))
        }
        _ => return None,
    })
}

/// A float as a JSON number; NaN and the infinities, which JSON has no number for, as strings.
fn float(f: f64) -> String {
    match serde_json::Number::from_f64(f) {
        Some(n) => n.to_string(),
        None => Value::String(f.to_string()).to_string(),
    }
}

/// A `json` value's text, checked to be JSON.
fn json(b: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).ok()?;
    String::from_utf8(b.to_vec()).ok()
}

/// A `numeric` in binary form (base-10000 digits) as an exact JSON number.
fn numeric(b: &[u8]) -> Option<String> {
    let word = |i: usize| b.get(i..i + 2).map(|w| u16::from_be_bytes([w[0], w[1]]));
    let (count, weight, sign, scale) = (word(0)?, word(2)? as i16, word(4)?, word(6)?);
    let digits: Vec<u16> = (0..usize::from(count))
        .map(|i| word(8 + 2 * i))
        .collect::<Option<_>>()?;
    match sign {
        0xC000 => return Some("\"NaN\"".into()),
        0xD000 => return Some("\"Infinity\"".into()),
        0xF000 => return Some("\"-Infinity\"".into()),
        _ => {}
    }
    let digit = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit(0).to_string());
        for i in 1..=i32::from(weight) {
            text.push_str(&format!("{:04}", digit(i)));
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut i = i32::from(weight) + 1;
        while fraction.len() < usize::from(scale) {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(usize::from(scale));
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeric's binary form: base-10000 digits, weight, sign and scale.
    fn numeric_bytes(digits: &[u16], weight: i16, sign: u16, scale: u16) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, scale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_keep_every_digit() {
        let cases = [
            (numeric_bytes(&[1, 2345, 6789], 1, 0, 4), "12345.6789"),
            (numeric_bytes(&[1], -1, 0, 4), "0.0001"),
            (numeric_bytes(&[1000], -2, 0, 5), "0.00001"),
            (numeric_bytes(&[12], 0, 0x4000, 2), "-12.00"),
            (numeric_bytes(&[], 0, 0, 0), "0"),
            (numeric_bytes(&[1], 2, 0, 0), "100000000"),
            (numeric_bytes(&[], 0, 0xC000, 0), "\"NaN\""),
        ];
        for (bytes, want) in cases {
            assert_eq!(numeric(&bytes).as_deref(), Some(want));
        }
        assert_eq!(numeric(&[0, 1]), None, "cut short");
    }
}
