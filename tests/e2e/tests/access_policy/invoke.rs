//! Access policies per namespace, enforced by the callee's sidecar on the caller's verified
//! identity, on invocations between sidecars: two namespaces with their own policy directories,
//! denials (403) logged and counted, live edits and a bad edit. `access_policy.rs` runs it over
//! HTTP/2 and `over_h3.rs` over HTTP/3; each builds its meshes with `crate::mesh()`.

use std::path::Path;
use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, Sidecar, send, wait_registered, wait_until};

/// `prod` denies by default and lets `frontend` (of `prod`) only read orders.
pub(crate) const PROD: &str = concat!(
    "apiVersion: dapr.io/v1alpha1\n",
    "kind: Configuration\n",
    "metadata: {name: prod-acl}\n",
    "spec:\n",
    "  accessControl:\n",
    "    defaultAction: deny\n",
    "    trustDomain: public\n",
    "    policies:\n",
    "    - appId: frontend\n",
    "      namespace: prod\n",
    "      trustDomain: public\n",
    "      defaultAction: deny\n",
    "      operations:\n",
    "      - {name: /orders/**, httpVerb: [GET], action: allow}\n",
    "      - {name: /admin/**, httpVerb: ['*'], action: deny}\n",
);

/// `dev` lets everyone in.
const DEV: &str = "kind: Configuration\nspec:\n  accessControl:\n    defaultAction: allow\n";

/// Writes `text` to `path` (creating its directory) through a rename, so a watcher never
/// reads a half-written file.
pub(crate) fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct World {
    _mesh: Mesh,
    root: tempfile::TempDir,
    frontend: Sidecar,
    intruder: Sidecar,
    prod_orders: Sidecar,
    prod_app: FakeApp,
    _dev_orders: Sidecar,
    _dev_app: FakeApp,
}

async fn world() -> World {
    let mesh = crate::mesh();
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("prod/acl.yaml"), PROD);
    write(&root.path().join("dev/acl.yaml"), DEV);
    let policies = root.path().to_str().unwrap().to_owned();
    let (prod_app, dev_app) = (
        FakeApp::start("orders-prod").await,
        FakeApp::start("orders-dev").await,
    );
    let in_ns = |ns: &str| {
        vec![
            "--namespace".to_owned(),
            ns.to_owned(),
            "--policies-path".to_owned(),
            policies.clone(),
        ]
    };
    let prod_orders = mesh
        .sidecar("orders")
        .app_port(prod_app.port)
        .args(in_ns("prod"))
        .start()
        .await;
    let dev_orders = mesh
        .sidecar("orders")
        .app_port(dev_app.port)
        .args(in_ns("dev"))
        .start()
        .await;
    let frontend = mesh.sidecar("frontend").args(in_ns("prod")).start().await;
    let intruder = mesh.sidecar("intruder").args(in_ns("dev")).start().await;
    wait_registered(&mesh, "orders", 2).await;
    World {
        _mesh: mesh,
        root,
        frontend,
        intruder,
        prod_orders,
        prod_app,
        _dev_orders: dev_orders,
        _dev_app: dev_app,
    }
}

async fn call(from: &Sidecar, verb: &str, target: &str) -> (u16, serde_json::Value) {
    let r = send(
        verb,
        &format!("{}/v1.0/invoke/{target}", from.api_url()),
        &[],
        "",
    )
    .await
    .unwrap();
    let body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, body)
}

#[tokio::test]
async fn each_namespace_enforces_its_own_policies_and_edits_apply_live() {
    let w = world().await;
    // Allowed by frontend's operation rule.
    let (status, body) = call(&w.frontend, "GET", "orders.prod/method/orders/7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"], "orders-prod");

    // Denied: a verb the rule does not list, the admin rule, and the same through encodings,
    // which the callee decides on in the form the app would have received.
    for (verb, method) in [
        ("POST", "orders/7"),
        ("GET", "admin/users"),
        ("GET", "orders%2F..%2Fadmin"),
        ("GET", "orders/..%2F..%2Fadmin"),
        ("GET", "%61dmin"),
        ("GET", "ADMIN"),
        ("GET", "elsewhere"),
    ] {
        let (status, body) = call(&w.frontend, verb, &format!("orders.prod/method/{method}")).await;
        assert_eq!(status, 403, "{verb} {method}: {body}");
        assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE", "{verb} {method}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("access control policy has denied access to appid: frontend"),
            "{message}"
        );
    }
    let reached: Vec<String> = w
        .prod_app
        .seen()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        reached,
        ["GET /orders/7"],
        "denied calls never reach the app"
    );

    // A caller from dev has no policy in prod: prod's global default denies it. In dev, dev's
    // policy lets everyone in: prod's rules never apply there.
    assert_eq!(
        call(&w.intruder, "GET", "orders.prod/method/orders/7")
            .await
            .0,
        403
    );
    assert_eq!(
        call(&w.intruder, "GET", "orders.dev/method/admin").await.0,
        200
    );
    assert_eq!(
        call(&w.frontend, "POST", "orders.dev/method/orders/7")
            .await
            .0,
        200
    );

    // Denials are logged with caller, operation and rule, and counted.
    let log = w.prod_orders.log();
    let line = log
        .lines()
        .find(|l| l.contains("denied by access policy") && l.contains("operation=/admin/users"));
    let line = line.unwrap_or_else(|| panic!("no denial logged:\n{log}"));
    assert!(
        line.contains("public/prod/frontend")
            && line.contains("acl.yaml")
            && line.contains("/admin/**"),
        "{line}"
    );
    let metrics = w.prod_orders.metrics().await;
    let blocked =
        |name, app| outrider_testkit::sum_metric(&metrics, name, &[&format!("app_id=\"{app}\"")]);
    assert!(
        blocked(
            "dapr_runtime_acl_app_policy_action_blocked_total",
            "frontend"
        ) >= 7.0,
        "{metrics}"
    );
    assert!(
        blocked(
            "dapr_runtime_acl_app_policy_action_allowed_total",
            "frontend"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        blocked(
            "dapr_runtime_acl_global_policy_action_blocked_total",
            "intruder"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("operation=\"/admin/**\""),
        "labels use the configured operation: {metrics}"
    );
    assert!(
        !metrics.contains("operation=\"/admin/users\""),
        "never the raw path: {metrics}"
    );

    // An edit that lets frontend write orders takes effect without a restart.
    let file = w.root.path().join("prod/acl.yaml");
    write(
        &file,
        &PROD.replace(
            "httpVerb: [GET], action: allow",
            "httpVerb: [GET, POST], action: allow",
        ),
    );
    wait_until(
        Duration::from_secs(10),
        "the edited policy to apply",
        || async {
            (call(&w.frontend, "POST", "orders.prod/method/orders/7")
                .await
                .0
                == 200)
                .then_some(())
        },
    )
    .await;

    // A broken edit is reported and the last good set stays in force.
    write(&file, &PROD.replace("action: deny", "action: nope"));
    wait_until(
        Duration::from_secs(10),
        "the bad edit to be reported",
        || async {
            w.prod_orders
                .log()
                .contains("access policies not reloaded")
                .then_some(())
        },
    )
    .await;
    let log = w.prod_orders.log();
    assert!(
        log.contains("acl.yaml: spec.accessControl.policies[0].operations[1].action"),
        "{log}"
    );
    assert_eq!(
        call(&w.frontend, "POST", "orders.prod/method/orders/8")
            .await
            .0,
        200
    );
    assert_eq!(
        call(&w.frontend, "GET", "orders.prod/method/admin").await.0,
        403
    );
    assert!(
        w.prod_orders
            .metric_sum("outrider_policy_reloads_total", &["result=\"failure\""])
            .await
            >= 1.0
    );
}
