//! `HTTPEndpoint` resources: an invocation naming a declared endpoint reaches a local HTTPS
//! server (its certificate verified against the endpoint's root CA, the sidecar presenting the
//! endpoint's client certificate) with a header read from a secret store; a URL under the
//! declared base URL is called without the endpoint's headers; any other URL is refused before
//! anything is sent; a redirect is passed back, never followed; a server the roots do not vouch
//! for is refused.

use std::time::Duration;

use outrider_testkit::https::{Pki, https_server, yaml_block};
use outrider_testkit::{Mesh, send};
use serde_json::json;

#[tokio::test]
async fn declared_endpoints_are_called_and_nothing_else() {
    let pki = Pki::new();
    let (client_cert, client_key) = pki.issue(&["caller"]);
    let (port, seen) = https_server(pki.issue(&["localhost"]), Some(&pki.ca_pem)).await;
    // A server whose certificate no root vouches for.
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (stranger_port, stranger_seen) = https_server(
        (stranger.cert.pem(), stranger.signing_key.serialize_pem()),
        None,
    )
    .await;
    let mesh = Mesh::new();
    let secrets = mesh.home().join("secrets.json");
    std::fs::write(&secrets, r#"{"api-key": "s3cret"}"#).unwrap();
    let res = mesh.resources(
        "res",
        "endpoints.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: vault}}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - {{name: secretsFile, value: {secrets}}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: ext}}
spec:
  baseUrl: https://localhost:{port}/v1
  headers:
  - {{name: X-Api-Key, secretKeyRef: {{name: api-key, key: api-key}}}}
  - {{name: X-Plain, value: plain}}
  clientTLS:
    rootCA:
      value: |
{ca}    certificate:
      value: |
{cert}    privateKey:
      value: |
{key}auth: {{secretStore: vault}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: stranger}}
spec:
  baseUrl: https://localhost:{stranger_port}
",
            secrets = secrets.display(),
            ca = yaml_block(&pki.ca_pem, 8),
            cert = yaml_block(&client_cert, 8),
            key = yaml_block(&client_key, 8),
        ),
    );
    let mut s = mesh.sidecar("caller").resources(&res).start().await;
    s.wait_ready().await;
    let api = s.api_url();
    let count = || seen.lock().unwrap().len();
    let get = |target: &str| {
        let url = format!("{api}/v1.0/invoke/{target}");
        async move { send("GET", &url, &[], "").await.unwrap() }
    };

    // By name: the base URL's path, then the method; the query as it was; the caller's
    // headers and body; the endpoint's headers, one from the secret store.
    let r = send(
        "POST",
        &format!("{api}/v1.0/invoke/ext/method/items?x=1"),
        &[
            ("x-caller", "c"),
            ("content-type", "text/plain"),
            // The endpoint's own header wins over the caller's; the API token stays here.
            ("x-api-key", "forged"),
            ("dapr-api-token", "not-for-them"),
        ],
        "hello",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.json();
    assert_eq!(
        (&got["method"], &got["path"], &got["query"], &got["body"]),
        (
            &json!("POST"),
            &json!("/v1/items"),
            &json!("x=1"),
            &json!("hello")
        )
    );
    let h = &got["headers"];
    assert_eq!(
        (&h["x-api-key"], &h["x-plain"], &h["x-caller"], &h["host"]),
        (
            &json!("s3cret"),
            &json!("plain"),
            &json!("c"),
            &json!(format!("localhost:{port}"))
        ),
        "{h}"
    );
    for absent in ["dapr-app-id", "dapr-caller-app-id", "dapr-api-token"] {
        assert!(h[absent].is_null(), "{absent}: {h}");
    }

    // By the dapr-app-id header, as SDKs do: a name, or a URL under the base URL.
    for (id, path) in [
        ("ext".to_owned(), "/v1/things"),
        (format!("https://localhost:{port}/v1"), "/v1/things"),
    ] {
        let r = send("GET", &format!("{api}/things"), &[("dapr-app-id", &id)], "")
            .await
            .unwrap();
        assert_eq!((r.status, &r.json()["path"]), (200, &json!(path)), "{id}");
    }
    let r = send(
        "GET",
        &format!("{api}/things"),
        &[("dapr-app-id", "https://localhost:1/v1")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());

    // By a URL under the base URL (escaped or not): called, without the endpoint's headers.
    for (target, path) in [
        (format!("https://localhost:{port}/v1"), "/v1/items"),
        (
            format!("https%3A%2F%2Flocalhost%3A{port}%2Fv1%2Fsub"),
            "/v1/sub/items",
        ),
    ] {
        let r = get(&format!("{target}/method/items")).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.json()["path"], path, "{target}");
        assert!(r.json()["headers"]["x-api-key"].is_null(), "{}", r.json());
    }

    // Any other URL is refused before anything is sent.
    let before = count();
    for target in [
        format!("https://localhost:{port}/v2"),
        // Escaped, the dot segments reach the sidecar's own check (unescaped, the edge
        // resolves them first).
        format!("https%3A%2F%2Flocalhost%3A{port}%2Fv1%2F..%2Fadmin"),
        format!("http://localhost:{port}/v1"),
        format!("https://127.0.0.1:{port}/v1"),
        "https://example.com".to_owned(),
    ] {
        let r = get(&format!("{target}/method/x")).await;
        assert_eq!(
            (r.status, r.json()["errorCode"].as_str()),
            (400, Some("ERR_DIRECT_INVOKE")),
            "{target}: {}",
            r.text()
        );
        assert!(r.text().contains("HTTPEndpoint"), "{}", r.text());
    }
    assert_eq!(count(), before, "a refused URL reached the server");

    // A redirect is the endpoint's answer: passed back, not followed.
    let r = get("ext/method/redirect").await;
    assert_eq!(
        (
            r.status,
            r.headers.get("location").map(|v| v.to_str().unwrap())
        ),
        (302, Some("https://elsewhere.invalid/landing"))
    );
    assert_eq!(count(), before + 1);
    // An error answer is passed back as it is.
    let r = get("ext/method/fail").await;
    assert_eq!((r.status, &r.json()["path"]), (503, &json!("/v1/fail")));

    // A server no root vouches for is not called.
    let r = get("stranger/method/x").await;
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_DIRECT_INVOKE")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("stranger"), "{}", r.text());
    assert!(stranger_seen.lock().unwrap().is_empty());

    // The metadata API lists them.
    assert_eq!(
        s.metadata().await["httpEndpoints"],
        json!([{"name": "ext"}, {"name": "stranger"}])
    );
}

#[tokio::test]
async fn an_endpoint_whose_secret_is_missing_stops_the_start_naming_it() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "endpoint.yaml",
        "apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: ext}
spec:
  baseUrl: https://localhost:1
  headers:
  - {name: X-Api-Key, secretKeyRef: {name: nowhere, key: k}}
auth: {secretStore: vault}
",
    );
    mesh.sidecar("caller")
        .resources(&res)
        .start_fails(
            Duration::from_secs(30),
            1,
            &["endpoint.yaml", "spec.headers[0] (X-Api-Key)", "\"vault\""],
        )
        .await;
}
