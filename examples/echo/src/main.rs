//! A tiny HTTP app that answers every request with what it received, as JSON:
//! `{"method","path","query","headers","body","pid"}`. A path `/status/<code>` answers with that status.
//! It subscribes to the topic `orders` of the pub/sub `pubsub` (route `/orders`) and prints every
//! event it receives there.
//! It listens on 127.0.0.1 at `$APP_PORT` (or the first argument), which `outrider run` sets.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("APP_PORT").ok())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other("usage: echo-app PORT (or set APP_PORT)"))?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("echo-app listening on http://127.0.0.1:{port}");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => a?,
            _ = sigterm.recv() => return Ok(()),
        };
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service_fn(echo))
                .await;
        });
    }
}

/// The subscriptions the app declares on `/dapr/subscribe`.
const SUBSCRIPTIONS: &str = concat!(
    r#"[{"pubsubname":"pubsub","topic":"orders","route":"/orders"},"#,
    r#"{"pubsubname":"pubsub","topic":"raw-orders","route":"/raw-orders","metadata":{"rawPayload":"true"}}]"#
);

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if parts.uri.path() == "/dapr/subscribe" {
        return Ok(json(
            StatusCode::OK,
            Bytes::from_static(SUBSCRIPTIONS.as_bytes()),
        ));
    }
    if let Some(topic) = parts
        .uri
        .path()
        .strip_prefix('/')
        .filter(|t| *t == "orders" || *t == "raw-orders")
    {
        eprintln!(
            "echo-app received an event on {topic}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(reflect(&parts, &body))
}

/// The request as JSON (method, path, query, headers, body and this process's id), with the
/// status a `/status/<code>` path asks for.
fn reflect(parts: &http::request::Parts, body: &Bytes) -> Response<Full<Bytes>> {
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let status = parts
        .uri
        .path()
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let reply = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(body),
        // Which instance answered, for tests that spread requests over several.
        "pid": std::process::id(),
    });
    json(status, Bytes::from(reply.to_string()))
}

/// A JSON response with `status`.
fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    rsp
}
