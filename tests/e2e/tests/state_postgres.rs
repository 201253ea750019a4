//! The PostgreSQL state store through a real sidecar.

use std::time::Duration;

use outrider_testkit::state::increment_concurrently;
use outrider_testkit::{Mesh, Postgres, free_port, send};
use serde_json::json;

fn component(mesh: &Mesh, conn: &str, table: &str) -> String {
    let dir = mesh.home().join(format!("res-{table}"));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pgstore\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{conn}\"\n  - name: tableName\n    value: {table}\n  - name: timeout\n    value: 5s\n"
    );
    std::fs::write(dir.join("pg.yaml"), yaml).unwrap();
    dir.to_string_lossy().into_owned()
}

#[tokio::test]
async fn postgres_store_through_the_api() {
    let pg = Postgres::start();
    let mesh = Mesh::new();
    let res = component(&mesh, &pg.conn, &pg.table);
    let s = mesh.sidecar("pgapp").resources(&res).start().await;
    let base = format!("{}/v1.0/state/pgstore", s.api_url());
    let r = send(
        "POST",
        &base,
        &[],
        json!([{"key": "k", "value": {"n": [1, 2]}}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let r = send("GET", &format!("{base}/k"), &[], "").await.unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"n": [1, 2]})));
    let r = send(
        "POST",
        &format!("{base}/transaction"),
        &[],
        json!({"operations": [
            {"operation": "upsert", "request": {"key": "t", "value": 1}},
            {"operation": "delete", "request": {"key": "k", "etag": "stale"}}
        ]})
        .to_string(),
    )
    .await
    .unwrap();
    r.assert_error(
        500,
        "ERR_STATE_TRANSACTION",
        "a transaction whose delete has a stale etag",
    );
    assert_eq!(
        send("GET", &format!("{base}/t"), &[], "")
            .await
            .unwrap()
            .status,
        204,
        "the failed transaction wrote"
    );
    assert_eq!(increment_concurrently(&base, "counter", 8, 200).await, 1600);
}

#[tokio::test]
async fn an_unreachable_postgres_fails_the_start_with_file_and_field() {
    let mesh = Mesh::new();
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
        free_port()
    );
    let res = component(&mesh, &conn, "state_unreachable");
    let mut s = mesh.sidecar("pgdown").resources(&res).spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = s.log();
    assert!(
        log.contains("pg.yaml: spec.metadata.connectionString"),
        "{log}"
    );
}
