//! The invocation plan: everything decided about an invocation from its request head alone —
//! which app (or declared HTTP endpoint) it targets, whether that is this sidecar's own app, the
//! path and query the target receives, and whether the body is kept whole (so a retry can send
//! it again) or streamed once.
//!
//! Pure: no sockets, no clocks, no state. The caller carries the plan out (`api::invoke`).

use http::Uri;
use outrider_discovery::Target;
use outrider_filters::normalize;

use super::external::{Externals, Found, url};
use crate::errors::InvokeError;
use crate::net::http::percent_decode;

/// Request bodies up to this size are kept so that a retry can send them again; larger or
/// unsized bodies stream through once.
pub(crate) const REPLAY_LIMIT: u64 = 64 * 1024;

/// How the caller named the target app.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Named<'a> {
    /// `/v1.0/invoke/<rest>` in the router's form of the path (escapes kept): `rest` is
    /// `<id>/method/<method…>`.
    Path(&'a str),
    /// By the `dapr-app-id` header (or its Basic-auth form), if it was given; the whole
    /// router path is the method.
    Header { id: Option<&'a str>, path: &'a str },
}

/// What the request head says, and what this sidecar is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head<'a> {
    pub(crate) named: Named<'a>,
    /// The query string, passed on as it is.
    pub(crate) query: Option<&'a str>,
    /// The body's `Content-Length`, if declared.
    pub(crate) declared: Option<u64>,
    /// The body is known to be empty (the request ended with its head).
    pub(crate) end_stream: bool,
    /// `--max-body-size`.
    pub(crate) max_body: u64,
    /// This sidecar's app id and namespace.
    pub(crate) app_id: &'a str,
    pub(crate) namespace: &'a str,
    /// The declared HTTP endpoints a target may name; `None` where only apps can be named
    /// (interception, gRPC proxying).
    pub(crate) external: Option<&'a Externals>,
}

/// Where the request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Straight to this sidecar's own app, as its own caller.
    OwnApp,
    /// Through the mesh to an instance of the target, with the body kept whole for replay...
    Replayable,
    /// ...or streamed once (too large, or of unknown size).
    Streamed,
}

/// The decision for one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The target as the caller wrote it (escapes decoded), for error messages.
    pub(crate) id: String,
    pub(crate) dest: Dest,
    /// The canonical method path (under an endpoint's path), with the query appended: what the
    /// target receives.
    pub(crate) uri: Uri,
    pub(crate) route: Route,
}

/// What the invocation calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    /// An app of the mesh.
    App(Target),
    /// A declared HTTP endpoint outside the mesh.
    Endpoint(Found),
}

/// An invocation refused before anything is sent; `id` is the target as the caller wrote it,
/// for the error message.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) id: String,
    pub(crate) error: InvokeError,
}

/// Decides how to carry out an invocation, or why it is refused.
pub(crate) fn plan(head: &Head<'_>) -> Result<Plan, Refused> {
    let (id, raw_method) = match head.named {
        Named::Path(rest) => match rest.find("/method/") {
            // The router's form keeps escapes, so the canonical form decodes them exactly once.
            Some(i) => (percent_decode(&rest[..i]), &rest[i + "/method/".len()..]),
            None => match rest.strip_suffix("/method") {
                Some(id) => (percent_decode(id), ""),
                None => return Err(refused(rest, InvokeError::NoAppId)),
            },
        },
        Named::Header { id: None, .. } => return Err(refused("", InvokeError::NoAppId)),
        Named::Header { id: Some(id), path } => (id.to_owned(), path.trim_start_matches('/')),
    };
    let id = match url::restore_slashes(&id) {
        std::borrow::Cow::Owned(restored) => restored,
        std::borrow::Cow::Borrowed(_) => id,
    };
    let found = match head.external {
        Some(external) => external.find(&id).map_err(|e| refused(&id, e))?,
        None => None,
    };
    let dest = match found {
        Some(found) => Dest::Endpoint(found),
        None => Dest::App(parse_target(&id, head.namespace).map_err(|e| refused(&id, e))?),
    };
    let mut method_path =
        normalize::canonical_path(raw_method).map_err(|r| refused(&id, InvokeError::BadPath(r)))?;
    if let Dest::Endpoint(found) = &dest {
        method_path = url::joined(&found.prefix, &method_path);
    }
    if head.declared.is_some_and(|n| n > head.max_body) {
        return Err(refused(&id, InvokeError::BodyTooLarge(head.max_body)));
    }
    let path_and_query = match head.query {
        Some(q) => format!("{method_path}?{q}"),
        None => method_path,
    };
    let uri = path_and_query
        .parse::<Uri>()
        .map_err(|_| refused(&id, InvokeError::BadPath(normalize::Rejection::BadEscape)))?;
    let own = |t: &Target| t.app_id == head.app_id && t.namespace == head.namespace;
    let route = if matches!(&dest, Dest::App(t) if own(t)) {
        Route::OwnApp
    } else if head.end_stream || head.declared.is_some_and(|n| n <= REPLAY_LIMIT) {
        Route::Replayable
    } else {
        Route::Streamed
    };
    Ok(Plan {
        id,
        dest,
        uri,
        route,
    })
}

fn refused(id: &str, error: InvokeError) -> Refused {
    Refused {
        id: id.to_owned(),
        error,
    }
}

/// `app-id` (own namespace) or `app-id.namespace`; URLs are refused (security rule 7: only a
/// declared HTTP endpoint's are called, and those are found before this).
pub(crate) fn parse_target(id: &str, own_namespace: &str) -> Result<Target, InvokeError> {
    if url::is_url(id) {
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
mod tests;
