//! The benchmarks' app: answers every request at once (or after a fixed delay) with the
//! request's body, so a 1 KB POST comes back as 1 KB. `GET /dapr/subscribe` answers `[]`, so a
//! sidecar in front of it finds no subscriptions. HTTP/1.1 and h2c on one port.
//!
//! Given an actor type it also hosts that type: `GET /dapr/config` names it (idle actors
//! deactivate after [`ACTOR_IDLE`]), actor methods echo like any other path, and the reminders
//! it is called for (`PUT /actors/{type}/{id}/method/remind/{name}`) are counted, each actor's
//! reminder once however often it is called (a firing tried again is not another reminder):
//! `GET /bench/reminders` answers `"<reminders> <calls>"`. Without one, `/dapr/config` is 404, as
//! an app that hosts no actors answers.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// How long a hosted actor may sit unused before its sidecar deactivates it: short, so the
/// activation cell's thousands of actors are gone before the next cells run.
pub const ACTOR_IDLE: &str = "5s";

/// What the app answers besides echoes.
#[derive(Debug, Default)]
pub struct App {
    /// The delay before each answer.
    pub delay: Duration,
    /// The actor type hosted, if any.
    pub actor_type: Option<String>,
    /// The reminders called (`{type}/{id}/{name}`), and the calls in all.
    pub reminders: Mutex<(HashSet<String>, u64)>,
}

/// Serves on `listener` until the task is dropped; each answer waits `delay` first.
pub async fn serve(listener: TcpListener, delay: Duration) {
    serve_app(
        listener,
        Arc::new(App {
            delay,
            ..App::default()
        }),
    )
    .await;
}

/// Serves `app` on `listener` until the task is dropped.
pub async fn serve_app(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(req, app.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves `app`.
pub async fn run(addr: SocketAddr, app: App) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve_app(listener, Arc::new(app)).await;
    Ok(())
}

fn reply(status: StatusCode, body: Bytes, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    rsp
}

async fn answer(
    req: Request<Incoming>,
    app: Arc<App>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        // A body that did not arrive whole must not pass for an echo.
        let why = Bytes::from_static(b"incomplete request body\n");
        return Ok(reply(StatusCode::BAD_REQUEST, why, "text/plain"));
    };
    if !app.delay.is_zero() {
        tokio::time::sleep(app.delay).await;
    }
    let path = parts.uri.path();
    const JSON: &str = "application/json";
    Ok(match (&parts.method, path) {
        (_, "/dapr/subscribe") => reply(StatusCode::OK, Bytes::from_static(b"[]"), JSON),
        (&Method::GET, "/dapr/config") => match &app.actor_type {
            Some(t) => {
                let config = serde_json::json!({
                    "entities": [t],
                    "actorIdleTimeout": ACTOR_IDLE,
                    "actorScanInterval": "1s",
                });
                reply(StatusCode::OK, Bytes::from(config.to_string()), JSON)
            }
            None => reply(StatusCode::NOT_FOUND, Bytes::new(), "text/plain"),
        },
        (&Method::GET, "/bench/reminders") => {
            let (n, calls) = {
                let seen = app.reminders.lock().unwrap_or_else(PoisonError::into_inner);
                (seen.0.len(), seen.1)
            };
            reply(
                StatusCode::OK,
                Bytes::from(format!("{n} {calls}")),
                "text/plain",
            )
        }
        (&Method::PUT, p) if app.actor_type.is_some() && p.contains("/method/remind/") => {
            let reminder = p.replacen("/method/remind/", "/", 1);
            let mut seen = app.reminders.lock().unwrap_or_else(PoisonError::into_inner);
            seen.0.insert(reminder);
            seen.1 += 1;
            reply(StatusCode::OK, Bytes::new(), "text/plain")
        }
        _ => reply(StatusCode::OK, body, "application/octet-stream"),
    })
}
