//! Input bindings and jobs to a gRPC app: the question for the bindings it takes becomes
//! `ListInputBindings` (answered as a JSON array of names), an event `OnBindingEvent`, and a due
//! job `OnJobEvent` (each answered with an empty 200 when handled, a 500 naming the app's error
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

/// Marks the sidecar's own delivery of a due job: its name and its data as stored.
#[derive(Clone, Debug)]
pub(crate) struct JobDelivery {
    pub(crate) name: String,
    pub(crate) data: Option<prost_types::Any>,
}

impl GrpcApp {
    /// A due job as `OnJobEvent` (`OnJobEventAlpha1` when the app has only that, as daprd falls
    /// back): answered with an empty 200 when handled, else 500 naming the app's error.
    pub(super) async fn job_event(&self, job: &JobDelivery) -> Result<Response<Body>, InvokeError> {
        use outrider_proto::common::v1::{HttpExtension, http_extension::Verb};
        let request = rt::JobEventRequest {
            name: job.name.clone(),
            content_type: job
                .data
                .as_ref()
                .map(|d| d.type_url.clone())
                .unwrap_or_default(),
            data: job.data.clone(),
            method: format!("job/{}", job.name),
            http_extension: Some(HttpExtension {
                verb: Verb::Post.into(),
                querystring: String::new(),
            }),
        };
        let started = std::time::Instant::now();
        let mut c = self.callback.clone();
        let mut answered = c.on_job_event(tonic::Request::new(request.clone())).await;
        counted(&self.app_id, "OnJobEvent", started, &answered);
        if answered
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::Unimplemented)
        {
            let mut alpha = self.alpha.clone();
            // Deprecated in the protos, still what older SDKs serve: daprd falls back to it too.
            #[allow(deprecated)]
            let called = alpha.on_job_event_alpha1(tonic::Request::new(request));
            answered = called.await;
            counted(&self.app_id, "OnJobEventAlpha1", started, &answered);
        }
        match answered {
            Ok(_) => Ok(Response::new(full(""))),
            Err(s) => Ok(json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"message": s.message()}),
            )),
        }
    }
}
