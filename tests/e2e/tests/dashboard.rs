//! The admin dashboard, end to end: real sidecars under load, the page in Debian's Chromium
//! (headless, driven by playwright-core from tests/browser/, which `make test` installs), and
//! the admin port's read-only and loopback-only rules over plain HTTP.

use std::path::PathBuf;
use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, free_port};
use serde_json::json;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../browser")
}

/// `b` denies `/forbidden/**` to `a` and allows the rest.
const CALLEE_CONFIG: &str = "apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: callee}
spec:
  accessControl:
    defaultAction: allow
    trustDomain: public
    policies:
    - appId: a
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - {name: /forbidden/**, httpVerb: ['*'], action: deny}
";

#[tokio::test]
async fn the_dashboard_shows_a_live_sidecar_in_a_browser() {
    let modules = browser_dir().join("node_modules/playwright-core");
    assert!(
        modules.exists(),
        "{} is missing: run scripts/sdk-deps.sh (make test does)",
        modules.display()
    );
    let mesh = Mesh::new();
    let callee_cfg = mesh.home().join("callee.yaml");
    std::fs::write(&callee_cfg, CALLEE_CONFIG).unwrap();
    let app_b = FakeApp::start("b").await;
    let b = mesh
        .sidecar("b")
        .app_port(app_b.port)
        .args(["--config", callee_cfg.to_str().unwrap()])
        .start()
        .await;
    // A third sidecar on the local registry, as `b` is: `b`'s mesh view lists it.
    let c = mesh.sidecar("c").start().await;
    // `a` finds `b` at two endpoints; nothing listens on the second.
    let dead = free_port();
    let caller_cfg = mesh.home().join("caller.yaml");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  nameResolution:\n    component: static\n    configuration:\n      apps:\n        b: [\"127.0.0.1:{}\", \"127.0.0.1:{dead}\"]\n",
        b.mesh
    );
    std::fs::write(&caller_cfg, yaml).unwrap();
    let (_app_a, a) = mesh
        .sidecar("a")
        .args(["--config", caller_cfg.to_str().unwrap()])
        .start_subscriber(
            "a",
            json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]),
        )
        .await;

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts/dashboard");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .current_dir(browser_dir())
        .env("CALLER_DASHBOARD", format!("{}/", a.admin_url()))
        .env("CALLER_API", a.api_url())
        .env("CALLEE_DASHBOARD", format!("{}/", b.admin_url()))
        .env("TARGET_APP", "b")
        .env("DEAD_ENDPOINT", format!("127.0.0.1:{dead}"))
        .env("EXPECT_COMPONENTS", "statestore,pubsub")
        .env("EXPECT_TOPIC", "pubsub/orders")
        .env("PEER_APP", "c")
        .env("PEER_ENDPOINT", format!("127.0.0.1:{}", c.mesh))
        .env("PEER_DASHBOARD", format!("{}/", c.admin_url()))
        .env("ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test ended within 3 minutes")
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the browser checks failed:\n{text}");
    for check in [
        "ok - the page loads with no console error",
        "ok - it lists the components of the sidecar",
        "ok - it lists the subscriptions with their status",
        "ok - the plots update while load runs",
        "ok - an ejected endpoint shows as ejected",
        "ok - a denial appears in the denials list with its rule",
        "ok - the mesh view lists the other sidecars and links to their dashboards",
        "ok - every request went to the admin origin",
        "ok - no console error while it ran",
    ] {
        assert!(text.contains(check), "{check:?} did not pass:\n{text}");
    }
    for shot in ["dashboard.png", "denials.png"] {
        let len = std::fs::metadata(artifacts.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot} was not saved ({len} bytes)");
    }
}
