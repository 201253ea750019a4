//! The state API's errors through a real sidecar (api.md §3): bad input gets Dapr's status and
//! error codes and changes nothing, and a bulk get reports failures per key.

use outrider_testkit::state::{get, resources, save, url};
use outrider_testkit::{Mesh, raw_request, send};
use serde_json::json;

#[tokio::test]
async fn bad_input_gets_dapr_errors_and_changes_nothing() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("st").start().await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "unknown store",
            json!([{"key": "a", "value": 1}]).to_string(),
            400,
            "ERR_STATE_STORE_NOT_FOUND",
        ),
        (
            "malformed JSON",
            "[{\"key\":".into(),
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "not an array",
            json!({"key": "a"}).to_string(),
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "missing key",
            json!([{"value": 1}]).to_string(),
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "illegal key",
            json!([{"key": "ok", "value": 1}, {"key": "a||b", "value": 1}]).to_string(),
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "bad option",
            json!([{"key": "ok", "value": 1, "options": {"concurrency": "maybe"}}]).to_string(),
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "numeric etag",
            json!([{"key": "ok", "value": 1, "etag": 5}]).to_string(),
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "bad ttl",
            json!([{"key": "ok", "value": 1, "metadata": {"ttlInSeconds": "soon"}}]).to_string(),
            400,
            "ERR_STATE_SAVE",
        ),
    ];
    for (what, body, status, code) in cases {
        let store = if what == "unknown store" {
            "nostore"
        } else {
            "statestore"
        };
        let r = send("POST", &url(&s, store), &[], body).await.unwrap();
        assert_eq!(
            (r.status, r.json()["errorCode"].as_str()),
            (status, Some(code)),
            "{what}: {}",
            r.text()
        );
    }
    assert_eq!(
        get(&s, "statestore/ok").await.status,
        204,
        "a rejected batch wrote its valid items"
    );
    let r = get(&s, "statestore/a||b").await;
    r.assert_error(
        400,
        "ERR_MALFORMED_REQUEST",
        "a key holding the prefix separator",
    );
    let huge = format!("[{{\"key\":\"h\",\"value\":\"{}\"}}]", "x".repeat(5 << 20));
    assert_eq!(
        send("POST", &url(&s, "statestore"), &[], huge)
            .await
            .unwrap()
            .status,
        413
    );
    let reply = raw_request(
        s.api,
        b"POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n[{\"key\":",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");

    // Queries: unknown store, malformed body, invalid query.
    let q_url = |store: &str| format!("{}/v1.0-alpha1/state/{store}/query", s.api_url());
    let r = send("POST", &q_url("nostore"), &[], json!({}).to_string())
        .await
        .unwrap();
    r.assert_error(
        400,
        "ERR_STATE_STORE_NOT_FOUND",
        "a query on an unknown store",
    );
    let r = send("POST", &q_url("statestore"), &[], "{nope")
        .await
        .unwrap();
    r.assert_error(
        400,
        "ERR_MALFORMED_REQUEST",
        "a query whose body is not JSON",
    );
    let r = send(
        "POST",
        &q_url("statestore"),
        &[],
        json!({"filter": {"LIKE": {"a": 1}}}).to_string(),
    )
    .await
    .unwrap();
    r.assert_error(400, "ERR_STATE_QUERY", "a query with an unknown filter");

    // A sidecar whose resources hold no state store at all.
    let none = resources(
        &mesh,
        "res-none",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n",
    );
    let bare = mesh.sidecar("bare").resources(&none).start().await;
    let r = get(&bare, "statestore/x").await;
    r.assert_error(
        500,
        "ERR_STATE_STORE_NOT_CONFIGURED",
        "a sidecar without state stores",
    );
}

#[tokio::test]
async fn bulk_get_reports_failures_per_key() {
    // Two components over one table and one key prefix: `plain` writes what `vault` cannot open.
    let mesh = Mesh::new();
    let db = mesh.home().join("mixed.db");
    let comp = |name: &str, extra: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.sqlite\n  metadata:\n  - name: connectionString\n    value: {}\n  - name: keyPrefix\n    value: shared\n{extra}",
            db.display()
        )
    };
    let yaml = format!(
        "{}---\n{}",
        comp("plain", ""),
        comp(
            "vault",
            "  - name: primaryEncryptionKey\n    value: 00112233445566778899aabbccddeeff\n"
        )
    );
    let res = resources(&mesh, "res-mixed", &yaml);
    let s = mesh.sidecar("mixed").resources(&res).start().await;
    assert_eq!(
        save(&s, "plain", json!([{"key": "p1", "value": "plaintext"}]))
            .await
            .status,
        204
    );
    assert_eq!(
        save(&s, "vault", json!([{"key": "e1", "value": "sealed"}]))
            .await
            .status,
        204
    );
    let r = send(
        "POST",
        &url(&s, "vault/bulk"),
        &[],
        json!({"keys": ["e1", "p1", "none"]}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        200,
        "one bad key does not fail the call: {}",
        r.text()
    );
    let got = r.json();
    assert_eq!(got[0]["data"], "sealed");
    assert!(
        got[1]["error"].as_str().is_some_and(|e| !e.is_empty()) && got[1].get("data").is_none(),
        "{got}"
    );
    assert_eq!(got[2], json!({"key": "none"}));
}
