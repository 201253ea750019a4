//! `outrider.io/intercept: "true"`: the pod's plain traffic goes through its sidecar too. An init
//! container runs `outrider init` before the sidecar starts (it needs `NET_ADMIN` and the
//! iptables tools, hence its own image), and the sidecar serves the transparent listeners.
//! `outrider.io/skip-inbound-ports` and `outrider.io/skip-outbound-ports` (comma-separated
//! ports) pass traffic by, e.g. the kubelet's probes of the app in `strict` mode.

use serde_json::{Map, Value, json};

use super::annotations as a;
use crate::cli::InjectArgs;

pub(super) const INTERCEPT: &str = "outrider.io/intercept";
const SKIP_INBOUND: &str = "outrider.io/skip-inbound-ports";
const SKIP_OUTBOUND: &str = "outrider.io/skip-outbound-ports";
/// Our own annotations (besides `outrider.io/resources`).
pub(super) const ANNOTATIONS: [&str; 3] = [INTERCEPT, SKIP_INBOUND, SKIP_OUTBOUND];

/// The uid the sidecar runs as: its own connections are never redirected.
pub(super) const SIDECAR_UID: u16 = 65532;

/// Whether the pod's traffic is intercepted.
pub(super) fn wanted(annotations: &Map<String, Value>) -> Result<bool, String> {
    annotations
        .get(INTERCEPT)
        .map_or(Ok(false), |v| a::boolean(INTERCEPT, v))
}

/// The init container that installs the redirection, keeping the sidecar's own ports out of it.
pub(super) fn init_container(
    annotations: &Map<String, Value>,
    args: &InjectArgs,
    [mesh, grpc, metrics]: [u16; 3],
) -> Result<Value, String> {
    let mut argv: Vec<String> = vec![
        "init".into(),
        "--proxy-uid".into(),
        SIDECAR_UID.to_string(),
        "--mesh-port".into(),
        mesh.to_string(),
        "--dapr-grpc-port".into(),
        grpc.to_string(),
        "--metrics-port".into(),
        metrics.to_string(),
    ];
    for (annotation, flag) in [
        (SKIP_INBOUND, "--skip-inbound-ports"),
        (SKIP_OUTBOUND, "--skip-outbound-ports"),
    ] {
        if let Some(v) = annotations.get(annotation) {
            let text = a::text(annotation, v)?;
            for p in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                a::port(annotation, &Value::String(p.to_owned()))?;
            }
            argv.extend([flag.to_owned(), text.replace(' ', "")]);
        }
    }
    Ok(json!({
        "name": "outrider-init",
        "image": args.init_image,
        "args": argv,
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    }))
}
