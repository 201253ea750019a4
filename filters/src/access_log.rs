//! A `tracing` span per API request, and the API access log (`--enable-api-logging`).
//!
//! Every request runs inside a span naming the app id, the method and, once the router has
//! matched it, the route template, so every log line an inner layer writes carries them. With the
//! access log on, each completed request also logs one line: method, path, status, duration and
//! user agent. What is logged is chosen, never dumped: no header other than the user agent, no
//! query string (it may carry tokens), and with `obfuscateURLs` the route template instead of
//! the path (whose ids may be personal data). Tokens, `authorization` and cookies never appear.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::RouteLabel;

/// What the access log writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Log one line per request.
    pub enabled: bool,
    /// Log the route template instead of the path.
    pub obfuscate_urls: bool,
    /// Leave health checks out.
    pub omit_health_checks: bool,
}

/// Wraps each request in a span and logs it when configured to.
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
    app_id: Arc<str>,
    config: AccessLogConfig,
}

/// Applies [`AccessLog`].
#[derive(Clone, Debug)]
pub struct AccessLogLayer {
    app_id: Arc<str>,
    config: AccessLogConfig,
}

impl AccessLogLayer {
    /// Spans labelled with `app_id`; lines as `config` says.
    pub fn new(app_id: &str, config: AccessLogConfig) -> Self {
        Self {
            app_id: app_id.into(),
            config,
        }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            app_id: self.app_id.clone(),
            config: self.config,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = crate::metrics::method_label(req.method());
        let span = tracing::info_span!(
            "api",
            app_id = %self.app_id,
            method = %method,
            route = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let health = is_health(req.uri().path());
        let line =
            (self.config.enabled && !(health && self.config.omit_health_checks)).then(|| Line {
                path: (!self.config.obfuscate_urls).then(|| req.uri().path().to_owned()),
                user_agent: req
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(200).collect())
                    .unwrap_or_default(),
            });
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            span,
            method,
            line,
            start: Instant::now(),
        }
    }
}

/// What a logged request line needs from the request.
struct Line {
    /// `None` when URLs are obfuscated.
    path: Option<String>,
    user_agent: String,
}

fn is_health(path: &str) -> bool {
    path == "/v1.0/healthz" || path == "/v1.0/healthz/outbound"
}

pin_project! {
    /// Future of [`AccessLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        method: &'static str,
        line: Option<Line>,
        start: Instant,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = std::task::ready!(this.inner.poll(cx));
        let (status, route) = match &result {
            Ok(rsp) => (
                rsp.status().as_u16(),
                rsp.extensions()
                    .get::<RouteLabel>()
                    .map_or("other", |r| r.0),
            ),
            Err(_) => (500, "other"),
        };
        this.span.record("route", tracing::field::display(route));
        this.span.record("status", status);
        if let Some(line) = this.line.take() {
            tracing::info!(
                method = %this.method,
                path = %line.path.as_deref().unwrap_or(route),
                status,
                duration_ms = this.start.elapsed().as_secs_f64() * 1000.0,
                user_agent = %line.user_agent,
                "HTTP API called"
            );
        }
        Poll::Ready(result)
    }
}
