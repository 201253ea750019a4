//! Dapr's `dapr.io/*` pod annotations, read as Dapr's injector reads them, into the sidecar's
//! flags, environment, resources and probes. A value that cannot be read is an error naming the
//! annotation (Dapr would log and use its default; here nothing is written instead).

use serde_json::{Map, Value, json};

/// Annotations that become a flag: annotation, flag, what the value must be.
pub(super) const FLAGS: &[(&str, &str, Kind)] = &[
    ("dapr.io/app-port", "--app-port", Kind::Port),
    (
        "dapr.io/app-protocol",
        "--app-protocol",
        Kind::OneOf(&["http", "https", "grpc", "grpcs", "h2c"]),
    ),
    (
        "dapr.io/log-level",
        "--log-level",
        Kind::OneOf(&["debug", "info", "warn", "error", "fatal"]),
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
    ("dapr.io/grpc-port", "--dapr-grpc-port", Kind::Port),
    ("dapr.io/internal-grpc-port", "--mesh-port", Kind::Port),
    ("dapr.io/max-body-size", "--max-body-size", Kind::Text),
    (
        "dapr.io/http-max-request-size",
        "--max-body-size",
        Kind::Megabytes,
    ),
    (
        "dapr.io/enable-app-health-check",
        "--enable-app-health-check",
        Kind::Bool,
    ),
    (
        "dapr.io/app-health-check-path",
        "--app-health-check-path",
        Kind::Text,
    ),
    (
        "dapr.io/app-health-probe-interval",
        "--app-health-probe-interval",
        Kind::Number,
    ),
    (
        "dapr.io/app-health-probe-timeout",
        "--app-health-probe-timeout",
        Kind::Number,
    ),
    (
        "dapr.io/app-health-threshold",
        "--app-health-threshold",
        Kind::Number,
    ),
    (
        "dapr.io/app-max-concurrency",
        "--app-max-concurrency",
        Kind::Text,
    ),
    (
        "dapr.io/block-shutdown-duration",
        "--dapr-block-shutdown-duration",
        Kind::Text,
    ),
    ("dapr.io/enable-metrics", "--enable-metrics", Kind::Bool),
];

/// Annotations read elsewhere in this module or by the sidecar builder.
pub(super) const HANDLED: &[&str] = &[
    "dapr.io/enabled",
    "dapr.io/app-id",
    "dapr.io/config",
    "dapr.io/sidecar-image",
    "dapr.io/env",
    "dapr.io/env-from-secret",
    "dapr.io/api-token-secret",
    "dapr.io/app-token-secret",
    "dapr.io/volume-mounts",
    "dapr.io/volume-mounts-rw",
    "dapr.io/sidecar-cpu-limit",
    "dapr.io/sidecar-memory-limit",
    "dapr.io/sidecar-cpu-request",
    "dapr.io/sidecar-memory-request",
    "dapr.io/sidecar-seccomp-profile-type",
    "dapr.io/sidecar-liveness-probe-delay-seconds",
    "dapr.io/sidecar-liveness-probe-timeout-seconds",
    "dapr.io/sidecar-liveness-probe-period-seconds",
    "dapr.io/sidecar-liveness-probe-threshold",
    "dapr.io/sidecar-readiness-probe-delay-seconds",
    "dapr.io/sidecar-readiness-probe-timeout-seconds",
    "dapr.io/sidecar-readiness-probe-period-seconds",
    "dapr.io/sidecar-readiness-probe-threshold",
];

#[derive(Clone, Copy)]
pub(super) enum Kind {
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

/// The flag (and value) an annotation becomes.
pub(super) fn flag_of(
    annotation: &str,
    flag: &str,
    kind: Kind,
    v: &Value,
) -> Result<Vec<String>, String> {
    let value = match kind {
        Kind::Port => port(annotation, v)?.to_string(),
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

/// The sidecar's environment: its namespace, a home, `dapr.io/env` (`KEY=value,KEY2=value2`,
/// values may hold commas), `dapr.io/env-from-secret` (`KEY=secret:key`) and the API tokens.
pub(super) fn env(annotations: &Map<String, Value>) -> Result<Vec<Value>, String> {
    let mut env = vec![
        json!({"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        json!({"name": "HOME", "value": "/var/lib/outrider"}),
    ];
    if let Some(v) = annotations.get("dapr.io/env") {
        for (k, val) in pairs("dapr.io/env", &text("dapr.io/env", v)?)? {
            env.push(json!({"name": k, "value": val}));
        }
    }
    if let Some(v) = annotations.get("dapr.io/env-from-secret") {
        for (k, val) in pairs(
            "dapr.io/env-from-secret",
            &text("dapr.io/env-from-secret", v)?,
        )? {
            let (secret, key) = match val.split(':').collect::<Vec<_>>()[..] {
                [name] => (name.to_owned(), name.to_owned()),
                [name, key] => (name.to_owned(), key.to_owned()),
                _ => {
                    return Err(format!(
                        "dapr.io/env-from-secret: {val:?} is not secret or secret:key"
                    ));
                }
            };
            env.push(
                json!({"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}),
            );
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

/// `KEY=value` pairs separated by commas; a comma followed by something other than `NAME=`
/// belongs to the value before it.
fn pairs(annotation: &str, s: &str) -> Result<Vec<(String, String)>, String> {
    let mut parts: Vec<String> = Vec::new();
    for piece in s.split(',') {
        let starts_pair = piece
            .trim_start()
            .split_once('=')
            .is_some_and(|(k, _)| is_env_name(k));
        match parts.last_mut() {
            Some(last) if !starts_pair => {
                last.push(',');
                last.push_str(piece);
            }
            _ => parts.push(piece.to_owned()),
        }
    }
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if is_env_name(k.trim()) => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!("{annotation}: {p:?} is not KEY=value")),
        })
        .collect()
}

fn is_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `dapr.io/sidecar-{cpu,memory}-{request,limit}`, over modest defaults.
pub(super) fn resources(annotations: &Map<String, Value>) -> Result<Value, String> {
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

/// A probe of the admin listener's `path`, with `dapr.io/sidecar-<which>-probe-*` applied.
pub(super) fn probe(
    annotations: &Map<String, Value>,
    which: &str,
    path: &str,
    port: u16,
    defaults: [u64; 4],
) -> Result<Value, String> {
    let mut p = json!({"httpGet": {"path": path, "port": port}});
    let fields = [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "failureThreshold",
    ];
    let names = [
        "delay-seconds",
        "timeout-seconds",
        "period-seconds",
        "threshold",
    ];
    for ((field, name), default) in fields.iter().zip(names).zip(defaults) {
        let annotation = format!("dapr.io/sidecar-{which}-probe-{name}");
        let n = match annotations.get(&annotation) {
            Some(v) => number(&annotation, v)?,
            None => default,
        };
        if n > 0 {
            p[*field] = n.into();
        }
    }
    Ok(p)
}

/// A string annotation (numbers and booleans written without quotes are taken as written).
pub(super) fn text(annotation: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{annotation}: {v} is not a value")),
    }
}

pub(super) fn number(annotation: &str, v: &Value) -> Result<u64, String> {
    text(annotation, v)?
        .parse()
        .map_err(|_| format!("{annotation}: {v} is not a whole number"))
}

pub(super) fn port(annotation: &str, v: &Value) -> Result<u16, String> {
    let n = number(annotation, v)?;
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{annotation} {n} is not a port"))
}

/// Dapr's truthy values (`y`, `yes`, `true`, `t`, `on`, `1`) and their opposites.
pub(super) fn boolean(annotation: &str, v: &Value) -> Result<bool, String> {
    match text(annotation, v)?.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Ok(true),
        "false" | "f" | "no" | "n" | "off" | "0" => Ok(false),
        other => Err(format!("{annotation}: {other:?} is not true or false")),
    }
}
