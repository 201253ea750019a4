//! `/api/overview`: everything the dashboard shows that is not a plot, as JSON. Built from the
//! metadata API's view (components, subscriptions, targets, actors, interception), the
//! identity, the kept denials and the history's per-minute figures. No secret, token, header
//! value or app-set metadata attribute is in it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Admin;
use crate::telemetry::traffic::{Group, Key, Rates};

/// The overview after reading `tick`, built once for every stream that sends it.
pub(super) fn shared(admin: &Admin, tick: u64) -> Arc<str> {
    let mut cached = admin
        .overview
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((t, v)) = &*cached
        && *t == tick
    {
        return v.clone();
    }
    let v: Arc<str> = build(admin).to_string().into();
    *cached = Some((tick, v.clone()));
    v
}

pub(super) fn build(admin: &Admin) -> Value {
    let meta = crate::api::meta::get(&admin.api);
    let minute = admin.history.minute();
    let gauges = admin.history.gauges();
    let rates = |group, name: &str| {
        rates_json(minute.get(&Key {
            group,
            name: name.to_owned(),
        }))
    };
    let components: Vec<Value> = (meta.registered_components.iter())
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "version": c.version,
                "capabilities": c.capabilities,
                "minute": rates(Group::Component, &c.name),
            })
        })
        .collect();
    let subscriptions: Vec<Value> = (meta.subscriptions.iter())
        .map(|l| {
            let mut v = l.to_metadata();
            // The subscription's metadata may carry component settings: not shown.
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
            }
            let key = (l.spec.pubsub.clone(), l.spec.topic.clone());
            let (in_flight, dead) = gauges.subscriptions.get(&key).copied().unwrap_or_default();
            v["inFlight"] = json!(in_flight);
            v["deadLettered"] = json!(dead);
            v["minute"] = rates(Group::Topic, &format!("{}/{}", key.0, key.1));
            v
        })
        .collect();
    let targets: Vec<Value> = (meta.name_resolution.targets.iter())
        .map(|t| {
            json!({
                "appId": t.app_id,
                "namespace": t.namespace,
                "breaker": gauges.breakers.get(&t.app_id),
                "endpoints": t.endpoints,
                "minute": rates(Group::Target, &t.app_id),
            })
        })
        .collect();
    json!({
        "appId": admin.api.app_id,
        "namespace": admin.api.namespace,
        "version": crate::api::VERSION_STR,
        "pid": std::process::id(),
        "startedAt": unix(admin.started.1),
        "uptimeSecs": admin.started.0.elapsed().as_secs(),
        "ready": admin.health.ready(),
        "appHealthy": admin.api.app_health.is_healthy(),
        "identity": identity(admin),
        "discovery": {
            "resolver": meta.name_resolution.resolver,
            "balancing": meta.name_resolution.load_balancing,
            "meshTransport": meta.name_resolution.mesh_transport,
            "offers": admin.offers,
        },
        "interception": admin.interception,
        "actors": {
            "status": meta.actor_runtime.status,
            "placement": meta.actor_runtime.placement,
            "hostReady": meta.actor_runtime.host_ready,
            "active": meta.actor_runtime.active,
        },
        "components": components,
        "subscriptions": subscriptions,
        "targets": targets,
        "routes": routes(&minute),
        "denials": denials(admin),
        "peers": peers(admin),
    })
}

/// The other sidecars discovery sees, each with a link to its dashboard when it says where.
fn peers(admin: &Admin) -> Vec<Value> {
    let api = &admin.api;
    (api.outbound.peers().into_iter())
        .filter(|p| {
            let me = p.target.app_id == api.app_id && p.target.namespace == api.namespace;
            !(me && p.address.port() == admin.mesh_port)
        })
        .take(crate::telemetry::traffic::MAX_KEYS)
        .map(|p| {
            let transports = if p.transports.h3 {
                vec!["h2", "h3"]
            } else {
                vec!["h2"]
            };
            let dashboard = p.admin_port.map(|port| {
                format!(
                    "http://{}/",
                    std::net::SocketAddr::new(p.address.ip(), port)
                )
            });
            json!({
                "appId": p.target.app_id,
                "namespace": p.target.namespace,
                "address": p.address.to_string(),
                "transports": transports,
                "dashboard": dashboard,
            })
        })
        .collect()
}

fn identity(admin: &Admin) -> Value {
    let info = admin.creds.info();
    let left = info
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    json!({
        "id": admin.creds.id().to_string(),
        "serial": info.serial,
        "generation": info.generation,
        "issuedAt": unix(info.issued_at),
        "notAfter": unix(info.not_after),
        "expiresInSecs": left.as_secs(),
        "trustRoots": admin.creds.trust_roots(),
        "files": match admin.creds.files_status() {
            None => Value::Null,
            Some(Ok(())) => json!("in force"),
            Some(Err(e)) => json!(format!("refused, the last good ones stay: {e}")),
        },
    })
}

/// The API's and the app's routes over the last minute, busiest first.
fn routes(minute: &BTreeMap<Key, Rates>) -> Vec<Value> {
    let mut rows: Vec<(&Key, &Rates)> = (minute.iter())
        .filter(|(k, _)| matches!(k.group, Group::Api | Group::App))
        .collect();
    rows.sort_by(|a, b| b.1.count.total_cmp(&a.1.count).then(a.0.cmp(b.0)));
    rows.into_iter()
        .map(|(k, r)| json!({"group": k.group, "name": k.name, "minute": rates_json(Some(r))}))
        .collect()
}

fn denials(admin: &Admin) -> Value {
    let latest: Vec<Value> = (admin.denials.latest().iter().rev())
        .map(|d| {
            json!({
                "at": unix(d.at),
                "caller": d.caller,
                "operation": d.operation,
                "verb": d.verb,
                "rule": d.rule,
            })
        })
        .collect();
    json!({"total": admin.denials.total(), "latest": latest})
}

/// Rates over the last minute: requests per second, success share, p50 and p99 in ms; null
/// where nothing was counted.
fn rates_json(r: Option<&Rates>) -> Value {
    match r {
        Some(r) if r.count > 0.0 => json!({
            "count": r.count,
            "rps": r.rps,
            "success": r.success(),
            "p50": r.p50,
            "p99": r.p99,
        }),
        _ => Value::Null,
    }
}

/// Seconds since the epoch, with milliseconds.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}
