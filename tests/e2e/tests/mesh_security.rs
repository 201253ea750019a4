//! The mesh port accepts only peers with a certificate from the mesh's CA carrying a SPIFFE id
//! as a URI SAN, and identity reaches the app only from that certificate.

use bytes::Bytes;
use outrider_testkit::mesh::{
    H3Peer, anonymous, config_presenting, leaf_with, mesh_get, mesh_get_h3, peer_config,
};
use outrider_testkit::{FakeApp, Mesh, raw_request};
use rcgen::{ExtendedKeyUsagePurpose as Eku, SanType};

/// Client certificates from the mesh's own CA that the mesh port refuses, on either transport:
/// the SPIFFE id in a DNS SAN, no clientAuth usage, another trust domain.
fn refused_leaves(ca: &std::path::Path) -> Vec<(&'static str, outrider_certs::IssuedCert)> {
    let uri = |td: &str| SanType::URI(format!("spiffe://{td}/ns/default/a").try_into().unwrap());
    let dns = SanType::DnsName("spiffe://public/ns/default/a".try_into().unwrap());
    vec![
        (
            "SPIFFE id in a DNS SAN",
            leaf_with(ca, vec![dns], vec![Eku::ClientAuth]),
        ),
        (
            "no clientAuth usage",
            leaf_with(ca, vec![uri("public")], vec![Eku::ServerAuth]),
        ),
        (
            "another trust domain",
            leaf_with(ca, vec![uri("elsewhere")], vec![Eku::ClientAuth]),
        ),
    ]
}

#[tokio::test]
async fn a_proper_peer_is_served_and_identified_by_its_certificate() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let (status, body) = mesh_get(b.mesh, peer_config(&mesh.ca_dir(), "orders", "b"), "/x?y=1")
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = app.seen().pop().unwrap();
    assert_eq!((seen.path.as_str(), seen.query.as_str()), ("/x", "y=1"));
    assert_eq!(seen.headers["dapr-caller-app-id"], "orders");
    assert_eq!(seen.headers["dapr-callee-app-id"], "b");
}

#[tokio::test]
async fn refuses_plaintext_foreign_cas_and_spiffe_ids_outside_uri_sans() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let ca = mesh.ca_dir();

    // Plain HTTP: no response at all, only TLS bytes or a closed socket.
    let reply = raw_request(b.mesh, b"GET / HTTP/1.1\r\nHost: b\r\n\r\n").await;
    assert!(
        !reply.contains("HTTP/1."),
        "plaintext got an HTTP answer: {reply:?}"
    );

    // A certificate from another CA, for an identity the mesh would otherwise accept.
    let other = Mesh::new();
    let _other_b = other.sidecar("x").start().await; // creates the other CA
    let foreign = leaf_with(
        &other.ca_dir(),
        vec![SanType::URI(
            "spiffe://public/ns/default/a".try_into().unwrap(),
        )],
        vec![Eku::ClientAuth],
    );
    let err = mesh_get(b.mesh, config_presenting(&ca, "b", foreign), "/")
        .await
        .unwrap_err();
    assert!(
        err.contains("tls") || err.contains("h2") || err.contains("request"),
        "{err}"
    );

    for (what, leaf) in refused_leaves(&ca) {
        let res = mesh_get(b.mesh, config_presenting(&ca, "b", leaf), "/").await;
        assert!(res.is_err(), "{what}: served {res:?}");
    }
    assert!(
        app.seen().is_empty(),
        "a refused peer reached the app: {:?}",
        app.seen()
    );
    assert!(
        b.log().contains("refused a mesh connection"),
        "refusals are logged"
    );
}

#[tokio::test]
async fn the_udp_mesh_port_serves_http3_to_the_same_peers_only() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let ca = mesh.ca_dir();

    // A proper peer is served over QUIC on the mesh port's number, identified by its
    // certificate.
    let (status, body) = mesh_get_h3(b.mesh, peer_config(&ca, "orders", "b"), "/q?z=2")
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = app.seen().pop().unwrap();
    assert_eq!((seen.path.as_str(), seen.query.as_str()), ("/q", "z=2"));
    assert_eq!(seen.headers["dapr-caller-app-id"], "orders");

    // The same refusals as on TCP.
    let other = Mesh::new();
    let _other_x = other.sidecar("x").start().await; // creates the other CA
    let mut cases = refused_leaves(&ca);
    let uri = SanType::URI("spiffe://public/ns/default/a".try_into().unwrap());
    cases.push((
        "another CA",
        leaf_with(&other.ca_dir(), vec![uri], vec![Eku::ClientAuth]),
    ));
    let res = mesh_get_h3(b.mesh, anonymous(peer_config(&ca, "orders", "b")), "/").await;
    assert!(res.is_err(), "no certificate: served {res:?}");
    for (what, leaf) in cases {
        let res = mesh_get_h3(b.mesh, config_presenting(&ca, "b", leaf), "/").await;
        assert!(res.is_err(), "{what}: served {res:?}");
    }
    assert_eq!(
        app.seen().len(),
        1,
        "a refused peer reached the app: {:?}",
        app.seen()
    );
    assert!(
        b.log().contains("refused a mesh connection over QUIC"),
        "refusals are logged"
    );
}

#[tokio::test]
async fn hostile_http3_requests_get_no_forged_identity_no_tunnel_and_no_short_body() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let mut peer = H3Peer::connect(b.mesh, peer_config(&mesh.ca_dir(), "orders", "b"))
        .await
        .unwrap();
    // Identity headers a peer sends are replaced by its certificate's.
    let forged = [
        ("dapr-caller-app-id", "admin"),
        ("dapr-caller-namespace", "kube-system"),
    ];
    let (status, _) = peer
        .send("POST", "/who", &forged, "x".into())
        .await
        .unwrap();
    assert_eq!(status, 200);
    let seen = app.seen().pop().unwrap();
    assert_eq!(seen.headers["dapr-caller-app-id"], "orders");
    assert_eq!(seen.headers["dapr-caller-namespace"], "default");
    // Tunnels are HTTP/2's only.
    let (status, _) = peer.send("CONNECT", "/", &[], Bytes::new()).await.unwrap();
    assert_eq!(status, 501);
    // A length that is not one plain number is refused before the app.
    let (status, _) = peer
        .send("POST", "/plus", &[("content-length", "+5")], "hello".into())
        .await
        .unwrap();
    assert_eq!(status, 400);
    // More body than declared never reaches the app cut to look whole.
    let res = peer
        .send("POST", "/long", &[("content-length", "3")], "hello".into())
        .await;
    assert!(!matches!(res, Ok((200, _))), "{res:?}");
    assert!(app.seen_at("/plus").is_empty() && app.seen_at("/long").is_empty());
}

#[tokio::test]
async fn an_h3_connection_survives_its_peer_moving_to_another_address() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let mut peer = H3Peer::connect(b.mesh, peer_config(&mesh.ca_dir(), "orders", "b"))
        .await
        .unwrap();
    assert_eq!(peer.get("/before").await.unwrap().0, 200);
    // The peer's packets now come from another port (a NAT rebinding, a roaming host): QUIC
    // validates the new path and the connection goes on.
    let before = peer.local_port();
    peer.rebind().unwrap();
    assert_ne!(peer.local_port(), before);
    for i in 0..3 {
        let (status, body) = peer.get(&format!("/after/{i}")).await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(app.seen().len(), 4);
    assert_eq!(
        b.log()
            .matches("mesh connection accepted over QUIC")
            .count(),
        1,
        "the peer had to reconnect: {}",
        b.log()
    );
}

#[tokio::test]
async fn the_caller_verifies_the_callee_identity() {
    // A sidecar registered as "b" but holding the certificate of "c" is not trusted as b.
    let mesh = Mesh::new();
    let app = FakeApp::start("impostor").await;
    let c = mesh.sidecar("c").app_port(app.port).start().await;
    let a = mesh.sidecar("a").start().await;
    // Point a registry entry for b at c's mesh port, as a misbehaving registry would.
    let entry = serde_json::json!({"appId": "b", "namespace": "default", "address": format!("127.0.0.1:{}", c.mesh), "pid": c.pid()});
    std::fs::write(
        mesh.registry_dir().join("default~b~fake~1.json"),
        entry.to_string(),
    )
    .unwrap();
    outrider_testkit::wait_registered(&mesh, "b", 1).await;
    let url = format!("{}/v1.0/invoke/b/method/x", a.api_url());
    let r = outrider_testkit::wait_until(
        std::time::Duration::from_secs(10),
        "a to try the impostor",
        || {
            let url = url.clone();
            async move {
                let r = outrider_testkit::send("GET", &url, &[], "").await.ok()?;
                r.text().contains("connecting to").then_some(r)
            }
        },
    )
    .await;
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains(
            "peer is spiffe://public/ns/default/c, expected spiffe://public/ns/default/b"
        ),
        "{}",
        r.text()
    );
    assert!(app.seen().is_empty(), "the impostor's app was reached");
}

#[tokio::test]
async fn an_openssl_client_with_a_workload_certificate_gets_an_http2_answer() {
    let mesh = Mesh::new();
    let app = FakeApp::start("b").await;
    let b = mesh.sidecar("b").app_port(app.port).start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = outrider_testkit::mesh::client_pem(&mesh.ca_dir(), "orders");
    std::fs::write(dir.path().join("c.pem"), cert).unwrap();
    std::fs::write(dir.path().join("c.key"), key).unwrap();
    // curl is built on OpenSSL here. The sidecar's certificate names no host, only a SPIFFE id,
    // which curl cannot check, so it does not verify the server (--insecure); what is proved is
    // that an OpenSSL client completes the mutual handshake the sidecar asks for.
    let curl = |with_cert: bool| {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--http2", "--insecure"])
            .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"]);
        if with_cert {
            c.arg("--cert")
                .arg(dir.path().join("c.pem"))
                .arg("--key")
                .arg(dir.path().join("c.key"));
        }
        c.arg(format!("https://127.0.0.1:{}/hello", b.mesh))
            .kill_on_drop(true)
            .output()
    };
    let out = curl(true).await.unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said,
        "2 200",
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = app.seen().pop().unwrap();
    assert_eq!(seen.headers["dapr-caller-app-id"], "orders");

    let out = curl(false).await.unwrap();
    assert!(
        !out.status.success(),
        "served without a client certificate: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        app.seen().len(),
        1,
        "a client without a certificate reached the app"
    );
}
