//! Real TLS handshakes over loopback between configurations built by this crate, with
//! certificates from elsewhere that must be refused, and across a trust bundle installed at run
//! time (rotation).

use std::sync::Arc;
use std::time::Duration;

use outrider_certs::{Credentials, DevCa, SpiffeId, TrustBundle};
use outrider_testkit::mesh::{leaf_with, presenting};
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn id(app: &str) -> SpiffeId {
    SpiffeId::new("public", "default", app).unwrap()
}

fn creds(ca: &DevCa, app: &str) -> Credentials {
    let cert = ca.issue(&id(app), Duration::from_secs(3600)).unwrap();
    Credentials::new(id(app), &ca.trust_bundle(), cert).unwrap()
}

/// A development CA of its own, in `ca` under a temporary directory that lives as long as the
/// guard returned with it.
fn fresh_ca() -> (tempfile::TempDir, DevCa) {
    let home = tempfile::tempdir().unwrap();
    let ca = DevCa::load_or_create(&home.path().join("ca")).unwrap();
    (home, ca)
}

/// Runs one handshake; returns the identity the server saw, or the client's error.
async fn handshake(server: &Credentials, client: rustls::ClientConfig) -> Result<SpiffeId, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server.server_config().unwrap()));
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        tls.write_all(b"hi").await.unwrap();
        tls.shutdown().await.ok();
        Ok::<_, String>(SpiffeId::from_certificate(&peer).unwrap())
    });
    let connector = TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("mesh.invalid").unwrap();
    let client_result = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(buf)
    }
    .await;
    let server_result = srv.await.unwrap();
    match (client_result, server_result) {
        (Ok(buf), Ok(peer)) if buf == b"hi" => Ok(peer),
        (c, s) => Err(format!("client: {c:?}, server: {s:?}")),
    }
}

#[tokio::test]
async fn mutual_tls_between_workloads_of_one_ca() {
    let (_home, ca) = fresh_ca();
    let (a, b) = (creds(&ca, "a"), creds(&ca, "b"));
    let peer = handshake(&b, a.client_config(id("b")).unwrap())
        .await
        .unwrap();
    assert_eq!(peer, id("a"));
}

#[tokio::test]
async fn client_refuses_a_server_with_another_identity() {
    let (_home, ca) = fresh_ca();
    let (a, c) = (creds(&ca, "a"), creds(&ca, "c"));
    let err = handshake(&c, a.client_config(id("b")).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.contains("expected spiffe://public/ns/default/b"),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_from_another_ca() {
    let ((_h1, ca1), (_h2, ca2)) = (fresh_ca(), fresh_ca());
    let b = creds(&ca1, "b");
    // The intruder trusts ca1 (so it would accept b) but its own certificate is from ca2.
    let cert = ca2.issue(&id("a"), Duration::from_secs(3600)).unwrap();
    let intruder = Credentials::new(id("a"), &ca2.trust_bundle(), cert).unwrap();
    let err = handshake(&b, intruder.client_config(id("b")).unwrap())
        .await
        .unwrap_err();
    assert!(err.contains("server: Err"), "{err}");
}

#[tokio::test]
async fn own_certificate_must_carry_the_id_as_uri_san() {
    let (home, ca) = fresh_ca();
    let dir = home.path().join("ca");
    let dns = leaf_with(
        &dir,
        vec![SanType::DnsName(
            "spiffe://public/ns/default/a".try_into().unwrap(),
        )],
        vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
    );
    let err = Credentials::new(id("a"), &ca.trust_bundle(), dns).unwrap_err();
    assert!(
        err.to_string().contains("no URI SAN") || err.to_string().contains("SAN"),
        "{err}"
    );
}

#[tokio::test]
async fn server_refuses_clients_without_uri_san_or_client_auth() {
    let (home, ca) = fresh_ca();
    let dir = home.path().join("ca");
    let b = creds(&ca, "b");
    let uri = |s: &str| SanType::URI(s.try_into().unwrap());
    let cases = [
        (
            "DNS SAN instead of URI SAN",
            vec![SanType::DnsName(
                "spiffe://public/ns/default/a".try_into().unwrap(),
            )],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
        (
            "serverAuth only",
            vec![uri("spiffe://public/ns/default/a")],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        ),
        (
            "no EKU extension at all",
            vec![uri("spiffe://public/ns/default/a")],
            vec![],
        ),
        (
            "other trust domain",
            vec![uri("spiffe://other/ns/default/a")],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
        (
            "two URI SANs",
            vec![
                uri("spiffe://public/ns/default/a"),
                uri("spiffe://public/ns/default/b"),
            ],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        ),
    ];
    for (what, sans, ekus) in cases {
        let leaf = leaf_with(&dir, sans, ekus);
        let client = presenting(creds(&ca, "helper").client_config(id("b")).unwrap(), leaf);
        let err = handshake(&b, client).await.expect_err(what);
        assert!(err.contains("server: Err"), "{what}: {err}");
    }
}

/// Records the certificate authorities the server names, then presents the usual certificate.
#[derive(Debug)]
struct RecordingHints {
    inner: Arc<dyn rustls::client::ResolvesClientCert>,
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl rustls::client::ResolvesClientCert for RecordingHints {
    fn resolve(
        &self,
        hints: &[&[u8]],
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .extend(hints.iter().map(|h| h.to_vec()));
        self.inner.resolve(hints, schemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

#[tokio::test]
async fn the_server_names_its_roots_as_whole_der_names() {
    let (_home, ca) = fresh_ca();
    let (a, b) = (creds(&ca, "a"), creds(&ca, "b"));
    let mut client = a.client_config(id("b")).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    client.client_auth_cert_resolver = Arc::new(RecordingHints {
        inner: client.client_auth_cert_resolver.clone(),
        seen: seen.clone(),
    });
    handshake(&b, client).await.unwrap();

    let hints = seen.lock().unwrap().clone();
    let bundle = ca.trust_bundle();
    let root = &bundle.certs()[0];
    let (_, root) = x509_parser::parse_x509_certificate(root).unwrap();
    assert_eq!(hints.len(), 1);
    // A complete DER Name (OpenSSL parses the hint as one), equal to the root's subject.
    use x509_parser::prelude::FromDer as _;
    let (rest, name) =
        x509_parser::x509::X509Name::from_der(&hints[0]).expect("the hint is a DER Name");
    assert!(rest.is_empty());
    assert_eq!(name.as_raw(), root.subject().as_raw());
}

/// A bundle of both CAs' roots, as during a rotation.
fn both(a: &DevCa, b: &DevCa) -> TrustBundle {
    TrustBundle::from_certs([a.trust_bundle().certs(), b.trust_bundle().certs()].concat())
}

#[tokio::test]
async fn a_client_config_follows_the_bundle_installed_after_it_was_built() {
    let (_h1, old) = fresh_ca();
    let (_h2, new) = fresh_ca();
    let a = creds(&old, "a");
    let to_b = a.client_config(id("b")).unwrap();
    let b_new = creds(&new, "b");
    // b is of a root a does not trust yet.
    let mut changes = a.bundle_changes();
    assert!(handshake(&b_new, to_b.clone()).await.is_err());
    let same_cert = old.issue(&id("a"), Duration::from_secs(3600)).unwrap();
    let info = a.install_with_bundle(&both(&old, &new), same_cert).unwrap();
    assert_eq!(info.generation, 2);
    assert_eq!(a.trust_roots(), 2);
    assert!(changes.has_changed().unwrap(), "no bundle change announced");
    changes.borrow_and_update();
    // The same configuration, built before: it trusts the new root now. b (whose server
    // configuration must trust a's old root too) admits a.
    let b_both = creds(&new, "b");
    b_both
        .install_with_bundle(
            &both(&old, &new),
            new.issue(&id("b"), Duration::from_secs(3600)).unwrap(),
        )
        .unwrap();
    handshake(&b_both, to_b.clone()).await.unwrap();
    // Installing the same bundle again is a certificate change only.
    a.install_with_bundle(
        &both(&old, &new),
        old.issue(&id("a"), Duration::from_secs(3600)).unwrap(),
    )
    .unwrap();
    assert!(
        !changes.has_changed().unwrap(),
        "an unchanged bundle was announced"
    );
    // The old root retired from a's bundle: an old-root server is refused by the same config.
    let b_old = creds(&old, "b");
    a.install_with_bundle(
        &new.trust_bundle(),
        new.issue(&id("a"), Duration::from_secs(3600)).unwrap(),
    )
    .unwrap();
    // (Both development roots have the same name: the client finds the new one and its
    // signature does not verify.)
    let err = handshake(&b_old, to_b).await.unwrap_err();
    assert!(
        err.contains("client: Err(\"invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_that_does_not_chain_to_the_new_bundle_changes_nothing() {
    let (_h1, old) = fresh_ca();
    let (_h2, new) = fresh_ca();
    let a = creds(&old, "a");
    let before = a.info();
    let changes = a.bundle_changes();
    // The new bundle alone, with a certificate of the old root: refused.
    let err = a
        .install_with_bundle(
            &new.trust_bundle(),
            old.issue(&id("a"), Duration::from_secs(3600)).unwrap(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("own certificate rejected"),
        "{err}"
    );
    // A certificate for another identity: refused.
    let err = a
        .install_with_bundle(
            &both(&old, &new),
            new.issue(&id("c"), Duration::from_secs(3600)).unwrap(),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected spiffe://public/ns/default/a"),
        "{err}"
    );
    assert_eq!(a.info(), before);
    assert_eq!(a.trust_roots(), 1);
    assert!(!changes.has_changed().unwrap());
    // Peers of the old root are still admitted.
    handshake(&a, creds(&old, "b").client_config(id("a")).unwrap())
        .await
        .unwrap();
}

/// `dir/ca.crt` and `dir/ca.key`: a CA's files, as `ca init` writes them.
fn ca_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join("ca.crt"), dir.join("ca.key"))
}

#[tokio::test]
async fn workloads_of_a_root_and_of_its_intermediate_trust_each_other() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let (root_dir, int_dir) = (home.path().join("root"), home.path().join("int"));
    let year = Duration::from_secs(365 * 24 * 3600);
    let root = outrider_certs::create_authority(&outrider_certs::NewAuthority {
        dir: &root_dir,
        lifetime: year,
        root: None,
    })
    .unwrap();
    assert!(!root.intermediate);
    let (root_cert, root_key) = ca_files(&root_dir);
    let int = outrider_certs::create_authority(&outrider_certs::NewAuthority {
        dir: &int_dir,
        lifetime: 10 * year,
        root: Some((&root_cert, &root_key)),
    })
    .unwrap();
    assert!(int.intermediate);
    assert_ne!(root.name, int.name);
    // An intermediate never outlives its root.
    assert!(int.not_after <= root.not_after);
    for dir in [&root_dir, &int_dir] {
        let mode = std::fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", dir.display());
    }
    let (root_ca, int_ca) = (
        DevCa::load(&root_dir).unwrap(),
        DevCa::load(&int_dir).unwrap(),
    );
    // Both vouch with the root alone; the intermediate's leaves carry it in their chain.
    assert!(root_ca.trust_bundle() == int_ca.trust_bundle());
    let leaf = int_ca.issue(&id("b"), Duration::from_secs(600)).unwrap();
    assert_eq!(leaf.chain.len(), 2);
    let a = creds(&root_ca, "a");
    let b = Credentials::new(id("b"), &int_ca.trust_bundle(), leaf).unwrap();
    assert_eq!(
        handshake(&b, a.client_config(id("b")).unwrap())
            .await
            .unwrap(),
        id("a")
    );
    assert_eq!(
        handshake(&a, b.client_config(id("a")).unwrap())
            .await
            .unwrap(),
        id("b")
    );
}

#[test]
fn ca_init_refuses_an_existing_ca_a_leaf_as_root_and_a_foreign_key() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("root");
    let new = |dir: &std::path::Path, root: Option<(&std::path::Path, &std::path::Path)>| {
        outrider_certs::create_authority(&outrider_certs::NewAuthority {
            dir,
            lifetime: Duration::from_secs(3600),
            root,
        })
    };
    new(&dir, None).unwrap();
    let before = std::fs::read(dir.join("ca.key")).unwrap();
    let err = new(&dir, None).unwrap_err().to_string();
    assert!(err.contains("already holds a CA"), "{err}");
    assert_eq!(std::fs::read(dir.join("ca.key")).unwrap(), before);
    // A workload certificate is no root.
    let ca = DevCa::load(&dir).unwrap();
    let leaf = ca.issue(&id("a"), Duration::from_secs(600)).unwrap();
    let leaf_pem = home.path().join("leaf.pem");
    let pem = outrider_testkit::pki::chain_pem(&leaf);
    std::fs::write(&leaf_pem, pem).unwrap();
    let (root_cert, root_key) = ca_files(&dir);
    let err = new(&home.path().join("x"), Some((&leaf_pem, &root_key)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a CA certificate"), "{err}");
    // Another CA's key.
    let other = home.path().join("other");
    new(&other, None).unwrap();
    let err = new(
        &home.path().join("y"),
        Some((&root_cert, &other.join("ca.key"))),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not the key of"), "{err}");
    assert!(!home.path().join("x").exists() && !home.path().join("y").exists());
    // An existing (empty) directory is not taken over.
    std::fs::create_dir(home.path().join("empty")).unwrap();
    let err = new(&home.path().join("empty"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exists"), "{err}");
    // A root file that holds its key too: only the certificate reaches the bundle.
    let combined = home.path().join("root-and-key.pem");
    let mut text = std::fs::read_to_string(&root_cert).unwrap();
    text.push_str(&std::fs::read_to_string(&root_key).unwrap());
    std::fs::write(&combined, text).unwrap();
    let int = home.path().join("int");
    new(&int, Some((&combined, &root_key))).unwrap();
    let bundle = std::fs::read_to_string(int.join("bundle.pem")).unwrap();
    assert!(!bundle.contains("PRIVATE KEY"), "{bundle}");
    assert_eq!(bundle, std::fs::read_to_string(&root_cert).unwrap());
}

#[test]
fn credential_files_that_do_not_fit_together_change_nothing() {
    use outrider_certs::CredentialFiles;
    use outrider_testkit::pki::{chain_pem, issue, key_pem, write_cert_files};
    let (_home, ca) = fresh_ca();
    let dir = tempfile::tempdir().unwrap();
    let written = write_cert_files(&ca, dir.path(), "a");
    let files = CredentialFiles {
        bundle: written.bundle.clone(),
        chain: written.chain.clone(),
        key: written.key.clone(),
    };
    let a = Credentials::from_files(id("a"), &files, &files.read().unwrap()).unwrap();
    let before = a.info();
    let refused = |what: &str| {
        let err = a.install_files(&files, &files.read().unwrap()).unwrap_err();
        assert_eq!(a.info(), before, "{what} changed the credentials");
        err.to_string()
    };
    // A new chain with the old key (a writer between its two files).
    let next = issue(&ca, "a");
    std::fs::write(&files.chain, chain_pem(&next)).unwrap();
    let err = refused("a key of another certificate");
    assert!(err.to_lowercase().contains("key"), "{err}");
    // The key too, but for another identity.
    let other = issue(&ca, "b");
    std::fs::write(&files.chain, chain_pem(&other)).unwrap();
    std::fs::write(&files.key, key_pem(&other)).unwrap();
    let err = refused("another identity");
    assert!(
        err.contains("expected spiffe://public/ns/default/a"),
        "{err}"
    );
    // Both right: installed.
    std::fs::write(&files.chain, chain_pem(&next)).unwrap();
    std::fs::write(&files.key, key_pem(&next)).unwrap();
    let info = a.install_files(&files, &files.read().unwrap()).unwrap();
    assert_eq!(info.generation, before.generation + 1);
}
