//! The app-facing Dapr HTTP API on 127.0.0.1:3500 (HTTP/1.1 and h2c).
//!
//! A request passes, in order: the edge (method and path checks, strict framing — security rules
//! 1 and 6), the API token check (rule 3), then the router. Unmatched routes and wrong verbs fall
//! through to service invocation by the `dapr-app-id` header, as in daprd. Handlers return
//! typed errors; [`ApiError::into_response`] is the one place they become HTTP.

mod body;
mod http;
mod invoke;
mod meta;
mod publish;
mod secrets;
mod state;

pub(crate) use meta::VERSION as VERSION_STR;
pub(crate) use state::STORE_TIMEOUT;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use ::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_filters::RouteLabel;
use outrider_filters::normalize;
use outrider_policy::api::Endpoint;
use tokio_util::sync::CancellationToken;

use crate::errors::ApiError;
use crate::mesh::outbound::Outbound;
use crate::net::http::{Body, full};
use crate::to_app::channel::AppChannel;
use outrider_blocks::pubsub::PubSubComponent;
use outrider_blocks::state::StateComponent;

/// Readiness as the health endpoints and the admin listener report it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Components loaded and listeners up: outbound APIs can serve.
    pub(crate) outbound_ready: AtomicBool,
    /// The app's port answers (or there is no app port).
    pub(crate) app_ready: AtomicBool,
    /// Shutting down: report not ready so that traffic moves elsewhere.
    pub(crate) draining: AtomicBool,
}

impl Health {
    pub(crate) fn ready(&self) -> bool {
        self.outbound_ready.load(Ordering::Acquire)
            && self.app_ready.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn outbound_ready(&self) -> bool {
        self.outbound_ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Everything the API handlers share.
pub(crate) struct ApiState {
    pub(crate) app_id: String,
    pub(crate) namespace: String,
    pub(crate) app_port: Option<u16>,
    pub(crate) app_channel_address: String,
    pub(crate) api_token: Option<String>,
    pub(crate) max_body_size: u64,
    /// The longest pause inside a request body the API reads whole.
    pub(crate) body_idle_timeout: std::time::Duration,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) app: Option<AppChannel>,
    pub(crate) health: Arc<Health>,
    /// State stores by name.
    pub(crate) stores: BTreeMap<String, StateComponent>,
    /// Pub/sub components by name.
    pub(crate) pubsubs: BTreeMap<String, PubSubComponent>,
    /// Secret stores by name.
    pub(crate) secret_stores: BTreeMap<String, outrider_blocks::secrets::SecretStoreComponent>,
    /// Which secrets the app may read through the API.
    pub(crate) secret_scopes: outrider_blocks::secrets::SecretScopes,
    /// `Configuration.spec.api`: which routes are served.
    pub(crate) api_access: outrider_policy::api::ApiAccess,
    pub(crate) pubsub_metrics: Arc<crate::components::metrics::PubSubMetrics>,
    /// Subscriptions delivering to the app, for the metadata API.
    pub(crate) subscriptions: Arc<Mutex<Vec<crate::to_app::subscriptions::Listed>>>,
    pub(crate) extended: Mutex<BTreeMap<String, String>>,
    /// Permits for work whose cost grows with the data (queries, bulk reads): at most
    /// [`HEAVY_WORK`] run at once, whatever the number of callers.
    pub(crate) heavy: tokio::sync::Semaphore,
    pub(crate) shutdown: CancellationToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Publish,
    PublishBulk,
    PublishBulkV1,
    PublishNoTopic,
    StateSave,
    StateKey,
    StateBulk,
    StateTransaction,
    StateQuery,
    Secret,
    SecretBulk,
    Healthz,
    HealthzOutbound,
    Metadata,
    MetadataKey,
    Shutdown,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Publish => "/v1.0/publish/{pubsub}/{*topic}",
            Route::PublishBulk => "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            Route::PublishBulkV1 => "/v1.0/publish/bulk/{pubsub}/{*topic}",
            Route::PublishNoTopic => "/v1.0/publish/{pubsub}",
            Route::StateSave => "/v1.0/state/{store}",
            Route::StateKey => "/v1.0/state/{store}/{key}",
            Route::StateBulk => "/v1.0/state/{store}/bulk",
            Route::StateTransaction => "/v1.0/state/{store}/transaction",
            Route::StateQuery => "/v1.0-alpha1/state/{store}/query",
            Route::Secret => "/v1.0/secrets/{store}/{key}",
            Route::SecretBulk => "/v1.0/secrets/{store}/bulk",
            Route::Healthz => "/v1.0/healthz",
            Route::HealthzOutbound => "/v1.0/healthz/outbound",
            Route::Metadata => "/v1.0/metadata",
            Route::MetadataKey => "/v1.0/metadata/{key}",
            Route::Shutdown => "/v1.0/shutdown",
        }
    }
}

impl Route {
    /// The route as `spec.api` rules see it.
    fn endpoint(self) -> Endpoint {
        let (group, version) = match self {
            Route::Publish | Route::PublishBulkV1 | Route::PublishNoTopic => ("publish", "v1"),
            Route::PublishBulk => ("publish", "v1alpha1"),
            Route::StateSave | Route::StateKey | Route::StateBulk | Route::StateTransaction => {
                ("state", "v1")
            }
            Route::StateQuery => ("state", "v1alpha1"),
            Route::Secret | Route::SecretBulk => ("secrets", "v1"),
            Route::Healthz | Route::HealthzOutbound => ("healthz", "v1"),
            Route::Metadata | Route::MetadataKey => ("metadata", "v1"),
            Route::Shutdown => ("shutdown", "v1"),
        };
        Endpoint {
            group,
            version,
            route: &self.label()[1..],
        }
    }
}

/// Invocation as `spec.api` rules see it.
const INVOKE_ENDPOINT: Endpoint = Endpoint {
    group: "invoke",
    version: "v1",
    route: "v1.0/invoke/{id}/method/{method}",
};

/// Queries and bulk reads that may run at once.
pub(crate) const HEAVY_WORK: usize = 4;

impl ApiState {
    /// A permit for heavy work, waiting at most the store timeout; past it the caller is told to
    /// come back (429) with `code`.
    async fn heavy_permit(
        &self,
        code: &'static str,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(state::STORE_TIMEOUT, self.heavy.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                format!("{HEAVY_WORK} queries and bulk reads are running already; try again later"),
            )),
        }
    }
}

/// Route parameters, unescaped.
#[derive(Debug, Default)]
struct Params {
    /// The component named in the path: a state store or a pub/sub.
    store: String,
    /// The state key, metadata key or topic.
    key: String,
}

/// The route label of invocations.
const INVOKE_LABEL: RouteLabel = RouteLabel("/v1.0/invoke/{id}/method/{method}");

/// The API as a tower service.
#[derive(Clone)]
pub(crate) struct ApiService {
    state: Arc<ApiState>,
    router: Arc<matchit::Router<Route>>,
}

impl ApiService {
    pub(crate) fn new(state: Arc<ApiState>) -> Self {
        let mut router = matchit::Router::new();
        for r in [
            Route::Publish,
            Route::PublishBulk,
            Route::PublishBulkV1,
            Route::PublishNoTopic,
            Route::StateSave,
            Route::StateKey,
            Route::StateBulk,
            Route::StateTransaction,
            Route::StateQuery,
            Route::Secret,
            Route::SecretBulk,
            Route::Healthz,
            Route::HealthzOutbound,
            Route::Metadata,
            Route::MetadataKey,
            Route::Shutdown,
        ] {
            router
                .insert(r.label(), r)
                .expect("the route table has no conflicts");
        }
        Self {
            state,
            router: Arc::new(router),
        }
    }
}

impl tower::Service<Request<Incoming>> for ApiService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

impl ApiService {
    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let path = match edge(&req) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        if let Err(e) = self.check_token(&req, &path) {
            return e.into_response();
        }
        req.headers_mut().remove("dapr-api-token");
        // Routes `spec.api` does not serve are not routed: the request falls through as an
        // unknown path would, to invocation if that is served, else to a plain 404.
        let access = &self.state.api_access;
        let invoke_ok = access.allows(INVOKE_ENDPOINT);
        // A target named by header wins over the path, as in daprd.
        let by_path = path
            .strip_prefix("/v1.0/invoke/")
            .filter(|_| invoke_ok && invoke::header_target(req.headers()).is_none());
        let result = if let Some(rest) = by_path {
            invoke::by_path(&self.state, rest, req)
                .await
                .map(labelled(INVOKE_LABEL))
        } else {
            match self
                .route(&path, req.method())
                .filter(|(route, _)| access.allows(route.endpoint()))
            {
                Some((route, params)) => self
                    .dispatch(route, params, req)
                    .await
                    .map(labelled(RouteLabel(route.label()))),
                None if invoke_ok => invoke::by_header(&self.state, &path, req)
                    .await
                    .map(labelled(INVOKE_LABEL)),
                None => Ok(not_found()),
            }
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// The matched route (and its `{key}`), if the verb fits; otherwise the request falls through
    /// to invocation, as in daprd. A trailing slash is tried without it.
    fn route(&self, path: &str, method: &Method) -> Option<(Route, Params)> {
        if path == "/v1.0/metadata/" && method == Method::PUT {
            return Some((Route::MetadataKey, Params::default()));
        }
        let m = self
            .router
            .at(path)
            .ok()
            .or_else(|| self.router.at(path.strip_suffix('/')?).ok())?;
        let route = *m.value;
        // Parameters are unescaped after matching, so a key may hold '/' as %2F.
        let params = Params {
            store: m
                .params
                .get("store")
                .or(m.params.get("pubsub"))
                .map(http::percent_decode)
                .unwrap_or_default(),
            key: m
                .params
                .get("key")
                .or(m.params.get("topic"))
                .map(http::percent_decode)
                .unwrap_or_default(),
        };
        let write = method == Method::POST || method == Method::PUT;
        let verb_ok = match route {
            Route::Publish
            | Route::PublishBulk
            | Route::PublishBulkV1
            | Route::PublishNoTopic
            | Route::StateSave
            | Route::StateBulk
            | Route::StateTransaction
            | Route::StateQuery => write,
            Route::StateKey => method == Method::GET || method == Method::DELETE,
            Route::Healthz
            | Route::HealthzOutbound
            | Route::Metadata
            | Route::Secret
            | Route::SecretBulk => method == Method::GET,
            Route::MetadataKey => method == Method::PUT,
            Route::Shutdown => method == Method::POST,
        };
        verb_ok.then_some((route, params))
    }

    async fn dispatch(
        &self,
        route: Route,
        p: Params,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let s = &self.state;
        match route {
            Route::Publish | Route::PublishNoTopic => {
                http::publish::publish(s, &p.store, &p.key, req).await
            }
            Route::PublishBulk | Route::PublishBulkV1 => {
                http::publish::publish_bulk(s, &p.store, &p.key, req).await
            }
            Route::StateSave => http::state::save(s, &p.store, req).await,
            Route::StateKey if req.method() == Method::DELETE => {
                http::state::delete(s, &p.store, &p.key, &req).await
            }
            Route::StateKey => http::state::get(s, &p.store, &p.key, req.uri().query()).await,
            Route::StateBulk => http::state::bulk(s, &p.store, req).await,
            Route::StateTransaction => http::state::transaction(s, &p.store, req).await,
            Route::StateQuery => http::state::query(s, &p.store, req).await,
            Route::Secret => http::secrets::get(s, &p.store, &p.key),
            Route::SecretBulk => http::secrets::bulk(s, &p.store),
            Route::Healthz => http::meta::healthz(s, req.uri().query()),
            Route::HealthzOutbound => http::meta::healthz_outbound(s),
            Route::Metadata => http::meta::get(s),
            Route::MetadataKey => http::meta::put(s, p.key, req).await,
            Route::Shutdown => http::meta::shutdown(s),
        }
    }

    /// `DAPR_API_TOKEN`: every route needs it except exactly `GET /v1.0/healthz` and
    /// `GET /v1.0/healthz/outbound`.
    fn check_token(&self, req: &Request<Incoming>, path: &str) -> Result<(), Unauthorized> {
        let Some(token) = &self.state.api_token else {
            return Ok(());
        };
        let exempt = req.method() == Method::GET
            && (path == "/v1.0/healthz" || path == "/v1.0/healthz/outbound");
        let given = req
            .headers()
            .get("dapr-api-token")
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if exempt || constant_time_eq(given, token.as_bytes()) {
            Ok(())
        } else {
            Err(Unauthorized)
        }
    }
}

/// A missing or wrong API token. daprd answers it in plain text, not with an error body.
struct Unauthorized;

impl Unauthorized {
    fn into_response(self) -> Response<Body> {
        let mut rsp = Response::new(full("invalid api token\n"));
        *rsp.status_mut() = StatusCode::UNAUTHORIZED;
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        rsp
    }
}

/// What daprd's router answers for a path it does not route when invocation is not served.
fn not_found() -> Response<Body> {
    let mut rsp = Response::new(full("404 page not found\n"));
    *rsp.status_mut() = StatusCode::NOT_FOUND;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}

/// The edge: upper-case methods and a clean path (framing was checked below hyper, by
/// `guard`). Returns the router's form of the path.
fn edge(req: &Request<Incoming>) -> Result<String, ApiError> {
    if !normalize::method_ok(req.method().as_str()) {
        return Err(ApiError::edge(normalize::Rejection::BadMethod));
    }
    let path = normalize::route_path(req.uri().path()).map_err(ApiError::edge)?;
    Ok(path)
}

/// Tags a response with the route template that produced it, for the metrics layer.
fn labelled(label: RouteLabel) -> impl FnOnce(Response<Body>) -> Response<Body> {
    move |mut r| {
        r.extensions_mut().insert(label);
        r
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
