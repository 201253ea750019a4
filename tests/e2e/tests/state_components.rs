//! State store components through a real sidecar: the default store, components from a
//! resources directory with their key prefixes, encryption at rest, and a bad component file
//! stopping the start.

use std::time::Duration;

use outrider_testkit::Mesh;
use outrider_testkit::state::{get, resources, save};
use serde_json::json;

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
    assert_eq!(get(&a, "statestore/k").await.json(), json!("from a"));
    // Another app on the same database sees only its own keys.
    let b = mesh.sidecar("app-b").data_dir(&data).start().await;
    assert_eq!(get(&b, "statestore/k").await.status, 204);
    save(&b, "statestore", json!([{"key": "k", "value": "from b"}])).await;
    assert_eq!(get(&a, "statestore/k").await.json(), json!("from a"));
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
    let a = mesh.sidecar("pa").resources(&res).start().await;
    let b = mesh.sidecar("pb").resources(&res).start().await;
    save(&a, "shared", json!([{"key": "k", "value": 1}])).await;
    // keyPrefix: name — both apps share the key space of the store.
    assert_eq!(get(&b, "shared/k").await.json(), json!(1));
    save(&a, "cache", json!([{"key": "m", "value": "mem"}])).await;
    assert_eq!(get(&a, "cache/m").await.json(), json!("mem"));
    assert_eq!(
        get(&b, "cache/m").await.status,
        204,
        "in-memory stores are per process"
    );
    let names: Vec<String> = a.components().await.into_iter().map(|c| c.0).collect();
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
    let s = mesh.sidecar("enc").resources(&res).start().await;
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
    let r = get(&s, "vault/k").await;
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
    let mut b = mesh.sidecar("badkey").resources(&bad).spawn();
    assert_eq!(b.wait_exit(Duration::from_secs(30)).await, Some(1));
    assert!(
        b.log().contains("spec.metadata.primaryEncryptionKey"),
        "{}",
        b.log()
    );
}

#[tokio::test]
async fn a_bad_component_stops_the_start_with_file_and_field() {
    let mesh = Mesh::new();
    let res = resources(
        &mesh,
        "res-bad",
        "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.sqlite\n  metadata:\n  - name: tableName\n    value: \"x; DROP\"\n",
    );
    let mut s = mesh.sidecar("bad").resources(&res).spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = s.log();
    assert!(
        log.contains("components.yaml: spec.metadata.connectionString")
            && log.contains("tableName"),
        "{log}"
    );
}
