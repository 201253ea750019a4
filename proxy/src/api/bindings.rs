//! Output binding operations (`POST|PUT /v1.0/bindings/{name}`, `InvokeBinding`), whatever the
//! transport: the binding a request names, the operations it serves, and daprd's one error for
//! every failure (`ERR_INVOKE_OUTPUT_BINDING`, 500, naming the binding).

use http::StatusCode;
use outrider_blocks::bindings::{InvokeRequest, InvokeResponse};

use super::ApiState;
use crate::errors::ApiError;

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
    let Some(b) = s.bindings.get(name) else {
        return Err(failed(name, format!("couldn't find output binding {name}")));
    };
    let ops = b.output.operations();
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
    b.output.invoke(req).await.map_err(|e| failed(name, e))
}
