//! Errors of the data path and the one place that turns them into HTTP responses.
//!
//! Inner code returns typed errors that know which side failed and whether another attempt
//! could succeed; [`ApiError`] is the only conversion to a status code and Dapr's
//! `{"errorCode","message"}` body.

use http::{HeaderValue, Response, StatusCode, header};
use outrider_discovery::Target;
use outrider_filters::normalize::Rejection;
use outrider_filters::resiliency::classify::{Failed, FailureKind, StackError};

use crate::net::http::{Body, BoxError, full};

/// Which side of the sidecar a failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureSide {
    /// The caller sent something unusable.
    Downstream,
    /// A peer sidecar, the network or the app failed.
    Upstream,
}

/// Why an invocation failed before an app answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvokeError {
    #[error("failed getting app id either from the URL path or the header dapr-app-id")]
    NoAppId,
    #[error(
        "invalid app id {0:?}: expected `app-id` or `app-id.namespace` of letters, digits, '-' and '_'"
    )]
    InvalidAppId(String),
    #[error(
        "the URL {0:?} is not under the base URL of any HTTPEndpoint resource; declare one to call it"
    )]
    ExternalUrl(String),
    #[error("invalid method path: {0}")]
    BadPath(Rejection),
    #[error("{0}")]
    Denied(Box<outrider_filters::authz::Denied>),
    #[error("the request body is larger than the limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("the request body is malformed or was cut off")]
    MalformedBody,
    #[error("the request body paused for longer than {0:?}")]
    BodyPaused(std::time::Duration),
    #[error("no endpoints found for app {}{}", .0, .1.as_deref().map(|why| format!(": {why}")).unwrap_or_default())]
    NoEndpoints(Target, Option<String>),
    #[error("connecting to {target} at {addr} failed: {}", chain(source.as_ref()))]
    Connect {
        target: Target,
        addr: std::net::SocketAddr,
        source: BoxError,
    },
    #[error("the request to {target} failed: {}", chain(source.as_ref()))]
    Upstream { target: Target, source: BoxError },
    #[error("calling the HTTP endpoint {endpoint} failed: {}", chain(source.as_ref()))]
    Endpoint {
        endpoint: String,
        /// The connection failed: the request was not sent.
        unsent: bool,
        source: BoxError,
    },
    #[error("the request to {target} {source}")]
    Timeout {
        /// The app (`id.namespace`) or HTTP endpoint.
        target: String,
        source: outrider_filters::resiliency::timeout::TimedOut,
    },
    #[error("{0}")]
    BreakerOpen(outrider_filters::resiliency::breaker::Refused),
    #[error("app channel is not initialized: this sidecar has no --app-port")]
    NoAppChannel,
    #[error("error invoking app channel: {}", chain(.0.as_ref()))]
    AppChannel(BoxError),
    #[error("error invoking app channel: app is not in a healthy state")]
    AppUnhealthy,
    #[error(
        "error invoking app channel: the app has {max} requests in flight \
         (--app-max-concurrency) and {waiting} waiting for a slot; try again later"
    )]
    AppBusy { max: usize, waiting: usize },
}

impl From<outrider_filters::authz::Denied> for InvokeError {
    fn from(d: outrider_filters::authz::Denied) -> Self {
        Self::Denied(Box::new(d))
    }
}

impl From<Rejection> for InvokeError {
    fn from(r: Rejection) -> Self {
        Self::BadPath(r)
    }
}

impl Failed for InvokeError {
    fn kind(&self) -> FailureKind {
        if self.never_sent() {
            FailureKind::Unsent
        } else {
            FailureKind::Sent
        }
    }
}

impl InvokeError {
    /// The error a resiliency stack returned for `target`: the call's own, or a layer's.
    pub(crate) fn from_stack(e: StackError<InvokeError>, target: &dyn std::fmt::Display) -> Self {
        match e {
            StackError::Call(e) => e,
            StackError::TimedOut(source) => Self::Timeout {
                target: target.to_string(),
                source,
            },
            StackError::Refused(r) => Self::BreakerOpen(r),
        }
    }

    /// Whether the request never left this sidecar for an endpoint: the connection failed, so
    /// sending it again is always safe. No endpoint at all is not one of these: sending again at
    /// once would not help, and the built-in retries must not keep a caller of a vanished app
    /// waiting.
    pub(crate) fn never_sent(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Endpoint { unsent: true, .. }
        )
    }

    /// Whether the failed call was for an app that exists: only those are counted in the
    /// invocation metrics, so the destination label stays within the apps of the mesh.
    pub(crate) fn names_a_known_target(&self) -> bool {
        !matches!(
            self,
            Self::NoEndpoints(..) | Self::InvalidAppId(_) | Self::NoAppChannel
        )
    }

    /// Which side failed.
    pub(crate) fn side(&self) -> FailureSide {
        match self {
            Self::NoAppId
            | Self::InvalidAppId(_)
            | Self::ExternalUrl(_)
            | Self::BadPath(_)
            | Self::Denied(_)
            | Self::BodyTooLarge(_)
            | Self::MalformedBody
            | Self::BodyPaused(_) => FailureSide::Downstream,
            _ => FailureSide::Upstream,
        }
    }

    /// The status the caller sees.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NoAppId => StatusCode::NOT_FOUND,
            Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BreakerOpen(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyPaused(_) => StatusCode::REQUEST_TIMEOUT,
            _ if self.side() == FailureSide::Downstream => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The answer to a request whose handling panicked: a bug, logged and counted, never a dead
/// connection or process.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response<Body> {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    crate::telemetry::metrics::PANICS.counter(&[]).increment(1);
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_INTERNAL",
        "internal error",
    )
    .into_response()
}

/// An error as the app-facing API reports it.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// daprd's reason for the errors it describes richly when the code alone does not say it
    /// (`DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED`): the gRPC API's error details name it.
    pub(crate) reason: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            reason: None,
        }
    }

    /// This error with daprd's `reason`.
    pub(crate) fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// An invocation failure, worded as Dapr words it.
    pub(crate) fn invoke(app_id: &str, e: &InvokeError) -> Self {
        let message = match e {
            InvokeError::NoAppId => e.to_string(),
            // The caller's own mistake: Dapr's code for a bad request, and no internals.
            InvokeError::MalformedBody => {
                return Self::new(e.status(), "ERR_MALFORMED_REQUEST", e.to_string());
            }
            InvokeError::BodyPaused(_) => {
                return Self::new(e.status(), "ERR_BODY_READ", e.to_string());
            }
            _ => format!("failed to invoke, id: {app_id}, err: {e}"),
        };
        Self::new(e.status(), "ERR_DIRECT_INVOKE", message)
    }

    /// A request refused at the edge.
    pub(crate) fn edge(r: Rejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ERR_BAD_REQUEST", r.to_string())
    }

    /// The response: Dapr's error body.
    pub(crate) fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({"errorCode": self.code, "message": self.message});
        let mut rsp = Response::new(full(body.to_string()));
        *rsp.status_mut() = self.status;
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        rsp
    }
}

/// An error and its causes, outermost first: `client error (Connect): tls: …`.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases: Vec<(InvokeError, u16)> = vec![
            (InvokeError::NoAppId, 404),
            (InvokeError::InvalidAppId("a.b.c".into()), 400),
            (InvokeError::ExternalUrl("http://x".into()), 400),
            (InvokeError::BadPath(Rejection::ControlChar), 400),
            (InvokeError::BodyTooLarge(1), 413),
            (
                InvokeError::NoEndpoints(Target::new("b", "default"), None),
                500,
            ),
            (InvokeError::NoAppChannel, 500),
        ];
        for (e, status) in cases {
            let api = ApiError::invoke("b", &e);
            assert_eq!(
                (api.status.as_u16(), api.code),
                (status, "ERR_DIRECT_INVOKE"),
                "{e}"
            );
        }
        // A malformed body is the caller's own mistake, and says nothing of internals.
        let api = ApiError::invoke("b", &InvokeError::MalformedBody);
        assert_eq!(
            (api.status.as_u16(), api.code),
            (400, "ERR_MALFORMED_REQUEST")
        );
        assert_eq!(api.message, "the request body is malformed or was cut off");
        let api = ApiError::invoke(
            "b",
            &InvokeError::NoEndpoints(Target::new("b", "default"), None),
        );
        assert_eq!(
            api.message,
            "failed to invoke, id: b, err: no endpoints found for app b.default"
        );
    }
}
