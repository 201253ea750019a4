//! Configurations other than the defaults: the static resolver, externally issued certificates,
//! and h2c on the API listener.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use outrider_certs::DevCa;
use outrider_testkit::pki::write_cert_files;
use outrider_testkit::{FakeApp, Mesh, free_port};

#[tokio::test]
async fn the_static_resolver_sends_to_listed_addresses() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let cfg = mesh.home().join("static.yaml");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  nameResolution:\n    component: static\n    configuration:\n      apps:\n        b: [\"127.0.0.1:{}\"]\n",
        b.mesh
    );
    std::fs::write(&cfg, yaml).unwrap();
    let a = mesh
        .sidecar("a")
        .args(["--config", cfg.to_str().unwrap()])
        .start()
        .await;
    let r = a.get("/v1.0/invoke/b/method/static").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/static");
    let meta = a.get("/v1.0/metadata").await.json();
    assert_eq!(meta["extended"]["outrider.nameResolution"], "static");
    // A target the static map does not list is unknown, even though it is registered locally.
    let _c = mesh.sidecar("c").start().await;
    let r = a.get("/v1.0/invoke/c/method/x").await;
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("no endpoints found for app c.default"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn externally_issued_certificates_are_used_as_given() {
    // The CA lives outside both sidecars' homes: they must use the files, not a CA of their own.
    let issuer_home = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(&issuer_home.path().join("ca")).unwrap();
    let mesh = Mesh::new();
    let files = tempfile::tempdir().unwrap();
    let app = FakeApp::start("b").await;
    let b = mesh
        .sidecar("b")
        .app_port(app.port)
        .args(write_cert_files(&ca, files.path(), "b").args())
        .start()
        .await;
    let a = mesh
        .sidecar("a")
        .args(write_cert_files(&ca, files.path(), "a").args())
        .start()
        .await;
    outrider_testkit::wait_registered(&mesh, "b", 1).await;
    let r = a.get("/v1.0/invoke/b/method/ext").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.seen().pop().unwrap().headers["dapr-caller-app-id"], "a");
    assert!(
        !mesh.ca_dir().exists(),
        "a development CA was created despite the given certificates"
    );
    // A certificate for another app id is refused at start.
    let mut wrong = mesh
        .sidecar("c")
        .args(write_cert_files(&ca, files.path(), "a").args())
        .spawn();
    let code = wrong.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(1), "{}", wrong.log());
    assert!(
        wrong
            .log()
            .contains("spiffe://public/ns/default/a, expected spiffe://public/ns/default/c"),
        "{}",
        wrong.log()
    );
    drop(b);
}

#[tokio::test]
async fn the_api_speaks_h2c_with_prior_knowledge() {
    let mesh = Mesh::new();
    let app = FakeApp::start("a").await;
    let a = mesh.sidecar("a").app_port(app.port).start().await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("{}/v1.0/invoke/a/method/h2?x=1", a.api_url()))
        .body(Full::new(Bytes::from("over h2c")))
        .unwrap();
    let rsp = client.request(req).await.unwrap();
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    assert_eq!(rsp.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&rsp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (body["path"].as_str(), body["body"].as_str()),
        (Some("/h2"), Some("over h2c"))
    );
    let _ = free_port();
}
