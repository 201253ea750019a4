//! The state API through a real sidecar: routes, bodies, ETags, bulk gets, transactions and
//! queries (api.md §3). Bad input and per-key failures are in `state_errors`, component files
//! and key prefixes in `state_components`.

use std::time::Duration;

use outrider_testkit::state::{get, save, url};
use outrider_testkit::{Mesh, send, wait_until};
use serde_json::{Value, json};

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
        let r = get(&s, &format!("statestore/k{i}")).await;
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
        let r = get(&s, &format!("statestore/{escaped}")).await;
        assert_eq!((r.status, r.json()), (200, json!(key)), "{key:?}");
    }
    assert_eq!(get(&s, "statestore/never").await.status, 204);
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
    let r = get(&s, "statestore/ttl").await;
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
    let etag = get(&s, "statestore/e").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = save(
        &s,
        "statestore",
        json!([{"key": "e", "value": 2, "etag": "stale"}]),
    )
    .await;
    r.assert_error(409, "ERR_STATE_SAVE", "a save with a stale etag");
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
    r.assert_error(409, "ERR_STATE_DELETE", "a delete with a stale If-Match");
    assert_eq!(get(&s, "statestore/e").await.json(), json!(2));
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
        get(&s, "statestore/t1").await.status,
        204,
        "a failed transaction wrote"
    );
    let r = tx(json!([{"operation": "upsert", "request": {"key": "t1", "value": 1}}, {"operation": "merge", "request": {"key": "t2"}}])).await.unwrap();
    r.assert_error(
        400,
        "ERR_NOT_SUPPORTED_STATE_OPERATION",
        "a transaction with an unsupported operation",
    );
    let r = tx(json!([
        {"operation": "upsert", "request": {"key": "t1", "value": 1}},
        {"operation": "delete", "request": {"key": "b1"}},
        {"operation": "upsert", "request": {"key": "t1", "value": 2}}
    ]))
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(&s, "statestore/t1").await.json(), json!(2));
    assert_eq!(get(&s, "statestore/b1").await.status, 204);
    assert_eq!(tx(json!([])).await.unwrap().status, 204);
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
