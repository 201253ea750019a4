//! A deadline per attempt: the call fails with [`TimedOut`] (converted into the service's own
//! error type) when it takes longer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use super::Labels;

/// A call that ran past its timeout policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct TimedOut(pub Duration);

/// Fails calls that take longer than the policy allows.
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    after: Duration,
    name: Arc<str>,
    labels: Arc<Labels>,
}

/// Applies [`Timeout`].
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    after: Duration,
    name: Arc<str>,
    labels: Arc<Labels>,
}

impl TimeoutLayer {
    /// Calls time out after `after` (timeout policy `name`; hits are counted with `labels`).
    pub fn new(name: &str, after: Duration, labels: Labels) -> Self {
        Self {
            after,
            name: name.into(),
            labels: Arc::new(labels),
        }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            after: self.after,
            name: self.name.clone(),
            labels: self.labels.clone(),
        }
    }
}

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: From<TimedOut>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep(self.after),
            after: self.after,
            name: self.name.clone(),
            labels: self.labels.clone(),
        }
    }
}

pin_project! {
    /// Future of [`Timeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        after: Duration,
        name: Arc<str>,
        labels: Arc<Labels>,
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: From<TimedOut>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.inner.poll(cx) {
            return Poll::Ready(r);
        }
        std::task::ready!(this.sleep.poll(cx));
        this.labels.activation("timeout", this.name);
        Poll::Ready(Err(TimedOut(*this.after).into()))
    }
}
