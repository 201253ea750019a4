//! The sidecar added to one pod template: a native sidecar (an init container with
//! `restartPolicy: Always`, first among them) whose flags come from Dapr's annotations, with the
//! volumes it needs — its service-account token for the CA service, the trust anchors, a data
//! directory, and the Configuration when `dapr.io/config` names one — and, as Dapr's injector
//! does, `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT` and `APP_PROTOCOL` for the app's containers.

use serde_json::{Map, Value, json};

use super::annotations::{self as a, FLAGS, HANDLED};
use super::intercept;
use crate::cli::InjectArgs;

/// The container's name.
pub(crate) const NAME: &str = "outrider";
/// Our own annotation: a ConfigMap of Component, Subscription and Resiliency documents, mounted
/// and given as `--resources-path` (Dapr reads those resources from the cluster instead).
pub(crate) const RESOURCES: &str = "outrider.io/resources";
/// A pod template with a container of one of these names has a sidecar already.
const SIDECARS: [&str; 2] = [NAME, "daprd"];

/// Whether `dapr.io/enabled` asks for a sidecar: only `true` (any case) does, as with Dapr's
/// injector; another value that is not plainly false is pointed out.
pub(crate) fn enabled(
    annotations: &Map<String, Value>,
    owner: &str,
    notes: &mut Vec<String>,
) -> bool {
    let Some(v) = annotations.get("dapr.io/enabled") else {
        return false;
    };
    let said = a::text("dapr.io/enabled", v).unwrap_or_default();
    if said.eq_ignore_ascii_case("true") {
        return true;
    }
    if !matches!(a::boolean("dapr.io/enabled", v), Ok(false)) {
        notes.push(format!(
            "{owner}: dapr.io/enabled is {said:?}; only \"true\" adds a sidecar; left as it is"
        ));
    }
    false
}

/// The sidecar's listening ports.
struct Ports {
    http: u16,
    grpc: u16,
    mesh: u16,
    metrics: u16,
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
    if let Some(name) = sidecar_in(spec) {
        notes.push(format!(
            "{owner}: already has a container named {name}; left as it is"
        ));
        return Ok(());
    }
    let app_id = app_id(annotations, owner)?;
    notes.extend(warnings(spec, annotations, &app_id));
    let ports = Ports::from(annotations)?;
    let Mounted {
        volumes,
        mounts,
        config,
    } = volumes(annotations, args, spec)?;
    let container = container(annotations, &app_id, args, &ports, mounts, config)?;
    let protocol = annotations
        .get("dapr.io/app-protocol")
        .map_or(Ok("http".to_owned()), |v| {
            a::text("dapr.io/app-protocol", v)
        })?;
    tell_the_app(spec, &ports, &protocol)?;
    let inits = spec.entry("initContainers").or_insert_with(|| json!([]));
    let inits = inits
        .as_array_mut()
        .ok_or("spec.initContainers is not a list")?;
    // First among the init containers: the app's own init containers may use its APIs. With
    // interception, the rules go in before anything else runs.
    inits.insert(0, container);
    if intercept::wanted(annotations)? {
        let ports = [ports.mesh, ports.grpc, ports.metrics];
        inits.insert(0, intercept::init_container(annotations, args, ports)?);
    }
    let vols = spec.entry("volumes").or_insert_with(|| json!([]));
    let vols = vols.as_array_mut().ok_or("spec.volumes is not a list")?;
    for v in volumes {
        if vols.iter().any(|have| have.get("name") == v.get("name")) {
            return Err(format!("the pod already has a volume named {}", v["name"]));
        }
        vols.push(v);
    }
    label(template, &app_id);
    Ok(())
}

/// Dapr's labels of an injected pod.
fn label(template: &mut Value, app_id: &str) {
    let labels = template
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(labels)) = labels {
        labels.insert("dapr.io/app-id".into(), app_id.into());
        labels.insert("dapr.io/sidecar-injected".into(), "true".into());
    }
}

/// What the operator should hear: a service account that is not the app id, and annotations
/// this sidecar has no use for.
fn warnings(
    spec: &Map<String, Value>,
    annotations: &Map<String, Value>,
    app_id: &str,
) -> Vec<String> {
    let mut notes = Vec::new();
    let account = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let dns_label = !app_id.is_empty()
        && app_id.len() <= 63
        && app_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !app_id.starts_with('-')
        && !app_id.ends_with('-');
    if !dns_label {
        notes.push(format!(
            "{app_id}: no service account can have this name, so the CA service cannot issue this identity to a pod; on Kubernetes use an app id of lowercase letters, digits and '-'"
        ));
    } else if account != app_id {
        notes.push(format!(
            "{app_id}: runs as service account {account:?}; the CA service issues the identity of the service account, so set serviceAccountName: {app_id}"
        ));
    }
    for name in annotations.keys() {
        if name.starts_with("outrider.io/")
            && name != RESOURCES
            && !intercept::ANNOTATIONS.contains(&name.as_str())
        {
            notes.push(format!("{app_id}: unknown annotation {name}; ignored"));
        }
        if name.starts_with("dapr.io/")
            && !HANDLED.contains(&name.as_str())
            && !FLAGS.iter().any(|(n, _, _)| n == name)
        {
            notes.push(format!(
                "{app_id}: annotation {name} has no effect on this sidecar; ignored"
            ));
        }
    }
    notes
}

impl Ports {
    fn from(annotations: &Map<String, Value>) -> Result<Self, String> {
        let port = |name: &str, default: u16| {
            annotations
                .get(name)
                .map_or(Ok(default), |v| a::port(name, v))
        };
        Ok(Self {
            http: 3500,
            grpc: port("dapr.io/grpc-port", 50001)?,
            mesh: port("dapr.io/internal-grpc-port", 50002)?,
            metrics: port("dapr.io/metrics-port", 9090)?,
        })
    }
}

/// The name of a sidecar container the pod already has.
fn sidecar_in(spec: &Map<String, Value>) -> Option<&'static str> {
    ["initContainers", "containers"].iter().find_map(|list| {
        let names = spec.get(*list)?.as_array()?;
        SIDECARS.into_iter().find(|s| {
            names
                .iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(*s))
        })
    })
}

fn app_id(annotations: &Map<String, Value>, owner: &str) -> Result<String, String> {
    let id = match annotations.get("dapr.io/app-id") {
        Some(v) => a::text("dapr.io/app-id", v)?,
        None if !owner.is_empty() => owner.to_owned(),
        None => return Err("no dapr.io/app-id and no metadata.name to take it from".into()),
    };
    if !crate::config::is_app_id(&id) {
        return Err(format!(
            "dapr.io/app-id {id:?}: letters, digits, '-' and '_' only"
        ));
    }
    Ok(id)
}

/// What the pod and the sidecar get mounted.
struct Mounted {
    /// The pod's new volumes.
    volumes: Vec<Value>,
    /// The sidecar's mounts.
    mounts: Vec<Value>,
    /// The `--config` file, when a Configuration is mounted.
    config: Option<String>,
}

/// The pod's new volumes, the sidecar's mounts (with `dapr.io/volume-mounts[-rw]` of the pod's
/// own volumes, and the ConfigMaps `dapr.io/config` and `outrider.io/resources` name), and the
/// `--config` file.
fn volumes(
    annotations: &Map<String, Value>,
    args: &InjectArgs,
    spec: &Map<String, Value>,
) -> Result<Mounted, String> {
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
    let mut config = None;
    if let Some(v) = annotations.get("dapr.io/config") {
        let name = a::text("dapr.io/config", v)?;
        volumes.push(json!({"name": "outrider-config", "configMap": {"name": name}}));
        mounts.push(json!({"name": "outrider-config", "mountPath": "/etc/outrider/config", "readOnly": true}));
        config = Some("/etc/outrider/config/config.yaml".to_owned());
    }
    if let Some(v) = annotations.get(RESOURCES) {
        let name = a::text(RESOURCES, v)?;
        volumes.push(json!({"name": "outrider-resources", "configMap": {"name": name}}));
        mounts.push(json!({"name": "outrider-resources", "mountPath": "/etc/outrider/resources", "readOnly": true}));
    }
    let own: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    for (annotation, read_only) in [
        ("dapr.io/volume-mounts", true),
        ("dapr.io/volume-mounts-rw", false),
    ] {
        let Some(v) = annotations.get(annotation) else {
            continue;
        };
        for item in a::text(annotation, v)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some((name, path)) = item
                .split_once(':')
                .filter(|(n, p)| !n.is_empty() && p.starts_with('/'))
            else {
                return Err(format!("{annotation}: {item:?} is not volume:/path"));
            };
            if !own.contains(&name) {
                return Err(format!("{annotation}: the pod has no volume {name:?}"));
            }
            mounts.push(json!({"name": name, "mountPath": path, "readOnly": read_only}));
        }
    }
    Ok(Mounted {
        volumes,
        mounts,
        config,
    })
}

/// The sidecar's command line.
fn flags(
    annotations: &Map<String, Value>,
    app_id: &str,
    args: &InjectArgs,
    config: Option<String>,
) -> Result<Vec<String>, String> {
    let mut flags: Vec<String> = [
        "run",
        "--mode",
        "kubernetes",
        "--app-id",
        app_id,
        "--sentry-address",
        &args.sentry_address,
        "--trust-anchors",
        "/var/run/secrets/outrider.io/trust-anchors/bundle.pem",
        "--ca-token-file",
        "/var/run/secrets/outrider.io/ca-token/token",
        "--control-plane-namespace",
        &args.control_plane_namespace,
        "--trust-domain",
        &args.trust_domain,
        "--data-dir",
        "/var/lib/outrider",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if annotations.contains_key("dapr.io/max-body-size")
        && annotations.contains_key("dapr.io/http-max-request-size")
    {
        return Err(
            "dapr.io/max-body-size and dapr.io/http-max-request-size say the same thing; keep one"
                .into(),
        );
    }
    for (annotation, flag, kind) in FLAGS {
        if let Some(v) = annotations.get(*annotation) {
            flags.extend(a::flag_of(annotation, flag, *kind, v)?);
        }
    }
    if let Some(file) = config {
        flags.extend(["--config".to_owned(), file]);
    }
    if annotations.contains_key(RESOURCES) {
        flags.extend([
            "--resources-path".to_owned(),
            "/etc/outrider/resources".to_owned(),
        ]);
    }
    if intercept::wanted(annotations)? {
        flags.push("--intercept".to_owned());
    }
    Ok(flags)
}

/// The sidecar container, with its probes on the admin listener.
fn container(
    annotations: &Map<String, Value>,
    app_id: &str,
    args: &InjectArgs,
    ports: &Ports,
    mounts: Vec<Value>,
    config: Option<String>,
) -> Result<Value, String> {
    let flags = flags(annotations, app_id, args, config)?;
    let image = annotations
        .get("dapr.io/sidecar-image")
        .map_or(Ok(args.image.clone()), |v| {
            a::text("dapr.io/sidecar-image", v)
        })?;
    let seccomp = annotations
        .get("dapr.io/sidecar-seccomp-profile-type")
        .map_or(Ok("RuntimeDefault".to_owned()), |v| {
            a::text("dapr.io/sidecar-seccomp-profile-type", v)
        })?;
    Ok(json!({
        "name": NAME,
        "image": image,
        "restartPolicy": "Always",
        "args": flags,
        "env": a::env(annotations)?,
        "ports": [
            {"name": "dapr-http", "containerPort": ports.http},
            {"name": "dapr-grpc", "containerPort": ports.grpc},
            {"name": "mesh", "containerPort": ports.mesh},
            {"name": "mesh-udp", "containerPort": ports.mesh, "protocol": "UDP"},
            {"name": "dapr-metrics", "containerPort": ports.metrics},
        ],
        // The admin listener: the APIs listen on loopback, the kubelet probes the pod's address.
        "startupProbe": {"httpGet": {"path": "/healthz", "port": ports.metrics}, "periodSeconds": 1, "failureThreshold": 120},
        "readinessProbe": a::probe(annotations, "readiness", "/ready", ports.metrics, [0, 1, 5, 3])?,
        "livenessProbe": a::probe(annotations, "liveness", "/healthz", ports.metrics, [0, 3, 10, 6])?,
        "resources": a::resources(annotations)?,
        "securityContext": {
            "runAsNonRoot": true, "runAsUser": intercept::SIDECAR_UID, "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": seccomp},
        },
        "volumeMounts": mounts,
    }))
}

/// `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT` and `APP_PROTOCOL` for each app container that does not
/// set them itself: the SDKs find their sidecar through them.
fn tell_the_app(
    spec: &mut Map<String, Value>,
    ports: &Ports,
    protocol: &str,
) -> Result<(), String> {
    let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) else {
        return Err("the pod template has no containers".into());
    };
    for c in containers {
        let env = c
            .as_object_mut()
            .ok_or("a container is not a mapping")?
            .entry("env")
            .or_insert_with(|| json!([]));
        let env = env
            .as_array_mut()
            .ok_or("a container's env is not a list")?;
        for (name, value) in [
            ("DAPR_HTTP_PORT", ports.http.to_string()),
            ("DAPR_GRPC_PORT", ports.grpc.to_string()),
            ("APP_PROTOCOL", protocol.to_ascii_lowercase()),
        ] {
            if !env
                .iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(name))
            {
                env.push(json!({"name": name, "value": value}));
            }
        }
    }
    Ok(())
}
