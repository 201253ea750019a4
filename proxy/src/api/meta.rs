//! Health, metadata and shutdown operations (api.md §7, §8), whatever the transport: readiness
//! as daprd reports it, what this sidecar runs (`GetMetadataResponse`), the app's extended
//! attributes (`SetMetadataRequest`) with their bounds, and an orderly shutdown.
//! `api::http::meta` encodes them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use http::StatusCode;

use super::ApiState;
use crate::errors::ApiError;
use crate::mesh::outbound::TargetView;
use crate::to_app::subscriptions::{Kind, Listed, SubState};

/// Extended metadata attributes: how many, and how large each name and value may be. Every
/// metadata answer returns them all, so together they stay small.
const MAX_ATTRIBUTES: usize = 64;
const MAX_ATTRIBUTE_KEY: usize = 256;
pub(crate) const MAX_ATTRIBUTE_VALUE: u64 = 64 * 1024;

/// The runtime version reported to SDKs.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GetMetadataResponse`, as far as this sidecar fills it.
pub(crate) struct GetMetadataResponse {
    pub(crate) id: String,
    pub(crate) runtime_version: &'static str,
    /// Not in daprd's answer: which resolver and balancer this sidecar uses, and what they see
    /// of every target called so far.
    pub(crate) name_resolution: NameResolution,
    pub(crate) registered_components: Vec<RegisteredComponent>,
    pub(crate) subscriptions: Vec<Listed>,
    /// The names of the `HTTPEndpoint`s.
    pub(crate) http_endpoints: Vec<String>,
    /// The app's attributes, with `daprRuntimeVersion` and `outrider.nameResolution`.
    pub(crate) extended_metadata: BTreeMap<String, String>,
    pub(crate) app_connection_properties: Option<AppConnectionProperties>,
    /// Not in daprd's answer: transparent interception, when on.
    pub(crate) interception: Option<crate::mesh::transparent::InterceptionView>,
    pub(crate) actor_runtime: crate::api::actors::RuntimeView,
}

/// How this sidecar finds and picks endpoints.
pub(crate) struct NameResolution {
    pub(crate) resolver: &'static str,
    pub(crate) load_balancing: &'static str,
    /// `--mesh-transport`: `auto`, `h2` or `h3`.
    pub(crate) mesh_transport: &'static str,
    pub(crate) targets: Vec<TargetView>,
}

/// `RegisteredComponents`.
pub(crate) struct RegisteredComponent {
    pub(crate) name: String,
    pub(crate) type_: String,
    pub(crate) version: String,
    pub(crate) capabilities: Vec<&'static str>,
}

/// `AppConnectionProperties`.
pub(crate) struct AppConnectionProperties {
    pub(crate) port: u16,
    pub(crate) protocol: &'static str,
    pub(crate) channel_address: String,
    /// `--app-max-concurrency`, when positive.
    pub(crate) max_concurrency: Option<usize>,
    /// The health checks, when enabled.
    pub(crate) health: Option<crate::config::AppHealthCheck>,
}

/// A duration as Go prints one (daprd's metadata does): `5s`, `500ms`, `1m30s`, `1.5s`.
pub(crate) fn go_duration(d: std::time::Duration) -> String {
    outrider_blocks::bindings::gotime::duration_text(d)
}

/// A binding's capabilities: the sides it has.
fn sides(c: &outrider_blocks::bindings::BindingComponent) -> Vec<&'static str> {
    let sides = [
        c.input.as_ref().map(|_| "INPUT_BINDING"),
        c.output.as_ref().map(|_| "OUTPUT_BINDING"),
    ];
    sides.into_iter().flatten().collect()
}

/// The name of an extended attribute, checked before its value is read.
pub(crate) struct AttributeName(String);

/// `SetMetadataRequest`.
pub(crate) struct SetMetadataRequest {
    pub(crate) key: AttributeName,
    pub(crate) value: String,
}

/// Ready once components, listeners and the app are up; `appid`, when given, must be ours.
pub(crate) fn healthz(s: &ApiState, appid: Option<&str>) -> Result<(), ApiError> {
    if appid.is_some_and(|id| id != s.app_id) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_APPID_NOT_MATCH",
            "dapr app-id does not match",
        ));
    }
    if s.health.ready() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_NOT_READY",
            "dapr is not ready",
        ))
    }
}

/// Ready once outbound APIs serve, before the app is up.
pub(crate) fn healthz_outbound(s: &ApiState) -> Result<(), ApiError> {
    if s.health.outbound_ready() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_OUTBOUND_HEALTH_NOT_READY",
            "dapr outbound is not ready",
        ))
    }
}

/// What this sidecar runs.
pub(crate) fn get(s: &ApiState) -> GetMetadataResponse {
    let extended_metadata = extended(s);
    let resolver = s.outbound.resolver_name();
    let component =
        |name: &String, type_: &String, version: &String, capabilities| RegisteredComponent {
            name: name.clone(),
            type_: type_.clone(),
            version: version.clone(),
            capabilities,
        };
    let states = s.stores.values().map(|c| {
        let mut capabilities = c.store.features().capabilities();
        if c.actor_store {
            capabilities.push("ACTOR");
        }
        component(&c.name, &c.type_, &c.version, capabilities)
    });
    let pubsubs = (s.pubsubs.values()).map(|c| component(&c.name, &c.type_, &c.version, vec![]));
    let secrets =
        (s.secret_stores.values()).map(|c| component(&c.name, &c.type_, &c.version, vec![]));
    let locks = (s.locks.values()).map(|c| component(&c.name, &c.type_, &c.version, vec![]));
    let configurations =
        (s.configurations.values()).map(|c| component(&c.name, &c.type_, &c.version, vec![]));
    let bindings =
        (s.bindings.values()).map(|c| component(&c.name, &c.type_, &c.version, sides(c)));
    GetMetadataResponse {
        id: s.app_id.clone(),
        runtime_version: VERSION,
        name_resolution: NameResolution {
            resolver,
            load_balancing: s.outbound.balancing(),
            mesh_transport: s.outbound.transport(),
            targets: s.outbound.targets(),
        },
        registered_components: states
            .chain(pubsubs)
            .chain(secrets)
            .chain(locks)
            .chain(configurations)
            .chain(bindings)
            .collect(),
        subscriptions: s
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|l| as_the_app_named(s, l))
            .chain(
                (s.streams.lock().unwrap_or_else(|p| p.into_inner()))
                    .values()
                    .map(|spec| Listed {
                        spec: spec.clone(),
                        state: SubState::Active,
                    }),
            )
            .collect(),
        http_endpoints: s.externals.names().map(str::to_owned).collect(),
        extended_metadata,
        app_connection_properties: s.app_port.map(|port| AppConnectionProperties {
            port,
            protocol: s.app_protocol.name(),
            channel_address: s.app_channel_address.clone(),
            max_concurrency: s.app_max_concurrency,
            health: s.app_health.check.clone(),
        }),
        interception: s.interception.clone(),
        actor_runtime: s.actors.view(),
    }
}

/// The app's attributes, with this sidecar's own.
fn extended(s: &ApiState) -> BTreeMap<String, String> {
    let mut extended_metadata = s.extended.lock().unwrap_or_else(|p| p.into_inner()).clone();
    extended_metadata.insert("daprRuntimeVersion".into(), VERSION.into());
    if s.app_health.check.is_some() {
        let now = if s.app_health.is_healthy() {
            "healthy"
        } else {
            "unhealthy"
        };
        extended_metadata.insert("outrider.appHealth".into(), now.into());
    }
    let resolver = s.outbound.resolver_name();
    extended_metadata.insert("outrider.nameResolution".into(), resolver.into());
    if let Some(files) = s.outbound.creds().files_status() {
        // Credentials from files: whether their latest content is in force, or why not.
        let state = files.map_or_else(|e| format!("refused: {e}"), |()| "in force".into());
        extended_metadata.insert("outrider.certificateFiles".into(), state);
    }
    extended_metadata
}

impl AttributeName {
    /// `key`, if it is short enough; an empty name is allowed (setting it does nothing).
    pub(crate) fn new(key: String) -> Result<Self, ApiError> {
        if key.len() > MAX_ATTRIBUTE_KEY {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "ERR_MALFORMED_REQUEST",
                format!("a metadata attribute name is at most {MAX_ATTRIBUTE_KEY} bytes"),
            ));
        }
        Ok(Self(key))
    }
}

/// A subscription with its routes as the app named them: a gRPC app's routes carry one `/` more
/// inside the sidecar (`to_app::channel::grpc`).
fn as_the_app_named(s: &ApiState, l: &Listed) -> Listed {
    let mut l = l.clone();
    if s.app_protocol.is_grpc() && l.spec.kind == Kind::Programmatic {
        let own = |p: &mut String| {
            if let Some(rest) = p.strip_prefix('/') {
                *p = rest.to_owned();
            }
        };
        own(&mut l.spec.path);
        l.spec.rules.iter_mut().for_each(|r| own(&mut r.path));
    }
    l
}

/// Sets an extended attribute. An empty key is a no-op.
pub(crate) fn put(s: &ApiState, req: SetMetadataRequest) -> Result<(), ApiError> {
    if req.value.len() as u64 > MAX_ATTRIBUTE_VALUE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ERR_BODY_READ",
            format!("a metadata attribute value is at most {MAX_ATTRIBUTE_VALUE} bytes"),
        ));
    }
    let AttributeName(key) = req.key;
    if key.is_empty() {
        return Ok(());
    }
    let mut extended = s.extended.lock().unwrap_or_else(|p| p.into_inner());
    if extended.len() >= MAX_ATTRIBUTES && !extended.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!(
                "at most {MAX_ATTRIBUTES} metadata attributes can be set; an existing one can be changed"
            ),
        ));
    }
    extended.insert(key, req.value);
    Ok(())
}

/// Starts an orderly shutdown: health reports not ready from now on.
pub(crate) fn shutdown(s: &ApiState) {
    tracing::info!("shutdown requested through the API");
    s.health.draining.store(true, Ordering::Release);
    s.shutdown.cancel();
}
