//! One call into a state store: through the component's resiliency stack (or under
//! [`STORE_TIMEOUT`] when it has none), counted with Dapr's component metrics, and the store's
//! answer checked for the shape the operation expects.

use std::time::Duration;

use http::StatusCode;
use outrider_blocks::state::{
    Item, Metadata, StateComponent, StateError, StateRequest, StateResponse,
};
use tower::ServiceExt;

use crate::api::ApiState;
use crate::errors::ApiError;

/// How long one store call may take before the API answers with an error.
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whom store calls are counted for.
#[derive(Clone, Copy)]
pub(super) struct Counted<'a> {
    app_id: &'a str,
    namespace: &'a str,
}

impl<'a> From<&'a ApiState> for Counted<'a> {
    fn from(s: &'a ApiState) -> Self {
        Counted {
            app_id: &s.app_id,
            namespace: &s.namespace,
        }
    }
}

/// Sends one request through the store's service, under the deadline, and counts it with
/// Dapr's component metrics.
pub(super) async fn call(
    who: Counted<'_>,
    c: &StateComponent,
    req: StateRequest,
) -> Result<StateResponse, StateError> {
    let operation = match &req {
        StateRequest::Get { .. } => "get",
        StateRequest::Set(_) => "set",
        StateRequest::Delete(_) => "delete",
        StateRequest::Multi(_) => "transaction",
        StateRequest::Query { .. } => "query",
    };
    let started = std::time::Instant::now();
    let result = match &c.layered {
        // Resiliency policies apply: their timeout is the deadline.
        Some(svc) => svc.clone().oneshot(req).await,
        None => tokio::time::timeout(STORE_TIMEOUT, c.service().oneshot(req))
            .await
            .unwrap_or(Err(StateError::Timeout(STORE_TIMEOUT))),
    };
    // A mismatched ETag or a bad request is the store answering: only failures count as such.
    let success = result.as_ref().err().is_none_or(|e| !e.is_retryable());
    let labels = [
        ("app_id", who.app_id.to_owned()),
        ("component", c.name.clone()),
        ("namespace", who.namespace.to_owned()),
        ("operation", operation.to_owned()),
        ("success", success.to_string()),
    ];
    crate::telemetry::metrics::STATE_COUNT
        .counter(&labels)
        .increment(1);
    crate::telemetry::metrics::STATE_LATENCIES
        .histogram(&labels)
        .record(started.elapsed().as_secs_f64() * 1000.0);
    result
}

/// A write, delete or transaction through the service.
pub(super) async fn call_done(
    who: Counted<'_>,
    c: &StateComponent,
    req: StateRequest,
) -> Result<(), StateError> {
    match call(who, c, req).await? {
        StateResponse::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}

/// A read through the service.
pub(super) async fn call_get(
    who: Counted<'_>,
    c: &StateComponent,
    key: String,
    metadata: Metadata,
) -> Result<Option<Item>, StateError> {
    match call(who, c, StateRequest::Get { key, metadata }).await? {
        StateResponse::Item(item) => Ok(item),
        other => Err(unexpected(&other)),
    }
}

/// A store that answered a request with the answer to another kind of request.
pub(super) fn unexpected(answer: &StateResponse) -> StateError {
    StateError::Store(format!("unexpected answer from the store: {answer:?}").into())
}

/// Maps a store failure of a single-key operation: 409 for a mismatch, 400 for bad input.
pub(super) fn store_error(code: &'static str, message: String, e: &StateError) -> ApiError {
    let status = match e {
        StateError::EtagMismatch(_) => StatusCode::CONFLICT,
        StateError::EtagInvalid(_) | StateError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, code, message)
}
