//! The MariaDB/MySQL state store through a real sidecar: the API's shapes, daprd's table layout
//! (so either can read what the other wrote), atomic transactions, no lost update among eight
//! writers, and a clear stop when the server cannot be reached.

use std::time::Duration;

use outrider_testkit::state::increment_concurrently;
use outrider_testkit::{MariaDb, Mesh, free_port, send};
use serde_json::json;

fn resources(mesh: &Mesh, dir: &str, dsn: &str, schema: &str) -> String {
    let yaml = format!(
        "kind: Component\nmetadata: {{name: store}}\nspec:\n  type: state.mysql\n  version: v1\n  \
         metadata:\n  - {{name: connectionString, value: '{dsn}'}}\n  \
         - {{name: schemaName, value: {schema}}}\n  - {{name: timeoutInSeconds, value: '5'}}\n"
    );
    mesh.resources(dir, "mysql.yaml", &yaml)
}

#[tokio::test]
async fn mysql_store_through_the_api_in_daprds_layout() {
    let db = MariaDb::start();
    let mesh = Mesh::new();
    let res = resources(&mesh, "res", &db.dsn, &db.database);
    let s = mesh.sidecar("mysqlapp").resources(&res).start().await;
    let base = format!("{}/v1.0/state/store", s.api_url());
    let items = json!([{"key": "k", "value": {"n": [1, 2]}}, {"key": "K", "value": "upper"}]);
    let r = send("POST", &base, &[], items.to_string()).await.unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let r = send("GET", &format!("{base}/k"), &[], "").await.unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"n": [1, 2]})));
    // Keys differ by case: two rows.
    let r = send("GET", &format!("{base}/K"), &[], "").await.unwrap();
    assert_eq!(r.json(), json!("upper"));
    let layout = db.sql(&format!(
        "SELECT id, value, isbinary, LENGTH(eTag) FROM `{}`.state WHERE id = 'mysqlapp||k'",
        db.database
    ));
    assert_eq!(layout.trim(), "mysqlapp||k\t{\"n\":[1,2]}\t0\t36");

    let tx = json!({"operations": [
        {"operation": "upsert", "request": {"key": "t", "value": 1}},
        {"operation": "delete", "request": {"key": "k", "etag": "stale"}}
    ]});
    let r = send("POST", &format!("{base}/transaction"), &[], tx.to_string())
        .await
        .unwrap();
    r.assert_error(500, "ERR_STATE_TRANSACTION", "a delete with a stale etag");
    let r = send("GET", &format!("{base}/t"), &[], "").await.unwrap();
    assert_eq!(r.status, 204, "the failed transaction wrote");
    assert_eq!(increment_concurrently(&base, "counter", 8, 100).await, 800);
}

#[tokio::test]
async fn an_unreachable_mysql_fails_the_start_with_file_and_field() {
    let mesh = Mesh::new();
    let dsn = format!("root@tcp(127.0.0.1:{})/?timeout=2s", free_port());
    let res = resources(&mesh, "down", &dsn, "dapr_state_store");
    let mut s = mesh.sidecar("mysqldown").resources(&res).spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = s.log();
    assert!(
        log.contains("mysql.yaml: spec.metadata.connectionString"),
        "{log}"
    );
    let dsn = "root:hunter2@tcp(127.0.0.1:3306)/?tls=true";
    let res = resources(&mesh, "tls", dsn, "dapr_state_store");
    let mut s = mesh.sidecar("mysqltls").resources(&res).spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = s.log();
    assert!(
        log.contains("TLS to MariaDB/MySQL is not supported"),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "the password leaked: {log}");
}
