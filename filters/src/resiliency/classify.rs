//! How the resiliency layers judge an outcome: success, or a failure with what is known about it.

use std::time::Duration;

use tower::BoxError;

use super::breaker::Refused;
use super::timeout::TimedOut;

/// The judgement of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It worked (for a breaker: the target is healthy).
    Success,
    /// It failed.
    Failure(Failure),
}

/// What is known about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where the request got to.
    pub kind: FailureKind,
    /// The answer's status code, when there was an answer.
    pub status: Option<u16>,
    /// How long the target asked the caller to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// Where a failed request got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// It never left: no endpoint, or the connection failed. Always safe to send again.
    Unsent,
    /// It was sent (a timeout, a reset, or an answer with a failing status).
    Sent,
    /// A breaker refused it: never retried.
    Refused,
}

/// Judges outcomes of type `Result<R, BoxError>`.
pub trait Classify<R> {
    /// The verdict on `result`.
    fn verdict(&self, result: &Result<R, BoxError>) -> Verdict;

    /// The status code of an answer, for retry policies that list codes this classifier calls a
    /// success (a policy may retry a 404; a breaker never counts one).
    fn answer_status(&self, _result: &Result<R, BoxError>) -> Option<u16> {
        None
    }
}

/// Judges HTTP responses: 5xx and 429 are failures (with `Retry-After` read from the answer),
/// other statuses are successes. Errors are failures; `unsent` says which errors mean the
/// request never left (the caller's own error types know that, this crate does not).
#[derive(Clone, Copy, Debug)]
pub struct HttpClassify {
    /// Whether an error means the request was never sent.
    pub unsent: fn(&(dyn std::error::Error + 'static)) -> bool,
}

impl<B> Classify<http::Response<B>> for HttpClassify {
    fn verdict(&self, result: &Result<http::Response<B>, BoxError>) -> Verdict {
        match result {
            Ok(rsp) => {
                let status = rsp.status();
                if !status.is_server_error() && status != http::StatusCode::TOO_MANY_REQUESTS {
                    return Verdict::Success;
                }
                let retry_after = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Verdict::Failure(Failure {
                    kind: FailureKind::Sent,
                    status: Some(status.as_u16()),
                    retry_after,
                })
            }
            Err(e) => Verdict::Failure(Failure {
                kind: error_kind(e.as_ref(), self.unsent),
                status: None,
                retry_after: None,
            }),
        }
    }

    fn answer_status(&self, result: &Result<http::Response<B>, BoxError>) -> Option<u16> {
        result.as_ref().ok().map(|rsp| rsp.status().as_u16())
    }
}

/// The kind of an error: our own layers' errors are known here, the rest is asked of `unsent`.
pub fn error_kind(
    e: &(dyn std::error::Error + 'static),
    unsent: fn(&(dyn std::error::Error + 'static)) -> bool,
) -> FailureKind {
    if e.is::<Refused>() {
        FailureKind::Refused
    } else if e.is::<TimedOut>() {
        FailureKind::Sent
    } else if unsent(e) {
        FailureKind::Unsent
    } else {
        FailureKind::Sent
    }
}
