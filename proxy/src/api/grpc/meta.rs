//! The gRPC codec of metadata: `GetMetadata` and `SetMetadata` over [`crate::api::meta`].

use outrider_proto::runtime::v1 as rt;
use tonic::Status;

use super::status::from_api;
use crate::api::ApiState;
use crate::api::meta::{self, AttributeName, SetMetadataRequest};
use crate::to_app::subscriptions::Kind;

/// What this sidecar runs, in `GetMetadataResponse`'s fields. Of this sidecar's own additions,
/// only the resolver's name is here (in the extended metadata); the HTTP answer has its targets.
pub(super) fn get(s: &ApiState) -> rt::GetMetadataResponse {
    let m = meta::get(s);
    let registered_components = m
        .registered_components
        .into_iter()
        .map(|c| rt::RegisteredComponents {
            name: c.name,
            r#type: c.type_,
            version: c.version,
            capabilities: c.capabilities.into_iter().map(str::to_owned).collect(),
        })
        .collect();
    let subscriptions = m
        .subscriptions
        .iter()
        .map(|l| {
            let spec = &l.spec;
            let rules = spec
                .all_rules()
                .into_iter()
                .map(|r| rt::PubsubSubscriptionRule {
                    r#match: r.condition,
                    path: r.path,
                })
                .collect();
            let kind = match spec.kind {
                Kind::Declarative => rt::PubsubSubscriptionType::Declarative,
                Kind::Programmatic => rt::PubsubSubscriptionType::Programmatic,
                Kind::Streaming => rt::PubsubSubscriptionType::Streaming,
            };
            rt::PubsubSubscription {
                pubsub_name: spec.pubsub.clone(),
                topic: spec.topic.clone(),
                metadata: spec.metadata.clone(),
                rules: Some(rt::PubsubSubscriptionRules { rules }),
                dead_letter_topic: spec.dead_letter.clone(),
                r#type: kind as i32,
            }
        })
        .collect();
    let app_connection_properties = Some(app_connection(s, m.app_connection_properties));
    rt::GetMetadataResponse {
        id: m.id,
        registered_components,
        extended_metadata: m.extended_metadata,
        subscriptions,
        http_endpoints: (m.http_endpoints.into_iter())
            .map(|name| rt::MetadataHttpEndpoint { name })
            .collect(),
        app_connection_properties,
        runtime_version: m.runtime_version.to_owned(),
        actor_runtime: Some(actor_runtime(&m.actor_runtime)),
        // Deprecated in the proto, still filled by daprd: older SDKs read it.
        #[allow(deprecated)]
        active_actors_count: actor_counts(&m.actor_runtime),
        ..Default::default()
    }
}

/// Always there, as daprd sends it: port 0 when there is no app.
fn app_connection(
    s: &ApiState,
    a: Option<crate::api::meta::AppConnectionProperties>,
) -> rt::AppConnectionProperties {
    a.map_or_else(
        || rt::AppConnectionProperties {
            protocol: "http".to_owned(),
            channel_address: s.app_channel_address.clone(),
            ..Default::default()
        },
        |a| rt::AppConnectionProperties {
            port: i32::from(a.port),
            protocol: a.protocol.to_owned(),
            channel_address: a.channel_address,
            max_concurrency: a
                .max_concurrency
                .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
            health: a.health.map(|h| rt::AppConnectionHealthProperties {
                health_check_path: h.path,
                health_probe_interval: crate::api::meta::go_duration(h.interval),
                health_probe_timeout: crate::api::meta::go_duration(h.timeout),
                health_threshold: i32::try_from(h.threshold).unwrap_or(i32::MAX),
            }),
        },
    )
}

fn actor_counts(a: &crate::api::actors::RuntimeView) -> Vec<rt::ActiveActorsCount> {
    (a.active.iter())
        .map(|(t, n)| rt::ActiveActorsCount {
            r#type: t.clone(),
            count: i32::try_from(*n).unwrap_or(i32::MAX),
        })
        .collect()
}

fn actor_runtime(a: &crate::api::actors::RuntimeView) -> rt::ActorRuntime {
    use rt::actor_runtime::ActorRuntimeStatus;
    let status = if a.status == "RUNNING" {
        ActorRuntimeStatus::Running
    } else {
        ActorRuntimeStatus::Initializing
    };
    rt::ActorRuntime {
        runtime_status: status as i32,
        active_actors: actor_counts(a),
        host_ready: a.host_ready,
        placement: if a.status == "RUNNING" {
            a.placement.to_owned()
        } else {
            String::new()
        },
    }
}

/// Sets an extended attribute.
pub(super) fn set(s: &ApiState, req: rt::SetMetadataRequest) -> Result<(), Status> {
    let key = AttributeName::new(req.key).map_err(from_api)?;
    meta::put(
        s,
        SetMetadataRequest {
            key,
            value: req.value,
        },
    )
    .map_err(from_api)
}
