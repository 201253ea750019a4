//! `outrider ca serve` on loopback, driven as a sidecar would drive it and as a hostile client
//! would: it signs only what the caller is entitled to (a join token bound to one app, or the
//! caller's current certificate), refuses anything else with a clear 4xx, issues nothing on
//! any error, and cuts off clients that stall.

use std::time::{Duration, SystemTime};

use outrider_certs::{Credentials, KeyRequest, SpiffeId, TrustBundle};
use outrider_testkit::ca::{CaService, connect, crafted_csr};
use outrider_testkit::sum_metric;
use rcgen::{BasicConstraints, IsCa, SanType};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::AsyncReadExt;

fn id(app: &str) -> SpiffeId {
    SpiffeId::new("public", "default", app).unwrap()
}

/// Credentials from a successful answer to `req`.
fn credentials(req: KeyRequest, app: &str, answer: &serde_json::Value) -> Credentials {
    let chain =
        CertificateDer::pem_slice_iter(answer["certificateChain"].as_str().unwrap().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    let bundle = TrustBundle::from_pem(
        std::path::Path::new("answer"),
        answer["trustBundle"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let cert = req.into_issued(chain, SystemTime::now()).unwrap();
    Credentials::new(id(app), &bundle, cert).unwrap()
}

fn code(v: &serde_json::Value) -> &str {
    v["errorCode"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_ca_signs_only_what_the_caller_is_entitled_to() {
    let ca = CaService::init()
        .serve(&["--workload-cert-ttl", "1h"])
        .await;
    let anon = || ca.client_config(None);
    let orders = ca.token("default", "orders", 1);

    // A token for orders does not obtain payments' identity, and is not spent by trying.
    let payments = KeyRequest::new(&id("payments")).unwrap();
    let (status, v) = ca.sign(anon(), payments.pem(), Some(&orders)).await;
    assert_eq!((status, code(&v)), (403, "ERR_NOT_ENTITLED"), "{v}");
    assert!(v["message"].as_str().unwrap().contains("orders"), "{v}");

    let mine = KeyRequest::new(&id("orders")).unwrap();
    let (status, v) = ca.sign(anon(), mine.pem(), Some(&orders)).await;
    assert_eq!(status, 200, "{v}");
    let valid_until = v["validUntil"].as_str().unwrap();
    assert!(
        valid_until.ends_with('Z') && valid_until.contains('T'),
        "{v}"
    );
    // The same request again (its answer lost on the way): served again, nothing more spent.
    let (status, again_v) = ca.sign(anon(), mine.pem(), Some(&orders)).await;
    assert_eq!(status, 200, "{again_v}");
    let creds = credentials(mine, "orders", &v);

    // Single use: the same token for another key is refused; no token at all too.
    let again = KeyRequest::new(&id("orders")).unwrap();
    let (status, v) = ca.sign(anon(), again.pem(), Some(&orders)).await;
    assert_eq!((status, code(&v)), (401, "ERR_UNAUTHENTICATED"), "{v}");
    let (status, v) = ca.sign(anon(), again.pem(), None).await;
    assert_eq!((status, code(&v)), (401, "ERR_UNAUTHENTICATED"), "{v}");

    // Renewal: the current certificate renews its own identity, and no other.
    let (status, v) = ca
        .sign(ca.client_config(Some(&creds)), again.pem(), None)
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = ca
        .sign(ca.client_config(Some(&creds)), payments.pem(), None)
        .await;
    assert_eq!((status, code(&v)), (403, "ERR_NOT_ENTITLED"), "{v}");

    // Nobody obtains the CA's app id, in any namespace, and no token is made for it.
    let other = ca.token("elsewhere", "orders", 1);
    for ns in ["default", "elsewhere"] {
        let req = KeyRequest::new(&SpiffeId::new("public", ns, "outrider-ca").unwrap()).unwrap();
        let (status, v) = ca.sign(anon(), req.pem(), Some(&other)).await;
        assert_eq!((status, code(&v)), (403, "ERR_NOT_ENTITLED"), "{ns}: {v}");
    }
    let (code_, _, err) = outrider_testkit::outrider_command(&[
        "ca",
        "token",
        "create",
        "--dir",
        ca.dir().to_str().unwrap(),
        "--namespace",
        "elsewhere",
        "--app-id",
        "outrider-ca",
    ]);
    assert_eq!(code_, 1, "{err}");
    assert!(err.contains("CA service's own app id"), "{err}");

    let m = ca.metrics().await;
    assert_eq!(
        sum_metric(
            &m,
            "outrider_ca_certificates_issued_total",
            &["by=\"token\""]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        sum_metric(
            &m,
            "outrider_ca_certificates_issued_total",
            &["by=\"renewal\""]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sum_metric(
            &m,
            "outrider_ca_requests_refused_total",
            &["reason=\"not_entitled\""]
        ),
        4.0,
        "{m}"
    );
    let log = ca.log();
    assert_eq!(
        log.matches("issued a workload certificate").count(),
        3,
        "{log}"
    );
    assert!(!log.contains(&orders), "the token was logged:\n{log}");
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_spend_nothing() {
    let ca = CaService::init().serve(&[]).await;
    let anon = || ca.client_config(None);
    let token = ca.token("default", "orders", 1);
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let refused_csrs = [
        (
            "extra SANs",
            crafted_csr(p256, |p| {
                p.subject_alt_names
                    .push(SanType::URI(id("payments").to_string().try_into().unwrap()))
            }),
        ),
        (
            "a DNS name",
            crafted_csr(p256, |p| {
                p.subject_alt_names
                    .push(SanType::DnsName("payments".try_into().unwrap()))
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
        ("an Ed25519 key", crafted_csr(&rcgen::PKCS_ED25519, |_| {})),
        (
            "not a CSR",
            "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8=\n-----END CERTIFICATE REQUEST-----\n"
                .to_owned(),
        ),
        ("garbage", "hello".to_owned()),
    ];
    for (what, csr) in &refused_csrs {
        let (status, v) = ca.sign(anon(), csr, Some(&token)).await;
        assert_eq!((status, code(&v)), (400, "ERR_CSR_INVALID"), "{what}: {v}");
    }
    let json = [("content-type", "application/json")];
    for (what, body) in [
        ("not JSON", b"csr=1".to_vec()),
        (
            "an unknown field",
            br#"{"csr":"x","id":"payments"}"#.to_vec(),
        ),
        ("no csr", b"{}".to_vec()),
    ] {
        let (status, body) = ca
            .request(anon(), "POST", "/v1/certificates", &json, body)
            .await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, code(&v)),
            (400, "ERR_MALFORMED_REQUEST"),
            "{what}: {v}"
        );
    }
    let big = vec![b' '; 65 * 1024];
    let (status, body) = ca
        .request(anon(), "POST", "/v1/certificates", &json, big)
        .await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let (status, _) = ca
        .request(anon(), "GET", "/v1/certificates", &[], Vec::new())
        .await;
    assert_eq!(status, 405);
    let (status, _) = ca
        .request(anon(), "GET", "/v1/secrets", &[], Vec::new())
        .await;
    assert_eq!(status, 404);

    // Nothing was issued and the token kept its one use.
    let m = ca.metrics().await;
    assert_eq!(
        sum_metric(&m, "outrider_ca_certificates_issued_total", &[]),
        0.0,
        "{m}"
    );
    let req = KeyRequest::new(&id("orders")).unwrap();
    let (status, v) = ca.sign(anon(), req.pem(), Some(&token)).await;
    assert_eq!(status, 200, "the token was spent by a refused request: {v}");
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let ca = CaService::init()
        .serve(&["--request-head-timeout", "1s"])
        .await;
    // Connected, and silent: closed at the head deadline, well before the 10 s bound here.
    let mut tcp = tokio::net::TcpStream::connect(ca.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a silent client was kept: {read:?}"
    );
    // A TLS session that never sends its request head is closed too.
    let mut tls = connect(ca.addr, ca.client_config(None)).await;
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a session without a request was kept: {read:?}"
    );
    // A body that never comes: 408, and nothing issued.
    assert_eq!(ca.post_stalled(ca.client_config(None)).await, 408);
    let m = ca.metrics().await;
    assert_eq!(
        sum_metric(
            &m,
            "outrider_ca_requests_refused_total",
            &["reason=\"timeout\""]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sum_metric(&m, "outrider_ca_certificates_issued_total", &[]),
        0.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_pods_service_account_token_obtains_its_identity_and_no_other() {
    let cluster = outrider_testkit::jwt::Cluster::new();
    let keys = tempfile::tempdir().unwrap();
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, cluster.jwks()).unwrap();
    let ca = CaService::init()
        .serve(&["--kubernetes-jwks", jwks.to_str().unwrap()])
        .await;
    let claims = |sa: &str, aud: &str| {
        outrider_testkit::jwt::Cluster::pod_claims("default", sa, aud, Duration::from_secs(3600))
    };
    let token_file = keys.path().join("token");
    std::fs::write(
        &token_file,
        cluster.token("RS256", &claims("orders", "outrider-ca")),
    )
    .unwrap();

    // A sidecar reads its projected token from a file and gets its certificate with it.
    let mesh = outrider_testkit::Mesh::new();
    let flags = [
        "--sentry-address".to_owned(),
        ca.addr.to_string(),
        "--trust-anchors".to_owned(),
        ca.anchors().to_string_lossy().into_owned(),
        "--ca-token-file".to_owned(),
        token_file.to_string_lossy().into_owned(),
    ];
    let _orders = mesh.sidecar("orders").args(flags.clone()).start().await;
    // The same token does not make a sidecar payments, nor does one for another audience.
    mesh.sidecar("payments")
        .args(flags.clone())
        .start_fails(
            Duration::from_secs(30),
            1,
            &["service-account token is for orders", "403"],
        )
        .await;
    std::fs::write(
        &token_file,
        cluster.token("ES256", &claims("orders", "api")),
    )
    .unwrap();
    mesh.sidecar("orders")
        .args(flags)
        .start_fails(
            Duration::from_secs(30),
            1,
            &["service-account token is not valid", "401"],
        )
        .await;
    // Why goes to the CA's log only, not to the caller.
    assert!(ca.log().contains("not for audience"), "{}", ca.log());
    let m = ca.metrics().await;
    assert_eq!(
        sum_metric(
            &m,
            "outrider_ca_certificates_issued_total",
            &["by=\"kubernetes\""]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sum_metric(&m, "outrider_ca_certificates_issued_total", &[]),
        1.0,
        "{m}"
    );
}
