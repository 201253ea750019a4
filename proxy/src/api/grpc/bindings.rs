//! The gRPC codec of output bindings: `InvokeBinding` as the typed request of
//! [`crate::api::bindings`] (the data passed on as sent).

use outrider_blocks::bindings::InvokeRequest;
use outrider_proto::runtime::v1 as rt;
use tonic::Status;

use super::status::from_api_for;
use crate::api::ApiState;
use crate::api::bindings;

pub(super) async fn invoke(
    s: &ApiState,
    req: rt::InvokeBindingRequest,
) -> Result<rt::InvokeBindingResponse, Status> {
    let name = req.name;
    let call = InvokeRequest {
        operation: req.operation,
        data: req.data,
        metadata: req.metadata,
    };
    let answer = bindings::invoke(s, &name, call)
        .await
        .map_err(|e| from_api_for(e, &name))?;
    Ok(
        answer.map_or_else(Default::default, |a| rt::InvokeBindingResponse {
            data: a.data,
            metadata: a.metadata,
        }),
    )
}
