//! The HTTP codec of the app-facing Dapr API on 127.0.0.1:3500 (HTTP/1.1 and h2c).
//!
//! A request passes, in order: the edge (method and path checks, strict framing — security rules
//! 1 and 6), the API token check (rule 3), then the route table (`route`). Unmatched routes and
//! wrong verbs fall through to service invocation by the `dapr-app-id` header, as in daprd. The
//! codec of each building block decodes the request into the typed request of an operation in
//! `api::{state, publish, secrets, lock, configuration, bindings, meta}`, calls it, and encodes the result as daprd does (status
//! codes, JSON bodies, headers, `metadata.*` query parameters); the rules of the building blocks
//! are not here. Operations return typed errors; [`ApiError::into_response`] is the one place
//! they become HTTP.

mod actors;
mod bindings;
pub(super) mod body;
mod configuration;
mod jobs;
mod lock;
mod meta;
mod protojson;
mod publish;
mod route;
mod secrets;
mod state;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use outrider_blocks::state::Metadata;
use outrider_filters::RouteLabel;
use outrider_filters::normalize;
use serde_json::Value;

use super::pipeline::Peer;
use super::{ApiState, invoke};
use crate::errors::ApiError;
use crate::net::http::{Body, empty, full, names};
use route::{INVOKE_ENDPOINT, INVOKE_LABEL, Params, Route, Routes, unserved};

/// The API as a tower service.
#[derive(Clone)]
pub(crate) struct ApiService {
    state: Arc<ApiState>,
    routes: Arc<Routes>,
}

impl ApiService {
    pub(crate) fn new(state: Arc<ApiState>) -> Self {
        Self {
            state,
            routes: Arc::new(Routes::new()),
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

/// `--dapr-public-port`: the health endpoints and `GET /v1.0/metadata` (the API token, when
/// set, is still required for metadata; `httpPipeline` does not run).
#[derive(Clone)]
pub(crate) struct PublicService(ApiService);

impl PublicService {
    pub(crate) fn new(state: Arc<ApiState>) -> Self {
        Self(ApiService::new(state))
    }
}

impl tower::Service<Request<Incoming>> for PublicService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { Ok(api.handle_public(req).await) })
    }
}

impl ApiService {
    /// `--dapr-public-port`: the path judged as the API judges it (normalised first), then only
    /// the three read-only public routes that `spec.api` serves, never a fallback to
    /// invocation, and no `httpPipeline` (as in daprd, so that probes need no token of the
    /// middleware's).
    async fn handle_public(&self, req: Request<Incoming>) -> Response<Body> {
        let path = match edge(&req) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let access = &self.state.api_access;
        let found =
            (self.routes.at(&path, req.method())).filter(|(r, _)| access.allows(r.endpoint()));
        let route = match found {
            Some((r @ (Route::Healthz | Route::HealthzOutbound | Route::Metadata), p)) => (r, p),
            // Nothing that changes anything (daprd's `PUT /v1.0/metadata/{key}` included) on a
            // port other hosts reach.
            _ => return not_found(),
        };
        if let Err(e) = self.check_token(&req, &path) {
            return e.into_response();
        }
        let (route, params) = route;
        self.dispatch(route, params, req)
            .await
            .map(labelled(RouteLabel(route.label())))
            .unwrap_or_else(ApiError::into_response)
    }

    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let path = match edge(&req) {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        if let Err(e) = self.check_token(&req, &path) {
            return e.into_response();
        }
        req.headers_mut().remove(&names::DAPR_API_TOKEN);
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        if let Some(stopped) = self.state.pipeline.admit(&path, req.headers(), peer) {
            return stopped;
        }
        // Routes `spec.api` does not serve are not routed: the request falls through as an
        // unknown path would, to invocation if that is served, else to a plain 404.
        let access = &self.state.api_access;
        let invoke_ok = access.allows(INVOKE_ENDPOINT);
        // A target named by header wins over the path, as in daprd.
        let by_path = path
            .strip_prefix("/v1.0/invoke/")
            .filter(|_| invoke_ok && invoke::header_target(req.headers()).is_none());
        let result = if let Some((prefix, api)) = unserved(&path) {
            let e = ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "ERR_NOT_IMPLEMENTED",
                format!("the {api} API is not served by this sidecar yet"),
            );
            Ok(labelled(RouteLabel(prefix))(e.into_response()))
        } else if let Some(rest) = by_path {
            invoke::by_path(&self.state, rest, req)
                .await
                .map(labelled(INVOKE_LABEL))
        } else {
            match (self.routes)
                .at(&path, req.method())
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

    async fn dispatch(
        &self,
        route: Route,
        p: Params,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let s = &self.state;
        match route {
            Route::Publish | Route::PublishNoTopic => {
                publish::publish(s, &p.store, &p.key, req).await
            }
            Route::PublishBulk | Route::PublishBulkV1 => {
                publish::publish_bulk(s, &p.store, &p.key, req).await
            }
            Route::StateSave => state::save(s, &p.store, req).await,
            Route::StateKey if req.method() == Method::DELETE => {
                state::delete(s, &p.store, &p.key, &req).await
            }
            Route::StateKey => state::get(s, &p.store, &p.key, req.uri().query()).await,
            Route::StateBulk => state::bulk(s, &p.store, req).await,
            Route::StateTransaction => state::transaction(s, &p.store, req).await,
            Route::StateQuery => state::query(s, &p.store, req).await,
            Route::Secret => secrets::get(s, &p.store, &p.key),
            Route::SecretBulk => secrets::bulk(s, &p.store),
            Route::Lock => lock::try_lock(s, &p.store, req).await,
            Route::Unlock => lock::unlock(s, &p.store, req).await,
            Route::Binding => bindings::invoke(s, &p.store, req).await,
            Route::ConfigGet | Route::ConfigGetAlpha1 => {
                configuration::get(s, &p.store, &req).await
            }
            Route::ConfigSubscribe | Route::ConfigSubscribeAlpha1 => {
                configuration::subscribe(&self.state, &p.store, &req).await
            }
            Route::ConfigUnsubscribe | Route::ConfigUnsubscribeAlpha1 => {
                configuration::unsubscribe(s, &p.store, &p.key)
            }
            Route::Healthz => meta::healthz(s, req.uri().query()),
            Route::HealthzOutbound => meta::healthz_outbound(s),
            Route::Metadata => meta::get(s),
            Route::MetadataKey => meta::put(s, p.key, req).await,
            Route::Shutdown => meta::shutdown(s),
            Route::ActorMethod => actors::method(s, p, req).await,
            Route::ActorState => actors::transaction(s, &p, req).await,
            Route::ActorStateKey => actors::get_state(s, &p).await,
            Route::ActorTimer => actors::timer(s, &p, req).await,
            Route::ActorReminder => actors::reminder(s, &p, req).await,
            Route::Job | Route::JobAlpha1 => jobs::job(s, &p.key, req).await,
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
            .get(&names::DAPR_API_TOKEN)
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

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 204 with no body: daprd's answer for success without data.
pub(super) fn no_content() -> Response<Body> {
    let mut rsp = Response::new(empty());
    *rsp.status_mut() = StatusCode::NO_CONTENT;
    rsp
}

/// 200 with a JSON body.
pub(super) fn json_response(v: &Value) -> Response<Body> {
    let mut rsp = Response::new(full(v.to_string()));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

/// `metadata.<name>=<value>` query parameters (first value wins), as request metadata.
pub(super) fn query_metadata(query: Option<&str>) -> Metadata {
    let mut md = Metadata::new();
    for kv in query.unwrap_or_default().split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if let Some(name) = percent_decode(k).strip_prefix("metadata.") {
            md.entry(name.to_owned())
                .or_insert_with(|| percent_decode(&v.replace('+', " ")));
        }
    }
    md
}

pub(crate) use crate::net::http::percent_decode;
pub(crate) use body::read_request;

/// Every value of query parameter `name`, in order.
pub(crate) fn query_params(query: Option<&str>, name: &str) -> Vec<String> {
    let pairs = query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty());
    pairs
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == name).then(|| percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// The first value of query parameter `name`.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("a=1&appid=x%20y&appid=z"), "appid").as_deref(),
            Some("x y")
        );
        assert_eq!(query_param(Some("x=/healthz"), "appid"), None);
        assert_eq!(query_param(None, "appid"), None);
        assert_eq!(
            super::query_params(Some("key=a&x=1&key=b%2Fc&key="), "key"),
            ["a", "b/c", ""]
        );
        assert!(super::query_params(None, "key").is_empty());
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
