//! Sidecars started in this process through the library (`outrider::settings`,
//! `outrider::build`): the same start phases, listeners and stop sequence as `outrider run`,
//! without spawning a binary.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Flags for a sidecar of `app_id` whose certificates, registry and data live under `home`,
/// with every port picked by the system.
fn flags(home: &Path, app_id: &str, app_port: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--app-id",
        app_id,
        "--dapr-http-port",
        "0",
        "--dapr-grpc-port",
        "0",
        "--metrics-port",
        "0",
        "--mesh-port",
        "0",
    ]
    .map(String::from)
    .into();
    for (flag, dir) in [
        ("--ca-dir", "ca"),
        ("--registry-dir", "registry"),
        ("--data-dir", app_id),
    ] {
        args.push(flag.into());
        args.push(home.join(dir).display().to_string());
    }
    if let Some(p) = app_port {
        args.extend(["--app-port".into(), p.to_string()]);
    }
    args
}

/// A running in-process sidecar and the handle that stops it.
struct Running {
    api: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<i32>>,
}

async fn start(args: Vec<String>) -> Running {
    let settings = outrider::settings(args).expect("valid flags");
    let bound = outrider::build(settings).await.expect("the sidecar starts");
    let api = bound.api;
    let (stop, stopped) = oneshot::channel();
    let done = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    Running { api, stop, done }
}

async fn call(addr: SocketAddr, method: Method, path: &str, body: &str) -> (StatusCode, String) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let rsp = client.request(req).await.expect("the sidecar answers");
    let status = rsp.status();
    let bytes = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A plain HTTP app that answers every request with its method and path.
async fn echo_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let caller = req
                        .headers()
                        .get("dapr-caller-app-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let text = format!("{} {} from {caller}", req.method(), req.uri().path());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn state_round_trip_and_orderly_stop() {
    let home = tempfile::tempdir().unwrap();
    let sidecar = start(flags(home.path(), "inproc", None)).await;
    let (status, _) = call(sidecar.api, Method::GET, "/v1.0/healthz/outbound", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(
        sidecar.api,
        Method::POST,
        "/v1.0/state/statestore",
        r#"[{"key":"k","value":{"n":1}}]"#,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(sidecar.api, Method::GET, "/v1.0/state/statestore/k", "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"n":1}"#));
    sidecar.stop.send(()).unwrap();
    let code = tokio::time::timeout(Duration::from_secs(20), sidecar.done)
        .await
        .expect("the sidecar stops within its grace period")
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
}

#[tokio::test]
async fn invocation_crosses_the_mesh_between_two_in_process_sidecars() {
    let home = tempfile::tempdir().unwrap();
    let app_port = echo_app().await;
    let callee = start(flags(home.path(), "callee", Some(app_port))).await;
    let caller = start(flags(home.path(), "caller", None)).await;
    let (status, body) = call(
        caller.api,
        Method::POST,
        "/v1.0/invoke/callee/method/orders/1",
        "{}",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "POST /orders/1 from caller")
    );
    // `POST /v1.0/shutdown` stops a sidecar as a signal would.
    let (status, _) = call(callee.api, Method::POST, "/v1.0/shutdown", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let code = tokio::time::timeout(Duration::from_secs(20), callee.done)
        .await
        .expect("the callee stops")
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    drop(caller.stop);
    let code = tokio::time::timeout(Duration::from_secs(20), caller.done)
        .await
        .expect("the caller stops")
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
}

#[test]
fn bad_flags_are_reported_by_name() {
    let home = tempfile::tempdir().unwrap();
    let mut args = flags(home.path(), "not an id", None);
    args.extend(["--dapr-listen-addresses".into(), "127.0.0.1,nowhere".into()]);
    let problems = outrider::settings(args).unwrap_err();
    assert!(problems.contains("--app-id: \"not an id\""), "{problems}");
    assert!(
        problems.contains("--dapr-listen-addresses: \"nowhere\" is not an IP address"),
        "{problems}"
    );
}
