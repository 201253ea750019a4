//! The sidecar added to one pod template: a native sidecar (an init container with
//! `restartPolicy: Always`) whose flags come from Dapr's `dapr.io/*` annotations, with the
//! volumes it needs — its service-account token for the CA service, the trust anchors, a data
//! directory, and the Configuration and resources when annotations name them.

use serde_json::{Map, Value, json};

use crate::cli::InjectArgs;

/// The container's name; a pod template holding one already is left as it is.
pub(crate) const NAME: &str = "outrider";

/// Annotations turned into flags: annotation, flag, what the value must be.
const FLAGS: &[(&str, &str, Kind)] = &[
    ("dapr.io/app-port", "--app-port", Kind::Port),
    (
        "dapr.io/app-protocol",
        "--app-protocol",
        Kind::OneOf(&["http", "https", "grpc", "grpcs", "h2c"]),
    ),
    (
        "dapr.io/log-level",
        "--log-level",
        Kind::OneOf(&["debug", "info", "warn", "error"]),
    ),
    (
        "dapr.io/enable-api-logging",
        "--enable-api-logging",
        Kind::Bool,
    ),
    ("dapr.io/log-as-json", "--log-as-json", Kind::Switch),
    (
        "dapr.io/graceful-shutdown-seconds",
        "--graceful-shutdown-seconds",
        Kind::Number,
    ),
    (
        "dapr.io/app-channel-address",
        "--app-channel-address",
        Kind::Text,
    ),
    ("dapr.io/metrics-port", "--metrics-port", Kind::Port),
    (
        "dapr.io/http-max-request-size",
        "--max-body-size",
        Kind::Megabytes,
    ),
];

/// Annotations read elsewhere here (enabled, app id, image, resources, env, secrets, config).
const HANDLED: &[&str] = &[
    "dapr.io/enabled",
    "dapr.io/app-id",
    "dapr.io/config",
    "dapr.io/sidecar-image",
    "dapr.io/env",
    "dapr.io/api-token-secret",
    "dapr.io/app-token-secret",
    "dapr.io/sidecar-cpu-limit",
    "dapr.io/sidecar-memory-limit",
    "dapr.io/sidecar-cpu-request",
    "dapr.io/sidecar-memory-request",
];

#[derive(Clone, Copy)]
enum Kind {
    Port,
    Number,
    Bool,
    /// A flag present when the value is true.
    Switch,
    Text,
    OneOf(&'static [&'static str]),
    /// A size in MB, as Dapr counts it, given to the sidecar in MiB.
    Megabytes,
}

/// Whether `dapr.io/enabled` asks for a sidecar.
pub(crate) fn enabled(annotations: &Map<String, Value>) -> Result<bool, String> {
    match annotations.get("dapr.io/enabled") {
        None => Ok(false),
        Some(v) => boolean("dapr.io/enabled", v),
    }
}

/// Adds the sidecar and its volumes to `template` (a pod or pod template). `owner` is the name
/// of the object holding the template: the app id when `dapr.io/app-id` is absent.
pub(crate) fn inject(
    template: &mut Value,
    annotations: &Map<String, Value>,
    owner: &str,
    args: &InjectArgs,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let spec = template
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or("the pod template has no spec")?;
    let has_ours = ["initContainers", "containers"].iter().any(|list| {
        spec.get(*list).and_then(Value::as_array).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(NAME))
        })
    });
    if has_ours {
        notes.push(format!(
            "{owner}: already has a container named {NAME}; left as it is"
        ));
        return Ok(());
    }
    let app_id = match annotations.get("dapr.io/app-id") {
        Some(v) => text("dapr.io/app-id", v)?,
        None if !owner.is_empty() => owner.to_owned(),
        None => return Err("no dapr.io/app-id and no metadata.name to take it from".into()),
    };
    if !crate::config::is_app_id(&app_id) {
        return Err(format!(
            "dapr.io/app-id {app_id:?}: letters, digits, '-' and '_' only"
        ));
    }
    let account = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default");
    if account != app_id {
        notes.push(format!(
            "{app_id}: runs as service account {account:?}; the CA service issues the identity of the service account, so set serviceAccountName: {app_id}"
        ));
    }
    for (name, _) in annotations {
        if name.starts_with("dapr.io/")
            && !HANDLED.contains(&name.as_str())
            && !FLAGS.iter().any(|(a, _, _)| a == name)
        {
            notes.push(format!(
                "{app_id}: annotation {name} has no effect on this sidecar; ignored"
            ));
        }
    }
    let mut volumes = vec![
        json!({"name": "outrider-ca-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "outrider-ca", "expirationSeconds": 3600, "path": "token"}}]}}),
        json!({"name": "outrider-trust-anchors", "configMap": {"name": args.trust_anchors_configmap}}),
        json!({"name": "outrider-data", "emptyDir": {}}),
    ];
    let mut mounts = vec![
        json!({"name": "outrider-ca-token", "mountPath": "/var/run/secrets/outrider.io/ca-token", "readOnly": true}),
        json!({"name": "outrider-trust-anchors", "mountPath": "/var/run/secrets/outrider.io/trust-anchors", "readOnly": true}),
        json!({"name": "outrider-data", "mountPath": "/var/lib/outrider"}),
    ];
    let mut flags = vec![
        "run".to_owned(),
        "--mode".into(),
        "kubernetes".into(),
        "--app-id".into(),
        app_id.clone(),
        "--sentry-address".into(),
        args.sentry_address.clone(),
        "--trust-anchors".into(),
        "/var/run/secrets/outrider.io/trust-anchors/bundle.pem".into(),
        "--ca-token-file".into(),
        "/var/run/secrets/outrider.io/ca-token/token".into(),
        "--control-plane-namespace".into(),
        args.control_plane_namespace.clone(),
        "--trust-domain".into(),
        args.trust_domain.clone(),
        "--data-dir".into(),
        "/var/lib/outrider".into(),
    ];
    for (annotation, flag, kind) in FLAGS {
        if let Some(v) = annotations.get(*annotation) {
            flags.extend(flag_of(annotation, flag, *kind, v)?);
        }
    }
    if let Some(v) = annotations.get("dapr.io/config") {
        let name = text("dapr.io/config", v)?;
        volumes.push(json!({"name": "outrider-config", "configMap": {"name": name}}));
        mounts.push(json!({"name": "outrider-config", "mountPath": "/etc/outrider/config", "readOnly": true}));
        flags.extend(["--config".into(), "/etc/outrider/config/config.yaml".into()]);
    }
    let metrics_port = match annotations.get("dapr.io/metrics-port") {
        Some(v) => number("dapr.io/metrics-port", v)?,
        None => 9090,
    };
    let image = match annotations.get("dapr.io/sidecar-image") {
        Some(v) => text("dapr.io/sidecar-image", v)?,
        None => args.image.clone(),
    };
    let container = json!({
        "name": NAME,
        "image": image,
        "restartPolicy": "Always",
        "args": flags,
        "env": env(annotations)?,
        "ports": [
            {"name": "dapr-http", "containerPort": 3500},
            {"name": "dapr-grpc", "containerPort": 50001},
            {"name": "mesh", "containerPort": 50002},
            {"name": "mesh-udp", "containerPort": 50002, "protocol": "UDP"},
            {"name": "dapr-metrics", "containerPort": metrics_port},
        ],
        "startupProbe": {"httpGet": {"path": "/healthz", "port": metrics_port}, "periodSeconds": 1, "failureThreshold": 120},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": metrics_port}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": metrics_port}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": resources(annotations)?,
        "securityContext": {
            "runAsNonRoot": true, "runAsUser": 65532, "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    });
    // First among the init containers: the app's own init containers may use its APIs.
    let inits = spec.entry("initContainers").or_insert_with(|| json!([]));
    let Some(inits) = inits.as_array_mut() else {
        return Err("spec.initContainers is not a list".into());
    };
    inits.insert(0, container);
    let vols = spec.entry("volumes").or_insert_with(|| json!([]));
    let Some(vols) = vols.as_array_mut() else {
        return Err("spec.volumes is not a list".into());
    };
    for v in volumes {
        if vols.iter().any(|have| have.get("name") == v.get("name")) {
            return Err(format!("the pod already has a volume named {}", v["name"]));
        }
        vols.push(v);
    }
    Ok(())
}

/// The flag (and value) an annotation becomes.
fn flag_of(annotation: &str, flag: &str, kind: Kind, v: &Value) -> Result<Vec<String>, String> {
    let value = match kind {
        Kind::Port => {
            let n = number(annotation, v)?;
            if n == 0 || n > 65535 {
                return Err(format!("{annotation} {n} is not a port"));
            }
            n.to_string()
        }
        Kind::Number => number(annotation, v)?.to_string(),
        // Attached: the flag's value is optional, so a separate `true` could be misread.
        Kind::Bool => return Ok(vec![format!("{flag}={}", boolean(annotation, v)?)]),
        Kind::Switch => {
            return Ok(if boolean(annotation, v)? {
                vec![flag.to_owned()]
            } else {
                vec![]
            });
        }
        Kind::Text => text(annotation, v)?,
        Kind::OneOf(allowed) => {
            let t = text(annotation, v)?.to_ascii_lowercase();
            if !allowed.contains(&t.as_str()) {
                return Err(format!(
                    "{annotation} {t:?} is not one of {}",
                    allowed.join(", ")
                ));
            }
            t
        }
        Kind::Megabytes => format!("{}Mi", number(annotation, v)?),
    };
    Ok(vec![flag.to_owned(), value])
}

/// `dapr.io/env` (`KEY=value,KEY2=value2`) and the API token secrets.
fn env(annotations: &Map<String, Value>) -> Result<Vec<Value>, String> {
    let mut env = vec![
        json!({"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        json!({"name": "HOME", "value": "/var/lib/outrider"}),
    ];
    if let Some(v) = annotations.get("dapr.io/env") {
        for pair in text("dapr.io/env", v)?
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((k, val)) = pair.split_once('=') else {
                return Err(format!("dapr.io/env: {pair:?} is not KEY=value"));
            };
            env.push(json!({"name": k.trim(), "value": val.trim()}));
        }
    }
    for (annotation, var) in [
        ("dapr.io/api-token-secret", "DAPR_API_TOKEN"),
        ("dapr.io/app-token-secret", "APP_API_TOKEN"),
    ] {
        if let Some(v) = annotations.get(annotation) {
            let secret = text(annotation, v)?;
            env.push(json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}));
        }
    }
    Ok(env)
}

/// `dapr.io/sidecar-{cpu,memory}-{request,limit}`, with modest defaults.
fn resources(annotations: &Map<String, Value>) -> Result<Value, String> {
    let mut r =
        json!({"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}});
    for (annotation, side, what) in [
        ("dapr.io/sidecar-cpu-request", "requests", "cpu"),
        ("dapr.io/sidecar-memory-request", "requests", "memory"),
        ("dapr.io/sidecar-cpu-limit", "limits", "cpu"),
        ("dapr.io/sidecar-memory-limit", "limits", "memory"),
    ] {
        if let Some(v) = annotations.get(annotation) {
            r[side][what] = Value::String(text(annotation, v)?);
        }
    }
    Ok(r)
}

/// A string annotation (numbers and booleans written without quotes are taken as written).
fn text(annotation: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{annotation}: {v} is not a value")),
    }
}

fn number(annotation: &str, v: &Value) -> Result<u64, String> {
    text(annotation, v)?
        .parse()
        .map_err(|_| format!("{annotation}: {v} is not a whole number"))
}

fn boolean(annotation: &str, v: &Value) -> Result<bool, String> {
    match text(annotation, v)?.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" => Ok(true),
        "false" | "no" | "n" | "off" | "0" => Ok(false),
        other => Err(format!("{annotation}: {other:?} is not true or false")),
    }
}
