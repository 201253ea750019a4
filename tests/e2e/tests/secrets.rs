//! The secrets API through a real sidecar (api.md §5): file and env stores, daprd's codes.

use std::time::Duration;

use outrider_testkit::{Mesh, Reply, Sidecar, send};
use serde_json::json;

const SECRETS: &str =
    r#"{"db": {"user": "app", "password": "s3cret-pw"}, "port": 5432, "token": "t0k"}"#;

fn resources(mesh: &Mesh) -> String {
    let file = mesh.home().join("secrets.json");
    std::fs::write(&file, SECRETS).unwrap();
    let docs = format!(
        concat!(
            "kind: Component\nmetadata: {{name: files}}\nspec:\n  type: secretstores.local.file\n  metadata:\n",
            "  - {{name: secretsFile, value: '{file}'}}\n---\n",
            "kind: Component\nmetadata: {{name: grouped}}\nspec:\n  type: secretstores.local.file\n  metadata:\n",
            "  - {{name: secretsFile, value: '{file}'}}\n  - {{name: multiValued, value: 'true'}}\n",
            "  - {{name: nestedSeparator, value: '.'}}\n---\n",
            "kind: Component\nmetadata: {{name: env}}\nspec:\n  type: secretstores.local.env\n  metadata:\n",
            "  - {{name: prefix, value: 'MYAPP_'}}\n",
        ),
        file = file.display()
    );
    mesh.resources("res", "secrets.yaml", &docs)
}

/// `GET /v1.0/secrets/<path>` on `s`.
async fn secret(s: &Sidecar, path: &str) -> Reply {
    s.get(&format!("/v1.0/secrets/{path}")).await
}

#[tokio::test]
async fn file_and_env_stores_answer_with_daprds_shapes_and_codes() {
    let mesh = Mesh::new();
    let res = resources(&mesh);
    let mut s = mesh
        .sidecar("secret-app")
        .env("MYAPP_API_KEY", "from-env")
        .env("DAPR_API_TOKEN_NOT", "x")
        .resources(&res)
        .start()
        .await;
    s.wait_ready().await;
    let get = |path: &'static str| secret(&s, path);
    let ok = |r: Reply| {
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    assert_eq!(
        ok(get("files/db:password").await),
        json!({"db:password": "s3cret-pw"})
    );
    assert_eq!(
        ok(get("files/port").await),
        json!({"port": "5432"}),
        "numbers come back as their JSON text"
    );
    assert_eq!(
        ok(get("grouped/db").await),
        json!({"user": "app", "password": "s3cret-pw"})
    );
    assert_eq!(ok(get("env/API_KEY").await), json!({"API_KEY": "from-env"}));
    let all = ok(get("files/bulk").await);
    assert_eq!(all["db:user"], json!({"db:user": "app"}));
    assert_eq!(all.as_object().unwrap().len(), 4);
    let env_all = ok(get("env/bulk").await);
    assert_eq!(env_all["API_KEY"], json!({"API_KEY": "from-env"}));

    let failures = [
        (
            "files/nope",
            500,
            "ERR_SECRET_GET",
            "failed getting secret with key nope from secret store files: secret nope not found",
        ),
        (
            "vault/x",
            401,
            "ERR_SECRET_STORE_NOT_FOUND",
            "failed finding secret store with key vault",
        ),
    ];
    for (path, status, code, message) in failures {
        let r = get(path).await;
        r.assert_error(status, code, path);
        assert_eq!(r.json()["message"], message, "{path}");
    }

    let types: Vec<String> = s.components().await.into_iter().map(|c| c.1).collect();
    let has = |t: &str| types.iter().any(|x| x == t);
    assert!(
        has("secretstores.local.file") && has("secretstores.local.env"),
        "{types:?}"
    );
    // The file store serves a changed file's values without a restart.
    let file = mesh.home().join("secrets.json");
    let tmp = mesh.home().join("secrets.json.new");
    std::fs::write(
        &tmp,
        r#"{"db": {"user": "app", "password": "rotated-pw"}, "port": 5432, "token": "t0k"}"#,
    )
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let url = format!("{}/v1.0/secrets/files/db:password", s.api_url());
    outrider_testkit::wait_until(Duration::from_secs(10), "the rotated secret", || async {
        let r = send("GET", &url, &[], "").await.ok()?;
        (r.json() == json!({"db:password": "rotated-pw"})).then_some(())
    })
    .await;
    // Secret values never reach the log or the metrics.
    let (log, metrics) = (s.log(), s.metrics().await);
    for value in ["s3cret-pw", "rotated-pw", "from-env", "t0k"] {
        assert!(
            !log.contains(value) && !metrics.contains(value),
            "{value} leaked"
        );
    }
}

#[tokio::test]
async fn without_secret_stores_the_api_says_so_and_bad_stores_stop_the_start() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("no-secrets").start().await;
    let r = secret(&s, "any/x").await;
    r.assert_error(500, "ERR_SECRET_STORES_NOT_CONFIGURED", "no stores");
    assert_eq!(r.json()["message"], "secret store is not configured");

    let missing = mesh.home().join("missing.json");
    let docs = format!(
        concat!(
            "kind: Component\nmetadata: {{name: nofile}}\nspec: {{type: secretstores.local.file}}\n---\n",
            "kind: Component\nmetadata: {{name: gone}}\nspec:\n  type: secretstores.local.file\n  metadata:\n",
            "  - {{name: secretsFile, value: '{}'}}\n",
        ),
        missing.display()
    );
    let bad = mesh.resources("bad", "bad.yaml", &docs);
    // Like any component that cannot open: exit 1, every problem named with file and field.
    let says = [
        "bad.yaml: spec.metadata.secretsFile: is required",
        &format!("spec.metadata.secretsFile: {}", missing.display()),
    ];
    mesh.sidecar("bad-secrets")
        .resources(&bad)
        .start_fails(Duration::from_secs(30), 1, &says)
        .await;
}

/// A Redis state store whose password is a `secretKeyRef` into a file store connects to a
/// password-protected private redis-server; a reference to a secret that does not exist stops
/// the start, naming component, field and secret; the password is in no log, metric or metadata.
#[tokio::test]
async fn component_passwords_come_from_secret_references() {
    let redis = outrider_testkit::RedisServer::start_with_password("pw-9f2c1");
    let mesh = Mesh::new();
    let file = mesh.home().join("creds.json");
    std::fs::write(&file, r#"{"redis": {"password": "pw-9f2c1"}}"#).unwrap();
    let write = |dir: &str, key: &str| {
        let docs = format!(
            concat!(
                "kind: Component\nmetadata: {{name: vault}}\nspec:\n  type: secretstores.local.file\n  metadata:\n",
                "  - {{name: secretsFile, value: '{file}'}}\n  - {{name: multiValued, value: 'true'}}\n---\n",
                "kind: Component\nmetadata: {{name: cache}}\nspec:\n  type: state.redis\n  metadata:\n",
                "  - {{name: redisHost, value: '{host}'}}\n",
                "  - name: redisPassword\n    secretKeyRef: {{name: redis, key: {key}}}\n",
                "auth: {{secretStore: vault}}\n",
            ),
            file = file.display(),
            host = redis.host(),
            key = key
        );
        mesh.resources(dir, "res.yaml", &docs)
    };
    let good = write("good", "password");
    let mut s = mesh.sidecar("secret-ref").resources(&good).start().await;
    s.wait_ready().await;
    let items = json!([{"key": "k", "value": 7}]).to_string();
    let r = s.request("POST", "/v1.0/state/cache", &[], items).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(s.get("/v1.0/state/cache/k").await.json(), json!(7));
    let meta = s.get("/v1.0/metadata").await.text();
    let (log, metrics) = (s.log(), s.metrics().await);
    for (what, text) in [("log", &log), ("metrics", &metrics), ("metadata", &meta)] {
        assert!(
            !text.contains("pw-9f2c1"),
            "the password reached the {what}"
        );
    }

    let wrong = write("wrong", "passwd");
    let log = mesh
        .sidecar("secret-ref-bad")
        .resources(&wrong)
        .start_fails(Duration::from_secs(30), 1, &[
            "res.yaml (document 2): spec.metadata[1] (redisPassword): component \"cache\": secretKeyRef \"redis\" has no key \"passwd\""
        ])
        .await;
    assert!(!log.contains("pw-9f2c1"));
}

/// `Configuration.spec.secrets.scopes` limits what the API hands out: 403 for a denied secret,
/// left out of bulk answers; a store listed twice is a configuration error.
#[tokio::test]
async fn configuration_scopes_deny_and_filter_secrets() {
    let mesh = Mesh::new();
    let res = resources(&mesh);
    let config = mesh.home().join("config.yaml");
    std::fs::write(
        &config,
        concat!(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n  secrets:\n    scopes:\n",
            "    - {storeName: files, defaultAccess: deny, allowedSecrets: ['db:password']}\n",
            "    - {storeName: env, defaultAccess: allow, deniedSecrets: [API_KEY]}\n",
        ),
    )
    .unwrap();
    let mut s = mesh
        .sidecar("scoped-secrets")
        .env("MYAPP_API_KEY", "from-env")
        .env("MYAPP_REGION", "eu")
        .resources(&res)
        .args(["--config", config.to_str().unwrap()])
        .start()
        .await;
    s.wait_ready().await;
    let get = |path: &'static str| secret(&s, path);
    assert_eq!(get("files/db:password").await.status, 200);
    let denied = get("files/port").await;
    denied.assert_error(403, "ERR_PERMISSION_DENIED", "files/port");
    assert_eq!(
        denied.json()["message"],
        "access denied by policy to get \"port\" from \"files\""
    );
    assert_eq!(
        get("files/bulk").await.json(),
        json!({"db:password": {"db:password": "s3cret-pw"}})
    );
    assert_eq!(get("env/API_KEY").await.status, 403);
    assert_eq!(get("env/REGION").await.json(), json!({"REGION": "eu"}));
    let env_all = get("env/bulk").await.json();
    assert!(
        env_all.get("API_KEY").is_none() && env_all["REGION"] == json!({"REGION": "eu"}),
        "{env_all}"
    );

    std::fs::write(
        &config,
        "kind: Configuration\nspec:\n  secrets:\n    scopes:\n    - {storeName: files}\n    - {storeName: files}\n",
    )
    .unwrap();
    mesh.sidecar("scoped-bad")
        .args(["--config", config.to_str().unwrap()])
        .start_fails(
            Duration::from_secs(30),
            2,
            &["config.yaml: spec.secrets.scopes[1].storeName"],
        )
        .await;
}

/// A secret store's component `scopes` decide which apps have it at all.
#[tokio::test]
async fn component_scopes_hide_a_secret_store_from_other_apps() {
    let mesh = Mesh::new();
    let res = mesh.resources(
        "res",
        "scoped.yaml",
        "kind: Component\nmetadata: {name: private}\nspec:\n  type: secretstores.local.env\nscopes: [owner]\n",
    );
    let sidecar = |app_id: &str| {
        mesh.sidecar(app_id)
            .env("ONLY_OWNER", "yes")
            .resources(&res)
            .start()
    };
    let owner = sidecar("owner").await;
    let other = sidecar("stranger").await;
    let r = secret(&owner, "private/ONLY_OWNER").await;
    assert_eq!((r.status, r.json()), (200, json!({"ONLY_OWNER": "yes"})));
    let r = secret(&other, "private/ONLY_OWNER").await;
    assert_eq!(
        r.status,
        500,
        "the stranger has no secret store at all: {}",
        r.text()
    );
    assert_eq!(r.json()["errorCode"], "ERR_SECRET_STORES_NOT_CONFIGURED");
}
