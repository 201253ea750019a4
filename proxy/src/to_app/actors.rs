//! Hosting actors: the actors of the types the app hosts that are active here, each called one
//! turn at a time.
//!
//! An actor becomes active here on its first call, once this host holds its claim in the actor
//! state store (`outrider_blocks::actors::claim`); a claim held by another live host sends the
//! call there instead. A call takes the actor's turn (`outrider_blocks::actors::turn`), then goes
//! to the app as `PUT /actors/{type}/{id}/method/{method}`; the turn is held until the app's
//! whole answer is read. `upkeep` renews this host's session, deactivates idle actors and those
//! whose owner is now another host (draining calls under way first), and drops every actor if
//! the session is lost.

mod callback;
pub(crate) mod hosting;
pub(crate) mod stream;
pub(crate) mod timers;
mod upkeep;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use outrider_blocks::actors::claim::{Claim, Claimed, Holder, Session};
use outrider_blocks::actors::config::TypeConfig;
use outrider_blocks::actors::turn::{TurnError, Turns};
use outrider_blocks::state::{StateError, StateStore};
use outrider_policy::Caller;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::errors::InvokeError;
use crate::mesh::placement::Placement;
use crate::net::http::full;
pub(crate) use callback::{ActorApp, Callback, What};

/// The header that carries a reentrant call chain's id to the app and back.
pub(crate) const REENTRANCY_ID: HeaderName = HeaderName::from_static("dapr-reentrancy-id");

/// How long a call waits for an actor that is being deactivated here, or whose claim other hosts
/// keep racing for, before it is told to retry.
const ACTIVATION_PATIENCE: Duration = Duration::from_secs(5);

/// An actor: its type and id.
pub(crate) type ActorKey = (String, String);

/// The actor host of this sidecar.
pub(crate) struct Host {
    app: ActorApp,
    /// The sidecar itself, as the caller the app sees.
    me: Caller,
    store: Arc<dyn StateStore>,
    /// The hosted types and their settings, from the app's `/dapr/config`.
    types: BTreeMap<String, TypeConfig>,
    session: RwLock<Arc<Session>>,
    table: Mutex<HashMap<ActorKey, Arc<Active>>>,
    placement: Arc<Placement>,
    /// The largest answer read from the app.
    max_body: u64,
    /// How long the app may take over a method, timer or reminder of a type, by its
    /// `Resiliency` timeout (name and duration).
    timeouts: BTreeMap<String, (String, Duration)>,
    /// Ends the upkeep (idle and moved deactivations).
    stop: CancellationToken,
    /// Ends the session's renewal: last, at the stop.
    renewal_stop: CancellationToken,
}

/// One active actor.
pub(crate) struct Active {
    /// The session its claim was taken under: it is active only while that session is this
    /// host's current one and valid.
    session: Arc<Session>,
    turns: Turns,
    claim: tokio::sync::Mutex<Option<Claim>>,
    /// When it was last called (or activated).
    used: Mutex<Instant>,
    /// When its claim was last written.
    claimed: Mutex<Instant>,
    /// Set once deactivation began (it runs once).
    deactivating: AtomicBool,
    /// Set once its last call finished during deactivation: calls wait for the deactivation to
    /// end, then activate afresh.
    closing: AtomicBool,
    /// Its timers, by name.
    timers: Mutex<HashMap<String, timers::Handle>>,
}

impl Active {
    /// Whether calls may run on it now: not deactivated, and its session is `current` and valid.
    fn usable(&self, current: &Arc<Session>) -> bool {
        !self.closing.load(Ordering::Acquire)
            && Arc::ptr_eq(&self.session, current)
            && current.valid()
    }

    fn touch(&self) {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }
}

/// Where a call for an actor goes.
enum Found {
    Here(Arc<Active>),
    Elsewhere(Holder),
}

/// Why the host could not run a call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    /// The app does not host the type.
    #[error("the app does not host actor type {0}")]
    NotHosted(String),
    /// Another live host holds the actor.
    #[error("the actor is active on {}", .0.address)]
    Elsewhere(Holder),
    /// Nothing ran; the same call may succeed a moment later.
    #[error("{0}")]
    Unavailable(String),
    /// The call's reentrant chain is too deep.
    #[error("maximum stack depth exceeded")]
    TooDeep,
    /// The app did not answer within the actor type's resiliency timeout.
    #[error("the actor did not answer within {after:?} (resiliency timeout policy {policy})")]
    TimedOut { policy: String, after: Duration },
    /// The actor store failed.
    #[error("the actor state store failed: {0}")]
    Store(StateError),
    /// The app could not be called.
    #[error(transparent)]
    App(InvokeError),
}

impl Host {
    /// Starts hosting `types` (the app said so): a session in `store`, then its upkeep. The app
    /// gets `timeouts` (by type) to answer each call.
    pub(crate) async fn start(
        app: ActorApp,
        me: Caller,
        store: Arc<dyn StateStore>,
        types: BTreeMap<String, TypeConfig>,
        placement: Arc<Placement>,
        limits: (u64, BTreeMap<String, (String, Duration)>),
    ) -> Result<Arc<Self>, StateError> {
        let (max_body, timeouts) = limits;
        let session = Session::start(store.clone(), holder(&me, &placement)).await?;
        let host = Arc::new(Self {
            app,
            me,
            store,
            types,
            session: RwLock::new(session),
            table: Mutex::new(HashMap::new()),
            placement,
            max_body,
            timeouts,
            stop: CancellationToken::new(),
            renewal_stop: CancellationToken::new(),
        });
        tokio::spawn(upkeep::run(host.clone()));
        Ok(host)
    }

    /// How the app is reached.
    pub(crate) fn app(&self) -> &ActorApp {
        &self.app
    }

    /// Whether the app is away: it hosts over an actor event stream, and none is open.
    pub(crate) fn app_away(&self) -> bool {
        matches!(&self.app, ActorApp::Stream(s) if !s.is_open())
    }

    /// The hosted types and their settings.
    pub(crate) fn types(&self) -> &BTreeMap<String, TypeConfig> {
        &self.types
    }

    /// Whether this host may run turns now (its session is good).
    pub(crate) fn ready(&self) -> bool {
        self.session().valid()
    }

    /// How many actors of each hosted type are active here.
    pub(crate) fn active_counts(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> =
            self.types.keys().map(|t| (t.clone(), 0)).collect();
        for (t, _) in self.table().keys() {
            *counts.entry(t.clone()).or_default() += 1;
        }
        counts
    }

    /// Whether actor `(actor_type, id)` is active here now (its state may be written).
    pub(crate) fn is_active(&self, actor_type: &str, id: &str) -> bool {
        let current = self.session();
        self.table()
            .get(&(actor_type.to_owned(), id.to_owned()))
            .is_some_and(|a| a.usable(&current))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<ActorKey, Arc<Active>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn session(&self) -> Arc<Session> {
        self.session
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs one call of `method` on actor `(actor_type, id)`: activates the actor here if it is
    /// free (when `activate`; otherwise only an actor already active here is called), takes its
    /// turn, and returns the app's whole answer.
    pub(crate) async fn invoke(
        &self,
        actor_type: &str,
        id: &str,
        method: &str,
        req: Request<Bytes>,
        activate: bool,
    ) -> Result<Response<Bytes>, HostError> {
        let cfg = *self
            .types
            .get(actor_type)
            .ok_or_else(|| HostError::NotHosted(actor_type.to_owned()))?;
        let chain = cfg.reentrancy.map(|_| {
            req.headers()
                .get(&REENTRANCY_ID)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
        });
        let deadline = Instant::now() + ACTIVATION_PATIENCE;
        let (active, _turn) = loop {
            let active = match self.find(actor_type, id, activate, deadline).await? {
                Found::Here(a) => a,
                Found::Elsewhere(h) => return Err(HostError::Elsewhere(h)),
            };
            let depth = cfg.reentrancy.unwrap_or(1);
            let pending = crate::telemetry::metrics::actors::pending(&self.me.app_id, actor_type);
            pending.increment(1.0);
            let entered = active.turns.enter(chain.as_deref(), depth).await;
            pending.decrement(1.0);
            match entered {
                Ok(turn) => break (active, turn),
                // Deactivated while the call waited: activate afresh once it is gone.
                Err(TurnError::Closed) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(TurnError::Closed) => {
                    return Err(HostError::Unavailable(
                        "the actor was being deactivated; try again".into(),
                    ));
                }
                Err(TurnError::TooDeep) => return Err(HostError::TooDeep),
                Err(TurnError::Busy) => {
                    return Err(HostError::Unavailable(
                        "too many calls are waiting for this actor; try again later".into(),
                    ));
                }
            }
        };
        // The turn may have waited: the actor must still be this host's when the app is called.
        if !active.usable(&self.session()) {
            return Err(session_invalid());
        }
        active.touch();
        // The caller's query goes along, as daprd sends it.
        let query = req.uri().query().map(str::to_owned);
        let callback = Callback {
            actor_type,
            id,
            what: What::Method {
                method,
                query: query.as_deref(),
            },
        };
        let rsp = self.call_app_within(&callback, req, chain.as_deref()).await;
        active.touch();
        rsp
    }

    /// A method (timers and reminders included) to the app, within the actor type's resiliency
    /// timeout if it has one.
    async fn call_app_within(
        &self,
        callback: &Callback<'_>,
        req: Request<Bytes>,
        chain: Option<&str>,
    ) -> Result<Response<Bytes>, HostError> {
        let call = self.call_app(callback, req, chain);
        let Some((policy, after)) = self.timeouts.get(callback.actor_type) else {
            return call.await;
        };
        tokio::time::timeout(*after, call)
            .await
            .unwrap_or_else(|_| {
                Err(HostError::TimedOut {
                    policy: policy.clone(),
                    after: *after,
                })
            })
    }

    /// Sends one callback to the app for an actor and reads its whole answer (the turn is held
    /// until then): as an HTTP request, or over the app's actor event stream.
    async fn call_app(
        &self,
        callback: &Callback<'_>,
        req: Request<Bytes>,
        chain: Option<&str>,
    ) -> Result<Response<Bytes>, HostError> {
        let app = match &self.app {
            ActorApp::Channel(app) => app,
            // Nothing runs while the app reconnects its stream: the call may be tried again.
            ActorApp::Stream(stream) if !stream.is_open() => {
                return Err(HostError::Unavailable(
                    "the app's actor event stream is not open; try again".into(),
                ));
            }
            ActorApp::Stream(stream) => {
                return (stream.call(callback, app_headers_of(req), chain).await)
                    .map_err(HostError::App);
            }
        };
        let (method, path) = callback.http();
        let (parts, body) = req.into_parts();
        let mut out = Request::new(full(body));
        *out.method_mut() = method;
        *out.uri_mut() = path
            .parse()
            .map_err(|e| HostError::App(InvokeError::AppChannel(Box::new(e))))?;
        *out.headers_mut() = app_headers(parts.headers);
        if let Some(chain) = chain.and_then(|c| HeaderValue::from_str(c).ok()) {
            out.headers_mut().insert(REENTRANCY_ID, chain);
        }
        let rsp = app.call(out, &self.me).await.map_err(HostError::App)?;
        let (parts, body) = rsp.into_parts();
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let bytes = crate::net::http::collect_within(body, limit)
            .await
            .map_err(|e| HostError::App(InvokeError::AppChannel(e)))?;
        Ok(Response::from_parts(parts, bytes))
    }

    /// The actor here, activating it if its claim is free; or where it is.
    async fn find(
        &self,
        actor_type: &str,
        id: &str,
        activate: bool,
        deadline: Instant,
    ) -> Result<Found, HostError> {
        let key = (actor_type.to_owned(), id.to_owned());
        loop {
            let session = self.session();
            if !session.valid() {
                return Err(session_invalid());
            }
            let existing = self.table().get(&key).cloned();
            match existing {
                Some(a) if a.usable(&session) => return Ok(Found::Here(a)),
                // Left from a session that is gone (dropped with it): not this host's now.
                Some(a) if !Arc::ptr_eq(&a.session, &session) => {
                    let mut table = self.table();
                    if table.get(&key).is_some_and(|b| Arc::ptr_eq(b, &a)) {
                        table.remove(&key);
                    }
                    continue;
                }
                Some(_) => {}
                None if !activate => {
                    return Err(HostError::Unavailable(format!(
                        "actor {actor_type}/{id} is not active on this host"
                    )));
                }
                None => match session
                    .claim(actor_type, id)
                    .await
                    .map_err(HostError::Store)?
                {
                    // Claimed under a session that was replaced meanwhile: not this host's.
                    Claimed::Mine(_) if !Arc::ptr_eq(&session, &self.session()) => continue,
                    Claimed::Mine(claim) => {
                        let fresh = Arc::new(Active {
                            session: session.clone(),
                            deactivating: AtomicBool::new(false),
                            turns: Turns::default(),
                            claim: tokio::sync::Mutex::new(Some(claim)),
                            used: Mutex::new(Instant::now()),
                            claimed: Mutex::new(Instant::now()),
                            closing: AtomicBool::new(false),
                            timers: Mutex::default(),
                        });
                        let a = self.table().entry(key.clone()).or_insert(fresh).clone();
                        if a.usable(&session) {
                            return Ok(Found::Here(a));
                        }
                    }
                    Claimed::Held(h) => return Ok(Found::Elsewhere(h)),
                    Claimed::Contended => {}
                },
            }
            if Instant::now() >= deadline {
                return Err(HostError::Unavailable(format!(
                    "actor {actor_type}/{id} is moving between hosts; try again"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn session_invalid() -> HostError {
    HostError::Unavailable(
        "this host cannot reach the actor state store to keep its actors; try again".into(),
    )
}

/// This host as its claims name it.
fn holder(me: &Caller, placement: &Placement) -> Holder {
    Holder {
        session: uuid::Uuid::new_v4().to_string(),
        app_id: me.app_id.clone(),
        namespace: me.namespace.clone(),
        address: placement.me().to_string(),
    }
}

/// The caller's headers the app may see: what describes the body, plus the caller's own
/// metadata; never the API token or hop-by-hop headers (the channel strips identity itself).
fn app_headers(mut h: HeaderMap) -> HeaderMap {
    h.remove(header::HOST);
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::TRANSFER_ENCODING);
    h.remove(REENTRANCY_ID);
    h
}

/// The request with only the headers the app may see.
fn app_headers_of(req: Request<Bytes>) -> Request<Bytes> {
    let (mut parts, body) = req.into_parts();
    parts.headers = app_headers(parts.headers);
    Request::from_parts(parts, body)
}

/// One path segment, escaped so that it stays one segment.
pub(crate) fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, crate::net::http::NOT_IN_SEGMENT).to_string()
}

/// A method name, which may hold `/` (daprd passes it on as it came), each segment escaped.
pub(crate) fn method_path(m: &str) -> String {
    m.split('/').map(segment).collect::<Vec<_>>().join("/")
}
