//! Credentials given as files (`--trust-bundle`, `--cert-chain`, `--cert-key`) follow the files:
//! a new certificate is used for new connections within a bound while live ones carry on, a
//! truncated or mismatched file keeps the last good credentials and is reported, and a bundle
//! with a second root lets peers of either root in (rotation with overlap).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outrider_certs::DevCa;
use outrider_testkit::mesh::{mesh_get, mesh_get_h3, peer_config, presenting, served_leaf};
use outrider_testkit::pki::{
    CertFiles, bundle_pem, chain_pem, issue, key_pem, replace_atomically, write_cert_files,
};
use outrider_testkit::{FakeApp, Mesh, Sidecar, send, wait_registered, wait_until};

/// Waits (bounded) until the mesh port of `b` presents `leaf` to new connections.
async fn wait_serving(b: &Sidecar, ca_dir: &std::path::Path, leaf: &[u8]) {
    wait_until(
        Duration::from_secs(10),
        "the new certificate on new connections",
        || async {
            let got = served_leaf(b.mesh, peer_config(ca_dir, "a", "b"))
                .await
                .ok()?;
            (got == leaf).then_some(())
        },
    )
    .await;
}

/// Calls a → b until `stop`, counting the calls and the failures.
fn steady_traffic(
    a: &Sidecar,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::sync::watch::Sender<bool>,
) {
    let url = format!("{}/v1.0/invoke/b/method/steady", a.api_url());
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (s, f) = (sent.clone(), failed.clone());
    tokio::spawn(async move {
        while !*stopped.borrow_and_update() {
            let ok = send("GET", &url, &[], "")
                .await
                .is_ok_and(|r| r.status == 200);
            s.fetch_add(1, Ordering::SeqCst);
            if !ok {
                f.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (sent, failed, stop)
}

/// Sidecar a calling sidecar b (in front of an app), each with credentials from files in `dir`
/// issued by `ca`.
struct Pair {
    mesh: Mesh,
    app: FakeApp,
    a: Sidecar,
    b: Sidecar,
    a_files: CertFiles,
    b_files: CertFiles,
}

impl Pair {
    async fn start(ca: &DevCa, dir: &std::path::Path) -> Self {
        let mesh = Mesh::new();
        let app = FakeApp::start("b").await;
        let b_files = write_cert_files(ca, dir, "b");
        let b = mesh
            .sidecar("b")
            .app_port(app.port)
            .args(b_files.args())
            .start()
            .await;
        let a_files = write_cert_files(ca, dir, "a");
        let a = mesh.sidecar("a").args(a_files.args()).start().await;
        wait_registered(&mesh, "b", 1).await;
        Self {
            mesh,
            app,
            a,
            b,
            a_files,
            b_files,
        }
    }
}

/// The admin port's status page.
async fn status_page(s: &Sidecar) -> String {
    send("GET", &format!("{}/status.txt", s.admin_url()), &[], "")
        .await
        .unwrap()
        .text()
}

/// What the metadata says of the certificate files.
async fn certificate_files_state(s: &Sidecar) -> String {
    let meta = s.get("/v1.0/metadata").await.json();
    meta["extended"]["outrider.certificateFiles"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn new_certificate_files_serve_new_connections_and_bad_ones_keep_the_old() {
    let issuer = tempfile::tempdir().unwrap();
    let ca_dir = issuer.path().join("ca");
    let ca = DevCa::load_or_create(&ca_dir).unwrap();
    let files = tempfile::tempdir().unwrap();
    let Pair {
        mesh: _mesh,
        app: _app,
        a,
        b,
        b_files,
        ..
    } = Pair::start(&ca, files.path()).await;
    assert_eq!(certificate_files_state(&b).await, "in force");
    let first = served_leaf(b.mesh, peer_config(&ca_dir, "a", "b"))
        .await
        .unwrap();
    let (sent, failed, stop) = steady_traffic(&a);
    a.wait_metric("outrider_mesh_requests_total", &[], 5.0)
        .await;

    // Replaced atomically (key, then chain): new connections get the new certificate.
    let second = issue(&ca, "b");
    replace_atomically(&b_files.key, &key_pem(&second));
    replace_atomically(&b_files.chain, &chain_pem(&second));
    wait_serving(&b, &ca_dir, &second.chain[0]).await;
    assert_ne!(first, second.chain[0].to_vec());
    b.wait_metric(
        "outrider_workload_cert_reloads_total",
        &["result=\"success\""],
        1.0,
    )
    .await;

    // A truncated chain (written in place): refused, reported, the last good one stays.
    let third = issue(&ca, "b");
    let pem = chain_pem(&third);
    std::fs::write(&b_files.chain, &pem[..pem.len() / 2]).unwrap();
    // (A failure between the two renames above, if the watch saw one, names the key instead.)
    let chain_path = b_files.chain.to_str().unwrap();
    wait_until(
        Duration::from_secs(10),
        "the truncated chain refused, in the metadata",
        || async {
            let state = certificate_files_state(&b).await;
            (state.starts_with("refused: ") && state.contains(chain_path)).then_some(())
        },
    )
    .await;
    b.wait_metric(
        "outrider_workload_cert_reloads_total",
        &["result=\"failure\""],
        1.0,
    )
    .await;
    let status = status_page(&b).await;
    assert!(
        status.contains("files refused, the last good ones stay"),
        "{status}"
    );
    assert!(b.log().contains("the last good credentials stay in force"));
    assert_eq!(
        served_leaf(b.mesh, peer_config(&ca_dir, "a", "b"))
            .await
            .unwrap(),
        second.chain[0].to_vec()
    );

    // Then written in place in steps (key, then the whole chain): the complete set is installed.
    std::fs::write(&b_files.key, key_pem(&third)).unwrap();
    std::fs::write(&b_files.chain, &pem).unwrap();
    wait_serving(&b, &ca_dir, &third.chain[0]).await;
    wait_until(
        Duration::from_secs(10),
        "the files reported in force",
        || async { (certificate_files_state(&b).await == "in force").then_some(()) },
    )
    .await;

    stop.send_replace(true);
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(sent >= 5, "only {sent} calls");
    assert_eq!(failed, 0, "{failed} of {sent} calls failed:\n{}", a.log());
    drop(b);
}

#[tokio::test]
async fn a_second_root_in_the_bundle_admits_its_peers_over_both_transports() {
    let issuer = tempfile::tempdir().unwrap();
    let (old_dir, new_dir) = (issuer.path().join("old"), issuer.path().join("new"));
    let old = DevCa::load_or_create(&old_dir).unwrap();
    let new = DevCa::load_or_create(&new_dir).unwrap();
    let files = tempfile::tempdir().unwrap();
    let Pair {
        mesh,
        app,
        a,
        b,
        a_files,
        b_files,
    } = Pair::start(&old, files.path()).await;
    let (sent, failed, stop) = steady_traffic(&a);

    // A client with a certificate of the new root (trusting the old one, b's issuer for now).
    let newcomer = || presenting(peer_config(&old_dir, "c", "b"), issue(&new, "c"));
    let res = mesh_get(b.mesh, newcomer(), "/before").await;
    assert!(
        res.is_err(),
        "a peer of an unknown root was served: {res:?}"
    );

    // Both bundles get the new root; the certificates stay.
    let both = bundle_pem(&[&old.trust_bundle(), &new.trust_bundle()]);
    replace_atomically(&a_files.bundle, &both);
    replace_atomically(&b_files.bundle, &both);
    b.wait_metric(
        "outrider_workload_cert_reloads_total",
        &["result=\"success\""],
        1.0,
    )
    .await;
    a.wait_metric(
        "outrider_workload_cert_reloads_total",
        &["result=\"success\""],
        1.0,
    )
    .await;
    let (status, _) = mesh_get(b.mesh, newcomer(), "/over-h2").await.unwrap();
    assert_eq!(status, 200);
    // The QUIC endpoint gets its new configuration from a task of its own: bounded wait.
    wait_until(
        Duration::from_secs(10),
        "the new root admitted over HTTP/3",
        || async {
            let (status, _) = mesh_get_h3(b.mesh, newcomer(), "/over-h3").await.ok()?;
            (status == 200).then_some(())
        },
    )
    .await;
    let status = status_page(&b).await;
    assert!(status.contains("trust bundle of 2 roots"), "{status}");

    // b moves to the new root; new connections see its new certificate.
    let moved = issue(&new, "b");
    replace_atomically(&b_files.key, &key_pem(&moved));
    replace_atomically(&b_files.chain, &chain_pem(&moved));
    wait_until(Duration::from_secs(10), "b on the new root", || async {
        let got = served_leaf(b.mesh, peer_config(&new_dir, "a", "b"))
            .await
            .ok()?;
        (got == moved.chain[0].to_vec()).then_some(())
    })
    .await;
    // A sidecar that starts on the new root is reached by a on a connection of its own: a
    // trusts the new root only through its reloaded bundle.
    let app2 = FakeApp::start("b2").await;
    let b2_files = CertFiles::in_dir(files.path(), "b2");
    let b2_cert = issue(&new, "b2");
    std::fs::write(&b2_files.bundle, &both).unwrap();
    std::fs::write(&b2_files.chain, chain_pem(&b2_cert)).unwrap();
    std::fs::write(&b2_files.key, key_pem(&b2_cert)).unwrap();
    let _b2 = mesh
        .sidecar("b2")
        .app_port(app2.port)
        .args(b2_files.args())
        .start()
        .await;
    wait_registered(&mesh, "b2", 1).await;
    let r = a.get("/v1.0/invoke/b2/method/fresh").await;
    assert_eq!(r.status, 200, "{}", r.text());

    stop.send_replace(true);
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "{failed} of {sent} calls failed:\n{}", a.log());
    let seen: Vec<String> = app.seen().into_iter().map(|r| r.path).collect();
    assert!(
        seen.contains(&"/over-h2".to_owned()) && seen.contains(&"/over-h3".to_owned()),
        "{seen:?}"
    );
}
