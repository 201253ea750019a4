//! Identity beyond one host: a CA host runs `outrider ca serve`, three other hosts run sidecars
//! that get their certificates from it with join tokens, and call each other over mutual TLS.
//! Only the CA host holds a CA key; the others hold the public root and nothing else.
//!
//! Hosts are network namespaces on a bridge (`testkit::netns`); without root the test reports
//! itself skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outrider_testkit::ca::{CaService, crafted_csr, private_keys_under};
use outrider_testkit::netns::{Host, Lan, static_config};
use outrider_testkit::{Mesh, Sidecar, binary, free_port};
use rcgen::{BasicConstraints, IsCa, SanType};

/// The mesh port of sidecars on LAN hosts (their well-known ports).
const MESH: u16 = 50002;

/// The flags that point a sidecar at the CA host, with the public root copied to `anchors`.
fn ca_flags(ca: &CaService, anchors: &Path) -> Vec<String> {
    vec![
        "--sentry-address".into(),
        ca.addr.to_string(),
        "--trust-anchors".into(),
        anchors.to_string_lossy().into_owned(),
    ]
}

async fn sidecar(
    mesh: &Mesh,
    app: &str,
    host: &Host,
    config: &Path,
    flags: &[String],
    token: &str,
) -> Sidecar {
    let mut s = mesh
        .sidecar(app)
        .on(host)
        .well_known_ports()
        .app_port(free_port())
        .args(["--config", &config.to_string_lossy()])
        .args(flags.iter().cloned())
        .env("OUTRIDER_CA_TOKEN", token)
        .command([binary("echo-app").to_string_lossy().into_owned()])
        .spawn();
    s.wait_ready().await;
    s
}

/// `POST /v1/certificates` from `host` with curl (the service is not verified: the test is of
/// what it refuses, not of the client).
async fn post_csr(
    host: &Host,
    ca: &CaService,
    dir: &Path,
    csr: &str,
    token: &str,
) -> (u16, String) {
    let file = dir.join(format!("csr-{}.json", free_port()));
    std::fs::write(&file, serde_json::json!({ "csr": csr }).to_string()).unwrap();
    let url = format!("https://{}/v1/certificates", ca.addr);
    let auth = format!("authorization: Bearer {token}");
    let data = format!("@{}", file.display());
    host.curl(&[
        "-k",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        &auth,
        "--data-binary",
        &data,
        &url,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_on_three_hosts_get_certificates_from_the_ca_host() {
    let lan = match Lan::new(4) {
        Ok(lan) => lan,
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let [ca_host, h1, h2, h3] = [&lan.hosts[0], &lan.hosts[1], &lan.hosts[2], &lan.hosts[3]];
    let ca = CaService::init().serve_on(ca_host, &[]).await;
    let mesh = Mesh::new();
    // What the other hosts get: the public root, copied, nothing else of the CA's.
    let anchors = mesh.home().join("anchors.pem");
    std::fs::copy(ca.anchors(), &anchors).unwrap();
    let flags = ca_flags(&ca, &anchors);
    let cfg = static_config(
        mesh.home(),
        &[
            ("orders", h1.addr),
            ("payments", h2.addr),
            ("shipping", h3.addr),
        ],
        MESH,
    );
    let orders_token = ca.token("default", "orders", 1);
    let orders = sidecar(&mesh, "orders", h1, &cfg, &flags, &orders_token).await;
    let payments = sidecar(
        &mesh,
        "payments",
        h2,
        &cfg,
        &flags,
        &ca.token("default", "payments", 1),
    )
    .await;
    let _shipping = sidecar(
        &mesh,
        "shipping",
        h3,
        &cfg,
        &flags,
        &ca.token("default", "shipping", 1),
    )
    .await;

    // Mutual TLS across hosts, each caller named by the certificate the CA issued it.
    for (from, to, caller) in [
        (&orders, "payments", "orders"),
        (&payments, "shipping", "payments"),
        (&orders, "shipping", "orders"),
    ] {
        let r = from
            .call("POST", &format!("/v1.0/invoke/{to}/method/pay"), "{}")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{caller} → {to}: {}", r.text());
        assert_eq!(
            r.json()["headers"]["dapr-caller-app-id"],
            caller,
            "{}",
            r.text()
        );
    }
    let issued = ca.log().matches("issued a workload certificate").count();
    assert_eq!(issued, 3, "{}", ca.log());

    // No CA key on any host but the CA host: the sidecars' homes and data hold no private key,
    // and no development CA was created.
    assert_eq!(private_keys_under(mesh.home()), Vec::<PathBuf>::new());
    assert!(!mesh.ca_dir().exists(), "a development CA was created");
    assert!(ca.dir().join("ca.key").is_file());

    // A reused single-use token, and a token for orders shown for payments, are refused: the
    // sidecar says why and exits.
    let start = |app: &str, token: &str| {
        mesh.sidecar(app)
            .on(h1)
            .args(flags.iter().cloned())
            .env("OUTRIDER_CA_TOKEN", token)
    };
    start("orders", &orders_token)
        .start_fails(Duration::from_secs(30), 1, &["join token is not valid"])
        .await;
    let second = ca.token("default", "orders", 1);
    start("payments", &second)
        .start_fails(
            Duration::from_secs(30),
            1,
            &["the token is for app orders", "403"],
        )
        .await;

    // Requests no sidecar would send, from a LAN host: refused, nothing issued, token kept.
    let dir = mesh.home();
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    for (what, csr) in [
        (
            "extra SANs",
            crafted_csr(p256, |p| {
                p.subject_alt_names.push(SanType::URI(
                    "spiffe://public/ns/default/payments".try_into().unwrap(),
                ))
            }),
        ),
        (
            "CA:true",
            crafted_csr(p256, |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            }),
        ),
        (
            "a P-384 key",
            crafted_csr(&rcgen::PKCS_ECDSA_P384_SHA384, |_| {}),
        ),
    ] {
        let (status, body) = post_csr(h1, &ca, dir, &csr, &second).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains("ERR_CSR_INVALID"), "{what}: {body}");
    }
    let (status, body) = post_csr(h1, &ca, dir, &crafted_csr(p256, |_| {}), &second).await;
    assert_eq!(
        status, 200,
        "the token was spent by refused requests: {body}"
    );
    assert_eq!(
        ca.log().matches("issued a workload certificate").count(),
        issued + 1,
        "{}",
        ca.log()
    );
}
