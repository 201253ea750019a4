//! The app calls the sidecar: the Dapr API on 127.0.0.1:3500. This module owns what every
//! transport shares — the context of a request ([`ApiState`]: components, scopes, health,
//! limits) — and holds the transport-neutral operations of each building block (`state`,
//! `publish`, `secrets`, `lock`, `configuration`, `bindings`, `actors`, `meta`) over typed requests and results shaped after
//! `dapr.proto.runtime.v1`. Transports are codecs over those operations: `http` (routing, JSON,
//! status codes, headers) and `grpc` (the `Dapr` service's messages and statuses). Service
//! invocation (`invoke`) takes an HTTP request from either.

pub(crate) mod actors;
pub(crate) mod bindings;
mod configuration;
mod cors;
mod grpc;
mod http;
pub(crate) mod invoke;
pub(crate) mod jobs;
mod lock;
pub(crate) mod meta;
pub(crate) mod pipeline;
mod publish;
mod secrets;
mod state;

pub(crate) use cors::WithCors;
pub(crate) use grpc::{GrpcApiService, code_name as grpc_code_name};
pub(crate) use http::{ApiService, PublicService};
pub(crate) use meta::VERSION as VERSION_STR;
pub(crate) use state::STORE_TIMEOUT;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ::http::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::errors::ApiError;
use crate::mesh::outbound::Outbound;
use crate::to_app::channel::AppChannel;
use outrider_blocks::pubsub::PubSubComponent;
use outrider_blocks::state::StateComponent;

/// Readiness as the health endpoints and the admin listener report it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Components loaded and listeners up: outbound APIs can serve.
    pub(crate) outbound_ready: AtomicBool,
    /// The app's port answers (or there is no app port).
    pub(crate) app_ready: AtomicBool,
    /// Shutting down: report not ready so that traffic moves elsewhere.
    pub(crate) draining: AtomicBool,
}

impl Health {
    pub(crate) fn ready(&self) -> bool {
        self.outbound_ready.load(Ordering::Acquire)
            && self.app_ready.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn outbound_ready(&self) -> bool {
        self.outbound_ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Everything the API handlers share.
pub(crate) struct ApiState {
    pub(crate) app_id: String,
    pub(crate) namespace: String,
    pub(crate) app_port: Option<u16>,
    pub(crate) app_protocol: crate::to_app::channel::AppProtocol,
    pub(crate) app_channel_address: String,
    pub(crate) api_token: Option<String>,
    pub(crate) max_body_size: u64,
    /// The longest pause inside a request body the API reads whole.
    pub(crate) body_idle_timeout: std::time::Duration,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) app: Option<AppChannel>,
    pub(crate) health: Arc<Health>,
    /// The app's health as its checks find it.
    pub(crate) app_health: Arc<crate::to_app::health::AppHealth>,
    /// `--app-max-concurrency`, when positive.
    pub(crate) app_max_concurrency: Option<usize>,
    /// `spec.httpPipeline`, run on every request of the HTTP API.
    pub(crate) pipeline: pipeline::Pipeline,
    /// `spec.appHttpPipeline`: run on calls to HTTP endpoints here (and to the app in its
    /// channel).
    pub(crate) app_pipeline: pipeline::Pipeline,
    /// The `HTTPEndpoint`s invocations may name.
    pub(crate) externals: crate::mesh::outbound::external::Externals,
    /// State stores by name.
    pub(crate) stores: BTreeMap<String, StateComponent>,
    /// Pub/sub components by name.
    pub(crate) pubsubs: BTreeMap<String, PubSubComponent>,
    /// Secret stores by name.
    pub(crate) secret_stores: BTreeMap<String, outrider_blocks::secrets::SecretStoreComponent>,
    /// Output bindings by name.
    pub(crate) bindings: BTreeMap<String, outrider_blocks::bindings::BindingComponent>,
    /// Configuration stores by name.
    pub(crate) configurations:
        BTreeMap<String, outrider_blocks::configuration::ConfigurationComponent>,
    /// Configuration subscriptions open on either API, by id.
    pub(crate) configuration_subscriptions: configuration::Subscriptions,
    /// Lock stores by name.
    pub(crate) locks: BTreeMap<String, outrider_blocks::lock::LockComponent>,
    /// Which secrets the app may read through the API.
    pub(crate) secret_scopes: outrider_blocks::secrets::SecretScopes,
    /// `Configuration.spec.api`: which routes are served.
    pub(crate) api_access: outrider_policy::api::ApiAccess,
    pub(crate) pubsub_metrics: Arc<crate::components::metrics::PubSubMetrics>,
    /// Subscriptions delivering to the app, for the metadata API.
    pub(crate) subscriptions: Arc<Mutex<Vec<crate::to_app::subscriptions::Listed>>>,
    /// Streaming subscriptions open on the gRPC API, by stream, for the metadata API.
    pub(crate) streams: Mutex<BTreeMap<u64, crate::to_app::subscriptions::Spec>>,
    pub(crate) extended: Mutex<BTreeMap<String, String>>,
    /// With `--intercept`: its ports, mode and rules, for the metadata API.
    pub(crate) interception: Option<crate::mesh::transparent::InterceptionView>,
    /// Permits for work whose cost grows with the data (queries, bulk reads): at most
    /// [`HEAVY_WORK`] run at once, whatever the number of callers.
    pub(crate) heavy: tokio::sync::Semaphore,
    /// The actor runtime: placement, the host (when the app hosts actors) and actor state.
    pub(crate) actors: Arc<actors::Actors>,
    pub(crate) shutdown: CancellationToken,
}

/// Queries and bulk reads that may run at once.
pub(crate) const HEAVY_WORK: usize = 4;

impl ApiState {
    /// A permit for heavy work, waiting at most the store timeout; past it the caller is told to
    /// come back (429) with `code`.
    async fn heavy_permit(
        &self,
        code: &'static str,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(state::STORE_TIMEOUT, self.heavy.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                format!("{HEAVY_WORK} queries and bulk reads are running already; try again later"),
            )),
        }
    }
}
