//! `outrider ca init`: a root, and an intermediate under it whose root key is used once; sidecars
//! issuing from either (`--ca-dir`) call each other over mutual TLS, and an existing CA is never
//! overwritten.

use outrider_testkit::{FakeApp, Mesh, outrider_command, wait_registered};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Runs `outrider ca init` with `args`: exit status, stdout, stderr.
fn ca_init(args: &[&str]) -> (i32, String, String) {
    outrider_command(&[&["ca", "init"][..], args].concat())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn sidecars_of_a_root_and_of_its_intermediate_call_each_other() {
    let pki = tempfile::tempdir().unwrap();
    let (root, int) = (pki.path().join("root"), pki.path().join("int"));
    let (code, out, err) = ca_init(&["--dir", path(&root)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created a root CA"), "{out}");
    let (code, out, err) = ca_init(&[
        "--dir",
        path(&int),
        "--root-cert",
        path(&root.join("ca.crt")),
        "--root-key",
        path(&root.join("ca.key")),
        "--days",
        "30",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created an intermediate CA"), "{out}");
    assert!(out.contains("valid 30 more days"), "{out}");
    for dir in [&root, &int] {
        let mode = std::fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::read(root.join("ca.crt")).unwrap(),
        std::fs::read(int.join("bundle.pem")).unwrap(),
        "the intermediate's bundle is its root"
    );

    // An existing CA stays as it is; half the flags of an intermediate are refused.
    let key = std::fs::read(root.join("ca.key")).unwrap();
    let (code, _, err) = ca_init(&["--dir", path(&root)]);
    assert_eq!(code, 1);
    assert!(err.contains("already holds a CA"), "{err}");
    assert_eq!(std::fs::read(root.join("ca.key")).unwrap(), key);
    let (code, _, err) = ca_init(&["--dir", path(&pki.path().join("x")), "--root-cert", "r.pem"]);
    assert_eq!(code, 2, "{err}");

    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let _b = mesh
        .sidecar("b")
        .app_port(app.port)
        .args(["--ca-dir", path(&int)])
        .start()
        .await;
    let a = mesh
        .sidecar("a")
        .args(["--ca-dir", path(&root)])
        .start()
        .await;
    wait_registered(&mesh, "b", 1).await;
    let r = a.get("/v1.0/invoke/b/method/from-a").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.seen().pop().unwrap().headers["dapr-caller-app-id"], "a");
    assert!(
        !mesh.ca_dir().exists(),
        "a development CA was created besides"
    );
}
