//! Output binding operations (`POST|PUT /v1.0/bindings/{name}`, `InvokeBinding`), whatever the
//! transport: the binding a request names, the operations it serves, and daprd's one error for
//! every failure (`ERR_INVOKE_OUTPUT_BINDING`, 500, naming the binding).

use std::time::{Duration, Instant};

use http::StatusCode;
use outrider_blocks::bindings::{InvokeRequest, InvokeResponse};

use super::ApiState;
use crate::errors::ApiError;
use crate::telemetry::metrics;

/// How long an output binding call may take when no resiliency policy sets a timeout for it
/// (components may set a shorter one of their own, such as `bindings.http`'s
/// `responseTimeout`).
pub(crate) const BINDING_TIMEOUT: Duration = Duration::from_secs(60);

fn failed(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_INVOKE_OUTPUT_BINDING",
        format!("error invoking output binding {name}: {why}"),
    )
}

/// Calls binding `name`; `None` when the operation answers nothing.
pub(crate) async fn invoke(
    s: &ApiState,
    name: &str,
    req: InvokeRequest,
) -> Result<Option<InvokeResponse>, ApiError> {
    if req.operation.is_empty() {
        return Err(failed(name, "operation field is missing from request"));
    }
    let Some(output) = s.bindings.get(name).and_then(|b| b.output.as_ref()) else {
        return Err(failed(name, format!("couldn't find output binding {name}")));
    };
    let ops = output.operations();
    if !ops.contains(&req.operation.as_str()) {
        return Err(failed(
            name,
            format!(
                "binding {name} does not support operation {}. supported operations:{}",
                req.operation,
                ops.join(" ")
            ),
        ));
    }
    let operation = ops
        .iter()
        .find(|op| **op == req.operation)
        .copied()
        .unwrap_or_default();
    let started = std::time::Instant::now();
    let result = output.invoke(req).await;
    record(s, name, operation, result.is_ok(), started);
    result.map_err(|e| failed(name, e))
}

/// Counts one call under `dapr_component_output_binding_*`; `operation` is one the binding
/// declares, so the label's values stay bounded.
fn record(s: &ApiState, name: &str, operation: &str, success: bool, started: Instant) {
    let labels = [
        ("app_id", s.app_id.clone()),
        ("component", name.to_owned()),
        ("namespace", s.namespace.clone()),
        ("operation", operation.to_owned()),
        ("success", success.to_string()),
    ];
    metrics::OUTPUT_BINDING_COUNT.counter(&labels).increment(1);
    metrics::OUTPUT_BINDING_LATENCIES
        .histogram(&labels)
        .record(started.elapsed().as_secs_f64() * 1000.0);
}
