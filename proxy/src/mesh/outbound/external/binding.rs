//! `bindings.http`: an output binding that calls one HTTP(S) service, on the same client as
//! `HTTPEndpoint`s (connection deadline, in-flight cap, server verified against `MTLSRootCA` or
//! the trusted roots, `MTLSClientCert`/`MTLSClientKey` presented).
//!
//! Operations are HTTP methods (`get`, `head`, `post`, `put`, `patch`, `delete`, `options`,
//! `trace`; `create` is a `POST`); only `POST`, `PUT` and `PATCH` send the request's data. The
//! request's `path` metadata is appended to `url` (it may carry a query, never another host, and
//! no `..` segment climbing out of the URL's path); metadata whose name starts with a capital
//! letter becomes a request header. The answer is the body, with `statusCode`, `status` and each
//! response header (Go's canonical form, values joined by `, `) as metadata. A non-2xx answer is
//! an error unless `errorIfNot2XX` (component or request) is `false`. A body larger than
//! `maxResponseBodySize` (100Mi) is an error, never cut short; `responseTimeout` bounds the whole
//! call.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use outrider_blocks::bindings::{
    BindingError, InvokeRequest, InvokeResponse, Metadata, OutputBinding, OutsideOpened,
};
use outrider_blocks::component::{Settings, field_error as err};
use outrider_blocks::state::BoxFuture;
use outrider_blocks::{Component, Fault};

use super::client::{Client, ClientTls};
use super::url::BaseUrl;
use crate::mesh::outbound::OutboundRequest;
use crate::net::http::{collect_within, full};

const OPERATIONS: &[&str] = &[
    "create", "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// daprd's default `maxResponseBodySize`.
const DEFAULT_MAX_BODY: u64 = 100 << 20;

/// JSON, unless the request says otherwise.
const JSON: &str = "application/json; charset=utf-8";

/// An opened `bindings.http`.
pub(crate) struct HttpBinding(Arc<Inner>);

struct Inner {
    name: String,
    client: Client,
    base: BaseUrl,
    token: Option<(HeaderName, HeaderValue)>,
    timeout: Option<Duration>,
    max_body: usize,
    error_if_not_2xx: bool,
}

/// Opens `c` (a `bindings.http`); `None` for any other type.
pub(crate) fn open(
    c: &Component,
    md: &Settings,
    ca_file: Option<&std::path::Path>,
) -> Option<OutsideOpened> {
    (c.spec.type_ == "bindings.http").then(|| {
        let binding: Arc<dyn OutputBinding> = Arc::new(HttpBinding::open(c, md, ca_file)?);
        Ok(binding)
    })
}

impl HttpBinding {
    fn open(
        c: &Component,
        md: &Settings,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, Vec<outrider_blocks::ComponentError>> {
        let url = md
            .get("url")
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| err("spec.metadata.url", "is required"))?;
        let base = BaseUrl::parse(url.trim()).map_err(|e| err("spec.metadata.url", e))?;
        let pem = |key: &str, field: &str| read_pem(md.get(key), field);
        let tls = ClientTls {
            root_ca: pem("mtlsrootca", "spec.metadata.MTLSRootCA")?,
            certificate: pem("mtlsclientcert", "spec.metadata.MTLSClientCert")?,
            private_key: pem("mtlsclientkey", "spec.metadata.MTLSClientKey")?,
        };
        let client = Client::new(&c.metadata.name, &tls, ca_file)
            .map_err(|e| err("spec.metadata", tls_fields(&e)))?;
        let token = match (md.get("securitytoken"), md.get("securitytokenheader")) {
            (Some(t), Some(h)) if !t.is_empty() && !h.is_empty() => {
                let name = HeaderName::try_from(h.as_str()).map_err(|_| {
                    err(
                        "spec.metadata.securityTokenHeader",
                        format!("{h:?} is not a header name"),
                    )
                })?;
                let mut value = HeaderValue::try_from(t.as_str()).map_err(|_| {
                    err("spec.metadata.securityToken", "is not a valid header value")
                })?;
                value.set_sensitive(true);
                Some((name, value))
            }
            _ => None,
        };
        let timeout = match md.get("responsetimeout").filter(|v| !v.is_empty()) {
            Some(v) => Some(
                crate::cli::parse_timeout(v)
                    .map_err(|e| err("spec.metadata.responseTimeout", e))?,
            ),
            None => None,
        };
        let max_body = match md.get("maxresponsebodysize").filter(|v| !v.is_empty()) {
            Some(v) => crate::cli::parse_size(v)
                .map_err(|e| err("spec.metadata.maxResponseBodySize", e))?,
            None => DEFAULT_MAX_BODY,
        };
        let error_if_not_2xx = match md.get("errorifnot2xx").filter(|v| !v.is_empty()) {
            Some(v) => flag(v).ok_or_else(|| {
                err(
                    "spec.metadata.errorIfNot2XX",
                    format!("{v:?} is not true or false"),
                )
            })?,
            None => true,
        };
        // TLS renegotiation exists neither in TLS 1.3 nor in rustls: only "never" is honoured.
        if let Some(v) = md.get("mtlsrenegotiation")
            && !v.is_empty()
            && v != "RenegotiateNever"
        {
            tracing::warn!(component = %c.metadata.name, "MTLSRenegotiation {v:?} is not supported; connections never renegotiate");
        }
        Ok(Self(Arc::new(Inner {
            name: c.metadata.name.clone(),
            client,
            base,
            token,
            timeout,
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
            error_if_not_2xx,
        })))
    }
}

impl OutputBinding for HttpBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    fn deadline(&self) -> Option<Duration> {
        self.0.timeout
    }

    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> BoxFuture<Result<Option<InvokeResponse>, BindingError>> {
        let inner = self.0.clone();
        Box::pin(async move {
            match inner.timeout {
                Some(limit) => tokio::time::timeout(limit, inner.call(req))
                    .await
                    .unwrap_or(Err(BindingError::Timeout(limit))),
                None => inner.call(req).await,
            }
        })
    }
}

impl Inner {
    async fn call(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let (request, error_if_not_2xx) = self.request(req)?;
        let scheme = self.base.scheme();
        let rsp = self
            .client
            .send(
                OutboundRequest::new(request, None),
                scheme,
                &self.base.authority(),
            )
            .await
            .map_err(|e| BindingError::Failed(Fault::caused_by(e.to_string(), e)))?;
        let (parts, body) = rsp.into_parts();
        let data = collect_within(body, self.max_body).await.map_err(|e| {
            BindingError::Failed(Fault::new(format!(
                "reading the answer of {}: {e} (maxResponseBodySize is {} bytes)",
                self.name, self.max_body
            )))
        })?;
        let status = parts.status;
        if error_if_not_2xx && !status.is_success() {
            return Err(BindingError::Failed(Fault::new(format!(
                "received status code {}",
                status.as_u16()
            ))));
        }
        let mut metadata = Metadata::from([
            ("statusCode".to_owned(), status.as_u16().to_string()),
            (
                "status".to_owned(),
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or_default()
                )
                .trim_end()
                .to_owned(),
            ),
        ]);
        metadata.extend(headers_metadata(&parts.headers));
        Ok(Some(InvokeResponse { data, metadata }))
    }

    /// The request for `req`, and whether a non-2xx answer is an error for it.
    fn request(
        &self,
        req: InvokeRequest,
    ) -> Result<(Request<crate::net::http::Body>, bool), BindingError> {
        let bad = |m: String| BindingError::BadRequest(m);
        let method = match req.operation.as_str() {
            "create" => Method::POST,
            op => Method::from_bytes(op.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad(format!("{op:?} is not an HTTP method")))?,
        };
        let path = match req.metadata.get("path") {
            Some(p) => joined_path(&self.base.path, p).map_err(bad)?,
            None if self.base.path.is_empty() => "/".to_owned(),
            None => self.base.path.clone(),
        };
        let sends_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
        let mut builder = Request::builder().method(method).uri(path.as_str());
        let headers = builder.headers_mut().expect("a fresh builder has headers");
        for (k, v) in &req.metadata {
            let forwarded = matches!(k.as_str(), "traceparent" | "tracestate" | "baggage");
            if !forwarded && !k.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            if controlled(k) {
                return Err(bad(format!(
                    "metadata {k:?} names a header the binding sets itself (the host, the \
                     framing, the connection)"
                )));
            }
            let (Ok(name), Ok(value)) = (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) else {
                return Err(bad(format!("metadata {k:?} is not a valid header")));
            };
            headers.append(name, value);
        }
        if sends_body && !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        }
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static(JSON));
        }
        if let Some((name, value)) = &self.token {
            headers.insert(name.clone(), value.clone());
        }
        let body = if sends_body { req.data } else { Bytes::new() };
        let request = builder.body(full(body)).map_err(|e| bad(e.to_string()))?;
        let error_if_not_2xx = match req.metadata.get("errorIfNot2XX") {
            Some(v) => {
                flag(v).ok_or_else(|| bad(format!("errorIfNot2XX: {v:?} is not true or false")))?
            }
            None => self.error_if_not_2xx,
        };
        Ok((request, error_if_not_2xx))
    }
}

/// `prefix` (the URL's path, no trailing `/`) and the request's `path`, as one path and query;
/// a path that would climb out of `prefix` or is not a valid URI path is refused.
fn joined_path(prefix: &str, path: &str) -> Result<String, String> {
    let path = path.trim_start_matches('/');
    let (just_path, _) = path.split_once(['?', '#']).unwrap_or((path, ""));
    let climbs = just_path.split('/').any(|seg| {
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        decoded == ".." || decoded == "." || decoded.contains(['/', '\\'])
    });
    if climbs {
        return Err(format!(
            "path {path:?}: `.` and `..` segments, and encoded slashes, are not accepted"
        ));
    }
    let joined = format!("{prefix}/{path}");
    joined
        .parse::<http::uri::PathAndQuery>()
        .map_err(|e| format!("path {path:?} is not a valid URL path: {e}"))?;
    Ok(joined)
}

/// Headers the binding (or its client) owns: the host and the message's framing.
fn controlled(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("proxy-")
        || matches!(
            n.as_str(),
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "keep-alive"
                | "te"
                | "trailer"
                | "upgrade"
                | "expect"
        )
}

/// Response headers as metadata: Go's canonical names, several values joined by `, `.
fn headers_metadata(h: &HeaderMap) -> Metadata {
    let mut out = Metadata::new();
    for name in h.keys() {
        let values: Vec<&str> = h
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        out.insert(canonical(name.as_str()), values.join(", "));
    }
    out
}

/// A header name in Go's canonical form: `content-type` → `Content-Type`.
fn canonical(name: &str) -> String {
    let mut up = true;
    name.chars()
        .map(|c| {
            let out = if up { c.to_ascii_uppercase() } else { c };
            up = c == '-';
            out
        })
        .collect()
}

/// `true`/`false` as Go's `strconv.ParseBool` reads them.
fn flag(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A PEM document given inline, or the file holding it.
fn read_pem(
    value: Option<&String>,
    field: &str,
) -> Result<Option<String>, Vec<outrider_blocks::ComponentError>> {
    let Some(v) = value.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.contains("-----BEGIN") {
        return Ok(Some(v.to_owned()));
    }
    std::fs::read_to_string(v).map(Some).map_err(|e| {
        err(
            field,
            format!("{v:?} is neither PEM nor a readable file: {e}"),
        )
    })
}

/// The client's TLS errors name `HTTPEndpoint` fields; here they are metadata.
fn tls_fields(e: &str) -> String {
    e.replace("spec.clientTLS.rootCA", "MTLSRootCA")
        .replace("spec.clientTLS.certificate", "MTLSClientCert")
        .replace("spec.clientTLS.privateKey", "MTLSClientKey")
        .replace("spec.clientTLS", "MTLSClientCert and MTLSClientKey")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_url() {
        assert_eq!(joined_path("", "a/b?x=1").unwrap(), "/a/b?x=1");
        assert_eq!(joined_path("/api", "/v1/items").unwrap(), "/api/v1/items");
        assert_eq!(joined_path("/api", "").unwrap(), "/api/");
        for bad in [
            "../admin",
            "a/../../b",
            "%2e%2e/x",
            "a/./b",
            "a b",
            "a\nb",
            "..%2F..%2Fadmin",
        ] {
            assert!(joined_path("/api", bad).is_err(), "{bad}");
        }
        // Whatever it holds, the path is a path: the host is the URL's.
        let p = joined_path("", "@evil.example/x").unwrap();
        assert_eq!(p, "/@evil.example/x");
        let p = joined_path("", "/http://evil.example/").unwrap();
        assert!(p.starts_with("/http:"), "{p}");
    }

    #[test]
    fn headers_read_as_go_writes_them() {
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("x-request-id"), "X-Request-Id");
        let mut h = HeaderMap::new();
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        assert_eq!(headers_metadata(&h)["Set-Cookie"], "a=1, b=2");
        assert_eq!(flag("True"), Some(true));
        assert_eq!(flag("no"), None);
    }
}
