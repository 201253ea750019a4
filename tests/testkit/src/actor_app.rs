//! An app that hosts actors, to put behind a sidecar: it answers `GET /dapr/config` with the
//! configuration it was given, and runs these methods on any actor of any type it hosts:
//!
//! - `increment`: reads the actor's `count` from its sidecar, adds one, writes it back in a
//!   transaction, and answers `{"count": n, "host": <name>}`; `?ms=N` holds the turn N
//!   milliseconds more;
//! - `echo`: answers `{"host", "body", "reentrancy"}` (the `Dapr-Reentrancy-Id` it got);
//! - `nest`: calls `nest` on the same actor through its sidecar, `?depth=N` times deep
//!   (passing its reentrancy id on), then answers the innermost's answer; at depth 0, `echo`;
//! - `flaky`: answers 500 to the actor's first `?fail=N` calls of it, then 200, each with
//!   `{"call": n}` (its count of them); `slow`: answers 200 after `?ms=N` milliseconds;
//! - `status`: answers `?code=N` with the body `{}`; `errorheader`: 200 marked as the
//!   actor's own error with `X-DaprErrorResponseHeader`;
//! - anything else: 404.
//!
//! Timer and reminder callbacks (`…/method/timer/{name}`, `…/method/remind/{name}`) are recorded
//! and answered 200, or 500 when their `data` is `{"fail": true}`; when it is `{"cancel": true}`,
//! the answer carries `X-DaprReminderCancel: true` (fire no more).
//!
//! Jobs (`POST /job/{name}`) are recorded as callbacks of kind `job` (actor empty), a body that
//! is not JSON as a string; a job whose data holds `{"failTimes": n}` is answered 500 the first n
//! times.
//!
//! Every turn is watched: a second call running for the same actor at the same time (on this
//! app or on any app sharing its [`Turns`]) counts as an overlap. Deactivations
//! (`DELETE /actors/{type}/{id}`) are recorded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Turns running per actor, shared by every app that hosts the same actors.
#[derive(Clone, Default)]
pub struct Turns(Arc<Mutex<TurnState>>);

#[derive(Default)]
struct TurnState {
    running: HashMap<String, usize>,
    overlaps: usize,
}

impl Turns {
    /// How many times a turn started while another turn of the same actor was running.
    pub fn overlaps(&self) -> usize {
        self.0.lock().unwrap().overlaps
    }

    /// A turn of `actor` starts; it ends when the guard goes, also when the app dies mid-turn
    /// (its handler is dropped).
    fn enter(&self, actor: &str) -> TurnGuard {
        let mut st = self.0.lock().unwrap();
        let n = st.running.entry(actor.to_owned()).or_default();
        *n += 1;
        if *n > 1 {
            st.overlaps += 1;
        }
        TurnGuard(self.clone(), actor.to_owned())
    }
}

struct TurnGuard(Turns, String);

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let mut st = self.0.0.lock().unwrap();
        if let Some(n) = st.running.get_mut(&self.1) {
            *n -= 1;
        }
    }
}

struct Shared {
    name: String,
    config: Value,
    sidecar: AtomicU16,
    turns: Turns,
    deactivated: Mutex<Vec<String>>,
    calls: Mutex<Vec<(String, String)>>,
    callbacks: Mutex<Vec<Callback>>,
}

/// A timer or reminder callback as the app received it.
#[derive(Clone, Debug)]
pub struct Callback {
    /// `type/id`.
    pub actor: String,
    /// `timer` or `remind`.
    pub kind: String,
    /// The timer's or reminder's name.
    pub name: String,
    /// The body, as JSON.
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
    /// The app answering it.
    pub host: String,
}

/// A running actor app; stops (and drops its connections) when dropped.
pub struct ActorApp {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

type Body = Full<Bytes>;

impl ActorApp {
    /// Starts an app named `name` answering `/dapr/config` with `config`, watching turns in
    /// `turns`.
    pub async fn start(name: &str, config: Value, turns: Turns) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            config,
            sidecar: AtomicU16::new(0),
            turns,
            deactivated: Mutex::default(),
            calls: Mutex::default(),
            callbacks: Mutex::default(),
        });
        let s2 = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                let shared = s2.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(req, shared.clone()));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { port, shared, task }
    }

    /// Tells the app its sidecar's HTTP API port (for actor state).
    pub fn sidecar_port(&self, port: u16) {
        self.shared.sidecar.store(port, Ordering::Release);
    }

    /// The actors deactivated so far, as `type/id`.
    pub fn deactivated(&self) -> Vec<String> {
        self.shared.deactivated.lock().unwrap().clone()
    }

    /// The timer and reminder callbacks received so far, in order.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.shared.callbacks.lock().unwrap().clone()
    }

    /// The callbacks of `kind` (`timer` or `remind`) named `name` for `actor` (`type/id`).
    pub fn callbacks_of(&self, actor: &str, kind: &str, name: &str) -> Vec<Callback> {
        (self.callbacks().into_iter())
            .filter(|c| c.actor == actor && c.kind == kind && c.name == name)
            .collect()
    }

    /// The method calls received so far, as (`type/id`, method).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.shared.calls.lock().unwrap().clone()
    }
}

impl Drop for ActorApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, body: Value) -> Response<Body> {
    let mut rsp = Response::new(Full::new(Bytes::from(body.to_string())));
    *rsp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    rsp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    rsp
}

fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (req.method().as_str(), parts.as_slice()) {
        ("GET", ["dapr", "config"]) => reply(200, shared.config.clone()),
        ("GET", ["healthz"]) => reply(200, json!({})),
        ("POST", ["job", name]) => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = body.unwrap_or_default();
            // JSON as JSON; any other body as its text (none: null).
            let body: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) if body.is_empty() => Value::Null,
                Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
            };
            let mut callbacks = shared.callbacks.lock().unwrap();
            let before = callbacks
                .iter()
                .filter(|c| c.kind == "job" && c.name == *name)
                .count();
            let fail = body["failTimes"]
                .as_u64()
                .is_some_and(|n| (before as u64) < n);
            callbacks.push(Callback {
                actor: String::new(),
                kind: "job".into(),
                name: (*name).to_owned(),
                body,
                at: std::time::Instant::now(),
                host: shared.name.clone(),
            });
            reply(if fail { 500 } else { 200 }, json!({}))
        }
        ("DELETE", ["actors", t, id]) => {
            shared.deactivated.lock().unwrap().push(format!("{t}/{id}"));
            reply(200, json!({}))
        }
        ("PUT", ["actors", t, id, "method", kind @ ("timer" | "remind"), name]) => {
            let actor = format!("{t}/{id}");
            let _turn = shared.turns.enter(&actor);
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body: Value =
                serde_json::from_slice(&body.unwrap_or_default()).unwrap_or(Value::Null);
            let (fail, cancel) = (body["data"]["fail"] == true, body["data"]["cancel"] == true);
            shared.callbacks.lock().unwrap().push(Callback {
                actor,
                kind: (*kind).to_owned(),
                name: (*name).to_owned(),
                body,
                at: std::time::Instant::now(),
                host: shared.name.clone(),
            });
            let mut rsp = reply(if fail { 500 } else { 200 }, json!({}));
            if cancel {
                rsp.headers_mut()
                    .insert("x-daprremindercancel", "true".parse().unwrap());
            }
            rsp
        }
        ("PUT", ["actors", t, id, "method", method]) => {
            let (t, id, method) = (t.to_string(), id.to_string(), method.to_string());
            shared
                .calls
                .lock()
                .unwrap()
                .push((format!("{t}/{id}"), method.clone()));
            let actor = format!("{t}/{id}");
            // Reentrant calls are part of the turn that holds the actor: only the chain's first
            // call counts as a turn.
            let nested = query(&req, "nested").is_some();
            let _turn = (!nested).then(|| shared.turns.enter(&actor));
            method_call(req, &shared, &t, &id, &method).await
        }
        _ => reply(404, json!({"error": "no such route"})),
    })
}

async fn method_call(
    req: Request<Incoming>,
    shared: &Shared,
    t: &str,
    id: &str,
    method: &str,
) -> Response<Body> {
    let sidecar = format!(
        "http://127.0.0.1:{}/v1.0/actors/{t}/{id}",
        shared.sidecar.load(Ordering::Acquire)
    );
    let ms: u64 = query(&req, "ms").and_then(|v| v.parse().ok()).unwrap_or(0);
    let reentrancy = req
        .headers()
        .get("dapr-reentrancy-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match method {
        "increment" => {
            let got = crate::send("GET", &format!("{sidecar}/state/count"), &[], "").await;
            let count = match got {
                Ok(r) if r.status == 200 => r.text().parse::<u64>().unwrap_or(0),
                Ok(r) if r.status == 204 => 0,
                Ok(r) => return reply(500, json!({"state": r.status, "body": r.text()})),
                Err(e) => return reply(500, json!({"state": e.to_string()})),
            } + 1;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let tx = json!([{"operation": "upsert", "request": {"key": "count", "value": count}}]);
            match crate::send(
                "POST",
                &format!("{sidecar}/state"),
                crate::JSON,
                tx.to_string(),
            )
            .await
            {
                Ok(r) if r.status == 204 => {
                    reply(200, json!({"count": count, "host": shared.name}))
                }
                Ok(r) => reply(500, json!({"save": r.status, "body": r.text()})),
                Err(e) => reply(500, json!({"save": e.to_string()})),
            }
        }
        "echo" => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            reply(
                200,
                json!({"host": shared.name, "body": body, "reentrancy": reentrancy}),
            )
        }
        "nest" => {
            let depth: u32 = query(&req, "depth")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let next = if depth == 0 {
                format!("{sidecar}/method/echo?nested=1")
            } else {
                format!("{sidecar}/method/nest?nested=1&depth={}", depth - 1)
            };
            let id = reentrancy.unwrap_or_default();
            let headers: Vec<(&str, &str)> = if id.is_empty() {
                Vec::new()
            } else {
                vec![("dapr-reentrancy-id", id.as_str())]
            };
            match crate::send("POST", &next, &headers, "").await {
                Ok(r) => {
                    let mut rsp = reply(r.status, r.json());
                    if r.status != 200 {
                        *rsp.body_mut() = Full::new(Bytes::from(r.text()));
                    }
                    rsp
                }
                Err(e) => reply(500, json!({"nested": e.to_string()})),
            }
        }
        "flaky" => {
            let fail: usize = query(&req, "fail")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let actor = format!("{t}/{id}");
            let n = (shared.calls.lock().unwrap().iter())
                .filter(|(a, m)| *a == actor && m == "flaky")
                .count();
            reply(if n <= fail { 500 } else { 200 }, json!({"call": n}))
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            reply(200, json!({"slept": ms}))
        }
        "status" => {
            let code = query(&req, "code")
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            reply(code, json!({}))
        }
        "errorheader" => {
            let mut rsp = reply(200, json!({"actorError": "simulated"}));
            rsp.headers_mut()
                .insert("x-daprerrorresponseheader", "1".parse().unwrap());
            rsp
        }
        _ => reply(404, json!({"error": "no such method"})),
    }
}
