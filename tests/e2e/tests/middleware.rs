//! `spec.httpPipeline` on the Dapr HTTP API: `middleware.http.bearer` refuses a missing,
//! expired, wrongly signed or wrong-audience token and passes a valid one; `ratelimit` answers
//! 429 past its rate; both in the Configuration's order, on every route. `spec.appHttpPipeline`
//! runs the same middleware on the calls the sidecar makes to its app.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outrider_testkit::jwt::Cluster;
use outrider_testkit::{Mesh, send};
use serde_json::json;

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "orders-api";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A sidecar whose API runs `bearer` then `ratelimit` (`rate` per second), with the issuer's
/// keys in a file.
/// A sidecar, and its `--dapr-public-port`.
struct Protected {
    sidecar: outrider_testkit::Sidecar,
    public_port: u16,
}

impl std::ops::Deref for Protected {
    type Target = outrider_testkit::Sidecar;
    fn deref(&self) -> &Self::Target {
        &self.sidecar
    }
}

async fn protected(mesh: &Mesh, issuer: &Cluster, rate: &str) -> Protected {
    let jwks = mesh.home().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks()).unwrap();
    let res = mesh.resources(
        "res",
        "middleware.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: oauth\nspec:\n  type: middleware.http.bearer\n  version: v1\n  metadata:\n  - name: issuer\n    value: {ISSUER}\n  - name: audience\n    value: {AUDIENCE}\n  - name: jwksURL\n    value: file://{}\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: limit\nspec:\n  type: middleware.http.ratelimit\n  version: v1\n  metadata:\n  - name: maxRequestsPerSecond\n    value: \"{rate}\"\n",
            jwks.display()
        ),
    );
    mesh.resources(
        "res",
        "state.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n",
    );
    let config = mesh.home().join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  httpPipeline:\n    handlers:\n    - name: oauth\n      type: middleware.http.bearer\n    - name: limit\n      type: middleware.http.ratelimit\n",
    )
    .unwrap();
    let public_port = outrider_testkit::free_port();
    let s = mesh
        .sidecar("guarded")
        .resources(&res)
        .args(["--config", config.to_str().unwrap()])
        .args(["--dapr-public-port", &public_port.to_string()])
        .spawn();
    // Its health route needs a token too, as in daprd: wait on the admin listener instead.
    outrider_testkit::wait_until(Duration::from_secs(20), "the sidecar up", || async {
        let r = send("GET", &format!("{}/healthz", s.admin_url()), &[], "")
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    Protected {
        sidecar: s,
        public_port,
    }
}

#[tokio::test]
async fn bearer_refuses_every_bad_token_and_passes_a_good_one() {
    let mesh = Mesh::new();
    let issuer = Cluster::new();
    let s = protected(&mesh, &issuer, "1000").await;
    let url = format!("{}/v1.0/state/statestore/k", s.api_url());
    let claims = |aud: &str, exp: u64| json!({"iss": ISSUER, "aud": aud, "exp": exp, "sub": "x"});
    let good = issuer.token("ES256", &claims(AUDIENCE, now() + 600));
    let cases = [
        ("no token", None),
        (
            "an expired token",
            Some(issuer.token("RS256", &claims(AUDIENCE, now() - 600))),
        ),
        (
            "another audience",
            Some(issuer.token("ES256", &claims("billing", now() + 600))),
        ),
        (
            "another signer",
            Some(Cluster::new().token("ES256", &claims(AUDIENCE, now() + 600))),
        ),
        ("not a JWT at all", Some("not.a.token-at-all".to_owned())),
        // Algorithms other than RS256 and ES256, whatever the signature.
        (
            "HS256",
            Some(issuer.token("HS256", &claims(AUDIENCE, now() + 600))),
        ),
        (
            "none",
            Some(issuer.token("none", &claims(AUDIENCE, now() + 600))),
        ),
        (
            "an unknown key id",
            Some(issuer.token_with_kid("ES256", Some("other"), &claims(AUDIENCE, now() + 600))),
        ),
    ];
    for (what, token) in cases {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = send("GET", &url, &headers, "").await.unwrap();
        assert_eq!(
            (r.status, r.text().as_str()),
            (401, "Unauthorized"),
            "{what}"
        );
    }
    let auth = format!("Bearer {good}");
    let r = send("GET", &url, &[("authorization", &auth)], "")
        .await
        .unwrap();
    assert_eq!(r.status, 204, "a valid token: {}", r.text());
    // Every route of the API port, health included; the public port runs no middleware.
    let r = send("GET", &format!("{}/v1.0/healthz", s.api_url()), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let public = format!("http://127.0.0.1:{}/v1.0/healthz", s.public_port);
    let r = send("GET", &public, &[], "").await.unwrap();
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn ratelimit_answers_429_past_its_rate() {
    let mesh = Mesh::new();
    let issuer = Cluster::new();
    let s = protected(&mesh, &issuer, "2").await;
    let token = issuer.token(
        "RS256",
        &json!({"iss": ISSUER, "aud": [AUDIENCE, "other"], "exp": now() + 600}),
    );
    let auth = format!("bearer {token}");
    let url = format!("{}/v1.0/state/statestore/k", s.api_url());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = send("GET", &url, &[("authorization", &auth)], "")
            .await
            .unwrap();
        if r.status == 429 {
            assert_eq!(r.text(), "You have reached maximum request limit.");
        }
        statuses.push(r.status);
    }
    // A burst of two passes; the next ones, sent at once, do not.
    assert_eq!(&statuses[..2], [204, 204], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    // Another path has its own allowance.
    let r = send("GET", &format!("{url}2"), &[("authorization", &auth)], "")
        .await
        .unwrap();
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn app_http_pipeline_runs_on_calls_to_the_app() {
    // `spec.appHttpPipeline`: bearer on every call the sidecar makes to its app, whoever made
    // it; the app sees only the calls with a valid token. The sidecar's own API is not guarded.
    let mesh = Mesh::new();
    let issuer = Cluster::new();
    let jwks = mesh.home().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks()).unwrap();
    let res = mesh.resources(
        "res",
        "middleware.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: app-auth\nspec:\n  type: middleware.http.bearer\n  version: v1\n  metadata:\n  - name: issuer\n    value: {ISSUER}\n  - name: audience\n    value: {AUDIENCE}\n  - name: jwksURL\n    value: {}\n",
            jwks.display()
        ),
    );
    // The app is also declared as an HTTPEndpoint: calls to endpoints pass the same pipeline.
    let app = outrider_testkit::FakeApp::start("guarded-app").await;
    mesh.resources(
        "res",
        "endpoint.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: ext\nspec:\n  baseUrl: http://127.0.0.1:{}/ext\n",
            app.port
        ),
    );
    let config = mesh.home().join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  appHttpPipeline:\n    handlers:\n    - name: app-auth\n      type: middleware.http.bearer\n",
    )
    .unwrap();
    let mut s = mesh
        .sidecar("guarded-app")
        .app_port(app.port)
        .resources(&res)
        .args(["--config", config.to_str().unwrap()])
        .start()
        .await;
    s.wait_ready().await;
    // (status, body) of a GET of `method` on `target`, with `token` as a bearer if given.
    let get = |target: &str, token: Option<&str>| {
        let url = format!("{}/v1.0/invoke/{target}/method/orders", s.api_url());
        let auth = token.map(|t| format!("Bearer {t}"));
        async move {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let r = send("GET", &url, &headers, "").await.unwrap();
            (r.status, r.text())
        }
    };
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
    let stranger = Cluster::new().token("ES256", &claims);
    let good = issuer.token("ES256", &claims);
    // The app itself, then the app declared as an endpoint (its path under `/ext`).
    for (target, path) in [("guarded-app", "/orders"), ("ext", "/ext/orders")] {
        assert_eq!(get(target, None).await, (401, "Unauthorized".to_owned()));
        assert_eq!(get(target, Some(&stranger)).await.0, 401);
        assert_eq!(app.count_at(path), 0, "a refused call reached {target}");
        let (status, body) = get(target, Some(&good)).await;
        assert_eq!(status, 200, "{target}: {body}");
        assert_eq!(app.count_at(path), 1, "{target}");
    }
    // The API itself is not behind the app's pipeline.
    let r = send("GET", &format!("{}/v1.0/metadata", s.api_url()), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}
