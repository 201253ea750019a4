//! Service invocation: `/v1.0/invoke/{app-id}/method/{method…}` and the `dapr-app-id` header.

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use metrics::{Counter, Histogram};
use outrider_discovery::Target;
use outrider_filters::metrics::SeriesCache;
use outrider_policy::Caller;

use super::ApiState;
use crate::errors::{ApiError, InvokeError};
use crate::mesh::outbound::OutboundRequest;
use crate::mesh::outbound::external::Externals;
use crate::mesh::outbound::plan::{Dest, Head, Named, Plan, Refused, Route, plan};
use crate::net::http::{Body, Tripped, capped, full, grpc_messages, names};
use crate::telemetry::metrics as catalogue;

/// `rest` is the router path after `/v1.0/invoke/`: `<id>/method/<method…>`.
pub(super) async fn by_path(
    state: &ApiState,
    rest: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    invoke(state, Named::Path(rest), req, Some(&state.externals)).await
}

/// Fallback for unmatched routes: the `dapr-app-id` header names the target and the whole path
/// is the method.
pub(super) async fn by_header(
    state: &ApiState,
    path: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let target = header_target(req.headers());
    if target.as_ref().is_some_and(|t| t.from_basic_auth) {
        // It named the target; it is not a credential for the app.
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    let id = target.map(|t| t.id);
    let named = Named::Header {
        id: id.as_deref(),
        path,
    };
    invoke(state, named, req, Some(&state.externals)).await
}

/// A target named by headers rather than by the path.
pub(super) struct HeaderTarget {
    pub(super) id: String,
    from_basic_auth: bool,
}

/// The `dapr-app-id` header, else `Authorization: Basic base64("dapr-app-id:<id>")`, as daprd
/// reads them (header first).
pub(super) fn header_target(h: &http::HeaderMap) -> Option<HeaderTarget> {
    use base64::Engine as _;
    if let Some(v) = h.get(&names::DAPR_APP_ID).and_then(|v| v.to_str().ok()) {
        return Some(HeaderTarget {
            id: v.trim().to_owned(),
            from_basic_auth: false,
        });
    }
    let auth = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?,
    )
    .ok()?;
    let (user, id) = decoded.split_once(':')?;
    (user == "dapr-app-id").then(|| HeaderTarget {
        id: id.to_owned(),
        from_basic_auth: true,
    })
}

/// Plans the invocation from its head, then carries the plan out. `external`: the HTTP
/// endpoints the target may name.
async fn invoke(
    state: &ApiState,
    named: Named<'_>,
    req: Request<Incoming>,
    external: Option<&Externals>,
) -> Result<Response<Body>, ApiError> {
    let started = std::time::Instant::now();
    let head = Head {
        named,
        query: req.uri().query(),
        declared: super::http::body::declared_length(req.headers()),
        end_stream: req.body().is_end_stream(),
        max_body: state.max_body_size,
        app_id: &state.app_id,
        namespace: &state.namespace,
        external,
    };
    let plan = match plan(&head) {
        Ok(plan) => plan,
        Err(Refused { id, error }) => {
            if matches!(error, InvokeError::BodyTooLarge(_)) {
                super::http::body::refuse_declared(req);
            }
            return Err(ApiError::invoke(&id, &error));
        }
    };
    let (parts, body) = req.into_parts();
    let (body, tripped) = capped(body, state.max_body_size, state.body_idle_timeout);
    carry_out(
        state,
        plan,
        parts,
        Payload::Streamed(body, tripped),
        started,
    )
    .await
}

/// An invocation whose body is already whole (the gRPC API's `InvokeService`): `app_id` is the
/// target, the request's path the method.
pub(crate) async fn invoke_whole(
    state: &ApiState,
    app_id: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let started = std::time::Instant::now();
    let head = Head {
        named: Named::Header {
            id: Some(app_id),
            path: parts.uri.path(),
        },
        query: parts.uri.query(),
        declared: Some(body.len() as u64),
        end_stream: body.is_empty(),
        max_body: state.max_body_size,
        app_id: &state.app_id,
        namespace: &state.namespace,
        external: Some(&state.externals),
    };
    let plan = plan(&head).map_err(|Refused { id, error }| ApiError::invoke(&id, &error))?;
    carry_out(state, plan, parts, Payload::Whole(body), started).await
}

/// A gRPC call for another app (any method but the `Dapr` service's, its target named by
/// `app_id`): through the mesh like any invocation, its body and answer streamed both ways with
/// their trailers, never read whole. A stream may last as long as both ends keep it: no total
/// size or pause bound applies to it, but each message is bounded by `--max-body-size`.
pub(crate) async fn proxy_grpc(
    state: &ApiState,
    app_id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let head = Head {
        named: Named::Header {
            id: Some(app_id),
            path: parts.uri.path(),
        },
        query: parts.uri.query(),
        declared: None,
        end_stream: false,
        max_body: state.max_body_size,
        app_id: &state.app_id,
        namespace: &state.namespace,
        external: None,
    };
    let plan = plan(&head).map_err(|Refused { id, error }| ApiError::invoke(&id, &error))?;
    let payload = Payload::Streamed(grpc_messages(body, state.max_body_size), Tripped::default());
    carry_out(state, plan, parts, payload, started).await
}

/// An app's plain HTTP request that interception named as a call of `target`: the whole path is
/// the method, and it goes the way `/v1.0/invoke` does. The app's token for this sidecar's API,
/// if it sent one, is not for the callee.
pub(crate) async fn intercepted(
    state: &ApiState,
    target: &Target,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    req.headers_mut().remove(&names::DAPR_API_TOKEN);
    let id = target.to_string();
    if crate::net::http::is_grpc(req.headers()) {
        // Streamed both ways with trailers, each message bounded, as gRPC proxying is.
        return proxy_grpc(state, &id, req).await;
    }
    let path = req.uri().path().to_owned();
    let named = Named::Header {
        id: Some(&id),
        path: &path,
    };
    invoke(state, named, req, None).await
}

/// A request body as the invocation has it.
enum Payload {
    /// Read as it arrives, within the API's limits.
    Streamed(Body, Tripped),
    /// Already whole.
    Whole(Bytes),
}

impl Payload {
    fn into_body(self) -> Body {
        match self {
            Payload::Streamed(body, _) => body,
            Payload::Whole(bytes) => full(bytes),
        }
    }
}

/// Sends the request where the plan says, and counts the call.
async fn carry_out(
    state: &ApiState,
    plan: Plan,
    mut parts: http::request::Parts,
    payload: Payload,
    started: std::time::Instant,
) -> Result<Response<Body>, ApiError> {
    let Plan {
        id,
        dest,
        uri,
        route,
    } = plan;
    let fail = |e: InvokeError| ApiError::invoke(&id, &e);
    parts.uri = uri;
    let tripped = match &payload {
        Payload::Streamed(_, t) => Some(t.clone()),
        Payload::Whole(_) => None,
    };
    let body_error = |e| match &tripped {
        Some(t) => body_error(state, t, e),
        None => e,
    };
    if let Dest::Endpoint(found) = &dest {
        found.endpoint.prepare(&mut parts.headers, found.by_url);
        // `spec.appHttpPipeline` runs on calls to HTTP endpoints too, as in daprd, on the
        // request as the endpoint would get it.
        let path = parts.uri.path();
        if let Some(stopped) = state.app_pipeline.admit(path, &parts.headers, None) {
            return Ok(stopped);
        }
    }
    let result = if route == Route::OwnApp {
        // Calling ourselves: straight to our own app, as our own caller.
        let app = state
            .app
            .as_ref()
            .ok_or_else(|| fail(InvokeError::NoAppChannel))?;
        let me = Caller {
            app_id: state.app_id.clone(),
            namespace: state.namespace.clone(),
            trust_domain: String::new(),
        };
        // Boxed: a call of one's own app is rare, and its future, inline, would be most of
        // the size of every invocation's (copied whole at each move).
        Box::pin(app.invoke(Request::from_parts(parts, payload.into_body()), &me)).await
    } else {
        let req = match outbound_request(parts, payload, &route).await {
            Ok(req) => req,
            Err(e) => return Err(fail(body_error(e))),
        };
        match &dest {
            Dest::App(target) => state.outbound.call(target, req).await,
            Dest::Endpoint(found) => found.endpoint.call(req).await,
        }
    };
    let destination = match &dest {
        Dest::App(target) => &target.app_id,
        Dest::Endpoint(found) => &found.endpoint.name,
    };
    record_sent(&state.app_id, destination, &result, started);
    match result {
        Ok(rsp) => Ok(rsp),
        // The client may have turned the body's error into a plain reset: ask the body.
        Err(e) => Err(fail(body_error(e))),
    }
}

/// The request as the outbound path takes it: a small body of known size read whole, so that a
/// retry can send it again; any other streamed once.
async fn outbound_request(
    parts: http::request::Parts,
    payload: Payload,
    route: &Route,
) -> Result<OutboundRequest, InvokeError> {
    let (body, kept) = match payload {
        Payload::Whole(bytes) if *route == Route::Replayable => (full(Bytes::new()), Some(bytes)),
        Payload::Whole(bytes) => (full(bytes), None),
        Payload::Streamed(body, _) if *route == Route::Replayable => match body.collect().await {
            Ok(collected) => (full(Bytes::new()), Some(collected.to_bytes())),
            Err(_) => return Err(InvokeError::MalformedBody),
        },
        Payload::Streamed(body, _) => (body, None),
    };
    Ok(OutboundRequest::new(Request::from_parts(parts, body), kept))
}

/// What a failed call really was if the request body tripped its limits, else `e`.
fn body_error(state: &ApiState, tripped: &Tripped, e: InvokeError) -> InvokeError {
    if tripped.get() {
        InvokeError::BodyTooLarge(state.max_body_size)
    } else if tripped.timed_out() {
        InvokeError::BodyPaused(state.body_idle_timeout)
    } else if tripped.broken() {
        InvokeError::MalformedBody
    } else {
        e
    }
}

/// Dapr's service invocation metrics on the caller's side. Only calls that were sent to a target
/// that exists are counted, so the destination label stays within the apps of the mesh.
fn record_sent<B>(
    app_id: &str,
    destination: &str,
    result: &Result<Response<B>, InvokeError>,
    started: std::time::Instant,
) {
    let status = match result {
        Ok(rsp) => rsp.status().as_u16(),
        Err(e) if !e.names_a_known_target() => return,
        Err(e) => e.status().as_u16(),
    };
    static SERIES: SeriesCache<(String, String, u16), (Counter, Counter, Histogram)> =
        SeriesCache::new();
    let key = (app_id.to_owned(), destination.to_owned(), status);
    let (sent, received, latency) = SERIES.get(key, |(app, dest, status)| {
        let who = [
            ("app_id", app.clone()),
            ("destination_app_id", dest.clone()),
            ("type", "http".to_owned()),
        ];
        let mut answered = who.to_vec();
        answered.push(("status", status.to_string()));
        (
            catalogue::INVOCATION_REQ_SENT.counter(&who),
            catalogue::INVOCATION_RES_RECV.counter(&answered),
            catalogue::INVOCATION_RES_RECV_LATENCY.histogram(&answered),
        )
    });
    sent.increment(1);
    received.increment(1);
    latency.record(started.elapsed().as_secs_f64() * 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_targets() {
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            header_target(&m).map(|t| (t.id, t.from_basic_auth))
        };
        // base64("dapr-app-id:orders")
        let basic = "Basic ZGFwci1hcHAtaWQ6b3JkZXJz";
        assert_eq!(h(&[("dapr-app-id", " b ")]), Some(("b".into(), false)));
        assert_eq!(
            h(&[("authorization", basic)]),
            Some(("orders".into(), true))
        );
        assert_eq!(
            h(&[("dapr-app-id", "b"), ("authorization", basic)]),
            Some(("b".into(), false))
        );
        // base64("user:orders"): an ordinary credential, not a target.
        assert_eq!(h(&[("authorization", "Basic dXNlcjpvcmRlcnM=")]), None);
        assert_eq!(
            h(&[("authorization", "Bearer ZGFwci1hcHAtaWQ6b3JkZXJz")]),
            None
        );
        assert_eq!(h(&[("authorization", "Basic !!!")]), None);
        assert_eq!(h(&[]), None);
    }
}
