//! `--app-protocol grpcs`: an app serving `AppCallback` over TLS, with a certificate of its own
//! making, is probed and invoked through its sidecar.

use outrider_testkit::{Mesh, free_port};

use super::{app_script_passes, python, script};

#[tokio::test]
async fn python_grpc_app_over_tls() {
    let mesh = Mesh::new();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (mesh.home().join("app.crt"), mesh.home().join("app.key"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let b = mesh
        .sidecar("sdk-py-grpcs")
        .app_port(free_port())
        .args(["--app-protocol", "grpcs", "--enable-app-health-check"])
        .args(["--app-health-probe-interval", "1"])
        .env("TLS_CERT_FILE", cert_file.to_str().unwrap())
        .env("TLS_KEY_FILE", key_file.to_str().unwrap());
    let argv = vec![python(), script("python/grpcs_app.py")];
    let log = app_script_passes(
        b,
        argv,
        &[
            "the health probe over TLS passes",
            "InvokeService reaches OnInvoke over TLS",
        ],
    )
    .await;
    assert!(
        log.contains("--app-protocol grpcs: the app's certificate is not verified"),
        "{log}"
    );
}
