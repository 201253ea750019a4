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
    /// `local` (default), `static`, `mdns` or `dns`.
    #[serde(default)]
    pub component: String,
    /// Ignored; Dapr writes `v1`.
    #[serde(default)]
    pub version: String,
    /// Resolver-specific settings, plus `loadBalancing`, which every resolver takes.
    #[serde(default)]
    pub configuration: serde_json::Value,
}

/// The validated section: which resolver, and how requests are spread over what it finds.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    /// The resolver.
    pub resolver: ResolverConfig,
    /// The balancer over each target's endpoints.
    pub balancing: Balancing,
}

/// How a request picks one of a target's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balancing {
    /// In turn (Dapr's behaviour, the default).
    #[default]
    RoundRobin,
    /// The less loaded of two endpoints drawn at random, load being the peak-EWMA latency times
    /// the requests in flight (Linkerd's balancer).
    P2cPeakEwma,
}

impl Balancing {
    /// The name written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Balancing::RoundRobin => "roundRobin",
            Balancing::P2cPeakEwma => "p2c",
        }
    }
}

/// A validated resolver choice.
#[derive(Clone, Debug, PartialEq)]
pub enum ResolverConfig {
    /// The per-user registry directory on this host.
    Local,
    /// A fixed map of targets to addresses.
    Static(BTreeMap<Target, Vec<SocketAddr>>),
    /// Multicast DNS on the local link.
    Mdns(MdnsConfig),
    /// Unicast DNS (Kubernetes-style service names).
    Dns(DnsConfig),
}

/// Settings of the `mdns` resolver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdnsConfig {
    /// Interfaces to announce and browse on, by name; empty means every interface.
    pub interfaces: Vec<String>,
    /// The UDP port of mDNS (5353; another one isolates a group of sidecars, e.g. in tests).
    pub port: u16,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            port: 5353,
        }
    }
}

/// Settings of the `dns` resolver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The name to look up, with `{appId}`, `{namespace}` and `{clusterDomain}` filled in.
    pub template: String,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// The SRV label prefix (`_mesh._tcp`), looked up first; `None` skips SRV.
    pub srv: Option<String>,
    /// The mesh port used with A/AAAA answers (SRV answers carry their own).
    pub mesh_port: u16,
    /// Name servers to ask; empty means the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            template: "{appId}.{namespace}.svc.{clusterDomain}".into(),
            cluster_domain: "cluster.local".into(),
            srv: Some("_mesh._tcp".into()),
            mesh_port: DEFAULT_MESH_PORT,
            nameservers: Vec::new(),
        }
    }
}

impl DnsConfig {
    /// The fully qualified name to look up for `target`.
    pub fn name_of(&self, target: &Target) -> String {
        let name = self
            .template
            .replace("{appId}", &target.app_id)
            .replace("{namespace}", &target.namespace)
            .replace("{clusterDomain}", &self.cluster_domain);
        if name.ends_with('.') {
            name
        } else {
            format!("{name}.")
        }
    }
}

/// The mesh port sidecars listen on unless told otherwise (Dapr's internal gRPC port in
/// Kubernetes).
pub const DEFAULT_MESH_PORT: u16 = 50002;

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
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

const FIELD: &str = "spec.nameResolution";
const CONF: &str = "spec.nameResolution.configuration";

impl NameResolution {
    /// Validates the section. `namespace` is the sidecar's own, used for targets written
    /// without one. Every problem is reported, not only the first.
    pub fn validate(&self, namespace: &str) -> Result<Resolution, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let balancing = match self.configuration.get("loadBalancing") {
            None | Some(serde_json::Value::Null) => Balancing::RoundRobin,
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("roundRobin") => {
                Balancing::RoundRobin
            }
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("p2c") => {
                Balancing::P2cPeakEwma
            }
            Some(other) => {
                errors.push(err(
                    format!("{CONF}.loadBalancing"),
                    format!("{other} is not a balancer; expected \"roundRobin\" or \"p2c\""),
                ));
                Balancing::RoundRobin
            }
        };
        let resolver = match self.component.to_ascii_lowercase().as_str() {
            "" | "local" => {
                keys(&self.configuration, &[], &mut errors);
                Ok(ResolverConfig::Local)
            }
            "static" => {
                keys(&self.configuration, &["apps", "file"], &mut errors);
                parse_static(&self.configuration, namespace).map(ResolverConfig::Static)
            }
            "mdns" => parse_mdns(&self.configuration).map(ResolverConfig::Mdns),
            "dns" => parse_dns(&self.configuration).map(ResolverConfig::Dns),
            _ => Err(vec![err(
                format!("{FIELD}.component"),
                format!(
                    "unknown resolver {:?}; expected \"local\", \"static\", \"mdns\" or \"dns\"",
                    self.component
                ),
            )]),
        };
        match resolver {
            Ok(resolver) if errors.is_empty() => Ok(Resolution {
                resolver,
                balancing,
            }),
            Ok(_) => Err(errors),
            Err(mut e) => {
                errors.append(&mut e);
                Err(errors)
            }
        }
    }
}

/// The configuration as a map whose keys are all in `allowed` (plus `loadBalancing`).
fn keys<'a>(
    cfg: &'a serde_json::Value,
    allowed: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<&'a serde_json::Map<String, serde_json::Value>> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, serde_json::Value>> =
        std::sync::OnceLock::new();
    let map = match cfg {
        serde_json::Value::Null => EMPTY.get_or_init(serde_json::Map::new),
        serde_json::Value::Object(m) => m,
        other => {
            errors.push(err(CONF, format!("expected a map, got {other}")));
            return None;
        }
    };
    for k in map.keys() {
        if k != "loadBalancing" && !allowed.contains(&k.as_str()) {
            errors.push(err(
                format!("{CONF}.{k}"),
                format!("unknown setting {k:?}; expected one of {allowed:?}"),
            ));
        }
    }
    Some(map)
}

fn parse_mdns(cfg: &serde_json::Value) -> Result<MdnsConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = MdnsConfig::default();
    if let Some(map) = keys(cfg, &["interfaces", "port"], &mut errors) {
        if let Some(v) = map.get("interfaces") {
            let field = format!("{CONF}.interfaces");
            out.interfaces = strings(v, &field, &mut errors);
            // A name that matches nothing would silently announce nowhere.
            let listed = v.as_array().map_or_else(|| vec![v.clone()], Clone::clone);
            for (i, name) in listed.iter().enumerate() {
                // Interface names are at most 15 bytes, never `.`/`..`, never contain `/`.
                let plausible =
                    |n: &str| n.len() <= 15 && !n.contains('/') && n != "." && n != "..";
                if let Some(name) = name.as_str().filter(|n| !n.is_empty())
                    && !(plausible(name) && Path::new("/sys/class/net").join(name).exists())
                {
                    let at = if v.is_array() {
                        format!("{field}[{i}]")
                    } else {
                        field.clone()
                    };
                    errors.push(err(
                        at,
                        format!("no interface {name:?} on this host (see `ip link`)"),
                    ));
                }
            }
        }
        if let Some(v) = map.get("port") {
            out.port = port(v, &format!("{CONF}.port"), &mut errors).unwrap_or(out.port);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_dns(cfg: &serde_json::Value) -> Result<DnsConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = DnsConfig::default();
    let allowed = [
        "template",
        "clusterDomain",
        "srv",
        "meshPort",
        "nameservers",
    ];
    if let Some(map) = keys(cfg, &allowed, &mut errors) {
        for (key, slot) in [
            ("template", &mut out.template),
            ("clusterDomain", &mut out.cluster_domain),
        ] {
            match map.get(key) {
                None => {}
                Some(serde_json::Value::String(s)) if !s.is_empty() => *slot = s.clone(),
                Some(other) => errors.push(err(
                    format!("{CONF}.{key}"),
                    format!("expected a non-empty string, got {other}"),
                )),
            }
        }
        let sample = out.name_of(&Target::new("app", "ns"));
        if sample.contains(['{', '}']) || sample.starts_with('.') || sample.contains("..") {
            errors.push(err(
                format!("{CONF}.template"),
                format!(
                    "{:?} with clusterDomain {:?} gives {sample:?}; placeholders are {{appId}}, {{namespace}} and \
                     {{clusterDomain}}",
                    out.template, out.cluster_domain
                ),
            ));
        }
        if !out.template.contains("{appId}") {
            errors.push(err(
                format!("{CONF}.template"),
                format!(
                    "{:?} does not contain {{appId}}, so every app would resolve alike",
                    out.template
                ),
            ));
        }
        match map.get("srv") {
            None => {}
            Some(serde_json::Value::String(s)) if s.is_empty() => out.srv = None,
            Some(serde_json::Value::String(s)) => {
                out.srv = Some(s.trim_end_matches('.').to_owned())
            }
            Some(other) => errors.push(err(
                format!("{CONF}.srv"),
                format!("expected a string such as \"_mesh._tcp\", got {other}"),
            )),
        }
        if let Some(v) = map.get("meshPort") {
            out.mesh_port =
                port(v, &format!("{CONF}.meshPort"), &mut errors).unwrap_or(out.mesh_port);
        }
        if let Some(v) = map.get("nameservers") {
            let field = format!("{CONF}.nameservers");
            for (i, s) in strings(v, &field, &mut errors).into_iter().enumerate() {
                match s.parse::<SocketAddr>().or_else(|_| {
                    s.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                }) {
                    Ok(a) => out.nameservers.push(a),
                    Err(_) => errors.push(err(
                        format!("{field}[{i}]"),
                        format!("{s:?} is not an IP address or IP:port"),
                    )),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn strings(v: &serde_json::Value, field: &str, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let list = match v {
        serde_json::Value::String(s) => return vec![s.clone()],
        serde_json::Value::Array(a) => a,
        other => {
            errors.push(err(
                field,
                format!("expected a list of strings, got {other}"),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        match item.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_owned()),
            _ => errors.push(err(
                format!("{field}[{i}]"),
                format!("expected a non-empty string, got {item}"),
            )),
        }
    }
    out
}

fn port(v: &serde_json::Value, field: &str, errors: &mut Vec<ConfigError>) -> Option<u16> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match n.and_then(|n| u16::try_from(n).ok()).filter(|p| *p != 0) {
        Some(p) => Some(p),
        None => {
            errors.push(err(field, format!("{v} is not a port (1-65535)")));
            None
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
        return Err(vec![err(
            &base,
            "the static resolver needs `apps` (a map of app id to addresses) or `file`",
        )]);
    }
    if let Some(path) = &file {
        match read_file(path) {
            Ok(v) => add_apps(
                &v,
                &format!("{base}.file({})", path.display()),
                namespace,
                &mut out,
                &mut errors,
            ),
            Err(e) => errors.push(err(
                format!("{base}.file"),
                format!("{}: {e}", path.display()),
            )),
        }
    }
    if let Some(apps) = &apps {
        add_apps(
            apps,
            &format!("{base}.apps"),
            namespace,
            &mut out,
            &mut errors,
        );
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
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
        errors.push(err(
            field,
            format!("expected a map of app id to addresses, got {apps}"),
        ));
        return;
    };
    for (name, addrs) in map {
        let target = match name.split_once('.') {
            None => Target::new(name.clone(), namespace),
            Some((app, ns)) if !app.is_empty() && !ns.is_empty() && !ns.contains('.') => {
                Target::new(app, ns)
            }
            Some(_) => {
                errors.push(err(
                    format!("{field}.{name}"),
                    format!("{name:?} is not `app-id` or `app-id.namespace`"),
                ));
                continue;
            }
        };
        let list = match addrs {
            serde_json::Value::String(s) => vec![serde_json::Value::String(s.clone())],
            serde_json::Value::Array(a) => a.clone(),
            other => {
                errors.push(err(
                    format!("{field}.{name}"),
                    format!("expected a list of host:port, got {other}"),
                ));
                continue;
            }
        };
        for (i, a) in list.iter().enumerate() {
            match a.as_str().map(str::parse::<SocketAddr>) {
                Some(Ok(addr)) => out.entry(target.clone()).or_default().push(addr),
                _ => errors.push(err(
                    format!("{field}.{name}[{i}]"),
                    format!("{a} is not an IP:port address"),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nr(component: &str, configuration: serde_json::Value) -> NameResolution {
        NameResolution {
            component: component.into(),
            version: "v1".into(),
            configuration,
        }
    }

    #[test]
    fn defaults_to_local() {
        let local = Resolution {
            resolver: ResolverConfig::Local,
            balancing: Balancing::RoundRobin,
        };
        assert_eq!(
            NameResolution::default().validate("default"),
            Ok(local.clone())
        );
        assert_eq!(nr("Local", json!(null)).validate("default"), Ok(local));
    }

    #[test]
    fn static_inline_with_namespaces() {
        let cfg = nr(
            "static",
            json!({"apps": {"b": ["127.0.0.1:1", "127.0.0.1:2"], "c.prod": "[::1]:3"}}),
        );
        let ResolverConfig::Static(map) = cfg.validate("dev").unwrap().resolver else {
            panic!()
        };
        assert_eq!(map[&Target::new("b", "dev")].len(), 2);
        assert_eq!(
            map[&Target::new("c", "prod")],
            vec!["[::1]:3".parse().unwrap()]
        );
    }

    #[test]
    fn static_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.yaml");
        std::fs::write(&path, "b:\n  - 127.0.0.1:7\n").unwrap();
        let cfg = nr("static", json!({"file": path}));
        let ResolverConfig::Static(map) = cfg.validate("default").unwrap().resolver else {
            panic!()
        };
        assert_eq!(
            map[&Target::new("b", "default")],
            vec!["127.0.0.1:7".parse().unwrap()]
        );
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let cfg = nr(
            "static",
            json!({"apps": {"b": ["nope", "127.0.0.1:1", 5], "a.b.c": ["127.0.0.1:1"]}}),
        );
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
    fn unknown_components_are_errors() {
        for c in ["consul", "kubernetes"] {
            let e = nr(c, json!(null)).validate("default").unwrap_err();
            assert_eq!(e[0].field, "spec.nameResolution.component");
            assert!(e[0].message.contains(c), "{e:?}");
        }
        assert!(nr("static", json!({})).validate("default").is_err());
        let e = nr("Consul", json!(null)).validate("default").unwrap_err();
        assert!(
            e[0].message.contains("\"Consul\""),
            "the value as written: {e:?}"
        );
    }

    #[test]
    fn misspelled_settings_are_errors_for_every_resolver() {
        for (component, cfg) in [
            ("local", json!({"loadBalance": "p2c"})),
            ("static", json!({"apps": {}, "loadBalance": "p2c"})),
        ] {
            let e = nr(component, cfg).validate("default").unwrap_err();
            assert_eq!(
                e[0].field, "spec.nameResolution.configuration.loadBalance",
                "{component}: {e:?}"
            );
        }
        let e = nr("dns", json!({"template": "{appId}.{ns}.svc"}))
            .validate("default")
            .unwrap_err();
        assert_eq!(e[0].field, "spec.nameResolution.configuration.template");
        assert!(e[0].message.contains("{ns}"), "{e:?}");
    }

    #[test]
    fn mdns_settings() {
        let r = nr(
            "mdns",
            json!({"interfaces": ["lo"], "port": 5399, "loadBalancing": "p2c"}),
        )
        .validate("default")
        .unwrap();
        assert_eq!(
            r.resolver,
            ResolverConfig::Mdns(MdnsConfig {
                interfaces: vec!["lo".into()],
                port: 5399
            })
        );
        assert_eq!(r.balancing, Balancing::P2cPeakEwma);
        assert_eq!(
            nr("mdns", json!(null)).validate("x").unwrap().resolver,
            ResolverConfig::Mdns(MdnsConfig::default())
        );
        let errs =
            nr("mdns", json!({"interfaces": ["", "nosuch0"], "port": 70000, "ttl": 3, "loadBalancing": "random"}))
                .validate("default")
                .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.nameResolution.configuration.loadBalancing",
                "spec.nameResolution.configuration.ttl",
                "spec.nameResolution.configuration.interfaces[0]",
                "spec.nameResolution.configuration.interfaces[1]",
                "spec.nameResolution.configuration.port"
            ]
        );
        assert!(errs[0].message.contains("\"random\""), "{errs:?}");
        assert!(
            errs[3].message.contains("no interface \"nosuch0\""),
            "{errs:?}"
        );
        assert!(errs[4].message.contains("70000"), "{errs:?}");
    }

    #[test]
    fn dns_settings_and_names() {
        let r = nr(
            "dns",
            json!({"nameservers": ["10.0.0.10", "127.0.0.1:5353"], "srv": "", "meshPort": 4000, "clusterDomain": "corp"}),
        )
        .validate("default")
        .unwrap();
        let ResolverConfig::Dns(dns) = r.resolver else {
            panic!("{r:?}")
        };
        assert_eq!(
            dns.nameservers,
            [
                "10.0.0.10:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap()
            ]
        );
        assert_eq!((dns.srv.as_deref(), dns.mesh_port), (None, 4000));
        assert_eq!(dns.name_of(&Target::new("b", "prod")), "b.prod.svc.corp.");
        let d = DnsConfig::default();
        assert_eq!(
            (
                d.srv.as_deref(),
                d.name_of(&Target::new("b", "default")).as_str()
            ),
            (Some("_mesh._tcp"), "b.default.svc.cluster.local.")
        );
        let errs = nr(
            "dns",
            json!({"nameservers": ["dns.example"], "template": "{namespace}.x"}),
        )
        .validate("d")
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.nameResolution.configuration.template",
                "spec.nameResolution.configuration.nameservers[0]"
            ]
        );
    }
}
