//! Naming the target of intercepted traffic: from an HTTP request's Host (or `:authority`), and
//! from the address the app connected to. Pure: what discovery knows is passed in.

use std::net::SocketAddr;

use outrider_discovery::Target;

/// A target a Host names, and how sure the name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    /// A form only the mesh uses (`app`, `app.ns.svc`, `app.ns.svc.<cluster domain>`): worth
    /// waiting for discovery to find it.
    Firm(Target),
    /// `app.ns`, which an ordinary domain name (`example.com`) also matches: a mesh target only
    /// if discovery already knows it.
    Maybe(Target),
}

impl Named {
    pub(crate) fn target(&self) -> &Target {
        match self {
            Named::Firm(t) | Named::Maybe(t) => t,
        }
    }
}

/// The target a Host names, if it has one of the mesh's forms, with or without a port:
/// `app` (this sidecar's namespace), `app.ns`, `app.ns.svc`, `app.ns.svc.<cluster_domain>`.
/// IP literals and other names name none.
pub(crate) fn host_target(host: &str, namespace: &str, cluster_domain: &str) -> Option<Named> {
    let name = strip_port(host.trim())?.trim_end_matches('.');
    if name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let name = name.to_ascii_lowercase();
    let domain = cluster_domain.trim_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    if !labels.iter().all(|l| is_label(l)) {
        return None;
    }
    let in_cluster =
        |rest: &[&str]| rest.is_empty() || (!domain.is_empty() && rest.join(".") == domain);
    match labels.as_slice() {
        [app] => Some(Named::Firm(Target::new(*app, namespace))),
        [app, ns] => Some(Named::Maybe(Target::new(*app, *ns))),
        [app, ns, "svc", rest @ ..] if in_cluster(rest) => {
            Some(Named::Firm(Target::new(*app, *ns)))
        }
        _ => None,
    }
}

/// `name` without its port: `name:80` → `name`, `[::1]:80` → `::1`, `[::1]` → `::1`. `None`
/// for a malformed bracket or port.
fn strip_port(host: &str) -> Option<&str> {
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after {
            "" => Some(ip),
            p => p
                .strip_prefix(':')
                .filter(|p| p.parse::<u16>().is_ok())
                .map(|_| ip),
        };
    }
    match host.rsplit_once(':') {
        // A bare IPv6 literal has several colons and no port.
        Some((name, _)) if name.contains(':') => Some(host),
        Some((name, port)) => port.parse::<u16>().ok().map(|_| name),
        None => Some(host),
    }
}

/// A label of an app id or namespace: the characters `parse_target` accepts.
fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where traffic addressed to a host (not a name) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ByAddress {
    /// One app of the mesh runs there: its sidecar's mesh address.
    Mesh(Target, SocketAddr),
    /// Several do, and the address alone cannot tell which one the app meant.
    Ambiguous(Vec<Target>),
    /// None: a destination outside the mesh.
    Passthrough,
}

/// Decides from what discovery knows at the destination's address.
pub(crate) fn by_address(found: Vec<(Target, SocketAddr)>) -> ByAddress {
    let mut targets: Vec<Target> = found.iter().map(|(t, _)| t.clone()).collect();
    targets.dedup();
    match (targets.len(), found.into_iter().next()) {
        (1, Some((t, addr))) => ByAddress::Mesh(t, addr),
        (0, _) | (_, None) => ByAddress::Passthrough,
        _ => ByAddress::Ambiguous(targets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(app: &str, ns: &str) -> Target {
        Target::new(app, ns)
    }

    #[test]
    fn host_forms() {
        let firm = |a, n| Some(Named::Firm(t(a, n)));
        let maybe = |a, n| Some(Named::Maybe(t(a, n)));
        let cases: &[(&str, Option<Named>)] = &[
            ("orders", firm("orders", "shop")),
            ("orders:8080", firm("orders", "shop")),
            ("ORDERS", firm("orders", "shop")),
            ("orders.", firm("orders", "shop")),
            ("orders.prod", maybe("orders", "prod")),
            ("orders.prod:80", maybe("orders", "prod")),
            ("example.com", maybe("example", "com")),
            ("orders.prod.svc", firm("orders", "prod")),
            ("orders.prod.svc.cluster.local", firm("orders", "prod")),
            ("orders.prod.svc.cluster.local:9000", firm("orders", "prod")),
            ("orders.prod.svc.cluster.local.", firm("orders", "prod")),
            // Another cluster's domain, or longer names: not the mesh's.
            ("orders.prod.svc.other.domain", None),
            ("api.github.com", None),
            ("a.b.c.d", None),
            // Addresses name no app.
            ("10.0.0.7", None),
            ("10.0.0.7:80", None),
            ("[::1]:80", None),
            ("[::1]", None),
            ("::1", None),
            ("fe80::1", None),
            // Malformed.
            ("", None),
            ("orders:http", None),
            ("orders:99999", None),
            ("[::1", None),
            ("[::1]x", None),
            ("ord ers", None),
            ("orders..prod", None),
            ("ord/ers", None),
        ];
        for (host, want) in cases {
            assert_eq!(
                &host_target(host, "shop", "cluster.local"),
                want,
                "{host:?}"
            );
        }
        // The cluster domain is configurable, and an empty one allows only `.svc`.
        assert_eq!(
            host_target("a.b.svc.corp.internal", "x", "corp.internal"),
            firm("a", "b")
        );
        assert_eq!(host_target("a.b.svc.cluster.local", "x", ""), None);
    }

    #[test]
    fn addresses() {
        let addr = |p| SocketAddr::from(([10, 0, 0, 2], p));
        assert_eq!(by_address(vec![]), ByAddress::Passthrough);
        assert_eq!(
            by_address(vec![(t("b", "ns"), addr(50002))]),
            ByAddress::Mesh(t("b", "ns"), addr(50002))
        );
        // Two instances of one app at one address: still that app.
        assert_eq!(
            by_address(vec![(t("b", "ns"), addr(1)), (t("b", "ns"), addr(2))]),
            ByAddress::Mesh(t("b", "ns"), addr(1))
        );
        assert_eq!(
            by_address(vec![(t("b", "ns"), addr(1)), (t("c", "ns"), addr(2))]),
            ByAddress::Ambiguous(vec![t("b", "ns"), t("c", "ns")])
        );
    }
}
