//! Output bindings through a real sidecar, in daprd's HTTP shapes: local storage (nothing
//! outside its root is reachable), Redis (a private server) and HTTP (a local HTTPS server asking
//! for the sidecar's client certificate; no path leaves the URL), 204 for answers without data,
//! daprd's one error code for every failure.

use outrider_testkit::{Mesh, RedisServer, Reply, Sidecar};
use serde_json::{Value, json};

async fn send(s: &Sidecar, method: &str, name: &str, body: Value) -> Reply {
    let path = format!("/v1.0/bindings/{name}");
    s.request(method, &path, &[], body.to_string()).await
}

#[tokio::test]
async fn local_storage_and_redis_answer_in_daprds_shapes() {
    let redis = RedisServer::start();
    let mesh = Mesh::new();
    let root = mesh.home().join("files");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let outside = mesh.home().join("outside.txt");
    std::fs::write(&outside, "keep out").unwrap();
    let docs = format!(
        "kind: Component\nmetadata: {{name: files}}\nspec:\n  type: bindings.localstorage\n  \
         metadata:\n  - {{name: rootPath, value: '{}'}}\n---\n\
         kind: Component\nmetadata: {{name: cache}}\nspec:\n  type: bindings.redis\n  \
         metadata:\n  - {{name: redisHost, value: '127.0.0.1:{}'}}\n",
        root.display(),
        redis.port
    );
    let res = mesh.resources("res", "bindings.yaml", &docs);
    let mut s = mesh.sidecar("bindings-http").resources(&res).start().await;
    s.wait_ready().await;

    let create =
        json!({"operation": "create", "data": {"id": 1}, "metadata": {"fileName": "a/b.json"}});
    let r = send(&s, "POST", "files", create).await;
    assert_eq!((r.status, r.json()), (200, json!({"fileName": "a/b.json"})));
    assert_eq!(
        std::fs::read_to_string(root.join("a/b.json")).unwrap(),
        r#"{"id":1}"#
    );
    let get = json!({"operation": "get", "metadata": {"fileName": "a/b.json"}});
    let r = send(&s, "PUT", "files", get).await;
    assert_eq!((r.status, r.text()), (200, r#"{"id":1}"#.to_owned()));
    let list = json!({"operation": "list"});
    let r = send(&s, "POST", "files", list).await;
    assert_eq!(r.json(), json!([root.join("a/b.json").to_string_lossy()]));
    let delete = json!({"operation": "delete", "metadata": {"fileName": "a/b.json"}});
    assert_eq!(send(&s, "POST", "files", delete).await.status, 204);
    assert!(!root.join("a/b.json").exists());

    // Every way out of the root is refused, and nothing outside changed.
    for name in ["../outside.txt", "a/../../outside.txt", "/../outside.txt"] {
        for op in ["get", "create", "delete"] {
            let body = json!({"operation": op, "data": "x", "metadata": {"fileName": name}});
            let r = send(&s, "POST", "files", body).await;
            r.assert_error_says(500, "ERR_INVOKE_OUTPUT_BINDING", "leads outside rootPath");
        }
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep out");

    let key = "bindings-e2e";
    let r = send(
        &s,
        "POST",
        "cache",
        json!({"operation": "create", "data": "v", "metadata": {"key": key, "ttlInSeconds": "60"}}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = send(
        &s,
        "POST",
        "cache",
        json!({"operation": "get", "metadata": {"key": key}}),
    )
    .await;
    assert_eq!(
        (r.status, r.text()),
        (200, r#""v""#.to_owned()),
        "the data's JSON text"
    );
    let r = send(
        &s,
        "POST",
        "cache",
        json!({"operation": "get", "metadata": {"key": "none"}}),
    )
    .await;
    assert_eq!(
        (r.status, r.text()),
        (200, String::new()),
        "a missing key: empty"
    );

    let failures = [
        (
            json!({"data": 1}),
            "files",
            "operation field is missing from request",
        ),
        (
            json!({"operation": "list"}),
            "cache",
            "binding cache does not support operation list. supported operations:create delete get increment",
        ),
        (
            json!({"operation": "create"}),
            "nobinding",
            "couldn't find output binding nobinding",
        ),
        (
            json!({"operation": "get"}),
            "cache",
            "redis binding: missing key in request metadata",
        ),
        (
            json!({"operation": "create", "metadata": {"key": "k", "ttlInSeconds": "soon"}}),
            "cache",
            "ttlInSeconds",
        ),
    ];
    for (body, name, says) in failures {
        let r = send(&s, "POST", name, body).await;
        r.assert_error_says(500, "ERR_INVOKE_OUTPUT_BINDING", says);
    }
    let r = s.request("POST", "/v1.0/bindings/cache", &[], "{").await;
    r.assert_error_says(
        400,
        "ERR_MALFORMED_REQUEST",
        "failed deserializing HTTP body",
    );
    let r = send(
        &s,
        "POST",
        "cache",
        json!({"operation": "get", "metadata": {"key": 1}}),
    )
    .await;
    r.assert_error_says(
        400,
        "ERR_MALFORMED_REQUEST",
        "metadata.key must be a string",
    );
    let comps = s.components().await;
    assert!(
        comps.contains(&("files".into(), "bindings.localstorage".into())),
        "{comps:?}"
    );
}

#[tokio::test]
async fn a_binding_for_input_only_or_with_a_bad_root_stops_the_start() {
    let mesh = Mesh::new();
    let docs = "kind: Component\nmetadata: {name: files}\nspec:\n  type: bindings.localstorage\n  \
                metadata:\n  - {name: rootPath, value: /proc/outrider}\n";
    let res = mesh.resources("proc", "b.yaml", docs);
    let says = [
        "b.yaml: spec.metadata.rootPath",
        "is not a place files may be written",
    ];
    mesh.sidecar("bindings-proc")
        .resources(&res)
        .start_fails(std::time::Duration::from_secs(30), 1, &says)
        .await;
    let docs = "kind: Component\nmetadata: {name: files}\nspec:\n  type: bindings.localstorage\n  \
                metadata:\n  - {name: rootPath, value: /tmp}\n  - {name: direction, value: input}\n";
    let res = mesh.resources("input", "b.yaml", docs);
    let says = [
        "b.yaml: spec.metadata.direction",
        "bindings.localstorage has no input side",
    ];
    mesh.sidecar("bindings-input")
        .resources(&res)
        .start_fails(std::time::Duration::from_secs(30), 1, &says)
        .await;
}

#[tokio::test]
async fn http_binding_calls_its_url_over_mutual_tls() {
    use outrider_testkit::https::{Pki, https_server, yaml_block};
    let pki = Pki::new();
    let (client_cert, client_key) = pki.issue(&["caller"]);
    let (port, seen) = https_server(pki.issue(&["localhost"]), Some(&pki.ca_pem)).await;
    let (open_port, _) = https_server(pki.issue(&["localhost"]), None).await;
    let mesh = Mesh::new();
    let ca_file = mesh.home().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let docs = format!(
        "kind: Component\nmetadata: {{name: api}}\nspec:\n  type: bindings.http\n  metadata:\n  \
         - {{name: url, value: 'https://localhost:{port}/v1'}}\n  \
         - {{name: MTLSRootCA, value: '{ca}'}}\n  \
         - name: MTLSClientCert\n    value: |\n{cert}  \
         - name: MTLSClientKey\n    value: |\n{key}  \
         - {{name: securityToken, value: t0ken}}\n  \
         - {{name: securityTokenHeader, value: X-Token}}\n---\n\
         kind: Component\nmetadata: {{name: small}}\nspec:\n  type: bindings.http\n  metadata:\n  \
         - {{name: url, value: 'https://localhost:{open_port}'}}\n  \
         - {{name: MTLSRootCA, value: '{ca}'}}\n  \
         - {{name: maxResponseBodySize, value: '64'}}\n",
        ca = ca_file.display(),
        cert = yaml_block(&client_cert, 6),
        key = yaml_block(&client_key, 6),
    );
    let res = mesh.resources("res", "http.yaml", &docs);
    let mut s = mesh
        .sidecar("bindings-http-out")
        .resources(&res)
        .start()
        .await;
    s.wait_ready().await;

    let body = json!({"operation": "create", "data": {"n": 1},
        "metadata": {"path": "/items?x=1", "X-Custom": "c", "lower": "not a header"}});
    let r = send(&s, "POST", "api", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("metadata.statusCode"), Some("200"));
    assert_eq!(r.header("metadata.status"), Some("200 OK"));
    let got = r.json();
    assert_eq!(
        (&got["method"], &got["path"], &got["query"], &got["body"]),
        (
            &json!("POST"),
            &json!("/v1/items"),
            &json!("x=1"),
            &json!(r#"{"n":1}"#)
        )
    );
    let h = &got["headers"];
    assert_eq!(h["x-custom"], "c");
    assert_eq!(h["x-token"], "t0ken");
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    assert!(h.get("lower").is_none(), "{h}");

    // A GET sends no body.
    let r = send(
        &s,
        "POST",
        "api",
        json!({"operation": "get", "data": "ignored"}),
    )
    .await;
    assert_eq!(
        (&r.json()["method"], &r.json()["path"], &r.json()["body"]),
        (&json!("GET"), &json!("/v1"), &json!(""))
    );

    // A failing answer is an error, unless the request says otherwise.
    let fail = json!({"operation": "get", "metadata": {"path": "fail"}});
    let r = send(&s, "POST", "api", fail).await;
    r.assert_error_says(500, "ERR_INVOKE_OUTPUT_BINDING", "received status code 503");
    let tolerate =
        json!({"operation": "get", "metadata": {"path": "fail", "errorIfNot2XX": "false"}});
    let r = send(&s, "POST", "api", tolerate).await;
    assert_eq!(
        (r.status, r.header("metadata.statusCode")),
        (200, Some("503"))
    );

    // No path leaves the URL, and nothing is sent for one that tries.
    let before = seen.lock().unwrap().len();
    for path in [
        "../admin",
        "a/%2e%2e/%2e%2e/admin",
        "..%2F..%2Fadmin",
        "a b",
    ] {
        let r = send(
            &s,
            "POST",
            "api",
            json!({"operation": "get", "metadata": {"path": path}}),
        )
        .await;
        r.assert_error_says(500, "ERR_INVOKE_OUTPUT_BINDING", "path");
    }
    let host = json!({"operation": "get", "metadata": {"Host": "admin.internal"}});
    let r = send(&s, "POST", "api", host).await;
    r.assert_error_says(
        500,
        "ERR_INVOKE_OUTPUT_BINDING",
        "names a header the binding sets",
    );
    assert_eq!(seen.lock().unwrap().len(), before);

    // An answer over maxResponseBodySize is an error, not a truncated body.
    let r = send(&s, "POST", "small", json!({"operation": "get"})).await;
    r.assert_error_says(
        500,
        "ERR_INVOKE_OUTPUT_BINDING",
        "maxResponseBodySize is 64 bytes",
    );
    let m = s.metrics().await;
    let ok = [
        "component=\"api\"",
        "operation=\"create\"",
        "success=\"true\"",
    ];
    assert_eq!(
        outrider_testkit::sum_metric(&m, "dapr_component_output_binding_count", &ok),
        1.0,
        "{m}"
    );
    let failed = [
        "component=\"small\"",
        "operation=\"get\"",
        "success=\"false\"",
    ];
    assert_eq!(
        outrider_testkit::sum_metric(&m, "dapr_component_output_binding_count", &failed),
        1.0
    );
}

#[tokio::test]
async fn sql_bindings_bind_what_callers_send() {
    use outrider_testkit::{MariaDb, Postgres};
    let pg = Postgres::start();
    let db = MariaDb::start();
    db.sql(&format!("CREATE DATABASE `{}`", db.database));
    let mesh = Mesh::new();
    let docs = format!(
        "kind: Component\nmetadata: {{name: pg}}\nspec:\n  type: bindings.postgres\n  metadata:\n  \
         - {{name: connectionString, value: '{}'}}\n---\n\
         kind: Component\nmetadata: {{name: maria}}\nspec:\n  type: bindings.mysql\n  metadata:\n  \
         - {{name: url, value: '{}{}'}}\n",
        pg.conn, db.dsn, db.database
    );
    let res = mesh.resources("res", "sql.yaml", &docs);
    let mut s = mesh.sidecar("bindings-sql").resources(&res).start().await;
    s.wait_ready().await;
    let hostile = "x'); DROP TABLE victims; --";
    for (name, table, p1, p2) in [
        ("pg", pg.table.as_str(), "$1", "$2"),
        ("maria", "victims_m", "?", "?"),
    ] {
        let exec = |sql: String, params: Value| json!({"operation": "exec", "metadata": {"sql": sql, "params": params.to_string()}});
        let create = format!("CREATE TABLE {table} (id INT, name VARCHAR(100))");
        let r = send(&s, "POST", name, exec(create, json!([]))).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let insert = format!("INSERT INTO {table} VALUES ({p1}, {p2})");
        let r = send(&s, "POST", name, exec(insert.clone(), json!([1, hostile]))).await;
        assert_eq!(r.header("metadata.rows-affected"), Some("1"), "{name}");
        assert_eq!(r.header("metadata.operation"), Some("exec"));
        assert!(r.header("metadata.duration").is_some());
        let query = json!({"operation": "query", "metadata": {
            "sql": format!("SELECT name FROM {table} WHERE id = {p1}"), "params": "[1]"}});
        let r = send(&s, "POST", name, query).await;
        let name_of = match name {
            "pg" => r.json()[0][0].clone(),
            _ => r.json()[0]["name"].clone(),
        };
        assert_eq!(name_of, json!(hostile), "{name}: stored as text");
        // Not a statement: the quote is data.
        let r = send(&s, "POST", name, exec(insert, json!(["not a number", "x"]))).await;
        r.assert_error_says(500, "ERR_INVOKE_OUTPUT_BINDING", "error executing query");
        let unknown = json!({"operation": "drop", "metadata": {"sql": "x"}});
        let r = send(&s, "POST", name, unknown).await;
        r.assert_error_says(
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
            "does not support operation drop",
        );
    }
}

#[tokio::test]
async fn output_calls_go_through_the_components_outbound_policy() {
    use outrider_testkit::FakeApp;
    let service = FakeApp::start("flaky-service").await;
    let mesh = Mesh::new();
    let binding = |name: &str| {
        format!(
            "kind: Component\nmetadata: {{name: {name}}}\nspec:\n  type: bindings.http\n  \
             metadata:\n  - {{name: url, value: 'http://127.0.0.1:{}'}}\n---\n",
            service.port
        )
    };
    let docs = binding("patient")
        + &binding("hasty")
        + concat!(
            "kind: Resiliency\nmetadata: {name: r}\nspec:\n  policies:\n",
            "    retries: {three: {policy: constant, duration: 10ms, maxRetries: 3}}\n",
            "  targets:\n    components:\n      patient: {outbound: {retry: three}}\n",
        );
    let res = mesh.resources("res", "http.yaml", &docs);
    let mut s = mesh.sidecar("bindings-retry").resources(&res).start().await;
    s.wait_ready().await;
    // Two 503s, then 200: the policy's retries carry the call through.
    let call = |path: &str| json!({"operation": "get", "metadata": {"path": path}});
    let r = send(&s, "POST", "patient", call("flaky/patient/2/503")).await;
    assert_eq!((r.status, r.text()), (200, "ok after 2".to_owned()));
    assert_eq!(service.count_at("/flaky/patient/2/503"), 3);
    // Without a policy, the first 503 is the answer.
    let r = send(&s, "POST", "hasty", call("flaky/hasty/2/503")).await;
    r.assert_error_says(500, "ERR_INVOKE_OUTPUT_BINDING", "received status code 503");
    assert_eq!(service.count_at("/flaky/hasty/2/503"), 1);
}
