//! Access policies per namespace, enforced by the callee's sidecar on the caller's verified
//! identity: two namespaces with their own policy directories, live edits and a bad edit (with
//! HTTP/2 forced between the sidecars here; `over_h3.rs` runs the same test over HTTP/3), the
//! `policy check` subcommand, startup errors, and API allow and deny lists.

use std::path::Path;
use std::time::Duration;

use invoke::{PROD, write};
use outrider_testkit::{Mesh, outrider_command, send};

/// Every mesh of the invocation test: its sidecars call each other over HTTP/2 only.
fn mesh() -> Mesh {
    Mesh::over("h2")
}

#[path = "access_policy/invoke.rs"]
mod invoke;

fn policy_check(root: &Path, args: &[&str]) -> (i32, String, String) {
    let head = ["policy", "check", "--policies-path", root.to_str().unwrap()];
    outrider_command(&[&head[..], args].concat())
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
