//! Retries: another attempt after a failure the policy retries, after the policy's wait.
//!
//! The layer sits above the breaker and the timeout (retry(breaker(timeout(call)))) and above the
//! balancer, so every attempt picks its endpoint afresh. A request is sent again only when it can
//! be ([`Replay`]: an HTTP body is kept for replay only up to a bounded size). What is retried:
//! - a request that never left (no endpoint, connection refused): always;
//! - a breaker's refusal: never;
//! - under a `Resiliency` policy, any other error (a timeout, a reset);
//! - an answer with a status the policy's `matching.httpStatusCodes` lists, or, without that
//!   list, 502, 503, 504, and 429 when it says when to come back (`Retry-After`, honoured up to
//!   [`MAX_RETRY_AFTER`]).
//!
//! The built-in policy (used when no `Resiliency` applies) retries only the first and the last
//! kind: it never re-sends a request that timed out or was cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt as _};

use super::classify::{Classify, Failure, FailureKind, Verdict};
use super::{Labels, RetryPolicy};

/// The shortest wait between attempts.
pub const MIN_WAIT: Duration = Duration::from_millis(10);

/// The longest `Retry-After` honoured; a target asking for more gets its answer passed back.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A request that may be sent again.
pub trait Replay: Sized {
    /// A copy to send again, or `None` when this request cannot be replayed.
    fn replay(&self) -> Option<Self>;
}

/// A request that is replayed by cloning it (for requests that are plain values, such as a
/// component call).
#[derive(Clone, Debug)]
pub struct Cloned<T>(pub T);

impl<T: Clone> Replay for Cloned<T> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

/// A retry policy as a layer sees it.
#[derive(Clone, Debug)]
pub struct Retrying {
    /// The policy's name, for logs and metrics.
    pub name: String,
    /// The policy.
    pub policy: RetryPolicy,
    /// The built-in default rather than a configured policy.
    pub builtin: bool,
}

impl Retrying {
    /// Whether `failure` is retried at all (the wait is the policy's business).
    pub fn retries(&self, failure: &Failure) -> bool {
        if let (FailureKind::Sent, Some(code)) = (failure.kind, failure.grpc) {
            // A configured policy retries every gRPC error unless it lists codes; the built-in
            // one none (the app answered).
            return match &self.policy.grpc_codes {
                Some(ranges) => ranges.iter().any(|r| r.contains(&code)),
                None => !self.builtin,
            };
        }
        match (failure.kind, failure.status) {
            (FailureKind::Refused, _) => false,
            (FailureKind::Unsent, _) => true,
            (FailureKind::Sent, None) => !self.builtin,
            (FailureKind::Sent, Some(status)) => match &self.policy.http_codes {
                Some(ranges) => ranges.iter().any(|r| r.contains(&status)),
                None => match status {
                    502..=504 => true,
                    429 => failure.retry_after.is_some(),
                    _ => false,
                },
            },
        }
    }

    /// Whether the policy's `matching.httpStatusCodes` lists `code`.
    pub fn lists(&self, code: u16) -> bool {
        self.policy
            .http_codes
            .as_ref()
            .is_some_and(|ranges| ranges.iter().any(|r| r.contains(&code)))
    }

    /// The wait before retry number `retry` (0: the first), or `None` to stop. Never shorter than
    /// [`MIN_WAIT`], so a policy with a zero interval and no retry limit cannot spin.
    pub fn wait(
        &self,
        retry: u32,
        elapsed: Duration,
        failure: &Failure,
        jitter: f64,
    ) -> Option<Duration> {
        let wait = self.policy.delay(retry, elapsed, jitter)?.max(MIN_WAIT);
        match failure.retry_after {
            Some(asked) if asked > MAX_RETRY_AFTER => None,
            Some(asked) => Some(asked.max(wait)),
            None => Some(wait),
        }
    }
}

/// Retries calls by a [`Retrying`] policy.
#[derive(Clone, Debug)]
pub struct Retry<S, C> {
    inner: S,
    retrying: Arc<Retrying>,
    classify: C,
    labels: Option<Arc<Labels>>,
}

/// Applies [`Retry`].
#[derive(Clone, Debug)]
pub struct RetryLayer<C> {
    retrying: Arc<Retrying>,
    classify: C,
    labels: Option<Arc<Labels>>,
}

impl<C> RetryLayer<C> {
    /// Retries by `retrying`, judging outcomes with `classify`; retries are counted with `labels`.
    pub fn new(retrying: Retrying, classify: C, labels: Labels) -> Self {
        Self {
            retrying: Arc::new(retrying),
            classify,
            labels: Some(Arc::new(labels)),
        }
    }

    /// Retries that are the product's own fixed behaviour rather than a `Resiliency` policy
    /// (tries before dead-lettering): not counted in the resiliency metrics.
    pub fn uncounted(retrying: Retrying, classify: C) -> Self {
        Self {
            retrying: Arc::new(retrying),
            classify,
            labels: None,
        }
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            retrying: self.retrying.clone(),
            classify: self.classify.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// Future of [`Retry`].
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, C, Req> Service<Req> for Retry<S, C>
where
    Req: Replay + Send + 'static,
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    C: Classify<S::Response, S::Error> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The readied service takes the first attempt; later ones wait for readiness themselves.
        let clone = self.inner.clone();
        let mut first = std::mem::replace(&mut self.inner, clone);
        let (mut inner, retrying, classify, labels) = (
            self.inner.clone(),
            self.retrying.clone(),
            self.classify.clone(),
            self.labels.clone(),
        );
        Box::pin(async move {
            let start = Instant::now();
            let mut copy = req.replay();
            let mut result = first.call(req).await;
            let mut retry = 0;
            loop {
                let Some(failure) = failure_of(&classify, &retrying, &result) else {
                    return result;
                };
                let Some(next) = copy.take() else {
                    return result;
                };
                if !retrying.retries(&failure) {
                    return result;
                }
                let Some(wait) = retrying.wait(retry, start.elapsed(), &failure, jitter()) else {
                    return result;
                };
                tracing::debug!(policy = %retrying.name, retry = retry + 1, ?wait, ?failure, "retrying");
                if let Some(labels) = &labels {
                    labels.activation("retry", &retrying.name);
                }
                drop(result);
                tokio::time::sleep(wait).await;
                copy = next.replay();
                result = async { inner.ready().await?.call(next).await }.await;
                retry += 1;
            }
        })
    }
}

/// The failure `result` is, `None` when it is a success to pass back. An answer the classifier
/// accepts is still a failure when the policy lists its status.
fn failure_of<R, E, C: Classify<R, E>>(
    classify: &C,
    retrying: &Retrying,
    result: &Result<R, E>,
) -> Option<Failure> {
    match classify.verdict(result) {
        Verdict::Failure(failure) => Some(failure),
        Verdict::Success => match classify.answer_status(result) {
            Some(code) if retrying.lists(code) => Some(Failure::answer(Some(code))),
            _ => None,
        },
    }
}

/// A uniform random number in `[0, 1)` for the backoff's jitter.
fn jitter() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests;
