//! Distributed locks through real sidecars: `lock.redis` shared by two sidecars and
//! `lock.in-memory`, daprd's answers, codes and bodies, and configuration errors.

use std::time::Duration;

use outrider_testkit::{Mesh, Reply, Sidecar, send, unique};
use serde_json::{Value, json};

/// `lock.redis` on the machine's Redis and `lock.in-memory`, and a Redis state store for a
/// counter; the Redis ones with `keyPrefix: name`, so sidecars of different apps share them.
fn resources(mesh: &Mesh) -> String {
    let docs = concat!(
        "kind: Component\nmetadata: {name: redislock}\nspec:\n  type: lock.redis\n  metadata:\n",
        "  - {name: redisHost, value: '127.0.0.1:6379'}\n  - {name: keyPrefix, value: name}\n---\n",
        "kind: Component\nmetadata: {name: memlock}\nspec:\n  type: lock.in-memory\n  version: v1\n",
        "---\n",
        "kind: Component\nmetadata: {name: counter}\nspec:\n  type: state.redis\n  metadata:\n",
        "  - {name: redisHost, value: '127.0.0.1:6379'}\n  - {name: keyPrefix, value: name}\n",
    );
    mesh.resources("res", "locks.yaml", docs)
}

async fn lock(s: &Sidecar, store: &str, body: Value) -> Reply {
    post(&s.api_url(), &format!("lock/{store}"), body).await
}

async fn unlock(s: &Sidecar, store: &str, body: Value) -> Reply {
    post(&s.api_url(), &format!("unlock/{store}"), body).await
}

/// `POST <api>/v1.0-alpha1/<path>` with `body`.
async fn post(api: &str, path: &str, body: Value) -> Reply {
    let url = format!("{api}/v1.0-alpha1/{path}");
    send("POST", &url, &[], body.to_string()).await.unwrap()
}

/// Whether `owner` took the lock on `id` through the API at `api`.
async fn took_at(api: &str, store: &str, id: &str, owner: &str, secs: u32) -> bool {
    let body = json!({"resourceId": id, "lockOwner": owner, "expiryInSeconds": secs});
    let r = post(api, &format!("lock/{store}"), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["success"]
        .as_bool()
        .unwrap_or_else(|| panic!("{}", r.text()))
}

async fn took(s: &Sidecar, store: &str, id: &str, owner: &str, secs: u32) -> bool {
    took_at(&s.api_url(), store, id, owner, secs).await
}

/// The status number an unlock through the API at `api` answers (HTTP 200).
async fn released_at(api: &str, store: &str, id: &str, owner: &str) -> i64 {
    let body = json!({"resourceId": id, "lockOwner": owner});
    let r = post(api, &format!("unlock/{store}"), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["status"]
        .as_i64()
        .unwrap_or_else(|| panic!("{}", r.text()))
}

async fn released(s: &Sidecar, store: &str, id: &str, owner: &str) -> i64 {
    released_at(&s.api_url(), store, id, owner).await
}

/// 8 clients, half on each of two sidecars, each add 10 to a counter kept in Redis with a
/// read and a last-write save (which loses updates unless something serialises them), under
/// one `lock.redis` lock: the counter ends at exactly 80.
#[tokio::test]
async fn eight_clients_on_two_sidecars_lose_no_increment_under_a_redis_lock() {
    let mesh = Mesh::new();
    let res = resources(&mesh);
    let mut a = mesh.sidecar("lock-a").resources(&res).start().await;
    let mut b = mesh.sidecar("lock-b").resources(&res).start().await;
    a.wait_ready().await;
    b.wait_ready().await;
    let run = unique("lock");
    let key = format!("counter-{run}");
    let seed = json!([{"key": key, "value": 0}]).to_string();
    let r = a.request("POST", "/v1.0/state/counter", &[], seed).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let apis = [a.api_url(), b.api_url()];
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let api = apis[w % 2].clone();
            let (key, resource) = (key.clone(), format!("res-{run}"));
            tokio::spawn(async move {
                let owner = format!("worker-{w}");
                let state = format!("{api}/v1.0/state/counter");
                for _ in 0..10 {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    while !took_at(&api, "redislock", &resource, &owner, 30).await {
                        assert!(tokio::time::Instant::now() < deadline, "never got the lock");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let r = send("GET", &format!("{state}/{key}"), &[], "")
                        .await
                        .unwrap();
                    let n = r.json().as_u64().unwrap_or_else(|| panic!("{}", r.text()));
                    let save = json!([{"key": key, "value": n + 1}]).to_string();
                    let r = send("POST", &state, &[], save).await.unwrap();
                    assert_eq!(r.status, 204, "{}", r.text());
                    assert_eq!(released_at(&api, "redislock", &resource, &owner).await, 0);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let r = a.get(&format!("/v1.0/state/counter/{key}")).await;
    assert_eq!(r.json(), json!(80), "{}", r.text());
    // The shared Redis keeps nothing of this run.
    let r = a
        .request("DELETE", &format!("/v1.0/state/counter/{key}"), &[], "")
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let comps = a.components().await;
    assert!(
        comps.contains(&("redislock".into(), "lock.redis".into()))
            && comps.contains(&("memlock".into(), "lock.in-memory".into())),
        "{comps:?}"
    );
}

#[tokio::test]
async fn owners_expiry_and_bad_input_get_daprds_answers() {
    let mesh = Mesh::new();
    let res = resources(&mesh);
    let mut s = mesh.sidecar("lock-owner").resources(&res).start().await;
    s.wait_ready().await;
    for store in ["memlock", "redislock"] {
        let id = format!("r-{}", unique("lock"));
        assert_eq!(released(&s, store, &id, "a").await, 1, "{store}: not held");
        assert!(took(&s, store, &id, "a", 60).await, "{store}");
        assert!(!took(&s, store, &id, "b", 60).await, "{store}: held");
        assert_eq!(released(&s, store, &id, "b").await, 2, "{store}: not b's");
        assert_eq!(released(&s, store, &id, "a").await, 0, "{store}");
        // An expired lock goes to the next owner; the first owner's unlock then leaves it.
        let short = format!("short-{}", unique("lock"));
        assert!(took(&s, store, &short, "a", 1).await, "{store}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !took(&s, store, &short, "b", 60).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{store}: never expired"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(released(&s, store, &short, "a").await, 2, "{store}");
    }
    // Field names as protobuf's JSON mapping reads them: proto names and numbers as strings.
    let id = format!("snake-{}", unique("lock"));
    let body = json!({"resource_id": id, "lock_owner": "o", "expiry_in_seconds": "30"});
    assert_eq!(
        lock(&s, "memlock", body).await.json(),
        json!({"success": true})
    );

    let bad = format!("bad-{}", unique("lock"));
    let refusals = [
        (
            json!({"resourceId": bad, "lockOwner": "o"}),
            "memlock",
            400,
            "ERR_MALFORMED_REQUEST",
            "ExpiryInSeconds is not positive in lock store memlock",
        ),
        (
            json!({"resourceId": bad, "lockOwner": "o", "expiryInSeconds": -1}),
            "memlock",
            400,
            "ERR_MALFORMED_REQUEST",
            "ExpiryInSeconds is not positive",
        ),
        (
            json!({"resourceId": bad, "lockOwner": "o", "expiryInSeconds": "soon"}),
            "memlock",
            400,
            "ERR_MALFORMED_REQUEST",
            "expiryInSeconds must be a 32-bit integer",
        ),
        (
            json!({"resourceId": bad, "lockOwner": "o", "expiryInSeconds": 1.5}),
            "memlock",
            400,
            "ERR_MALFORMED_REQUEST",
            "expiryInSeconds",
        ),
        (
            json!({"resourceId": bad, "lockOwner": 7, "expiryInSeconds": 5}),
            "memlock",
            400,
            "ERR_MALFORMED_REQUEST",
            "lockOwner must be a string",
        ),
        (
            json!({"lockOwner": "o", "expiryInSeconds": 5}),
            "memlock",
            400,
            "ERR_MALFORMED_REQUEST",
            "ResourceId is empty in lock store memlock",
        ),
        (
            json!({"resourceId": bad, "expiryInSeconds": 5}),
            "memlock",
            400,
            "ERR_MALFORMED_REQUEST",
            "LockOwner is empty in lock store memlock",
        ),
        (
            json!({"resourceId": bad, "lockOwner": "o", "expiryInSeconds": 5}),
            "nolock",
            400,
            "ERR_LOCK_STORE_NOT_FOUND",
            "lock store nolock not found",
        ),
        (
            json!({"resourceId": "x||y", "lockOwner": "o", "expiryInSeconds": 5}),
            "memlock",
            500,
            "ERR_TRY_LOCK",
            "failed to try acquiring lock: input key/keyPrefix \"x||y\" can't contain \"||\"",
        ),
    ];
    for (body, store, status, code, says) in refusals {
        lock(&s, store, body)
            .await
            .assert_error_says(status, code, says);
    }
    let r = s
        .request("POST", "/v1.0-alpha1/lock/memlock", &[], "[1]")
        .await;
    r.assert_error_says(
        400,
        "ERR_MALFORMED_REQUEST",
        "failed deserializing HTTP body",
    );
    let r = unlock(
        &s,
        "memlock",
        json!({"resourceId": "x||y", "lockOwner": "o"}),
    )
    .await;
    r.assert_error_says(
        500,
        "ERR_UNLOCK",
        "failed to release lock: input key/keyPrefix",
    );
    let r = unlock(&s, "memlock", json!({"resourceId": bad})).await;
    r.assert_error_says(400, "ERR_MALFORMED_REQUEST", "LockOwner is empty");
    // Nothing a refused request named was taken.
    assert!(took(&s, "memlock", &bad, "other", 5).await);
}

#[tokio::test]
async fn without_lock_stores_the_api_says_so_and_bad_components_stop_the_start() {
    let mesh = Mesh::new();
    let mut s = mesh.sidecar("lock-none").start().await;
    s.wait_ready().await;
    let body = json!({"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5});
    let r = lock(&s, "any", body).await;
    r.assert_error_says(
        500,
        "ERR_LOCK_STORE_NOT_CONFIGURED",
        "lock store is not configured",
    );
    // The expiry is checked first, as daprd does.
    let r = lock(&s, "any", json!({"resourceId": "r", "lockOwner": "o"})).await;
    r.assert_error_says(
        400,
        "ERR_MALFORMED_REQUEST",
        "ExpiryInSeconds is not positive",
    );

    let bad = concat!(
        "kind: Component\nmetadata: {name: badlock}\nspec:\n  type: lock.redis\n  metadata:\n",
        "  - {name: redisHost, value: '127.0.0.1:6379'}\n  - {name: keyPrefix, value: 'a||b'}\n",
    );
    let res = mesh.resources("bad", "lock.yaml", bad);
    let says = [
        "lock.yaml: spec.metadata.keyPrefix",
        "\"a||b\" contains \"||\"",
    ];
    mesh.sidecar("lock-bad")
        .resources(&res)
        .start_fails(Duration::from_secs(30), 1, &says)
        .await;
}
