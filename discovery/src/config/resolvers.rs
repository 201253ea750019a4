//! Each resolver's settings under `spec.nameResolution.configuration`: `static`'s map of apps
//! (inline or from a file; each address a string, or a map with `address`, `transports` and
//! `actors`),
//! `mdns`'s interfaces and port, and `dns`'s name template, lookup and actor host apps.
//! Every problem is reported with its field; the section as a whole is [`super::NameResolution`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{CONF, ConfigError, DnsConfig, FIELD, MdnsConfig, StaticActors, StaticMap, err, keys};
use crate::{Target, Transports};

/// The `mdns` resolver's settings.
pub(super) fn parse_mdns(cfg: &serde_json::Value) -> Result<MdnsConfig, Vec<ConfigError>> {
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
/// The `dns` resolver's settings.
pub(super) fn parse_dns(cfg: &serde_json::Value) -> Result<DnsConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = DnsConfig::default();
    let allowed = [
        "template",
        "clusterDomain",
        "srv",
        "srvUdp",
        "meshPort",
        "nameservers",
        "actorHosts",
    ];
    if let Some(map) = keys(cfg, &allowed, &mut errors) {
        dns_names(map, &mut out, &mut errors);
        dns_lookup(map, &mut out, &mut errors);
        if let Some(v) = map.get("actorHosts") {
            out.actor_hosts = app_ids(v, &format!("{CONF}.actorHosts"), &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `template` and `clusterDomain`, checked by the name they give a sample target.
fn dns_names(
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut DnsConfig,
    errors: &mut Vec<ConfigError>,
) {
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
}

/// How names are looked up: `srv`, `srvUdp`, `meshPort` and `nameservers`.
fn dns_lookup(
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut DnsConfig,
    errors: &mut Vec<ConfigError>,
) {
    // An empty prefix turns that lookup off.
    for (key, slot, example) in [
        ("srv", &mut out.srv, "_mesh._tcp"),
        ("srvUdp", &mut out.srv_udp, "_mesh._udp"),
    ] {
        match map.get(key) {
            None => {}
            Some(serde_json::Value::String(s)) if s.is_empty() => *slot = None,
            Some(serde_json::Value::String(s)) => *slot = Some(s.trim_end_matches('.').to_owned()),
            Some(other) => errors.push(err(
                format!("{CONF}.{key}"),
                format!("expected a string such as {example:?}, got {other}"),
            )),
        }
    }
    if let Some(v) = map.get("meshPort") {
        out.mesh_port = port(v, &format!("{CONF}.meshPort"), errors).unwrap_or(out.mesh_port);
    }
    if let Some(v) = map.get("nameservers") {
        let field = format!("{CONF}.nameservers");
        for (i, s) in strings(v, &field, errors).into_iter().enumerate() {
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

/// A list of app ids of this namespace (`actorHosts`): each a name DNS can look up, so no dots,
/// spaces or slashes; duplicates dropped.
fn app_ids(v: &serde_json::Value, field: &str, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let Some(items) = v.as_array() else {
        errors.push(err(
            field,
            format!("expected a list of app ids such as [\"counter\"], got {v}"),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(id)
                if !id.is_empty()
                    && !id.contains(|c: char| c == '.' || c == '/' || c.is_whitespace()) =>
            {
                if !out.iter().any(|o| o == id) {
                    out.push(id.to_owned());
                }
            }
            _ => errors.push(err(
                format!("{field}[{i}]"),
                format!("{item} is not an app id of this namespace (no dots, slashes or spaces)"),
            )),
        }
    }
    out
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

/// The `static` resolver's map of targets to addresses and what each offers, and the actor
/// types listed behind them.
pub(super) fn parse_static(
    cfg: &serde_json::Value,
    namespace: &str,
) -> Result<(StaticMap, StaticActors), Vec<ConfigError>> {
    let base = format!("{FIELD}.configuration");
    let mut errors = Vec::new();
    let mut out = (BTreeMap::new(), BTreeMap::new());
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
    out: &mut (StaticMap, StaticActors),
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
            serde_json::Value::String(_) | serde_json::Value::Object(_) => vec![addrs.clone()],
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
            if let Some((addr, offered, actors)) =
                endpoint(a, &format!("{field}.{name}[{i}]"), errors)
            {
                out.0
                    .entry(target.clone())
                    .or_default()
                    .push((addr, offered));
                if !actors.is_empty() {
                    out.1.insert((target.clone(), addr), actors);
                }
            }
        }
    }
}

/// One address of the static map: `"IP:port"` (HTTP/2 only) or
/// `{address: "IP:port", transports: ["h2", "h3"], actors: [Counter]}` (`transports` may also
/// be `"h2,h3"`, and left out for HTTP/2 only; `actors`, the actor types hosted there, may be
/// left out for none). Every problem is reported, not only the first.
fn endpoint(
    v: &serde_json::Value,
    field: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<(SocketAddr, Transports, Vec<String>)> {
    let serde_json::Value::Object(map) = v else {
        return address(v, field, errors).map(|a| (a, Transports::H2, Vec::new()));
    };
    for k in map
        .keys()
        .filter(|k| !matches!(k.as_str(), "address" | "transports" | "actors"))
    {
        errors.push(err(
            format!("{field}.{k}"),
            format!("unknown setting {k:?}; expected \"address\", \"transports\" or \"actors\""),
        ));
    }
    let actors = match map.get("actors") {
        None => Some(Vec::new()),
        Some(a) => actor_types(a, &format!("{field}.actors"), errors),
    };
    let addr = match map.get("address") {
        Some(a) => address(a, &format!("{field}.address"), errors),
        None => {
            errors.push(err(
                format!("{field}.address"),
                format!("missing in {v}; expected an IP:port address"),
            ));
            None
        }
    };
    let offered = match map.get("transports") {
        None => Some(Transports::H2),
        Some(t) => transports(t, &format!("{field}.transports"), errors),
    };
    Some((addr?, offered?, actors?))
}

/// An `actors` setting: a list of actor type names.
fn actor_types(
    v: &serde_json::Value,
    field: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<String>> {
    let names = v.as_array().and_then(|items| {
        (items.iter())
            .map(|i| {
                i.as_str()
                    .filter(|s| !s.trim().is_empty() && !s.contains("||"))
            })
            .map(|s| s.map(|s| s.trim().to_owned()))
            .collect::<Option<Vec<String>>>()
    });
    if names.is_none() {
        errors.push(err(
            field,
            format!("{v}: expected a list of actor type names, such as [\"Counter\"]"),
        ));
    }
    names
}

/// An `IP:port` address.
fn address(
    v: &serde_json::Value,
    field: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<SocketAddr> {
    let parsed = v.as_str().and_then(|s| s.parse::<SocketAddr>().ok());
    if parsed.is_none() {
        errors.push(err(field, format!("{v} is not an IP:port address")));
    }
    parsed
}

/// A `transports` setting: a list of names or one comma-separated string.
fn transports(
    v: &serde_json::Value,
    field: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Transports> {
    let parsed = match v {
        serde_json::Value::String(s) => Transports::parse_names(s.split(',')),
        serde_json::Value::Array(items) => {
            match items
                .iter()
                .map(|i| i.as_str())
                .collect::<Option<Vec<&str>>>()
            {
                Some(names) => Transports::parse_names(names),
                None => Err("every transport is a name, \"h2\" or \"h3\"".to_owned()),
            }
        }
        _ => Err("expected a list of transports such as [\"h2\", \"h3\"]".to_owned()),
    };
    match parsed {
        Ok(t) => Some(t),
        Err(why) => {
            errors.push(err(field, format!("{v}: {why}")));
            None
        }
    }
}
