//! Header hygiene: the names of the Dapr headers the data path touches, and the removal of
//! hop-by-hop and identity headers from what is forwarded.

use http::header::{self, HeaderMap, HeaderName};

/// Names of the Dapr headers the data path reads or sets on every request, made once: a header
/// map looks a `&str` name up by parsing it into a name first, which costs more than the lookup.
pub(crate) mod names {
    use http::HeaderName;

    pub(crate) static DAPR_API_TOKEN: HeaderName = HeaderName::from_static("dapr-api-token");
    pub(crate) static DAPR_APP_ID: HeaderName = HeaderName::from_static("dapr-app-id");
    pub(crate) static DAPR_CALLER_APP_ID: HeaderName =
        HeaderName::from_static("dapr-caller-app-id");
    pub(crate) static DAPR_CALLER_NAMESPACE: HeaderName =
        HeaderName::from_static("dapr-caller-namespace");
    pub(crate) static DAPR_CALLEE_APP_ID: HeaderName =
        HeaderName::from_static("dapr-callee-app-id");
    pub(crate) static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1 plus the
/// proxy-specific ones).
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them. One pass over the names tells, without hashing, where
    // removing each of the ten by name would hash ten times (every request and every answer
    // through the proxy pays for this).
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Whether `name` is one of [`HOP_BY_HOP`], by its text: a match on the length, then at most a
/// couple of comparisons.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "http2-settings"
            | "te"
            | "trailer"
            | "proxy-authorization"
            | "proxy-authenticate"
    )
}

/// Headers by which Dapr names callers, callees and tokens. An app can never set them: they
/// are removed from everything an app sends, and the sidecar stamps its own.
pub(crate) fn strip_identity(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("dapr-caller-")
                || k.starts_with("dapr-callee-")
                || k == "dapr-app-id"
                || k == "dapr-api-token"
                || k.starts_with("outrider-actor-")
        })
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("content-type", "text/plain"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["content-type"]
        );
    }

    #[test]
    fn strips_each_hop_by_hop_header_alone_and_leaves_the_rest() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
            h.insert(name.clone(), "x".parse().unwrap());
            h.insert("x-kept", "1".parse().unwrap());
            strip_hop_by_hop(&mut h);
            assert_eq!(
                h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
                ["content-type", "x-kept"],
                "{name}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "a".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn strips_identity_headers() {
        let mut h = HeaderMap::new();
        for k in [
            "dapr-caller-app-id",
            "dapr-caller-namespace",
            "dapr-callee-app-id",
            "dapr-app-id",
            "dapr-api-token",
            "dapr-caller-anything",
            "dapr-other",
            "x",
        ] {
            h.insert(HeaderName::from_static(k), "v".parse().unwrap());
        }
        strip_identity(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["dapr-other", "x"]);
    }
}
