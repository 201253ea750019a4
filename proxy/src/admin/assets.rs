//! The dashboard's files, compiled into the binary, and the headers every dashboard answer
//! carries: a content security policy that lets the page load and call its own origin only, no
//! framing, no sniffing, no referrer.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::net::http::{Body, full};

/// The page may use its own origin only: no CDN, no other host, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `(path, content type, bytes)` of every file.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/assets/dash.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/dash.js"),
    ),
    (
        "/assets/dash.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/dash.css"),
    ),
    (
        "/assets/favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
    (
        "/assets/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "/assets/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.min.css"),
    ),
    (
        "/assets/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.LICENSE"),
    ),
];

/// The file at `path`, if there is one.
pub(super) fn serve(path: &str) -> Option<Response<Body>> {
    let (_, ctype, bytes) = FILES.iter().find(|(p, _, _)| *p == path)?;
    let mut rsp = Response::new(full(*bytes));
    let h = rsp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secured(&mut rsp);
    Some(rsp)
}

/// A JSON answer of the dashboard's API.
pub(super) fn json(value: &Value) -> Response<Body> {
    let mut rsp = Response::new(full(value.to_string()));
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secured(&mut rsp);
    rsp
}

/// The headers every dashboard answer carries.
pub(super) fn secured<B>(rsp: &mut Response<B>) {
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    debug_assert_eq!(rsp.status(), StatusCode::OK);
}

#[cfg(test)]
mod tests {
    use super::FILES;

    #[test]
    fn the_page_references_only_files_that_are_served() {
        let page = std::str::from_utf8(FILES[0].2).unwrap();
        let mut refs = 0;
        for attr in ["src=\"", "href=\""] {
            for part in page.split(attr).skip(1) {
                let url = &part[..part.find('"').unwrap()];
                refs += 1;
                assert!(
                    FILES.iter().any(|(p, _, _)| *p == url),
                    "the page references {url}, which is not served"
                );
            }
        }
        assert!(refs >= 4, "the page loads its script and styles");
    }

    #[test]
    fn the_vendored_library_is_the_pinned_version_with_its_license() {
        let lib = FILES
            .iter()
            .find(|(p, _, _)| *p == "/assets/uPlot.iife.min.js")
            .unwrap();
        assert!(
            lib.2
                .starts_with(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
        );
        let license = FILES
            .iter()
            .find(|(p, _, _)| *p == "/assets/uPlot.LICENSE")
            .unwrap();
        assert!(
            std::str::from_utf8(license.2)
                .unwrap()
                .contains("MIT License")
        );
    }
}
