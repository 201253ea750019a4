//! Actors, the caller's side: a call for actor `(type, id)` goes to the host that owns it, as
//! placement sees the hosts now; the host runs it if it holds the actor's claim (or takes it),
//! and otherwise hands it to the host that does. Calls between sidecars travel the mesh (mutual
//! TLS, the callee's identity checked) marked with [`ACTOR_HOP`]; a hop is never forwarded
//! twice. What failed before anything ran (no host known yet, the owner unreachable, the actor
//! moving) is tried again for a few seconds, as daprd's built-in actor retries do, unless a
//! `Resiliency` names the actor type (its retry and circuit breaker then apply here, its timeout
//! on the host: [`resilience`]); the caller sees daprd's codes and messages.
//!
//! Actor state lives in the store with `actorStateStore: "true"`, under daprd's keys
//! `<app-id>||<type>||<id>||<key>`; writes are allowed only for an actor active on this host.

mod names;
pub(crate) mod reminders;
pub(crate) mod resilience;
mod state;
mod timers;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use outrider_blocks::actors::claim::Holder;
use outrider_blocks::state::StateStore;
use outrider_discovery::Target;
use tokio::time::Instant;

pub(crate) use names::{check_method, check_name};
pub(crate) use reminders::{create_reminder, delete_reminder, get_reminder};
pub(crate) use state::{ActorStateOp, read_state, transaction, transaction_error};
pub(crate) use timers::{create_timer, delete_timer};

use crate::errors::{ApiError, InvokeError};
use crate::mesh::ACTOR_HOP;
use crate::mesh::outbound::Outbound;
use crate::mesh::placement::{Owner, Peer, Placement};
use crate::net::http::{Body, full, strip_hop_by_hop};
use crate::to_app::actors::{Host, HostError};

/// How long a call may be tried again while its actor has no reachable host (daprd: five
/// retries a second apart).
const RETRY_FOR: Duration = Duration::from_secs(5);
/// The first pause between tries; it doubles up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(800);

/// Marks a sidecar's answer to a forwarded call as "nothing ran; try again".
const RETRYABLE: HeaderName = HeaderName::from_static("outrider-actor-retry");
/// An app's answer that is the actor's own error, passed to the caller as it is.
const ERROR_RESPONSE: HeaderName = HeaderName::from_static("x-daprerrorresponseheader");

/// Why a call came to this sidecar over the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    /// The caller's placement names this sidecar as the owner.
    Owner,
    /// This sidecar holds the actor's claim.
    Holder,
    /// Not a call: which actor types does this sidecar's app host? (Placement over DNS.)
    Hosts,
}

impl Hop {
    pub(crate) fn parse(v: &HeaderValue) -> Option<Self> {
        match v.as_bytes() {
            b"owner" => Some(Self::Owner),
            b"holder" => Some(Self::Holder),
            b"hosts" => Some(Self::Hosts),
            _ => None,
        }
    }

    fn value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Owner => "owner",
            Self::Holder => "holder",
            Self::Hosts => crate::mesh::placement::asked::HOSTS_HOP,
        })
    }
}

/// The actor runtime as the API sees it.
pub(crate) struct Actors {
    pub(crate) app_id: String,
    pub(crate) namespace: String,
    pub(crate) placement: Arc<Placement>,
    pub(crate) outbound: Arc<Outbound>,
    /// The store with `actorStateStore: "true"`, by name.
    pub(crate) store: Option<(String, Arc<dyn StateStore>)>,
    /// Set once the app has said which types it hosts (and there is a store to host them in).
    pub(crate) host: OnceLock<Arc<Host>>,
    /// The app, once its channel exists.
    pub(crate) app: OnceLock<crate::to_app::actors::hosting::AppLink>,
    /// Held while hosting starts: one start at a time.
    pub(crate) starting: tokio::sync::Mutex<()>,
    /// Set once the app was asked which types it hosts (or there is no app to ask).
    pub(crate) ready: std::sync::atomic::AtomicBool,
    /// Fires reminders and jobs, when there is an actor state store and an app.
    pub(crate) scheduler: OnceLock<Arc<crate::to_app::schedules::Scheduler>>,
    /// Stops the scheduler.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// The `Resiliency` policies of actor calls.
    pub(crate) resiliency: resilience::ActorResiliency,
}

/// The actor runtime as the metadata API shows it.
pub(crate) struct RuntimeView {
    pub(crate) status: &'static str,
    /// Active actors per hosted type.
    pub(crate) active: Vec<(String, usize)>,
    pub(crate) host_ready: bool,
    pub(crate) placement: &'static str,
}

/// One method call for an actor: the route's parts, and the caller's request (verb, query,
/// headers, body).
pub(crate) struct MethodCall {
    pub(crate) actor_type: String,
    pub(crate) id: String,
    pub(crate) method: String,
    pub(crate) req: Request<Bytes>,
}

/// What one try came to.
enum Tried {
    Done(Response<Body>),
    Retry(String),
}

impl Actors {
    /// The host, if this sidecar hosts actors.
    pub(crate) fn host(&self) -> Option<&Arc<Host>> {
        self.host.get()
    }

    /// The reminders of `actor_type` hosted by this app.
    pub(crate) fn reminder_group(
        &self,
        actor_type: &str,
    ) -> outrider_blocks::actors::durable::Group {
        outrider_blocks::actors::durable::Group::reminders(
            &self.namespace,
            &self.app_id,
            actor_type,
        )
    }

    /// What the metadata API shows.
    pub(crate) fn view(&self) -> RuntimeView {
        let ready = self.ready.load(std::sync::atomic::Ordering::Acquire);
        let host = self.host();
        let host_ready = host.is_some_and(|h| h.ready());
        RuntimeView {
            status: if ready { "RUNNING" } else { "INITIALIZING" },
            active: host
                .map(|h| h.active_counts().into_iter().collect())
                .unwrap_or_default(),
            host_ready,
            placement: if host_ready {
                "placement: connected"
            } else {
                "placement: disconnected"
            },
        }
    }

    /// One try of a call from this sidecar's app (`hop: None`) or for another sidecar; with
    /// `builtin`, what failed before anything ran is tried again for [`RETRY_FOR`].
    async fn attempt(
        &self,
        call: &MethodCall,
        hop: Option<Hop>,
        builtin: bool,
    ) -> Result<Response<Body>, ApiError> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = RETRY_PAUSE;
        loop {
            let why = match self.try_once(call, hop).await? {
                Tried::Done(rsp) => return Ok(rsp),
                Tried::Retry(why) => why,
            };
            // A hop is answered at once, marked: the sidecar the call started on retries.
            if hop.is_some() {
                let mut rsp = invoke_error(why).into_response();
                rsp.headers_mut()
                    .insert(RETRYABLE, HeaderValue::from_static("1"));
                return Ok(rsp);
            }
            if !builtin || Instant::now() + pause >= deadline {
                return Err(invoke_error(why));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSE_MAX);
        }
    }

    async fn try_once(&self, call: &MethodCall, hop: Option<Hop>) -> Result<Tried, ApiError> {
        let (t, id) = (&call.actor_type, &call.id);
        if hop.is_none() {
            match self.placement.owner(t, id) {
                None => {
                    return Ok(Tried::Retry(format!(
                        "failed to lookup actor: api error: code = FailedPrecondition desc = did not find address for actor '{t}/{id}'"
                    )));
                }
                Some(Owner::Peer(p)) => return self.forward(call, &p, Hop::Owner).await,
                Some(Owner::Me) => {}
            }
        }
        // A call sent to the claim's holder runs only on an actor active there.
        let activate = hop != Some(Hop::Holder);
        let Some(host) = self.host() else {
            return Ok(Tried::Retry(format!(
                "failed to create actor: actor type {t} not registered"
            )));
        };
        let req = clone_request(&call.req);
        match host.invoke(t, id, &call.method, req, activate).await {
            Ok(rsp) => Ok(Tried::Done(app_answer(rsp, call)?)),
            Err(HostError::Elsewhere(h)) if hop != Some(Hop::Holder) => match peer_of(&h) {
                Some(p) => self.forward(call, &p, Hop::Holder).await,
                None => Ok(Tried::Retry(format!(
                    "the actor's holder {} is not an address",
                    h.address
                ))),
            },
            Err(HostError::Elsewhere(h)) => {
                Ok(Tried::Retry(format!("the actor moved to {}", h.address)))
            }
            Err(HostError::NotHosted(_)) => Ok(Tried::Retry(format!(
                "failed to create actor: actor type {t} not registered"
            ))),
            Err(e @ (HostError::Unavailable(_) | HostError::Store(_))) => {
                Ok(Tried::Retry(e.to_string()))
            }
            Err(HostError::TooDeep) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_ACTOR_STACK_DEPTH",
                "maximum stack depth exceeded",
            )),
            Err(HostError::App(e)) => Err(invoke_error(e.to_string())),
            Err(e @ HostError::TimedOut { .. }) => Err(invoke_error(e)),
        }
    }

    /// Sends the call to the sidecar at `peer`, marked with `hop`.
    async fn forward(&self, call: &MethodCall, peer: &Peer, hop: Hop) -> Result<Tried, ApiError> {
        let path = format!(
            "/v1.0/actors/{}/{}/method/{}",
            crate::to_app::actors::segment(&call.actor_type),
            crate::to_app::actors::segment(&call.id),
            crate::to_app::actors::method_path(&call.method)
        );
        let pq = match call.req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut req = Request::new(full(call.req.body().clone()));
        *req.method_mut() = call.req.method().clone();
        *req.uri_mut() = pq
            .parse()
            .map_err(|_| invoke_error(format!("method {:?} cannot be forwarded", call.method)))?;
        *req.headers_mut() = call.req.headers().clone();
        let mut extra = HeaderMap::new();
        extra.insert(ACTOR_HOP, hop.value());
        match self
            .outbound
            .call_at(&peer.target, peer.addr, req, extra)
            .await
        {
            Ok(rsp) if rsp.headers().contains_key(RETRYABLE) => {
                let body = crate::net::http::collect_within(rsp.into_body(), 64 << 10).await;
                let why = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| {
                        format!("the host at {} could not take the call", peer.addr)
                    });
                Ok(Tried::Retry(why))
            }
            Ok(rsp) => Ok(Tried::Done(rsp)),
            // Nothing was sent: another try may find the actor elsewhere.
            Err(e @ (InvokeError::Connect { .. } | InvokeError::NoEndpoints(..))) => {
                Ok(Tried::Retry(e.to_string()))
            }
            Err(e) => Err(invoke_error(e.to_string())),
        }
    }
}

/// Serves an actor call another sidecar sent over the mesh (marked with `hop`): only method
/// calls travel between sidecars, and the question which types this sidecar's app hosts (none
/// once it is stopping).
pub(crate) async fn serve_hop<B>(
    actors: &Actors,
    req: Request<B>,
    hop: &HeaderValue,
    max_body: u64,
    idle: Duration,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(hop) = Hop::parse(hop) else {
        return invoke_error("an actor call between sidecars carried an unknown hop")
            .into_response();
    };
    if hop == Hop::Hosts {
        // None while stopping, or while a gRPC app is away from its stream.
        let away = actors.host().is_some_and(|h| h.app_away());
        let hosted = (!actors.stop.is_cancelled() && !away).then(|| actors.placement.hosted());
        return crate::mesh::placement::asked::answer(&actors.app_id, &hosted.unwrap_or_default());
    }
    let Some(call) = parse_method_path(req.uri().path()) else {
        return invoke_error("an actor call between sidecars named no actor method")
            .into_response();
    };
    let req = match crate::api::http::read_request(req, max_body, idle).await {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    let call = MethodCall { req, ..call };
    actors
        .invoke(call, Some(hop))
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// `/v1.0/actors/{type}/{id}/method/{method}`, unescaped; the request is filled in later.
fn parse_method_path(path: &str) -> Option<MethodCall> {
    let rest = path.strip_prefix("/v1.0/actors/")?;
    let mut parts = rest.splitn(4, '/');
    let (t, id, m, method) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if m != "method" || method.is_empty() {
        return None;
    }
    let decode = crate::net::http::percent_decode;
    Some(MethodCall {
        actor_type: decode(t),
        id: decode(id),
        method: method.split('/').map(decode).collect::<Vec<_>>().join("/"),
        req: Request::new(Bytes::new()),
    })
}

/// daprd's answer for a failed actor call.
fn invoke_error(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_ACTOR_INVOKE_METHOD",
        format!("error invoke actor method: {why}"),
    )
}

/// What the app's answer to a method call becomes for the caller, as daprd decides: a 200 passes
/// through (headers, content type, body); 404 is an unknown method; anything else is a failure
/// that quotes the app. A 200 marked as the actor's own error passes through as it is.
fn app_answer(rsp: Response<Bytes>, call: &MethodCall) -> Result<Response<Body>, ApiError> {
    let (mut parts, body) = rsp.into_parts();
    for internal in [RETRYABLE, ACTOR_HOP] {
        parts.headers.remove(internal);
    }
    match parts.status {
        StatusCode::OK => {
            strip_hop_by_hop(&mut parts.headers);
            if !parts.headers.contains_key(header::CONTENT_TYPE)
                && !parts.headers.contains_key(ERROR_RESPONSE)
            {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Ok(Response::from_parts(parts, full(body)))
        }
        StatusCode::NOT_FOUND => Err(invoke_error(format!(
            "actor method not found: actors/{}/{}/method/{}",
            call.actor_type, call.id, call.method
        ))),
        status => Err(invoke_error(format!(
            "error from actor service: ({}) {}",
            status.as_u16(),
            String::from_utf8_lossy(&body)
        ))),
    }
}

fn clone_request(req: &Request<Bytes>) -> Request<Bytes> {
    let mut out = Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.headers_mut() = req.headers().clone();
    out
}

/// Where the holder of a claim is reached.
fn peer_of(h: &Holder) -> Option<Peer> {
    Some(Peer {
        target: Target::new(h.app_id.clone(), h.namespace.clone()),
        addr: h.address.parse().ok()?,
    })
}
