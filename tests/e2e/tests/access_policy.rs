//! Access policies per namespace, enforced by the callee's sidecar on the caller's verified
//! identity: two namespaces with their own policy directories, live edits, a bad edit, the
//! `policy check` subcommand, and startup errors.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, Sidecar, binary, send, wait_registered, wait_until};

/// `prod` denies by default and lets `frontend` (of `prod`) only read orders.
const PROD: &str = concat!(
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

fn write(path: &Path, text: &str) {
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
    let mesh = Mesh::new();
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

fn policy_check(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("outrider"))
        .args(["policy", "check", "--policies-path", root.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn policy_check_prints_the_decision_and_its_rule() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("prod/acl.yaml"), PROD);
    let ns = ["--namespace", "prod"];

    let (code, out, _) = policy_check(
        root.path(),
        &[&ns[..], &["--caller", "prod/frontend", "--op", "/orders/7"]].concat(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("allow\n") && out.contains("spiffe://public/ns/prod/frontend"),
        "{out}"
    );
    assert!(out.contains("operation \"/orders/**\" verb GET"), "{out}");

    let args = [
        &ns[..],
        &[
            "--caller",
            "spiffe://public/ns/prod/frontend",
            "--op",
            "/x/../admin",
            "--verb",
            "post",
        ],
    ]
    .concat();
    let (code, out, _) = policy_check(root.path(), &args);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("deny\n") && out.contains("/admin (canonical form of \"/x/../admin\")"),
        "{out}"
    );
    assert!(
        out.contains("acl.yaml") && out.contains("/admin/**"),
        "{out}"
    );

    let (code, out, _) = policy_check(
        root.path(),
        &[&ns[..], &["--caller", "dev/intruder", "--op", "/orders/7"]].concat(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("global defaultAction (no policy"), "{out}");

    // Another namespace's directory does not apply.
    let (code, out, _) = policy_check(
        root.path(),
        &[
            "--namespace",
            "dev",
            "--caller",
            "dev/intruder",
            "--op",
            "/admin",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no access control is configured"), "{out}");

    write(
        &root.path().join("prod/zz-bad.yaml"),
        "kind: Configuration\nspec: {accessControl: {defaultAction: perhaps}}\n",
    );
    let (code, _, err) = policy_check(
        root.path(),
        &[&ns[..], &["--caller", "frontend", "--op", "/"]].concat(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("zz-bad.yaml: spec.accessControl.defaultAction") && err.contains("perhaps"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_policy_file_stops_the_start_with_file_field_and_value() {
    let mesh = Mesh::new();
    let root = tempfile::tempdir().unwrap();
    write(
        &root.path().join("default/acl.yaml"),
        &PROD.replace("httpVerb: [GET]", "httpVerb: [FETCH]"),
    );
    let mut s = mesh
        .sidecar("orders")
        .args(["--policies-path", root.path().to_str().unwrap()])
        .spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(10)).await, Some(2));
    let log = s.log();
    assert!(
        log.contains("acl.yaml: spec.accessControl.policies[0].operations[0].httpVerb[0]")
            && log.contains("FETCH"),
        "{log}"
    );

    let mut s = mesh
        .sidecar("orders")
        .args(["--policies-path", "/nonexistent/policies"])
        .spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(10)).await, Some(2));
    assert!(
        s.log()
            .contains("--policies-path: /nonexistent/policies is not a directory"),
        "{}",
        s.log()
    );
}

#[tokio::test]
async fn api_lists_decide_which_routes_are_served() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, api: &str| {
        let path = dir.path().join(name);
        write(
            &path,
            &format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {{name: api}}\nspec:\n  api:\n{api}"
            ),
        );
        path.to_str().unwrap().to_owned()
    };
    // Only state (and health) is served: invocation is not, so everything else is a plain 404.
    let only_state = config(
        "only-state.yaml",
        "    allowed:\n    - {name: state, version: v1.0, protocol: http}\n",
    );
    let s = mesh
        .sidecar("listed")
        .args(["--config", &only_state])
        .start()
        .await;
    let url = |rest: &str| format!("{}{rest}", s.api_url());
    let saved = send(
        "POST",
        &url("/v1.0/state/statestore"),
        &[],
        r#"[{"key":"k","value":1}]"#,
    )
    .await
    .unwrap();
    assert_eq!(saved.status, 204, "{}", saved.text());
    assert_eq!(
        send("GET", &url("/v1.0/state/statestore/k"), &[], "")
            .await
            .unwrap()
            .text(),
        "1"
    );
    assert_eq!(
        send("GET", &url("/v1.0/healthz"), &[], "")
            .await
            .unwrap()
            .status,
        204
    );
    for (verb, path) in [
        ("POST", "/v1.0/publish/pubsub/t"),
        ("GET", "/v1.0/metadata"),
        ("GET", "/v1.0/invoke/x/method/y"),
    ] {
        let r = send(verb, &url(path), &[], "{}").await.unwrap();
        assert_eq!(
            (r.status, r.text()),
            (404, "404 page not found\n".to_owned()),
            "{verb} {path}"
        );
    }
    drop(s);

    // Publish denied, the rest served: the denied route falls through to invocation, which
    // finds no target app.
    let no_publish = config(
        "no-publish.yaml",
        "    denied:\n    - {name: publish, version: v1}\n",
    );
    let s = mesh
        .sidecar("listed")
        .args(["--config", &no_publish])
        .start()
        .await;
    let r = s.request("POST", "/v1.0/publish/pubsub/t", &[], "{}").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["errorCode"], "ERR_DIRECT_INVOKE");
    assert_eq!(s.get("/v1.0/metadata").await.status, 200);

    // A rule naming an API that does not exist is a configuration error.
    let typo = config(
        "typo.yaml",
        "    allowed:\n    - {name: stat, version: v1.0}\n",
    );
    let mut s = mesh.sidecar("listed").args(["--config", &typo]).spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(10)).await, Some(2));
    assert!(
        s.log()
            .contains("typo.yaml: spec.api.allowed[0].name: \"stat\" is not an API"),
        "{}",
        s.log()
    );
}
