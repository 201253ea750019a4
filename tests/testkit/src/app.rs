//! An app to put behind a sidecar: it records every request it receives and answers according
//! to the path, so tests can assert on what actually arrived.
//!
//! - `/status/<code>`: that status, body `{"status":<code>}`, header `x-app-status`;
//! - `/stream/<n>`: `n` bytes streamed in 64 KiB chunks (no Content-Length);
//! - `/sink`: reads the body as it streams, answers `{"bytes":n,"fnv":h}`;
//! - `/headers`: sets `x-custom-response` and the hop-by-hop headers `connection: x-hop`,
//!   `x-hop`, `keep-alive`, which must not reach the caller;
//! - `/slow/<ms>`: answers after that many milliseconds;
//! - `/flaky/<key>/<n>/<code>`: `<code>` for the first `<n>` requests to this path, then 200
//!   with the body `ok after <n>`; `?retry-after=<s>` adds that `Retry-After` to the failures;
//! - `/bulk/<STATUS>`: answers a bulk delivery with that status for every entry, or the
//!   entry's `event.data.answer` when it has one;
//! - anything else: JSON `{"instance","method","path","query","headers","body"}`.
//!
//! A request whose body does not arrive whole is answered 400 and not recorded, as a real app's
//! framework never hands it to a handler.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::wait_until;

/// One request as the app received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path as received.
    pub path: String,
    /// Raw query, "" when none.
    pub query: String,
    /// Headers as received.
    pub headers: HeaderMap,
    /// The body, except for `/sink`, which streams it.
    pub body: Bytes,
}

impl Recorded {
    /// The body as JSON (a delivered CloudEvent, for one).
    pub fn json(&self) -> serde_json::Value {
        crate::client::json_body(&self.body)
    }
}

/// A running fake app; stops when dropped.
pub struct FakeApp {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

type Body = BoxBody<Bytes, std::io::Error>;

impl FakeApp {
    /// Starts an app named `instance` on a free port.
    pub async fn start(instance: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        Self::serve(listener, instance, None)
    }

    /// Starts an app that answers `GET /dapr/subscribe` with `subscriptions`.
    pub async fn with_subscriptions(instance: &str, subscriptions: serde_json::Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        Self::serve(listener, instance, Some(subscriptions))
    }

    /// Starts an app named `instance` on `port`.
    pub async fn start_on(port: u16, instance: &str) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind app");
        Self::serve(listener, instance, None)
    }

    fn serve(
        listener: TcpListener,
        instance: &str,
        subscriptions: Option<serde_json::Value>,
    ) -> Self {
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen2, instance) = (seen.clone(), instance.to_owned());
        let subscriptions = Arc::new(subscriptions);
        let task = tokio::spawn(async move {
            // Connections belong to this task: aborting it (on drop) closes them too, so a
            // dropped app really is gone, even for a sidecar holding a pooled connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let (seen, instance, subs) =
                    (seen2.clone(), instance.clone(), subscriptions.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        handle(req, seen.clone(), instance.clone(), subs.clone())
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { port, seen, task }
    }

    /// Every request received so far, except the sidecar's own `GET /dapr/subscribe` and
    /// `GET /dapr/config` at start (see [`FakeApp::subscribe_calls`]): what tests send through
    /// the sidecar.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !is_start_probe(r))
            .cloned()
            .collect()
    }

    /// The requests seen so far (as [`FakeApp::seen`]) at exactly `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Recorded> {
        self.seen().into_iter().filter(|r| r.path == path).collect()
    }

    /// How many requests seen so far were at exactly `path`.
    pub fn count_at(&self, path: &str) -> usize {
        self.seen().iter().filter(|r| r.path == path).count()
    }

    /// Waits (bounded by `limit`) until `check` finds what it looks for among the requests seen
    /// so far, and returns it; `what` names it in the failure message.
    pub async fn wait_seen<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(Vec<Recorded>) -> Option<T>,
    ) -> T {
        wait_until(limit, what, || {
            let found = check(self.seen());
            async move { found }
        })
        .await
    }

    /// Waits (bounded by `limit`) until at least `n` requests at `path` have been seen, and
    /// returns them.
    pub async fn wait_at(&self, path: &str, n: usize, limit: Duration) -> Vec<Recorded> {
        let what = format!("{n} requests at {path}");
        self.wait_seen(limit, &what, |seen| {
            let got: Vec<Recorded> = seen.into_iter().filter(|r| r.path == path).collect();
            (got.len() >= n).then_some(got)
        })
        .await
    }

    /// How many times the sidecar asked `GET /dapr/subscribe`.
    pub fn subscribe_calls(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| is_subscribe_probe(r))
            .count()
    }
}

impl Drop for FakeApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

fn is_subscribe_probe(r: &Recorded) -> bool {
    r.method == "GET" && r.path == "/dapr/subscribe"
}

/// The sidecar's own questions at start: subscriptions and actor configuration.
fn is_start_probe(r: &Recorded) -> bool {
    is_subscribe_probe(r) || (r.method == "GET" && r.path == "/dapr/config")
}

/// 64-bit FNV-1a, folded over chunks.
pub fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// `(n, code)` of a `/flaky/<key>/<n>/<code>` path.
fn flaky(path: &str) -> Option<(usize, u16)> {
    let mut parts = path.strip_prefix("/flaky/")?.split('/');
    let (_key, n, code) = (
        parts.next()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    parts.next().is_none().then_some((n, code))
}

/// FNV offset basis.
pub const FNV_START: u64 = 0xcbf29ce484222325;

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Recorded>>>,
    instance: String,
    subscriptions: Arc<Option<serde_json::Value>>,
) -> Result<Response<Body>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let streams = parts.uri.path() == "/sink";
    let bytes = if streams {
        Bytes::new()
    } else {
        match (&mut body).collect().await {
            Ok(b) => b.to_bytes(),
            // As a real app's framework does: a body that fails to arrive whole is never handled,
            // so it is not recorded as seen.
            Err(_) => {
                let mut rsp = Response::new(full("the body did not arrive whole"));
                *rsp.status_mut() = StatusCode::BAD_REQUEST;
                return Ok(rsp);
            }
        }
    };
    seen.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers.clone(),
        body: bytes.clone(),
    });
    let path = parts.uri.path();
    if let (Some(subs), "/dapr/subscribe") = (subscriptions.as_ref(), path) {
        let mut rsp = Response::new(full(subs.to_string()));
        rsp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return Ok(rsp);
    }
    let mut rsp = Response::new(full(""));
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        *rsp.body_mut() = full(format!("{{\"status\":{code}}}"));
        *rsp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
        rsp.headers_mut().insert("x-app-status", code.into());
    } else if let Some(n) = path
        .strip_prefix("/stream/")
        .and_then(|c| c.parse::<usize>().ok())
    {
        let chunks = (0..n.div_ceil(65536)).map(move |i| {
            let len = 65536.min(n - i * 65536);
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![(i % 251) as u8; len])))
        });
        *rsp.body_mut() = BodyExt::boxed(StreamBody::new(tokio_stream_iter(chunks)));
        rsp.headers_mut()
            .insert("content-type", "application/octet-stream".parse().unwrap());
    } else if path == "/sink" {
        let (mut n, mut h) = (0u64, FNV_START);
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(d) = frame.data_ref() {
                n += d.len() as u64;
                h = fnv(h, d);
            }
        }
        *rsp.body_mut() = full(format!("{{\"bytes\":{n},\"fnv\":{h}}}"));
    } else if path == "/headers" {
        let h = rsp.headers_mut();
        h.insert("x-custom-response", "yes".parse().unwrap());
        h.insert("connection", "x-hop".parse().unwrap());
        h.insert("x-hop", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
    } else if let Some(answer) = path.strip_prefix("/bulk/") {
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let statuses: Vec<serde_json::Value> = body["entries"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        let status = e["event"]["data"]["answer"].as_str().unwrap_or(answer);
                        serde_json::json!({"entryId": e["entryId"], "status": status})
                    })
                    .collect()
            })
            .unwrap_or_default();
        *rsp.body_mut() = full(serde_json::json!({"statuses": statuses}).to_string());
        rsp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    } else if let Some((n, code)) = flaky(path) {
        let earlier = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
            - 1;
        if earlier < n {
            *rsp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
            let after = parts
                .uri
                .query()
                .and_then(|q| q.strip_prefix("retry-after="));
            if let Some(after) = after.and_then(|a| a.parse::<u64>().ok()) {
                rsp.headers_mut().insert("retry-after", after.into());
            }
        } else {
            *rsp.body_mut() = full(format!("ok after {n}"));
        }
    } else if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|c| c.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        *rsp.body_mut() = full("slow done");
    } else {
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
        let reply = serde_json::json!({
            "instance": instance,
            "method": parts.method.as_str(),
            "path": path,
            "query": parts.uri.query().unwrap_or(""),
            "headers": headers,
            "body": String::from_utf8_lossy(&bytes),
        });
        *rsp.body_mut() = full(reply.to_string());
        rsp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }
    Ok(rsp)
}

/// An iterator as a stream, without pulling in a stream crate.
fn tokio_stream_iter<I: Iterator + Unpin>(iter: I) -> IterStream<I> {
    IterStream(iter)
}

struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}
