//! Input bindings to a gRPC app: the question for the bindings it takes becomes
//! `ListInputBindings` (answered as a JSON array of names), and an event becomes
//! `OnBindingEvent` (answered with an empty 200 when handled, a 500 naming the app's error
//! when not).

use http::{Request, Response, StatusCode};
use serde_json::json;

use super::{GrpcApp, counted, json_answer, metadata, read};
use crate::errors::InvokeError;
use crate::net::http::{Body, full};
use crate::to_app::bindings::BindingDelivery;
use outrider_proto::runtime::v1 as rt;

impl GrpcApp {
    /// `ListInputBindings`; an app that does not implement it takes none.
    pub(super) async fn input_bindings(&self) -> Result<Response<Body>, InvokeError> {
        let mut c = self.callback.clone();
        let started = std::time::Instant::now();
        let listed = c.list_input_bindings(tonic::Request::new(())).await;
        counted(&self.app_id, "ListInputBindings", started, &listed);
        match listed {
            Ok(rsp) => Ok(json_answer(
                StatusCode::OK,
                &json!(rsp.into_inner().bindings),
            )),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                Ok(json_answer(StatusCode::OK, &json!([])))
            }
            Err(s) => Err(InvokeError::AppChannel(Box::new(s))),
        }
    }

    /// One event as `OnBindingEvent`.
    pub(super) async fn binding_event(
        &self,
        req: Request<Body>,
        delivery: &BindingDelivery,
    ) -> Result<Response<Body>, InvokeError> {
        let (parts, body) = req.into_parts();
        let data = read(body, self.limit).await?;
        let mut call = tonic::Request::new(rt::BindingEventRequest {
            name: delivery.name.clone(),
            data,
            metadata: delivery.metadata.clone().into_iter().collect(),
        });
        *call.metadata_mut() = metadata(&parts.headers);
        let mut c = self.callback.clone();
        let started = std::time::Instant::now();
        let answered = c.on_binding_event(call).await;
        counted(&self.app_id, "OnBindingEvent", started, &answered);
        match answered {
            Ok(_) => Ok(Response::new(full(""))),
            Err(s) => {
                tracing::info!(binding = %delivery.name, code = ?s.code(), message = s.message(), "the app failed an input binding event");
                Ok(json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"message": s.message()}),
                ))
            }
        }
    }
}
