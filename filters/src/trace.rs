//! W3C trace context propagation.
//!
//! Every request leaving this layer carries a valid `traceparent` naming a span of this hop: the
//! incoming trace id is kept and a new span id is minted, or a new trace is started when the
//! incoming header is absent or malformed (then `tracestate` is dropped with it). The response
//! gets the same `traceparent` unless the inner service set one. The context is also stored in
//! the request's extensions for logs. With span export configured ([`Spans`]), a sampled request
//! becomes a server span when its response head is ready: app id, route template (or the path on
//! the mesh side), the peer's verified identity, the status.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Request, Response};
use outrider_policy::Caller;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::RouteLabel;
use crate::spans::{SpanKind, SpanRecord, Spans, is_sampled};

// Names, not strings: a header map looks a `&str` up by parsing it into a name first, which is
// costlier than the lookup itself (every request pays it on each of these).
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A parsed `traceparent`: version 00, trace id, parent (span) id and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: u128,
    /// 8 bytes, never all zero.
    pub span_id: u64,
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` value; `None` if it is not a valid version-00 header.
    pub fn parse(v: &str) -> Option<Self> {
        let mut parts = v.trim().split('-');
        let (ver, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, n| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // A future version may append fields; version 00 may not.
        if !lower_hex(ver, 2) || ver == "ff" || (ver == "00" && parts.next().is_some()) {
            return None;
        }
        if !lower_hex(trace, 32) || !lower_hex(span, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let ctx = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (ctx.trace_id != 0 && ctx.span_id != 0).then_some(ctx)
    }

    /// A new root context, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_u128(),
            span_id: random_u64(),
            flags: 1,
        }
    }

    /// A child of this context: same trace, new span.
    pub fn child(&self) -> Self {
        Self {
            span_id: random_u64(),
            ..*self
        }
    }
}

impl TraceContext {
    /// This context as a `traceparent` value, formatted without the `fmt` machinery: it is
    /// written once per request.
    pub fn header_value(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        fn put(out: &mut [u8], v: u128) {
            for (i, b) in out.iter_mut().rev().enumerate() {
                *b = HEX[((v >> (4 * i)) & 0xf) as usize];
            }
        }
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        put(&mut buf[3..35], self.trace_id);
        put(&mut buf[36..52], u128::from(self.span_id));
        put(&mut buf[53..55], u128::from(self.flags));
        HeaderValue::from_bytes(&buf).expect("lowercase hex and dashes are a valid header value")
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

// Ids come from a per-thread generator seeded once: drawing them costs no system call.
fn random_u128() -> u128 {
    fastrand::u128(1..)
}

fn random_u64() -> u64 {
    fastrand::u64(1..)
}

/// Propagates trace context on requests and echoes it on responses; records sampled spans.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    spans: Option<Spans>,
    mesh: bool,
}

/// Applies [`Trace`].
#[derive(Clone, Debug, Default)]
pub struct TraceLayer {
    spans: Option<Spans>,
    mesh: bool,
}

impl TraceLayer {
    /// For the API: propagation only, or also span export to `spans`.
    pub fn new(spans: Option<Spans>) -> Self {
        Self { spans, mesh: false }
    }

    /// For the mesh side, where requests have no route template: spans name the method path.
    pub fn mesh(spans: Option<Spans>) -> Self {
        Self { spans, mesh: true }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            spans: self.spans.clone(),
            mesh: self.mesh,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let parent = req
            .headers()
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        let ctx = match parent {
            Some(p) => p.child(),
            None => {
                req.headers_mut().remove(&TRACESTATE);
                let mut root = TraceContext::new_root();
                if let Some(spans) = &self.spans {
                    root.flags = u8::from(spans.samples_new(root.trace_id));
                }
                root
            }
        };
        let value = ctx.header_value();
        req.headers_mut().insert(&TRACEPARENT, value.clone());
        req.extensions_mut().insert(ctx);
        let pending = self
            .spans
            .as_ref()
            .filter(|_| is_sampled(&ctx))
            .map(|spans| Pending {
                spans: spans.clone(),
                ctx,
                parent: parent.map_or(0, |p| p.span_id),
                method: crate::metrics::method_label(req.method()),
                path: self.mesh.then(|| req.uri().path().to_owned()),
                peer: req.extensions().get::<Arc<Caller>>().map(|c| c.to_string()),
                start: SystemTime::now(),
            });
        ResponseFuture {
            inner: self.inner.call(req),
            value: Some(value),
            pending,
        }
    }
}

/// A span waiting for its response.
struct Pending {
    spans: Spans,
    ctx: TraceContext,
    parent: u64,
    method: &'static str,
    /// The method path, on the mesh side only.
    path: Option<String>,
    peer: Option<String>,
    start: SystemTime,
}

impl Pending {
    fn finish(self, status: Option<u16>, route: Option<RouteLabel>) {
        let mut attributes = vec![
            ("app_id", self.spans.app_id().to_owned()),
            ("http.method", self.method.to_owned()),
        ];
        let name = match (route, self.path) {
            (Some(r), _) => {
                attributes.push(("http.route", r.0.to_owned()));
                format!("{} {}", self.method, r.0)
            }
            // The mesh side has no route template: the method path is the operation.
            (None, Some(path)) => {
                attributes.push(("http.target", path));
                format!("{} (mesh inbound)", self.method)
            }
            // An API request no route took (refused at the edge, unknown path).
            (None, None) => format!("{} other", self.method),
        };
        if let Some(peer) = self.peer {
            attributes.push(("peer.identity", peer));
        }
        if let Some(code) = status {
            attributes.push(("http.status_code", code.to_string()));
        }
        self.spans.record(SpanRecord {
            trace_id: self.ctx.trace_id,
            span_id: self.ctx.span_id,
            parent_span_id: self.parent,
            name: name.into(),
            kind: SpanKind::Server,
            start: self.start,
            end: SystemTime::now(),
            attributes,
            error: status.is_none_or(|c| c >= 500),
        });
    }
}

pin_project! {
    /// Future of [`Trace`]: adds `traceparent` to the response if absent, and records the span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        value: Option<HeaderValue>,
        pending: Option<Pending>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(p) = this.pending.take() {
            match &result {
                Ok(rsp) => p.finish(
                    Some(rsp.status().as_u16()),
                    rsp.extensions().get::<RouteLabel>().copied(),
                ),
                Err(_) => p.finish(None, None),
            }
        }
        let mut rsp = result?;
        if let Some(v) = this.value.take() {
            rsp.headers_mut().entry(&TRACEPARENT).or_insert(v);
        }
        Poll::Ready(Ok(rsp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    #[test]
    fn parse_table() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(good).unwrap();
        assert_eq!(ctx.to_string(), good);
        assert_eq!(ctx.header_value(), good);
        let edges = TraceContext {
            trace_id: u128::MAX,
            span_id: 1,
            flags: 0xa5,
        };
        assert_eq!(edges.header_value(), edges.to_string().as_str());
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    async fn run(headers: &[(&str, &str)]) -> http::HeaderMap {
        let svc = TraceLayer::default().layer(service_fn(|req: Request<()>| async move {
            let seen = req.headers().clone();
            let mut rsp = Response::new(());
            *rsp.headers_mut() = seen.clone();
            Ok::<_, Infallible>(rsp)
        }));
        let mut req = Request::new(());
        for (k, v) in headers {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let rsp = svc.oneshot(req).await.unwrap();
        rsp.headers().clone()
    }

    #[tokio::test]
    async fn continues_a_valid_trace_with_a_new_span() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let seen = run(&[("traceparent", parent), ("tracestate", "a=b")]).await;
        let ctx = TraceContext::parse(seen["traceparent"].to_str().unwrap()).unwrap();
        assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_ne!(ctx.span_id, 0x00f067aa0ba902b7);
        assert_eq!(seen["tracestate"], "a=b");
    }

    #[tokio::test]
    async fn starts_a_trace_when_absent_or_malformed() {
        for headers in [
            &[][..],
            &[("traceparent", "garbage"), ("tracestate", "a=b")][..],
        ] {
            let seen = run(headers).await;
            assert!(TraceContext::parse(seen["traceparent"].to_str().unwrap()).is_some());
            assert!(seen.get("tracestate").is_none());
        }
    }

    #[tokio::test]
    async fn response_gets_traceparent_unless_set() {
        let svc = TraceLayer::default().layer(service_fn(|_req: Request<()>| async {
            let mut rsp = Response::new(());
            rsp.headers_mut()
                .insert("traceparent", "kept".parse().unwrap());
            Ok::<_, Infallible>(rsp)
        }));
        let rsp = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(rsp.headers()["traceparent"], "kept");
        let svc = TraceLayer::default().layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
        let rsp = svc.oneshot(Request::new(())).await.unwrap();
        assert!(TraceContext::parse(rsp.headers()["traceparent"].to_str().unwrap()).is_some());
    }
}
