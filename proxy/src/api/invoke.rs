//! Service invocation: `/v1.0/invoke/{app-id}/method/{method…}` and the `dapr-app-id` header.

use bytes::Bytes;
use http::{Request, Response, Uri, header};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use metrics::{Counter, Histogram};
use outrider_discovery::Target;
use outrider_filters::metrics::SeriesCache;
use outrider_filters::normalize;
use outrider_policy::Caller;

use super::ApiState;
use super::http::percent_decode;
use crate::errors::{ApiError, InvokeError};
use crate::mesh::outbound::{OutboundRequest, REPLAY_LIMIT};
use crate::net::http::{Body, boxed, capped, full};

/// `rest` is the router path after `/v1.0/invoke/`: `<id>/method/<method…>`. The id is the text
/// before the first `/method/` (or a final `/method`); the method may be empty.
pub(super) async fn by_path(
    state: &ApiState,
    rest: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (id, raw_method) = match rest.find("/method/") {
        Some(i) => (&rest[..i], &rest[i + "/method/".len()..]),
        None => match rest.strip_suffix("/method") {
            Some(id) => (id, ""),
            None => return Err(ApiError::invoke(rest, &InvokeError::NoAppId)),
        },
    };
    // The router's form keeps escapes, so the canonical form decodes them exactly once.
    let id = percent_decode(id);
    invoke(state, &id, raw_method, req).await
}

/// Fallback for unmatched routes: the `dapr-app-id` header names the target and the whole path
/// is the method.
pub(super) async fn by_header(
    state: &ApiState,
    path: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mut req = req;
    let Some(target) = header_target(req.headers()) else {
        return Err(ApiError::invoke("", &InvokeError::NoAppId));
    };
    if target.from_basic_auth {
        // It named the target; it is not a credential for the app.
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    let method = path.trim_start_matches('/').to_owned();
    invoke(state, &target.id, &method, req).await
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
    if let Some(v) = h.get("dapr-app-id").and_then(|v| v.to_str().ok()) {
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

/// Resolves `id` to a target, canonicalises the method path and sends the request there.
async fn invoke(
    state: &ApiState,
    id: &str,
    raw_method: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let fail = |e: InvokeError| ApiError::invoke(id, &e);
    let target = parse_target(id, &state.namespace).map_err(fail)?;
    let started = std::time::Instant::now();
    let method_path =
        normalize::canonical_path(raw_method).map_err(|r| fail(InvokeError::BadPath(r)))?;
    let declared = super::http::body::declared_length(req.headers());
    if declared.is_some_and(|n| n > state.max_body_size) {
        super::http::body::refuse_declared(req);
        return Err(fail(InvokeError::BodyTooLarge(state.max_body_size)));
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{method_path}?{q}"),
        None => method_path,
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = pq
        .parse::<Uri>()
        .map_err(|_| fail(InvokeError::BadPath(normalize::Rejection::BadEscape)))?;
    // A small body of known size is read whole, so that a retry can send it again.
    let keep = body.is_end_stream() || declared.is_some_and(|n| n <= REPLAY_LIMIT);
    let (body, tripped) = capped(body, state.max_body_size, state.body_idle_timeout);
    let result = if target.app_id == state.app_id && target.namespace == state.namespace {
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
        app.call(Request::from_parts(parts, body), &me).await
    } else if keep {
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) if tripped.get() => {
                return Err(fail(InvokeError::BodyTooLarge(state.max_body_size)));
            }
            Err(_) if tripped.timed_out() => {
                return Err(fail(InvokeError::BodyPaused(state.body_idle_timeout)));
            }
            Err(_) => return Err(fail(InvokeError::MalformedBody)),
        };
        let req = OutboundRequest::new(Request::from_parts(parts, full(Bytes::new())), Some(bytes));
        state.outbound.call(&target, req).await
    } else {
        state
            .outbound
            .call(
                &target,
                OutboundRequest::new(Request::from_parts(parts, body), None),
            )
            .await
    };
    record_sent(&state.app_id, &target, &result, started);
    match result {
        Ok(rsp) => Ok(rsp.map(boxed)),
        // The client may have turned the body's error into a plain reset: ask the body.
        Err(_) if tripped.get() => Err(fail(InvokeError::BodyTooLarge(state.max_body_size))),
        Err(_) if tripped.timed_out() => {
            Err(fail(InvokeError::BodyPaused(state.body_idle_timeout)))
        }
        Err(_) if tripped.broken() => Err(fail(InvokeError::MalformedBody)),
        Err(e) => Err(fail(e)),
    }
}

/// Dapr's service invocation metrics on the caller's side. Only calls that were sent to a target
/// that exists are counted, so the destination label stays within the apps of the mesh.
fn record_sent<B>(
    app_id: &str,
    target: &Target,
    result: &Result<Response<B>, InvokeError>,
    started: std::time::Instant,
) {
    let status = match result {
        Ok(rsp) => rsp.status().as_u16(),
        Err(
            InvokeError::NoEndpoints(..) | InvokeError::InvalidAppId(_) | InvokeError::NoAppChannel,
        ) => return,
        Err(e) => e.status().as_u16(),
    };
    static SERIES: SeriesCache<(String, String, u16), (Counter, Counter, Histogram)> =
        SeriesCache::new();
    let (sent, received, latency) = SERIES.get((app_id.to_owned(), target.app_id.clone(), status), |(app, dest, status)| {
        let sent = metrics::counter!("dapr_runtime_service_invocation_req_sent_total", "app_id" => app.clone(), "destination_app_id" => dest.clone(), "type" => "http");
        let labels =
            [("app_id", app.clone()), ("destination_app_id", dest.clone()), ("type", "http".to_owned()), ("status", status.to_string())];
        (
            sent,
            metrics::counter!("dapr_runtime_service_invocation_res_recv_total", &labels),
            metrics::histogram!("dapr_runtime_service_invocation_res_recv_latency_ms", &labels),
        )
    });
    sent.increment(1);
    received.increment(1);
    latency.record(started.elapsed().as_secs_f64() * 1000.0);
}

/// `app-id` (own namespace) or `app-id.namespace`; URLs are refused (security rule 7).
fn parse_target(id: &str, own_namespace: &str) -> Result<Target, InvokeError> {
    if id.contains("://") || id.starts_with("http:") || id.starts_with("https:") {
        return Err(InvokeError::ExternalUrl(id.to_owned()));
    }
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match id.split_once('.') {
        None if valid(id) => Ok(Target::new(id, own_namespace)),
        Some((app, ns)) if valid(app) && valid(ns) => Ok(Target::new(app, ns)),
        _ if id.is_empty() => Err(InvokeError::NoAppId),
        _ => Err(InvokeError::InvalidAppId(id.to_owned())),
    }
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

    #[test]
    fn targets() {
        assert_eq!(parse_target("b", "dev").unwrap(), Target::new("b", "dev"));
        assert_eq!(
            parse_target("b.prod", "dev").unwrap(),
            Target::new("b", "prod")
        );
        for bad in ["b.c.d", "b.", ".b", "b c", "b/c"] {
            assert!(
                matches!(parse_target(bad, "dev"), Err(InvokeError::InvalidAppId(_))),
                "{bad}"
            );
        }
        for url in ["http://evil", "https://evil:443", "http:evil"] {
            assert!(
                matches!(parse_target(url, "dev"), Err(InvokeError::ExternalUrl(_))),
                "{url}"
            );
        }
        assert!(matches!(parse_target("", "dev"), Err(InvokeError::NoAppId)));
    }
}
