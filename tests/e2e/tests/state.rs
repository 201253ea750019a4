//! The state API through a real sidecar: routes, bodies, status and error codes (api.md §3).

use std::time::Duration;

use outrider_testkit::{Mesh, Sidecar, raw_request, send, wait_until};
use serde_json::{Value, json};

fn url(s: &Sidecar, rest: &str) -> String {
    format!("{}/v1.0/state/{rest}", s.api_url())
}

async fn save(s: &Sidecar, store: &str, items: Value) -> outrider_testkit::Reply {
    send(
        "POST",
        &url(s, store),
        &[("content-type", "application/json")],
        items.to_string(),
    )
    .await
    .unwrap()
}

fn resources(mesh: &Mesh, name: &str, yaml: &str) -> String {
    let dir = mesh.home().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("components.yaml"), yaml).unwrap();
    dir.to_string_lossy().into_owned()
}

#[tokio::test]
async fn values_round_trip_with_etags_and_metadata() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("st").start().await;
    let values = [
        json!({"a": [1, 2, {"b": null}]}),
        json!("text"),
        json!(""),
        json!(42),
        json!(null),
        json!([true, "x"]),
    ];
    let items: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"key": format!("k{i}"), "value": v}))
        .collect();
    assert_eq!(
        save(&s, "statestore", Value::Array(items)).await.status,
        204
    );
    for (i, v) in values.iter().enumerate() {
        let r = send("GET", &url(&s, &format!("statestore/k{i}")), &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.headers.contains_key("etag"));
        assert_eq!(r.json(), *v, "k{i}");
    }
    // Keys with '/' travel escaped; keys that look like SQL are just keys.
    for key in ["a/b", "x'; DROP TABLE state; --", "ключ"] {
        assert_eq!(
            save(&s, "statestore", json!([{"key": key, "value": key}]))
                .await
                .status,
            204
        );
        let escaped = key
            .replace('/', "%2F")
            .replace(' ', "%20")
            .replace('\'', "%27")
            .replace(';', "%3B");
        let escaped: String = escaped
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    c.to_string().bytes().map(|b| format!("%{b:02X}")).collect()
                }
            })
            .collect();
        let r = send("GET", &url(&s, &format!("statestore/{escaped}")), &[], "")
            .await
            .unwrap();
        assert_eq!((r.status, r.json()), (200, json!(key)), "{key:?}");
    }
    assert_eq!(
        send("GET", &url(&s, "statestore/never"), &[], "")
            .await
            .unwrap()
            .status,
        204
    );
    // TTL: visible with its expiry time, then gone.
    let r = send(
        "POST",
        &format!("{}?metadata.ttlInSeconds=1", url(&s, "statestore")),
        &[],
        json!([{"key": "ttl", "value": 1}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    let r = send("GET", &url(&s, "statestore/ttl"), &[], "")
        .await
        .unwrap();
    assert!(
        r.headers.contains_key("metadata.ttlExpireTime"),
        "{:?}",
        r.headers
    );
    wait_until(Duration::from_secs(10), "the ttl key to expire", || async {
        (send("GET", &url(&s, "statestore/ttl"), &[], "")
            .await
            .ok()?
            .status
            == 204)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn etags_guard_saves_and_deletes() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("st").start().await;
    save(&s, "statestore", json!([{"key": "e", "value": 1}])).await;
    let etag = send("GET", &url(&s, "statestore/e"), &[], "")
        .await
        .unwrap()
        .headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = save(
        &s,
        "statestore",
        json!([{"key": "e", "value": 2, "etag": "stale"}]),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (409, Some("ERR_STATE_SAVE"))
    );
    assert_eq!(
        save(
            &s,
            "statestore",
            json!([{"key": "e", "value": 2, "etag": etag}])
        )
        .await
        .status,
        204
    );
    let r = save(
        &s,
        "statestore",
        json!([{"key": "e", "value": 3, "options": {"concurrency": "first-write"}}]),
    )
    .await;
    assert_eq!(
        r.status, 409,
        "first-write without an etag on an existing key"
    );
    let r = send(
        "DELETE",
        &url(&s, "statestore/e"),
        &[("if-match", "stale")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (409, Some("ERR_STATE_DELETE"))
    );
    assert_eq!(
        send("GET", &url(&s, "statestore/e"), &[], "")
            .await
            .unwrap()
            .json(),
        json!(2)
    );
    assert_eq!(
        send("DELETE", &url(&s, "statestore/e"), &[], "")
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        send("DELETE", &url(&s, "statestore/e"), &[], "")
            .await
            .unwrap()
            .status,
        204,
        "deleting a missing key is fine"
    );
}

#[tokio::test]
async fn bulk_get_and_transactions() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("st").start().await;
    save(
        &s,
        "statestore",
        json!([{"key": "b1", "value": {"n": 1}}, {"key": "b2", "value": "two"}]),
    )
    .await;
    let r = send(
        "POST",
        &url(&s, "statestore/bulk"),
        &[],
        json!({"keys": ["b1", "missing", "b2"], "parallelism": 2}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let got = r.json();
    assert_eq!(got[0]["key"], "b1");
    assert_eq!(got[0]["data"], json!({"n": 1}), "bulk items carry `data`");
    assert!(got[0]["etag"].is_string());
    assert_eq!(got[1], json!({"key": "missing"}));
    assert_eq!(got[2]["data"], "two");

    let tx_url = url(&s, "statestore/transaction");
    let tx = |ops: Value| send("POST", &tx_url, &[], json!({"operations": ops}).to_string());
    let r = tx(json!([
        {"operation": "upsert", "request": {"key": "t1", "value": 1}},
        {"operation": "delete", "request": {"key": "b1", "etag": "stale"}}
    ]))
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_STATE_TRANSACTION")),
        "{}",
        r.text()
    );
    assert_eq!(
        send("GET", &url(&s, "statestore/t1"), &[], "")
            .await
            .unwrap()
            .status,
        204,
        "a failed transaction wrote"
    );
    let r = tx(json!([{"operation": "upsert", "request": {"key": "t1", "value": 1}}, {"operation": "merge", "request": {"key": "t2"}}])).await.unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (400, Some("ERR_NOT_SUPPORTED_STATE_OPERATION"))
    );
    let r = tx(json!([
        {"operation": "upsert", "request": {"key": "t1", "value": 1}},
        {"operation": "delete", "request": {"key": "b1"}},
        {"operation": "upsert", "request": {"key": "t1", "value": 2}}
    ]))
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        send("GET", &url(&s, "statestore/t1"), &[], "")
            .await
            .unwrap()
            .json(),
        json!(2)
    );
    assert_eq!(
        send("GET", &url(&s, "statestore/b1"), &[], "")
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(tx(json!([])).await.unwrap().status, 204);
}

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
        send("GET", &url(&s, "statestore/ok"), &[], "")
            .await
            .unwrap()
            .status,
        204,
        "a rejected batch wrote its valid items"
    );
    let r = send("GET", &url(&s, "statestore/a||b"), &[], "")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (400, Some("ERR_MALFORMED_REQUEST"))
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
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (400, Some("ERR_STATE_STORE_NOT_FOUND"))
    );
    let r = send("POST", &q_url("statestore"), &[], "{nope")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (400, Some("ERR_MALFORMED_REQUEST"))
    );
    let r = send(
        "POST",
        &q_url("statestore"),
        &[],
        json!({"filter": {"LIKE": {"a": 1}}}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (400, Some("ERR_STATE_QUERY"))
    );

    // A sidecar whose resources hold no state store at all.
    let none = resources(
        &mesh,
        "res-none",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n",
    );
    let bare = mesh
        .sidecar("bare")
        .args(["--resources-path", &none])
        .start()
        .await;
    let r = send("GET", &url(&bare, "statestore/x"), &[], "")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_STATE_STORE_NOT_CONFIGURED"))
    );
}

#[tokio::test]
async fn queries_see_only_this_apps_keys() {
    let mesh = Mesh::new();
    let data = mesh.home().join("shared-q");
    let a = mesh.sidecar("qa").data_dir(&data).start().await;
    let b = mesh.sidecar("qb").data_dir(&data).start().await;
    save(&a, "statestore", json!([{"key": "o1", "value": {"s": "CA", "n": 1}}, {"key": "o2", "value": {"s": "WA", "n": 2}}, {"key": "o3", "value": {"s": "CA", "n": 3}}])).await;
    save(
        &b,
        "statestore",
        json!([{"key": "o9", "value": {"s": "CA", "n": 9}}]),
    )
    .await;
    let q =
        json!({"filter": {"EQ": {"s": "CA"}}, "sort": [{"key": "n", "order": "DESC"}]}).to_string();
    let r = send(
        "POST",
        &format!("{}/v1.0-alpha1/state/statestore/query", a.api_url()),
        &[],
        q,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let keys: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["o3", "o1"],
        "keys come back without the app prefix, b's keys are not visible"
    );
    assert_eq!(body["results"][0]["data"], json!({"s": "CA", "n": 3}));
    let none = json!({"filter": {"EQ": {"s": "NY"}}}).to_string();
    let r = send(
        "POST",
        &format!("{}/v1.0-alpha1/state/statestore/query", a.api_url()),
        &[],
        none,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn concurrent_increments_lose_nothing() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("st").start().await;
    let base = url(&s, "statestore");
    assert_eq!(
        outrider_testkit::state::increment_concurrently(&base, "counter", 8, 200).await,
        1600
    );
}

#[tokio::test]
async fn the_default_store_is_durable_and_keys_are_prefixed_per_app() {
    let mesh = Mesh::new();
    let data = mesh.home().join("shared-data");
    let mut a = mesh.sidecar("app-a").data_dir(&data).start().await;
    save(&a, "statestore", json!([{"key": "k", "value": "from a"}])).await;
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(30)).await, Some(0));
    // Restarted on the same data directory: still there.
    let a = mesh.sidecar("app-a").data_dir(&data).start().await;
    assert_eq!(
        send("GET", &url(&a, "statestore/k"), &[], "")
            .await
            .unwrap()
            .json(),
        json!("from a")
    );
    // Another app on the same database sees only its own keys.
    let b = mesh.sidecar("app-b").data_dir(&data).start().await;
    assert_eq!(
        send("GET", &url(&b, "statestore/k"), &[], "")
            .await
            .unwrap()
            .status,
        204
    );
    save(&b, "statestore", json!([{"key": "k", "value": "from b"}])).await;
    assert_eq!(
        send("GET", &url(&a, "statestore/k"), &[], "")
            .await
            .unwrap()
            .json(),
        json!("from a")
    );
}

#[tokio::test]
async fn components_from_resources_with_key_prefixes() {
    let mesh = Mesh::new();
    let db = mesh.home().join("named.db");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: shared\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n  - name: keyPrefix\n    value: name\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.in-memory\n  version: v1\n",
        db.display()
    );
    let res = resources(&mesh, "res", &yaml);
    let a = mesh
        .sidecar("pa")
        .args(["--resources-path", &res])
        .start()
        .await;
    let b = mesh
        .sidecar("pb")
        .args(["--resources-path", &res])
        .start()
        .await;
    save(&a, "shared", json!([{"key": "k", "value": 1}])).await;
    // keyPrefix: name — both apps share the key space of the store.
    assert_eq!(
        send("GET", &url(&b, "shared/k"), &[], "")
            .await
            .unwrap()
            .json(),
        json!(1)
    );
    save(&a, "cache", json!([{"key": "m", "value": "mem"}])).await;
    assert_eq!(
        send("GET", &url(&a, "cache/m"), &[], "")
            .await
            .unwrap()
            .json(),
        json!("mem")
    );
    assert_eq!(
        send("GET", &url(&b, "cache/m"), &[], "")
            .await
            .unwrap()
            .status,
        204,
        "in-memory stores are per process"
    );
    let meta = send("GET", &format!("{}/v1.0/metadata", a.api_url()), &[], "")
        .await
        .unwrap()
        .json();
    let names: Vec<&str> = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cache", "shared"]);
}

#[tokio::test]
async fn encrypted_components_keep_plaintext_off_disk() {
    let mesh = Mesh::new();
    let db = mesh.home().join("enc.db");
    let yaml = format!(
        "kind: Component\nmetadata:\n  name: vault\nspec:\n  type: state.sqlite\n  metadata:\n  - name: connectionString\n    value: {}\n  - name: primaryEncryptionKey\n    value: 00112233445566778899aabbccddeeff\n",
        db.display()
    );
    let res = resources(&mesh, "res-enc", &yaml);
    let s = mesh
        .sidecar("enc")
        .args(["--resources-path", &res])
        .start()
        .await;
    let secret = "the-launch-code-is-0000";
    assert_eq!(
        save(
            &s,
            "vault",
            json!([{"key": "k", "value": {"code": secret}}])
        )
        .await
        .status,
        204
    );
    let r = send("GET", &url(&s, "vault/k"), &[], "").await.unwrap();
    assert_eq!(
        r.json(),
        json!({"code": secret}),
        "the exact JSON comes back"
    );
    assert!(
        db.exists(),
        "the store's file was not created where configured"
    );
    for file in ["enc.db", "enc.db-wal"] {
        let bytes = std::fs::read(mesh.home().join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "plaintext found in {file}"
        );
    }
    let bad = resources(
        &mesh,
        "res-badkey",
        &yaml.replace("00112233445566778899aabbccddeeff", "not-hex"),
    );
    let mut b = mesh
        .sidecar("badkey")
        .args(["--resources-path", &bad])
        .spawn();
    assert_eq!(b.wait_exit(Duration::from_secs(30)).await, Some(1));
    assert!(
        b.log().contains("spec.metadata.primaryEncryptionKey"),
        "{}",
        b.log()
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
    let s = mesh
        .sidecar("mixed")
        .args(["--resources-path", &res])
        .start()
        .await;
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

#[tokio::test]
async fn a_bad_component_stops_the_start_with_file_and_field() {
    let mesh = Mesh::new();
    let res = resources(
        &mesh,
        "res-bad",
        "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.sqlite\n  metadata:\n  - name: tableName\n    value: \"x; DROP\"\n",
    );
    let mut s = mesh.sidecar("bad").args(["--resources-path", &res]).spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = s.log();
    assert!(
        log.contains("components.yaml: spec.metadata.connectionString")
            && log.contains("tableName"),
        "{log}"
    );
}
