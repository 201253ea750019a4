//! `HTTPEndpoint` resources: an invocation naming a declared endpoint reaches a local HTTPS
//! server (its certificate verified against the endpoint's root CA, the sidecar presenting the
//! endpoint's client certificate) with a header read from a secret store; a URL under the
//! declared base URL is called without the endpoint's headers; any other URL is refused before
//! anything is sent; a redirect is passed back, never followed; a server the roots do not vouch
//! for is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use outrider_testkit::{Mesh, send};
use serde_json::json;

/// A CA, and certificates it issued.
struct Pki {
    /// The CA's certificate, PEM.
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "endpoint test CA");
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        Self {
            ca_pem,
            issuer: rcgen::Issuer::new(params, ca_key),
        }
    }

    /// A certificate for `names` and its key, both PEM.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// What the server saw: each request's method, path, query, headers and body.
type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// An HTTPS server with `cert`, asking for a client certificate from `client_ca` when given. It
/// echoes each request as JSON; `/v1/redirect` answers 302 to another host, `/v1/fail` 503.
async fn https_server(cert: (String, String), client_ca: Option<&str>) -> (u16, Seen) {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = vec![CertificateDer::from_pem_slice(cert.0.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let tls = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, std::convert::Infallible>(echo(req, &log).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

async fn echo(
    req: http::Request<hyper::body::Incoming>,
    log: &Seen,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt as _;
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = (parts.headers.iter())
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?"))))
        .collect();
    let seen = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    log.lock().unwrap().push(seen.clone());
    let mut rsp = http::Response::new(http_body_util::Full::new(seen.to_string().into()));
    match parts.uri.path() {
        "/v1/redirect" => {
            *rsp.status_mut() = http::StatusCode::FOUND;
            rsp.headers_mut().insert(
                http::header::LOCATION,
                "https://elsewhere.invalid/landing".parse().unwrap(),
            );
        }
        "/v1/fail" => *rsp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE,
        _ => {}
    }
    rsp
}

/// YAML's block form of a PEM document, indented for a `value: |` under `clientTLS`.
fn block(pem: &str) -> String {
    pem.lines().map(|l| format!("        {l}\n")).collect()
}

#[tokio::test]
async fn declared_endpoints_are_called_and_nothing_else() {
    let pki = Pki::new();
    let (client_cert, client_key) = pki.issue(&["caller"]);
    let (port, seen) = https_server(pki.issue(&["localhost"]), Some(&pki.ca_pem)).await;
    // A server whose certificate no root vouches for.
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (stranger_port, stranger_seen) = https_server(
        (stranger.cert.pem(), stranger.signing_key.serialize_pem()),
        None,
    )
    .await;
    let mesh = Mesh::new();
    let secrets = mesh.home().join("secrets.json");
    std::fs::write(&secrets, r#"{"api-key": "s3cret"}"#).unwrap();
    let res = mesh.resources(
        "res",
        "endpoints.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: vault}}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - {{name: secretsFile, value: {secrets}}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: ext}}
spec:
  baseUrl: https://localhost:{port}/v1
  headers:
  - {{name: X-Api-Key, secretKeyRef: {{name: api-key, key: api-key}}}}
  - {{name: X-Plain, value: plain}}
  clientTLS:
    rootCA:
      value: |
{ca}    certificate:
      value: |
{cert}    privateKey:
      value: |
{key}auth: {{secretStore: vault}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: stranger}}
spec:
  baseUrl: https://localhost:{stranger_port}
",
            secrets = secrets.display(),
            ca = block(&pki.ca_pem),
            cert = block(&client_cert),
            key = block(&client_key),
        ),
    );
    let mut s = mesh.sidecar("caller").resources(&res).start().await;
    s.wait_ready().await;
    let api = s.api_url();
    let count = || seen.lock().unwrap().len();
    let get = |target: &str| {
        let url = format!("{api}/v1.0/invoke/{target}");
        async move { send("GET", &url, &[], "").await.unwrap() }
    };

    // By name: the base URL's path, then the method; the query as it was; the caller's
    // headers and body; the endpoint's headers, one from the secret store.
    let r = send(
        "POST",
        &format!("{api}/v1.0/invoke/ext/method/items?x=1"),
        &[
            ("x-caller", "c"),
            ("content-type", "text/plain"),
            // The endpoint's own header wins over the caller's; the API token stays here.
            ("x-api-key", "forged"),
            ("dapr-api-token", "not-for-them"),
        ],
        "hello",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.json();
    assert_eq!(
        (&got["method"], &got["path"], &got["query"], &got["body"]),
        (
            &json!("POST"),
            &json!("/v1/items"),
            &json!("x=1"),
            &json!("hello")
        )
    );
    let h = &got["headers"];
    assert_eq!(
        (&h["x-api-key"], &h["x-plain"], &h["x-caller"], &h["host"]),
        (
            &json!("s3cret"),
            &json!("plain"),
            &json!("c"),
            &json!(format!("localhost:{port}"))
        ),
        "{h}"
    );
    for absent in ["dapr-app-id", "dapr-caller-app-id", "dapr-api-token"] {
        assert!(h[absent].is_null(), "{absent}: {h}");
    }

    // By the dapr-app-id header, as SDKs do: a name, or a URL under the base URL.
    for (id, path) in [
        ("ext".to_owned(), "/v1/things"),
        (format!("https://localhost:{port}/v1"), "/v1/things"),
    ] {
        let r = send("GET", &format!("{api}/things"), &[("dapr-app-id", &id)], "")
            .await
            .unwrap();
        assert_eq!((r.status, &r.json()["path"]), (200, &json!(path)), "{id}");
    }
    let r = send(
        "GET",
        &format!("{api}/things"),
        &[("dapr-app-id", "https://localhost:1/v1")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());

    // By a URL under the base URL (escaped or not): called, without the endpoint's headers.
    for (target, path) in [
        (format!("https://localhost:{port}/v1"), "/v1/items"),
        (
            format!("https%3A%2F%2Flocalhost%3A{port}%2Fv1%2Fsub"),
            "/v1/sub/items",
        ),
    ] {
        let r = get(&format!("{target}/method/items")).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.json()["path"], path, "{target}");
        assert!(r.json()["headers"]["x-api-key"].is_null(), "{}", r.json());
    }

    // Any other URL is refused before anything is sent.
    let before = count();
    for target in [
        format!("https://localhost:{port}/v2"),
        // Escaped, the dot segments reach the sidecar's own check (unescaped, the edge
        // resolves them first).
        format!("https%3A%2F%2Flocalhost%3A{port}%2Fv1%2F..%2Fadmin"),
        format!("http://localhost:{port}/v1"),
        format!("https://127.0.0.1:{port}/v1"),
        "https://example.com".to_owned(),
    ] {
        let r = get(&format!("{target}/method/x")).await;
        assert_eq!(
            (r.status, r.json()["errorCode"].as_str()),
            (400, Some("ERR_DIRECT_INVOKE")),
            "{target}: {}",
            r.text()
        );
        assert!(r.text().contains("HTTPEndpoint"), "{}", r.text());
    }
    assert_eq!(count(), before, "a refused URL reached the server");

    // A redirect is the endpoint's answer: passed back, not followed.
    let r = get("ext/method/redirect").await;
    assert_eq!(
        (
            r.status,
            r.headers.get("location").map(|v| v.to_str().unwrap())
        ),
        (302, Some("https://elsewhere.invalid/landing"))
    );
    assert_eq!(count(), before + 1);
    // An error answer is passed back as it is.
    let r = get("ext/method/fail").await;
    assert_eq!((r.status, &r.json()["path"]), (503, &json!("/v1/fail")));

    // A server no root vouches for is not called.
    let r = get("stranger/method/x").await;
    assert_eq!(
        (r.status, r.json()["errorCode"].as_str()),
        (500, Some("ERR_DIRECT_INVOKE")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("stranger"), "{}", r.text());
    assert!(stranger_seen.lock().unwrap().is_empty());

    // The metadata API lists them.
    assert_eq!(
        s.metadata().await["httpEndpoints"],
        json!([{"name": "ext"}, {"name": "stranger"}])
    );
}

#[tokio::test]
async fn an_endpoint_whose_secret_is_missing_stops_the_start_naming_it() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "endpoint.yaml",
        "apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: ext}
spec:
  baseUrl: https://localhost:1
  headers:
  - {name: X-Api-Key, secretKeyRef: {name: nowhere, key: k}}
auth: {secretStore: vault}
",
    );
    mesh.sidecar("caller")
        .resources(&res)
        .start_fails(
            Duration::from_secs(30),
            1,
            &["endpoint.yaml", "spec.headers[0] (X-Api-Key)", "\"vault\""],
        )
        .await;
}
