//! The gRPC codec of the app-facing Dapr API on 127.0.0.1:50001: `dapr.proto.runtime.v1.Dapr`
//! over HTTP/2 without TLS, served by this crate's own listener (no tonic transport).
//!
//! A call passes, in order: `Configuration.spec.api`, the API token (security rule 3; every
//! call needs it), and whether this sidecar serves the RPC (the `Dapr` service's others answer
//! `UNIMPLEMENTED` naming it). Any other method is a call for the app its `dapr-app-id` names,
//! proxied through the mesh (`api::invoke::proxy_grpc`). For a served RPC, tonic's generated
//! server decodes the message (at most `--max-body-size` bytes) and calls [`Api`], whose RPCs are
//! codecs over the same operations as the HTTP routes (`api::{state, publish, secrets, lock,
//! meta, invoke}`): no building-block rule is here. Operations return `ApiError`;
//! [`status::from_api`] is the one place they become a gRPC status with Dapr's error details.

mod actor_events;
mod actors;
mod bindings;
mod configuration;
mod invoke;
mod jobs;
mod lock;
mod meta;
mod metrics;
mod publish;
mod secrets;
mod served;
mod state;
mod status;
mod subscribe;

pub(crate) use metrics::code_name;
use served::{SERVED, STREAMING};
use status::{not_grpc, status_response, too_large};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use outrider_proto::common::v1 as common;
use outrider_proto::runtime::v1 as rt;
use rt::dapr_server::{Dapr, DaprServer};
use tonic::{Status, async_trait};

use super::ApiState;
use crate::net::http::{Body, boxed, capped_within, is_grpc, names};

/// The path prefix of the service's RPCs.
const SERVICE: &str = "dapr.proto.runtime.v1.Dapr";

/// What a call is, once admitted.
enum Admitted<'r> {
    /// A `Dapr` RPC this sidecar serves.
    Rpc(&'r str),
    /// A call for the app named, proxied through the mesh.
    Proxy(String),
}

/// The gRPC API as a tower service over the listener's requests.
#[derive(Clone)]
pub(crate) struct GrpcApiService {
    state: Arc<ApiState>,
    dapr: DaprServer<Api>,
}

impl GrpcApiService {
    pub(crate) fn new(state: Arc<ApiState>) -> Self {
        let limit = usize::try_from(state.max_body_size).unwrap_or(usize::MAX);
        let dapr = DaprServer::new(Api { s: state.clone() })
            // As daprd: one bound for every message, both ways.
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        Self { state, dapr }
    }

    /// The checks every call passes before its message is read, in daprd's order; the RPC's
    /// name if they pass, else the answer and whether daprd counts it in its metrics (not when
    /// the allow list or the token refuse it).
    fn admit<'r>(&self, req: &'r Request<Incoming>) -> Result<Admitted<'r>, (Status, bool)> {
        let path = req.uri().path();
        let rpc = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|(service, _)| *service == SERVICE)
            .map(|(_, rpc)| rpc);
        let served = rpc.and_then(|rpc| SERVED.iter().find(|(name, ..)| *name == rpc));
        if let Some((_, group, version)) = served
            && !self.state.api_access.allows_grpc(group, version)
        {
            let s = status::from_http(
                StatusCode::NOT_IMPLEMENTED,
                "requested endpoint is not available",
            );
            return Err((s, false));
        }
        self.check_token(req).map_err(|s| (s, false))?;
        match (rpc, served) {
            (Some(rpc), Some(_)) => Ok(Admitted::Rpc(rpc)),
            (Some(rpc), None) if metrics::is_dapr_rpc(rpc) => Err((
                Status::unimplemented(format!(
                    "{SERVICE}/{rpc} is not implemented by this sidecar"
                )),
                true,
            )),
            // Any other method is a call for an app, named by metadata (the callee's name first).
            _ => match ["dapr-callee-app-id", "dapr-app-id"]
                .iter()
                .find_map(|k| req.headers().get(*k).and_then(|v| v.to_str().ok()))
            {
                Some(id) => Ok(Admitted::Proxy(id.trim().to_owned())),
                None => Err((
                    Status::unknown(
                        "failed to proxy request: required metadata dapr-callee-app-id or dapr-app-id not found",
                    ),
                    true,
                )),
            },
        }
    }

    /// `DAPR_API_TOKEN`: the `dapr-api-token` metadata must carry it.
    fn check_token(&self, req: &Request<Incoming>) -> Result<(), Status> {
        let Some(token) = &self.state.api_token else {
            return Ok(());
        };
        let refused = |detail| Err(status::from_http(StatusCode::UNAUTHORIZED, detail));
        match req.headers().get(&names::DAPR_API_TOKEN) {
            None => refused("missing api token in request metadata"),
            Some(given) if super::http::constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                Ok(())
            }
            Some(_) => refused("authentication error: api token mismatch"),
        }
    }
}

impl tower::Service<Request<Incoming>> for GrpcApiService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let call = metrics::Call::start(&self.state.app_id, req.uri().path());
        let rpc = match self.admit(&req) {
            Ok(Admitted::Rpc(rpc)) => rpc.to_owned(),
            Ok(Admitted::Proxy(app_id)) => {
                req.headers_mut().remove(&names::DAPR_API_TOKEN);
                let state = self.state.clone();
                return Box::pin(async move {
                    let rsp = match super::invoke::proxy_grpc(&state, &app_id, req).await {
                        Ok(rsp) if is_grpc(rsp.headers()) => rsp,
                        // Refused on the way (the callee's access policy, its app not there or
                        // not speaking gRPC): that answer as a gRPC status.
                        Ok(rsp) => status_response(&not_grpc(rsp).await),
                        Err(e) => status_response(&status::from_api(e)),
                    };
                    Ok(call.answered(rsp))
                });
            }
            Err((status, counted)) => {
                let rsp = status_response(&status);
                let rsp = if counted {
                    call.answered(rsp)
                } else {
                    call.forget();
                    rsp
                };
                return Box::pin(async move { Ok(rsp) });
            }
        };
        tracing::trace!(rpc, "gRPC API call");
        req.headers_mut().remove(&names::DAPR_API_TOKEN);
        if STREAMING.contains(&rpc.as_str()) {
            // A stream of answers for as long as the app keeps it: each message is bounded by
            // the decoder, and daprd counts no streaming call it serves itself.
            call.forget();
            let answer = tower::Service::call(&mut self.dapr, req);
            return Box::pin(async move {
                let rsp = answer.await.unwrap_or_else(|never| match never {});
                Ok(rsp.map(boxed))
            });
        }
        // Every served RPC takes one message: at most the limit and its 5-byte prefix, read within
        // the pauses and the total time a whole HTTP body gets.
        let s = &self.state;
        let (parts, body) = req.into_parts();
        let (body, _) = capped_within(
            body,
            s.max_body_size.saturating_add(5),
            s.body_idle_timeout,
            s.body_idle_timeout * super::http::body::WHOLE_BODY_PAUSES,
        );
        let answer = tower::Service::call(&mut self.dapr, Request::from_parts(parts, body));
        Box::pin(async move {
            let rsp = answer.await.unwrap_or_else(|never| match never {});
            let rsp = too_large(&rsp).map_or_else(|| rsp.map(boxed), |s| status_response(&s));
            Ok(call.answered(rsp))
        })
    }
}

/// The RPCs: each decodes its message into an operation's request, calls it and encodes the
/// answer.
pub(crate) struct Api {
    s: Arc<ApiState>,
}

type Answer<T> = Result<tonic::Response<T>, Status>;

/// A codec's result as an RPC's answer.
fn answer<T>(r: Result<T, Status>) -> Answer<T> {
    r.map(tonic::Response::new)
}

#[async_trait]
impl Dapr for Api {
    async fn invoke_service(
        &self,
        req: tonic::Request<rt::InvokeServiceRequest>,
    ) -> Answer<common::InvokeResponse> {
        invoke::invoke_service(&self.s, req).await
    }

    async fn get_state(
        &self,
        req: tonic::Request<rt::GetStateRequest>,
    ) -> Answer<rt::GetStateResponse> {
        answer(state::get(&self.s, req.into_inner()).await)
    }

    async fn get_bulk_state(
        &self,
        req: tonic::Request<rt::GetBulkStateRequest>,
    ) -> Answer<rt::GetBulkStateResponse> {
        answer(state::bulk(&self.s, req.into_inner()).await)
    }

    async fn save_state(&self, req: tonic::Request<rt::SaveStateRequest>) -> Answer<()> {
        answer(state::save(&self.s, req.into_inner()).await)
    }

    async fn query_state_alpha1(
        &self,
        req: tonic::Request<rt::QueryStateRequest>,
    ) -> Answer<rt::QueryStateResponse> {
        answer(state::query(&self.s, req.into_inner()).await)
    }

    async fn delete_state(&self, req: tonic::Request<rt::DeleteStateRequest>) -> Answer<()> {
        answer(state::delete(&self.s, req.into_inner()).await)
    }

    async fn delete_bulk_state(
        &self,
        req: tonic::Request<rt::DeleteBulkStateRequest>,
    ) -> Answer<()> {
        answer(state::delete_bulk(&self.s, req.into_inner()).await)
    }

    async fn execute_state_transaction(
        &self,
        req: tonic::Request<rt::ExecuteStateTransactionRequest>,
    ) -> Answer<()> {
        answer(state::transaction(&self.s, req.into_inner()).await)
    }

    async fn publish_event(&self, req: tonic::Request<rt::PublishEventRequest>) -> Answer<()> {
        answer(publish::publish(&self.s, req).await)
    }

    async fn bulk_publish_event_alpha1(
        &self,
        req: tonic::Request<rt::BulkPublishRequest>,
    ) -> Answer<rt::BulkPublishResponse> {
        answer(publish::bulk(&self.s, req).await)
    }

    async fn bulk_publish_event(
        &self,
        req: tonic::Request<rt::BulkPublishRequest>,
    ) -> Answer<rt::BulkPublishResponse> {
        answer(publish::bulk(&self.s, req).await)
    }

    async fn subscribe_topic_events_alpha1(
        &self,
        req: tonic::Request<tonic::Streaming<rt::SubscribeTopicEventsRequestAlpha1>>,
    ) -> Answer<subscribe::Events> {
        answer(subscribe::subscribe(&self.s, req.into_inner()).await)
    }

    async fn subscribe_actor_events_alpha1(
        &self,
        req: tonic::Request<tonic::Streaming<rt::SubscribeActorEventsRequestAlpha1>>,
    ) -> Answer<actor_events::ActorEvents> {
        answer(actor_events::subscribe(&self.s, req.into_inner()).await)
    }

    async fn get_secret(
        &self,
        req: tonic::Request<rt::GetSecretRequest>,
    ) -> Answer<rt::GetSecretResponse> {
        answer(secrets::get(&self.s, &req.into_inner()))
    }

    async fn get_bulk_secret(
        &self,
        req: tonic::Request<rt::GetBulkSecretRequest>,
    ) -> Answer<rt::GetBulkSecretResponse> {
        answer(secrets::bulk(&self.s, &req.into_inner()))
    }

    async fn invoke_binding(
        &self,
        req: tonic::Request<rt::InvokeBindingRequest>,
    ) -> Answer<rt::InvokeBindingResponse> {
        answer(bindings::invoke(&self.s, req.into_inner()).await)
    }

    async fn get_configuration(
        &self,
        req: tonic::Request<rt::GetConfigurationRequest>,
    ) -> Answer<rt::GetConfigurationResponse> {
        answer(configuration::get(&self.s, req.into_inner()).await)
    }

    async fn get_configuration_alpha1(
        &self,
        req: tonic::Request<rt::GetConfigurationRequest>,
    ) -> Answer<rt::GetConfigurationResponse> {
        answer(configuration::get(&self.s, req.into_inner()).await)
    }

    async fn subscribe_configuration(
        &self,
        req: tonic::Request<rt::SubscribeConfigurationRequest>,
    ) -> Answer<configuration::Updates> {
        answer(configuration::subscribe(&self.s, req.into_inner()).await)
    }

    async fn subscribe_configuration_alpha1(
        &self,
        req: tonic::Request<rt::SubscribeConfigurationRequest>,
    ) -> Answer<configuration::Updates> {
        answer(configuration::subscribe(&self.s, req.into_inner()).await)
    }

    async fn unsubscribe_configuration(
        &self,
        req: tonic::Request<rt::UnsubscribeConfigurationRequest>,
    ) -> Answer<rt::UnsubscribeConfigurationResponse> {
        answer(configuration::unsubscribe(&self.s, &req.into_inner()))
    }

    async fn unsubscribe_configuration_alpha1(
        &self,
        req: tonic::Request<rt::UnsubscribeConfigurationRequest>,
    ) -> Answer<rt::UnsubscribeConfigurationResponse> {
        answer(configuration::unsubscribe(&self.s, &req.into_inner()))
    }

    async fn try_lock_alpha1(
        &self,
        req: tonic::Request<rt::TryLockRequest>,
    ) -> Answer<rt::TryLockResponse> {
        answer(lock::try_lock(&self.s, &req.into_inner()).await)
    }

    async fn unlock_alpha1(
        &self,
        req: tonic::Request<rt::UnlockRequest>,
    ) -> Answer<rt::UnlockResponse> {
        answer(lock::unlock(&self.s, &req.into_inner()).await)
    }

    async fn get_metadata(
        &self,
        _req: tonic::Request<rt::GetMetadataRequest>,
    ) -> Answer<rt::GetMetadataResponse> {
        answer(Ok(meta::get(&self.s)))
    }

    async fn set_metadata(&self, req: tonic::Request<rt::SetMetadataRequest>) -> Answer<()> {
        answer(meta::set(&self.s, req.into_inner()))
    }

    async fn shutdown(&self, _req: tonic::Request<rt::ShutdownRequest>) -> Answer<()> {
        crate::api::meta::shutdown(&self.s);
        answer(Ok(()))
    }

    async fn invoke_actor(
        &self,
        req: tonic::Request<rt::InvokeActorRequest>,
    ) -> Answer<rt::InvokeActorResponse> {
        answer(actors::invoke(&self.s, req.into_inner()).await)
    }

    async fn get_actor_state(
        &self,
        req: tonic::Request<rt::GetActorStateRequest>,
    ) -> Answer<rt::GetActorStateResponse> {
        answer(actors::get_state(&self.s, &req.into_inner()).await)
    }

    async fn execute_actor_state_transaction(
        &self,
        req: tonic::Request<rt::ExecuteActorStateTransactionRequest>,
    ) -> Answer<()> {
        answer(actors::transaction(&self.s, req.into_inner()).await)
    }

    async fn register_actor_timer(
        &self,
        req: tonic::Request<rt::RegisterActorTimerRequest>,
    ) -> Answer<()> {
        answer(actors::register_timer(&self.s, &req.into_inner()).await)
    }

    async fn unregister_actor_timer(
        &self,
        req: tonic::Request<rt::UnregisterActorTimerRequest>,
    ) -> Answer<()> {
        answer(actors::unregister_timer(&self.s, &req.into_inner()))
    }

    async fn register_actor_reminder(
        &self,
        req: tonic::Request<rt::RegisterActorReminderRequest>,
    ) -> Answer<()> {
        answer(actors::register_reminder(&self.s, &req.into_inner()).await)
    }

    async fn unregister_actor_reminder(
        &self,
        req: tonic::Request<rt::UnregisterActorReminderRequest>,
    ) -> Answer<()> {
        answer(actors::unregister_reminder(&self.s, &req.into_inner()).await)
    }

    async fn get_actor_reminder(
        &self,
        req: tonic::Request<rt::GetActorReminderRequest>,
    ) -> Answer<rt::GetActorReminderResponse> {
        answer(actors::get_reminder(&self.s, &req.into_inner()).await)
    }

    async fn schedule_job(
        &self,
        req: tonic::Request<rt::ScheduleJobRequest>,
    ) -> Answer<rt::ScheduleJobResponse> {
        answer(
            jobs::schedule(&self.s, req.into_inner())
                .await
                .map(|()| rt::ScheduleJobResponse {}),
        )
    }

    async fn schedule_job_alpha1(
        &self,
        req: tonic::Request<rt::ScheduleJobRequest>,
    ) -> Answer<rt::ScheduleJobResponse> {
        self.schedule_job(req).await
    }

    async fn get_job(&self, req: tonic::Request<rt::GetJobRequest>) -> Answer<rt::GetJobResponse> {
        answer(jobs::get(&self.s, &req.into_inner()).await)
    }

    async fn get_job_alpha1(
        &self,
        req: tonic::Request<rt::GetJobRequest>,
    ) -> Answer<rt::GetJobResponse> {
        self.get_job(req).await
    }

    async fn delete_job(
        &self,
        req: tonic::Request<rt::DeleteJobRequest>,
    ) -> Answer<rt::DeleteJobResponse> {
        answer(
            jobs::delete(&self.s, &req.into_inner())
                .await
                .map(|()| rt::DeleteJobResponse {}),
        )
    }

    async fn delete_job_alpha1(
        &self,
        req: tonic::Request<rt::DeleteJobRequest>,
    ) -> Answer<rt::DeleteJobResponse> {
        self.delete_job(req).await
    }
}
