//! daprd's flags on real sidecars: the command line the dapr CLI builds starts one, and the
//! public health port, CORS, `--enable-metrics=false`, several listen addresses, `--wait`,
//! `--app-protocol https`/`h2c` and `--dapr-block-shutdown-duration` behave as in daprd.

use std::process::Stdio;
use std::time::Duration;

use outrider_testkit::{FakeApp, Mesh, binary, free_port, outrider_command, send, wait_until};

/// What `dapr init` writes to `~/.dapr/config.yaml`.
const DAPR_INIT_CONFIG: &str = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\n  namespace: default\nspec:\n  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: http://localhost:9411/api/v2/spans\n";

/// `dapr run --app-id cli-app --app-port P -- …` runs daprd with these flags, in this order.
#[tokio::test]
async fn the_dapr_clis_command_line_starts_a_sidecar() {
    let mesh = Mesh::new();
    let components = mesh.resources(
        "components",
        "statestore.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n  metadata:\n",
    );
    let config = mesh.home().join("config.yaml");
    std::fs::write(&config, DAPR_INIT_CONFIG).unwrap();
    let app = FakeApp::start("cli").await;
    let [http, grpc, metrics, internal] = [free_port(), free_port(), free_port(), free_port()];
    let port = |p: u16| p.to_string();
    let (app_port, http_s, grpc_s, metrics_s, internal_s) = (
        port(app.port),
        port(http),
        port(grpc),
        port(metrics),
        port(internal),
    );
    let argv = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--app-protocol",
        "http",
        "--log-level",
        "info",
        "--app-max-concurrency",
        "-1",
        "--placement-host-address",
        "localhost:50005",
        "--components-path",
        &components,
        "--max-body-size",
        "4Mi",
        "--read-buffer-size",
        "4Ki",
        "--scheduler-host-address",
        "localhost:50006",
        "--app-id",
        "cli-app",
        "--app-port",
        &app_port,
        "--dapr-http-port",
        &http_s,
        "--dapr-grpc-port",
        &grpc_s,
        "--profile-port",
        "-1",
        "--metrics-port",
        &metrics_s,
        "--dapr-internal-grpc-port",
        &internal_s,
    ];
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::new(binary("outrider"))
        .args(argv)
        .current_dir(mesh.home())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", mesh.home())
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{http}");
    let said = || std::fs::read_to_string(log.path()).unwrap_or_default();
    wait_until(Duration::from_secs(20), "the sidecar ready", || async {
        let r = send("GET", &format!("{api}/v1.0/healthz"), &[], "")
            .await
            .ok()?;
        (r.status == 204).then_some(())
    })
    .await;
    let r = send(
        "POST",
        &format!("{api}/v1.0/invoke/cli-app/method/hello"),
        &[],
        "hi",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), said());
    assert_eq!(r.json()["path"], "/hello");
    let r = send(
        "POST",
        &format!("{api}/v1.0/state/statestore"),
        &[("content-type", "application/json")],
        r#"[{"key":"k","value":1}]"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    // Each flag with no counterpart is named once, with what Outrider does instead.
    let text = said();
    for expected in [
        "--placement-host-address",
        "no placement service is used",
        "--scheduler-host-address",
        "no scheduler service is used",
    ] {
        assert!(
            text.contains(expected),
            "the log lacks {expected:?}:\n{text}"
        );
    }
    child.start_kill().unwrap();
}

#[tokio::test]
async fn public_port_cors_metrics_switch_and_listen_addresses() {
    let mesh = Mesh::new();
    let public = free_port();
    let mut s = mesh
        .sidecar("flags")
        .args([
            "--dapr-public-port",
            &public.to_string(),
            "--dapr-public-listen-address",
            "127.0.0.1",
            "--allowed-origins",
            "https://app.example",
            "--enable-metrics=false",
            "--dapr-listen-addresses",
            "127.0.0.1,127.0.0.2",
        ])
        .start()
        .await;
    s.wait_ready().await;
    // The public port serves health and metadata only.
    let at = |path: &str| format!("http://127.0.0.1:{public}{path}");
    let r = send("GET", &at("/v1.0/healthz"), &[], "").await.unwrap();
    assert_eq!(r.status, 204);
    let r = send("GET", &at("/v1.0/metadata"), &[], "").await.unwrap();
    assert_eq!((r.status, r.json()["id"].as_str()), (200, Some("flags")));
    let r = send("GET", &at("/v1.0/state/statestore/k"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    // The path is normalised before it is matched, as on the API port: a request that becomes
    // a public route is served as that route, and one that becomes another route (state,
    // invocation) or any write is not served at all.
    let raw = |method: &str, path: &str| {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\ndapr-app-id: flags\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx"
        );
        async move {
            let said = outrider_testkit::raw_request(public, req.as_bytes()).await;
            said.split(' ').nth(1).unwrap_or_default().to_owned()
        }
    };
    assert_eq!(raw("GET", "/v1.0/state/../healthz").await, "204");
    for (method, path) in [
        ("GET", "/v1.0/healthz/../state/statestore/k"),
        ("GET", "/v1.0/metadata/..\\invoke\\flags\\method\\x"),
        ("PUT", "/v1.0/metadata/..\\invoke\\flags\\method\\x"),
        ("PUT", "/v1.0/metadata/key"),
    ] {
        let status = raw(method, path).await;
        assert!(
            ["400", "404"].contains(&status.as_str()),
            "{method} {path}: {status}"
        );
    }
    let r = send("POST", &at("/v1.0/publish/pubsub/t"), &[], "x")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    // CORS for the origin allowed, nothing for another.
    let preflight = |origin: &'static str| {
        let url = format!("{}/v1.0/state/statestore", s.api_url());
        async move {
            send(
                "OPTIONS",
                &url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
                "",
            )
            .await
            .unwrap()
        }
    };
    let r = preflight("https://app.example").await;
    assert_eq!(
        r.headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://app.example"),
        "{:?}",
        r.headers
    );
    assert!(r.headers.get("access-control-allow-credentials").is_none());
    let r = preflight("https://evil.example").await;
    assert!(
        r.headers.get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers
    );
    // No metrics on the admin listener; its health pages stay.
    let r = send("GET", &format!("{}/metrics", s.admin_url()), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = send("GET", &format!("{}/healthz", s.admin_url()), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Both listen addresses serve the API.
    let port = s.api_url().rsplit(':').next().unwrap().to_owned();
    let r = send(
        "GET",
        &format!("http://127.0.0.2:{port}/v1.0/healthz"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn wait_returns_once_a_sidecar_is_ready() {
    let mesh = Mesh::new();
    let s = mesh.sidecar("waited").start().await;
    let port = s.api_url().rsplit(':').next().unwrap().to_owned();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        outrider_command(&["run", "--wait", "--dapr-http-port", &port])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines()
            .any(|l| l == "the sidecar is ready for outbound calls"),
        "{err}"
    );
    // It starts nothing: a command after it is refused, not dropped.
    let (code, _, err) = outrider_command(&["run", "--wait", "--", "true"]);
    assert_eq!(code, 2, "{err}");
}

/// An app serving HTTPS with a certificate of its own making, echoing the path it was asked.
async fn tls_app() -> u16 {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = format!("tls {}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(body)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn apps_that_speak_https_or_h2c_are_reached() {
    let mesh = Mesh::new();
    let port = tls_app().await;
    let mut s = mesh
        .sidecar("tls-app")
        .app_port(port)
        .args(["--app-protocol", "https"])
        .start()
        .await;
    s.wait_ready().await;
    let r = s
        .call("POST", "/v1.0/invoke/tls-app/method/orders", "")
        .await
        .unwrap();
    assert_eq!((r.status, r.text()), (200, "tls /orders".to_owned()));
    assert_eq!(
        s.metadata().await["appConnectionProperties"]["protocol"],
        "https"
    );
    // h2c: HTTP/2 with prior knowledge. The app takes both versions; an HTTP/2 request
    // carries its authority in its own field, so the app sees no Host header.
    let app = FakeApp::start("h2").await;
    let mut s = mesh
        .sidecar("h2c-app")
        .app_port(app.port)
        .args(["--app-protocol", "h2c"])
        .start()
        .await;
    s.wait_ready().await;
    let r = s
        .call("GET", "/v1.0/invoke/h2c-app/method/items?x=1", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["path"].as_str(), r.json()["query"].as_str()),
        (Some("/items"), Some("x=1"))
    );
    assert!(r.json()["headers"]["host"].is_null(), "{}", r.json());
    assert_eq!(
        s.metadata().await["appConnectionProperties"]["protocol"],
        "h2c"
    );
}

#[tokio::test]
async fn the_public_port_serves_only_what_spec_api_allows() {
    let mesh = Mesh::new();
    let config = mesh.home().join("api.yaml");
    std::fs::write(
        &config,
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  api:\n    allowed:\n    - name: state\n      version: v1.0\n      protocol: http\n",
    )
    .unwrap();
    let public = free_port();
    let mut s = mesh
        .sidecar("api-limited")
        .args(["--config", config.to_str().unwrap()])
        .args(["--dapr-public-port", &public.to_string()])
        .start()
        .await;
    s.wait_ready().await;
    let at = |path: &str| format!("http://127.0.0.1:{public}{path}");
    let r = send("GET", &at("/v1.0/metadata"), &[], "").await.unwrap();
    assert_eq!(
        r.status,
        404,
        "metadata is not among the APIs served: {}",
        r.text()
    );
    let r = send("GET", &at("/v1.0/healthz"), &[], "").await.unwrap();
    assert_eq!(r.status, 204);
}

/// Waits until the stopping sidecar says its shutdown is blocked.
async fn block_announced(s: &outrider_testkit::Sidecar) {
    wait_until(Duration::from_secs(10), "the block announced", || async {
        s.log()
            .contains("shutdown blocked while the app finishes its work")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_blocked_shutdown_keeps_serving_until_its_time_or_an_unhealthy_app() {
    use nix::sys::signal::Signal;
    let mesh = Mesh::new();
    // Until the duration ends: the API keeps serving the app after SIGTERM.
    let app = FakeApp::start("blocked").await;
    let mut s = mesh
        .sidecar("blocked")
        .app_port(app.port)
        .args(["--dapr-block-shutdown-duration", "2s"])
        .start()
        .await;
    s.wait_ready().await;
    let asked = std::time::Instant::now();
    s.signal(Signal::SIGTERM);
    block_announced(&s).await;
    let r = s
        .call(
            "POST",
            "/v1.0/state/statestore",
            r#"[{"key":"k","value":"v"}]"#,
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        204,
        "the state API during the block: {}",
        r.text()
    );
    assert_eq!(
        s.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        s.log()
    );
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "stopped after {:?}, inside the block",
        asked.elapsed()
    );
    assert!(s.log().contains("the shutdown block ended"), "{}", s.log());

    // An app that turns unhealthy ends the block at once, long before its duration.
    let app = FakeApp::start("blocked-sick").await;
    let mut s = mesh
        .sidecar("blocked-sick")
        .app_port(app.port)
        .args(["--dapr-block-shutdown-duration", "10m"])
        .args([
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "1",
        ])
        .args(["--app-health-threshold", "1"])
        .start()
        .await;
    s.wait_ready().await;
    s.signal(Signal::SIGTERM);
    block_announced(&s).await;
    drop(app);
    assert_eq!(
        s.wait_exit(Duration::from_secs(60)).await,
        Some(0),
        "{}",
        s.log()
    );
    assert!(
        s.log().contains("the app is unhealthy: shutting down"),
        "{}",
        s.log()
    );
}
