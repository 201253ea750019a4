//! The state API as tests call it: the URL of a store, a save, a resources directory with one
//! components file, and workloads such as concurrent increments.

use serde_json::{Value, json};

use crate::{Mesh, Reply, Sidecar, send};

/// The state API URL of `rest` (a store, optionally followed by a key or a sub-route) on `s`.
pub fn url(s: &Sidecar, rest: &str) -> String {
    format!("{}/v1.0/state/{rest}", s.api_url())
}

/// Saves `items` (a JSON array of state items) to `store` on `s`.
pub async fn save(s: &Sidecar, store: &str, items: Value) -> Reply {
    send(
        "POST",
        &url(s, store),
        &[("content-type", "application/json")],
        items.to_string(),
    )
    .await
    .unwrap()
}

/// `GET` of the state API's `rest` (see [`url`]) on `s`, with no headers.
pub async fn get(s: &Sidecar, rest: &str) -> Reply {
    send("GET", &url(s, rest), &[], "").await.unwrap()
}

/// A directory `name` under the mesh home holding `yaml` as its `components.yaml`; its path, for
/// `--resources-path`.
pub fn resources(mesh: &Mesh, name: &str, yaml: &str) -> String {
    mesh.resources(name, "components.yaml", yaml)
}

/// `workers` clients each increment the JSON number at `key` of the store at `store_url`
/// (`…/v1.0/state/<store>`) `each` times, with ETags and a retry on 409. Returns the final value.
pub async fn increment_concurrently(
    store_url: &str,
    key: &str,
    workers: usize,
    each: usize,
) -> u64 {
    let r = send(
        "POST",
        store_url,
        &[],
        json!([{"key": key, "value": 0}]).to_string(),
    )
    .await
    .expect("seed");
    assert_eq!(r.status, 204, "{}", r.text());
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (base, key) = (store_url.to_owned(), key.to_owned());
            tokio::spawn(async move {
                for _ in 0..each {
                    loop {
                        let r = send("GET", &format!("{base}/{key}"), &[], "")
                            .await
                            .expect("get");
                        let etag = r.headers["etag"].to_str().expect("etag").to_owned();
                        let n = r.json().as_u64().expect("a number");
                        let body = json!([{"key": key, "value": n + 1, "etag": etag}]).to_string();
                        let w = send("POST", &base, &[], body).await.expect("save");
                        match w.status {
                            204 => break,
                            409 => continue,
                            other => panic!("unexpected {other}: {}", w.text()),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
    let r = send("GET", &format!("{store_url}/{key}"), &[], "")
        .await
        .expect("final get");
    r.json().as_u64().expect("a number")
}
