//! How the resiliency layers judge an outcome: success, or a failure with what is known about it.
//!
//! The layers pass typed errors through: a call's own error travels as [`StackError::Call`], and
//! the layers add their own two ([`TimedOut`], [`Refused`]). Classifiers match on those types: an
//! error that knows where its request got to says so ([`Failed`]); the errors of calls that
//! cannot tell (a store, a broker, the app) count as sent ([`StackError::kind_if_sent`]). No
//! layer inspects an error by its dynamic type.

use std::convert::Infallible;
use std::time::Duration;

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
    /// The gRPC status of an answer that is a gRPC error (HTTP 200 with `grpc-status` in its
    /// head).
    pub grpc: Option<u16>,
    /// How long the target asked the caller to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure with no answer: an error of `kind`.
    pub fn error(kind: FailureKind) -> Self {
        Self {
            kind,
            status: None,
            grpc: None,
            retry_after: None,
        }
    }

    /// A failing answer with `status` (when the target gave one).
    pub fn answer(status: Option<u16>) -> Self {
        Self {
            kind: FailureKind::Sent,
            status,
            grpc: None,
            retry_after: None,
        }
    }
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

/// An error that says where its failed request got to.
pub trait Failed {
    /// Where the request got to.
    fn kind(&self) -> FailureKind;
}

impl Failed for Infallible {
    fn kind(&self) -> FailureKind {
        match *self {}
    }
}

/// The error of a call through the resiliency layers: the call's own, or a layer's.
#[derive(Debug, thiserror::Error)]
pub enum StackError<E> {
    /// The call itself failed.
    #[error(transparent)]
    Call(E),
    /// An attempt ran past its timeout policy.
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
    /// An open (or probing) circuit breaker refused the call.
    #[error(transparent)]
    Refused(#[from] Refused),
}

impl<E: Failed> Failed for StackError<E> {
    fn kind(&self) -> FailureKind {
        match self {
            Self::Call(e) => e.kind(),
            Self::TimedOut(_) => FailureKind::Sent,
            Self::Refused(_) => FailureKind::Refused,
        }
    }
}

impl<E> StackError<E> {
    /// Where the request got to when the call's own error is taken as sent (the calls whose
    /// errors cannot tell: a store, a broker, the app).
    pub fn kind_if_sent(&self) -> FailureKind {
        match self {
            Self::Refused(_) => FailureKind::Refused,
            Self::Call(_) | Self::TimedOut(_) => FailureKind::Sent,
        }
    }
}

/// Judges outcomes of type `Result<R, E>`.
pub trait Classify<R, E> {
    /// The verdict on `result`.
    fn verdict(&self, result: &Result<R, E>) -> Verdict;

    /// The status code of an answer, for retry policies that list codes this classifier calls a
    /// success (a policy may retry a 404; a breaker never counts one).
    fn answer_status(&self, _result: &Result<R, E>) -> Option<u16> {
        None
    }
}

/// A non-zero `grpc-status` in the head of a gRPC answer.
fn grpc_error(h: &http::HeaderMap) -> Option<u16> {
    let grpc = h
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let code = h
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u16>()
        .ok()?;
    (grpc && code != 0).then_some(code)
}

/// Judges HTTP responses: 5xx and 429 are failures (with `Retry-After` read from the answer),
/// and so is a gRPC error in the head of an answer; other statuses are successes. Errors are
/// failures of the kind they say.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpClassify;

impl<B, E: Failed> Classify<http::Response<B>, E> for HttpClassify {
    fn verdict(&self, result: &Result<http::Response<B>, E>) -> Verdict {
        match result {
            Ok(rsp) => {
                let status = rsp.status();
                if !status.is_server_error() && status != http::StatusCode::TOO_MANY_REQUESTS {
                    // A gRPC error answered at once has its status in the head; one after data
                    // cannot be retried any more. Only a gRPC answer has one.
                    return match grpc_error(rsp.headers()) {
                        Some(code) => Verdict::Failure(Failure {
                            grpc: Some(code),
                            ..Failure::answer(None)
                        }),
                        None => Verdict::Success,
                    };
                }
                let retry_after = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Verdict::Failure(Failure {
                    retry_after,
                    ..Failure::answer(Some(status.as_u16()))
                })
            }
            Err(e) => Verdict::Failure(Failure::error(e.kind())),
        }
    }

    fn answer_status(&self, result: &Result<http::Response<B>, E>) -> Option<u16> {
        result.as_ref().ok().map(|rsp| rsp.status().as_u16())
    }
}
