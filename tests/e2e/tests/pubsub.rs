//! The publish API through a real sidecar (api.md §4.1, §1.4).

use outrider_testkit::{Mesh, send};

#[tokio::test]
async fn publish_answers_dapr_codes() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("pub").start().await;
    let url = |rest: &str| format!("{}/v1.0/publish/{rest}", s.api_url());
    let ok = [
        ("pubsub/orders", "text/plain", "hello"),
        ("pubsub/orders/nested/topic", "application/json", "{\"a\":1}"),
        ("pubsub/orders?metadata.rawPayload=true", "application/octet-stream", "raw"),
        ("pubsub/orders", "application/cloudevents+json", "{\"id\":\"x\",\"data\":1}"),
    ];
    for (path, ct, body) in ok {
        let r = send("POST", &url(path), &[("content-type", ct)], body).await.unwrap();
        assert_eq!(r.status, 204, "{path}: {}", r.text());
    }
    assert_eq!(send("PUT", &url("pubsub/orders"), &[], "x").await.unwrap().status, 204);
    let bad = [
        ("nopubsub/orders", "text/plain", "x", 404, "ERR_PUBSUB_NOT_FOUND"),
        ("pubsub", "text/plain", "x", 404, "ERR_TOPIC_NAME_EMPTY"),
        ("pubsub/orders?metadata.rawPayload=maybe", "text/plain", "x", 400, "ERR_PUBSUB_REQUEST_METADATA"),
        ("pubsub/orders", "application/cloudevents+json", "not json", 500, "ERR_PUBSUB_CLOUD_EVENTS_SER"),
        ("pubsub/orders", "application/cloudevents+json", "[1,2]", 500, "ERR_PUBSUB_CLOUD_EVENTS_SER"),
    ];
    for (path, ct, body, status, code) in bad {
        let r = send("POST", &url(path), &[("content-type", ct)], body).await.unwrap();
        assert_eq!((r.status, r.json()["errorCode"].as_str()), (status, Some(code)), "{path}: {}", r.text());
    }
    let meta = send("GET", &format!("{}/v1.0/metadata", s.api_url()), &[], "").await.unwrap().json();
    let comps: Vec<(&str, &str)> = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert!(comps.contains(&("pubsub", "pubsub.in-memory")), "{comps:?}");
}

#[tokio::test]
async fn publishing_without_any_pubsub_is_not_configured() {
    let mesh = Mesh::new();
    let dir = mesh.home().join("res");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("state.yaml"),
        "kind: Component\nmetadata: {name: statestore}\nspec: {type: state.in-memory}\n",
    )
    .unwrap();
    let s = mesh.sidecar("nopub").args(["--resources-path", dir.to_str().unwrap()]).start().await;
    let r = send("POST", &format!("{}/v1.0/publish/pubsub/t", s.api_url()), &[], "x").await.unwrap();
    assert_eq!((r.status, r.json()["errorCode"].as_str()), (400, Some("ERR_PUBSUB_NOT_CONFIGURED")));
}
