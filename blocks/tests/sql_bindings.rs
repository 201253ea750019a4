//! The SQL output binding suite: every SQL binding (PostgreSQL; MariaDB/MySQL) runs `exec` and
//! `query` with parameters bound, never spliced (injection attempts are stored as text and
//! drop nothing), answers daprd's metadata, refuses what it cannot run, and stops after `close`;
//! then how each renders its column types.

use std::sync::Arc;

use bytes::Bytes;
use outrider_blocks::bindings::{BindingError, InvokeRequest, InvokeResponse, OutputBinding};
use outrider_blocks::{Component, bindings};
use outrider_testkit::{MariaDb, Postgres};
use serde_json::{Value, json};

/// A binding on a database, a table of the test's own, and the database's placeholders.
struct Fixture {
    binding: Arc<dyn OutputBinding>,
    table: String,
    /// The `n`th placeholder (1-based).
    placeholder: fn(usize) -> String,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn open(type_: &str, conn_field: &str, conn: &str) -> Arc<dyn OutputBinding> {
    let yaml = format!(
        "kind: Component\nmetadata: {{name: sql}}\nspec:\n  type: {type_}\n  version: v1\n  \
         metadata:\n  - {{name: {conn_field}, value: '{conn}'}}\n"
    );
    let c: Component = serde_saphyr::from_str(&yaml).unwrap();
    bindings::open(&c)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .output
        .unwrap()
}

async fn postgres() -> Fixture {
    let pg = Postgres::start();
    let binding = open("bindings.postgresql", "connectionString", &pg.conn).await;
    Fixture {
        binding,
        table: pg.table.clone(),
        placeholder: |n| format!("${n}"),
        _guard: Box::new(pg),
    }
}

async fn mysql() -> Fixture {
    let db = MariaDb::start();
    db.sql(&format!("CREATE DATABASE `{}`", db.database));
    let dsn = format!("{}{}", db.dsn, db.database);
    let binding = open("bindings.mysql", "url", &dsn).await;
    Fixture {
        binding,
        table: "t".into(),
        placeholder: |_| "?".into(),
        _guard: Box::new(db),
    }
}

async fn call(
    f: &Fixture,
    op: &str,
    sql: &str,
    params: Option<&str>,
) -> Result<Option<InvokeResponse>, BindingError> {
    let mut metadata = bindings::Metadata::from([("sql".to_owned(), sql.to_owned())]);
    if let Some(p) = params {
        metadata.insert("params".into(), p.into());
    }
    let req = InvokeRequest {
        operation: op.into(),
        data: Bytes::new(),
        metadata,
    };
    f.binding.invoke(req).await
}

async fn ok(f: &Fixture, op: &str, sql: &str, params: Option<&str>) -> InvokeResponse {
    call(f, op, sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("an answer")
}

async fn binds_never_splices(f: Fixture) {
    let (t, p) = (&f.table, f.placeholder);
    ok(
        &f,
        "exec",
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(200))"),
        None,
    )
    .await;
    let insert = format!("INSERT INTO {t} (id, name) VALUES ({}, {})", p(1), p(2));
    let hostile = [
        "Robert'); DROP TABLE students; --",
        "x' OR '1'='1",
        "\\'; SELECT 1; --",
        "\"quoted\" and ; semicolons",
    ];
    for (i, name) in hostile.iter().enumerate() {
        let params = json!([i + 1, name]).to_string();
        let r = ok(&f, "exec", &insert, Some(&params)).await;
        assert_eq!(r.metadata["rows-affected"], "1");
        assert_eq!(r.metadata["operation"], "exec");
        assert_eq!(r.metadata["sql"], insert);
        assert!(r.data.is_empty());
        for key in ["start-time", "end-time", "duration"] {
            assert!(r.metadata.contains_key(key), "{key}");
        }
    }
    // Each came back as written, and the table is whole.
    let select = format!(
        "SELECT name FROM {t} WHERE id = {} OR name = {}",
        p(1),
        p(2)
    );
    for (i, name) in hostile.iter().enumerate() {
        let params = json!([i + 1, "nobody"]).to_string();
        let r = ok(&f, "query", &select, Some(&params)).await;
        let rows: Value = serde_json::from_slice(&r.data).unwrap();
        assert_eq!(first_value(&rows), json!(name), "{rows}");
        assert_eq!(r.metadata["operation"], "query");
    }
    let count = ok(&f, "query", &format!("SELECT COUNT(*) AS n FROM {t}"), None).await;
    let rows: Value = serde_json::from_slice(&count.data).unwrap();
    assert_eq!(first_value(&rows), json!(4));
    let update = format!("UPDATE {t} SET name = {} WHERE id > {}", p(1), p(2));
    let r = ok(&f, "exec", &update, Some(r#"["same", 2]"#)).await;
    assert_eq!(r.metadata["rows-affected"], "2");
}

/// The first value of the first row, whether rows are arrays or objects.
fn first_value(rows: &Value) -> Value {
    match &rows[0] {
        Value::Array(a) => a[0].clone(),
        Value::Object(o) => o.values().next().cloned().unwrap_or(Value::Null),
        other => panic!("not a row: {other}"),
    }
}

async fn refuses_what_it_cannot_run_and_stops_when_closed(f: Fixture) {
    let t = &f.table;
    let bad = |e: Result<Option<InvokeResponse>, BindingError>| match e {
        Err(e) => e.to_string(),
        Ok(r) => panic!("accepted: {r:?}"),
    };
    let e = bad(call(&f, "exec", "", None).await);
    assert!(e.contains("required metadata not set: sql"), "{e}");
    for params in ["{\"a\":1}", "[1,", "3"] {
        let e = bad(call(&f, "query", "SELECT 1", Some(params)).await);
        assert!(
            e.contains("invalid metadata property params"),
            "{params}: {e}"
        );
    }
    let e = bad(call(
        &f,
        "query",
        &format!("SELECT nothing FROM {t}_absent"),
        None,
    )
    .await);
    assert!(e.contains("error executing query"), "{e}");
    assert_eq!(call(&f, "close", "", None).await.unwrap(), None);
    let e = bad(call(&f, "query", "SELECT 1", None).await);
    assert!(e.contains("component is closed"), "{e}");
}

#[tokio::test]
async fn postgres_binds_never_splices() {
    binds_never_splices(postgres().await).await;
}

#[tokio::test]
async fn postgres_refuses_what_it_cannot_run_and_stops_when_closed() {
    refuses_what_it_cannot_run_and_stops_when_closed(postgres().await).await;
}

#[tokio::test]
async fn postgres_renders_rows_as_arrays_of_typed_values() {
    let f = postgres().await;
    let sql = "SELECT 1::int2, 2::int4, 3000000000::int8, 1.5::float8, 12345.678901234567890::numeric, \
               'text'::text, true, NULL::text, '{\"a\":[1,2]}'::jsonb, '\\x0102'::bytea, \
               '2024-05-01 12:00:00.5+00'::timestamptz, '2024-05-01'::date, \
               '00000000-0000-0000-0000-000000000001'::uuid, $1::int + 1, $2::text";
    let r = ok(&f, "query", sql, Some(r#"[41, null]"#)).await;
    let rows: Value = serde_json::from_slice(&r.data).unwrap();
    let mut uuid = vec![0; 15];
    uuid.push(1);
    assert_eq!(
        rows,
        json!([[1, 2, 3_000_000_000_i64, 1.5, 12_345.678_901_234_567_f64, "text", true, null,
            {"a": [1, 2]}, "AQI=", "2024-05-01T12:00:00.5Z", "2024-05-01T00:00:00Z", uuid, 42,
            null]])
    );
    // Every digit of a numeric is kept.
    let text = String::from_utf8(r.data.to_vec()).unwrap();
    assert!(text.contains("12345.678901234567890"), "{text}");
    let none = ok(&f, "query", "SELECT 1 WHERE false", None).await;
    assert_eq!(&none.data[..], b"[]");
    let e = call(&f, "query", "SELECT '(1,2)'::point", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not render"), "{e}");
}

#[tokio::test]
async fn mysql_binds_never_splices() {
    binds_never_splices(mysql().await).await;
}

#[tokio::test]
async fn mysql_refuses_what_it_cannot_run_and_stops_when_closed() {
    refuses_what_it_cannot_run_and_stops_when_closed(mysql().await).await;
}

#[tokio::test]
async fn mysql_renders_rows_as_objects_as_daprd_does() {
    let f = mysql().await;
    ok(
        &f,
        "exec",
        "CREATE TABLE t (i INT, big BIGINT UNSIGNED, d DOUBLE, dec_ DECIMAL(20,10), s VARCHAR(20), \
         b VARBINARY(4), at DATETIME(3), day DATE, tod TIME, n INT NULL)",
        None,
    )
    .await;
    let insert = "INSERT INTO t VALUES (?, ?, ?, ?, ?, UNHEX('0102'), ?, ?, ?, ?)";
    let params = r#"[-1, 18446744073709551615, 1.5, "1234567890.0123456789", "text",
        "2024-05-01 12:00:00.5", "2024-05-01", "25:00:01", null]"#;
    ok(&f, "exec", insert, Some(params)).await;
    let r = ok(&f, "query", "SELECT * FROM t WHERE i = ?", Some("[-1]")).await;
    let rows: Value = serde_json::from_slice(&r.data).unwrap();
    assert_eq!(
        rows,
        json!([{"i": -1, "big": 18_446_744_073_709_551_615_u64, "d": 1.5,
            "dec_": "1234567890.0123456789", "s": "text", "b": "AQI=",
            "at": "2024-05-01T12:00:00.5Z", "day": "2024-05-01T00:00:00Z", "tod": "25:00:01"}])
    );
    let none = ok(&f, "query", "SELECT * FROM t WHERE i = ?", Some("[0]")).await;
    assert_eq!(&none.data[..], b"null", "no row is null, as daprd answers");
}
