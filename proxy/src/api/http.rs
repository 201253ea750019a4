//! The HTTP codec of the app-facing API: it decodes each request into the typed request of an
//! operation in `api::{state, publish, secrets, meta}`, calls it, and encodes the result as
//! daprd does (status codes, JSON bodies, headers, `metadata.*` query parameters). The rules of
//! the building blocks are not here.

pub(super) mod meta;
pub(super) mod publish;
pub(super) mod secrets;
pub(super) mod state;

use http::{HeaderValue, Response, StatusCode, header};
use outrider_blocks::state::Metadata;
use serde_json::Value;

use crate::net::http::{Body, empty, full};

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

/// Decodes percent-escapes (as Dapr unescapes route parameters); invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
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
    }
}
