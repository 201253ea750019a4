//! Service invocation: `/v1.0/invoke/{app-id}/method/{method…}` and the `dapr-app-id` header.

use http::{Request, Response, Uri, header};
use hyper::body::Incoming;
use outrider_discovery::Target;
use outrider_filters::normalize;
use outrider_policy::Caller;

use super::{ApiState, percent_decode};
use crate::errors::{ApiError, InvokeError};
use crate::http::{Body, boxed, capped};

/// `rest` is the router path after `/v1.0/invoke/`: `<id>/method/<method…>`. The id is the text
/// before the first `/method/` (or a final `/method`); the method may be empty.
pub(super) async fn by_path(state: &ApiState, rest: &str, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
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
    let Some(id) = req.headers().get("dapr-app-id").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return Err(ApiError::invoke("", &InvokeError::NoAppId));
    };
    let method = path.trim_start_matches('/').to_owned();
    invoke(state, id.trim(), &method, req).await
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
    let method_path = normalize::canonical_path(raw_method).map_err(|r| fail(InvokeError::BadPath(r)))?;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_size) {
        return Err(fail(InvokeError::BodyTooLarge(state.max_body_size)));
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{method_path}?{q}"),
        None => method_path,
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = pq.parse::<Uri>().map_err(|_| fail(InvokeError::BadPath(normalize::Rejection::BadEscape)))?;
    let (body, tripped) = capped(body, state.max_body_size);
    let req = Request::from_parts(parts, body);
    let result = if target.app_id == state.app_id && target.namespace == state.namespace {
        // Calling ourselves: straight to our own app, as our own caller.
        let app = state.app.as_ref().ok_or_else(|| fail(InvokeError::NoAppChannel))?;
        let me =
            Caller { app_id: state.app_id.clone(), namespace: state.namespace.clone(), trust_domain: String::new() };
        app.call(req, &me).await
    } else {
        state.outbound.call(&target, req).await
    };
    match result {
        Ok(rsp) => Ok(rsp.map(boxed)),
        // The client may have turned the body's error into a plain reset: ask the body.
        Err(_) if tripped.get() => Err(fail(InvokeError::BodyTooLarge(state.max_body_size))),
        Err(e) => Err(fail(e)),
    }
}

/// `app-id` (own namespace) or `app-id.namespace`; URLs are refused (security rule 7).
fn parse_target(id: &str, own_namespace: &str) -> Result<Target, InvokeError> {
    if id.contains("://") || id.starts_with("http:") || id.starts_with("https:") {
        return Err(InvokeError::ExternalUrl(id.to_owned()));
    }
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
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
    fn targets() {
        assert_eq!(parse_target("b", "dev").unwrap(), Target::new("b", "dev"));
        assert_eq!(parse_target("b.prod", "dev").unwrap(), Target::new("b", "prod"));
        for bad in ["b.c.d", "b.", ".b", "b c", "b/c"] {
            assert!(matches!(parse_target(bad, "dev"), Err(InvokeError::InvalidAppId(_))), "{bad}");
        }
        for url in ["http://evil", "https://evil:443", "http:evil"] {
            assert!(matches!(parse_target(url, "dev"), Err(InvokeError::ExternalUrl(_))), "{url}");
        }
        assert!(matches!(parse_target("", "dev"), Err(InvokeError::NoAppId)));
    }
}
