//! The `nameResolution` section of a Dapr `Configuration`, as far as this crate owns it.
mod resolvers;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::{Target, Transports};
use resolvers::{parse_dns, parse_mdns, parse_static};

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

/// The `static` resolver's map: each target's addresses with the transports each offers.
pub type StaticMap = BTreeMap<Target, Vec<(SocketAddr, Transports)>>;

/// The actor types the `static` map's entries list (`actors`), by target and address.
pub type StaticActors = BTreeMap<(Target, SocketAddr), Vec<String>>;

/// A validated resolver choice.
#[derive(Clone, Debug, PartialEq)]
pub enum ResolverConfig {
    /// The per-user registry directory on this host.
    Local,
    /// A fixed map of targets to addresses, each with the transports its mesh port offers,
    /// and the actor types hosted behind the addresses that list some.
    Static(StaticMap, StaticActors),
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
    /// The SRV label prefix of the mesh port's UDP side (`_mesh._udp`), looked up after a
    /// successful `srv` lookup: endpoints it lists too also accept HTTP/3 over QUIC. `None`
    /// (or `srv` being `None`) means every endpoint is HTTP/2 only.
    pub srv_udp: Option<String>,
    /// The mesh port used with A/AAAA answers (SRV answers carry their own).
    pub mesh_port: u16,
    /// Name servers to ask; empty means the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// The apps (ids, in this sidecar's namespace) whose sidecars may host actors: DNS cannot
    /// list who hosts what, so each of their sidecars, as DNS lists them, is asked over the
    /// mesh which actor types its app hosts. This sidecar's own app is always asked.
    pub actor_hosts: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            template: "{appId}.{namespace}.svc.{clusterDomain}".into(),
            cluster_domain: "cluster.local".into(),
            srv: Some("_mesh._tcp".into()),
            srv_udp: Some("_mesh._udp".into()),
            mesh_port: DEFAULT_MESH_PORT,
            nameservers: Vec::new(),
            actor_hosts: Vec::new(),
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
                parse_static(&self.configuration, namespace)
                    .map(|(map, actors)| ResolverConfig::Static(map, actors))
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

#[cfg(test)]
mod tests;
