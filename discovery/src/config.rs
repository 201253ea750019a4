//! The `nameResolution` section of a Dapr `Configuration`, as far as this crate owns it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Target;

/// `spec.nameResolution` as written in the YAML.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameResolution {
    /// `local` (default), `static`; `mdns` and `dns` are not available yet.
    #[serde(default)]
    pub component: String,
    /// Ignored; Dapr writes `v1`.
    #[serde(default)]
    pub version: String,
    /// Resolver-specific settings.
    #[serde(default)]
    pub configuration: serde_json::Value,
}

/// A validated resolver choice.
#[derive(Clone, Debug, PartialEq)]
pub enum ResolverConfig {
    /// The per-user registry directory on this host.
    Local,
    /// A fixed map of targets to addresses.
    Static(BTreeMap<Target, Vec<SocketAddr>>),
}

/// A problem in the `nameResolution` section: which field, which value, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the field, from `spec.nameResolution`.
    pub field: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

const FIELD: &str = "spec.nameResolution";

impl NameResolution {
    /// Validates the section. `namespace` is the sidecar's own, used for targets written
    /// without one. Every problem is reported, not only the first.
    pub fn validate(&self, namespace: &str) -> Result<ResolverConfig, Vec<ConfigError>> {
        match self.component.to_ascii_lowercase().as_str() {
            "" | "local" => Ok(ResolverConfig::Local),
            "static" => parse_static(&self.configuration, namespace).map(ResolverConfig::Static),
            "mdns" | "dns" | "kubernetes" => Err(vec![err(
                format!("{FIELD}.component"),
                format!("{:?} is not available yet; use \"local\" or \"static\"", self.component),
            )]),
            other => Err(vec![err(
                format!("{FIELD}.component"),
                format!("unknown resolver {other:?}; expected \"local\" or \"static\""),
            )]),
        }
    }
}

fn parse_static(
    cfg: &serde_json::Value,
    namespace: &str,
) -> Result<BTreeMap<Target, Vec<SocketAddr>>, Vec<ConfigError>> {
    let base = format!("{FIELD}.configuration");
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    let apps = cfg.get("apps").cloned();
    let file = cfg.get("file").and_then(|f| f.as_str()).map(PathBuf::from);
    if apps.is_none() && file.is_none() {
        return Err(vec![err(&base, "the static resolver needs `apps` (a map of app id to addresses) or `file`")]);
    }
    if let Some(path) = &file {
        match read_file(path) {
            Ok(v) => add_apps(&v, &format!("{base}.file({})", path.display()), namespace, &mut out, &mut errors),
            Err(e) => errors.push(err(format!("{base}.file"), format!("{}: {e}", path.display()))),
        }
    }
    if let Some(apps) = &apps {
        add_apps(apps, &format!("{base}.apps"), namespace, &mut out, &mut errors);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn read_file(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_saphyr::from_str(&text).map_err(|e| e.to_string())
}

fn add_apps(
    apps: &serde_json::Value,
    field: &str,
    namespace: &str,
    out: &mut BTreeMap<Target, Vec<SocketAddr>>,
    errors: &mut Vec<ConfigError>,
) {
    let Some(map) = apps.as_object() else {
        errors.push(err(field, format!("expected a map of app id to addresses, got {apps}")));
        return;
    };
    for (name, addrs) in map {
        let target = match name.split_once('.') {
            None => Target::new(name.clone(), namespace),
            Some((app, ns)) if !app.is_empty() && !ns.is_empty() && !ns.contains('.') => Target::new(app, ns),
            Some(_) => {
                errors.push(err(format!("{field}.{name}"), format!("{name:?} is not `app-id` or `app-id.namespace`")));
                continue;
            }
        };
        let list = match addrs {
            serde_json::Value::String(s) => vec![serde_json::Value::String(s.clone())],
            serde_json::Value::Array(a) => a.clone(),
            other => {
                errors.push(err(format!("{field}.{name}"), format!("expected a list of host:port, got {other}")));
                continue;
            }
        };
        for (i, a) in list.iter().enumerate() {
            match a.as_str().map(str::parse::<SocketAddr>) {
                Some(Ok(addr)) => out.entry(target.clone()).or_default().push(addr),
                _ => errors.push(err(format!("{field}.{name}[{i}]"), format!("{a} is not an IP:port address"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nr(component: &str, configuration: serde_json::Value) -> NameResolution {
        NameResolution { component: component.into(), version: "v1".into(), configuration }
    }

    #[test]
    fn defaults_to_local() {
        assert_eq!(NameResolution::default().validate("default"), Ok(ResolverConfig::Local));
        assert_eq!(nr("Local", json!(null)).validate("default"), Ok(ResolverConfig::Local));
    }

    #[test]
    fn static_inline_with_namespaces() {
        let cfg = nr("static", json!({"apps": {"b": ["127.0.0.1:1", "127.0.0.1:2"], "c.prod": "[::1]:3"}}));
        let ResolverConfig::Static(map) = cfg.validate("dev").unwrap() else { panic!() };
        assert_eq!(map[&Target::new("b", "dev")].len(), 2);
        assert_eq!(map[&Target::new("c", "prod")], vec!["[::1]:3".parse().unwrap()]);
    }

    #[test]
    fn static_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.yaml");
        std::fs::write(&path, "b:\n  - 127.0.0.1:7\n").unwrap();
        let cfg = nr("static", json!({"file": path}));
        let ResolverConfig::Static(map) = cfg.validate("default").unwrap() else { panic!() };
        assert_eq!(map[&Target::new("b", "default")], vec!["127.0.0.1:7".parse().unwrap()]);
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let cfg = nr("static", json!({"apps": {"b": ["nope", "127.0.0.1:1", 5], "a.b.c": ["127.0.0.1:1"]}}));
        let errs = cfg.validate("default").unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.nameResolution.configuration.apps.a.b.c",
                "spec.nameResolution.configuration.apps.b[0]",
                "spec.nameResolution.configuration.apps.b[2]"
            ]
        );
        assert!(errs[1].message.contains("\"nope\""));
    }

    #[test]
    fn unknown_and_unavailable_components_are_errors() {
        for c in ["consul", "mdns"] {
            let e = nr(c, json!(null)).validate("default").unwrap_err();
            assert_eq!(e[0].field, "spec.nameResolution.component");
            assert!(e[0].message.contains(c), "{e:?}");
        }
        assert!(nr("static", json!({})).validate("default").is_err());
    }
}
