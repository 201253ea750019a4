//! Name resolution: from a target app id and namespace to the live set of its sidecars' mesh
//! addresses.
//!
//! A [`Resolve`] hands out a [`watch::Receiver`] per target that always holds the current
//! [`EndpointSet`] (possibly empty) and changes as instances come and go; the proxy's balancer
//! reads it on every request. Resolvers are chosen the way Dapr chooses them, by
//! `Configuration.spec.nameResolution.component`; this crate parses that section
//! ([`NameResolution`]). It knows nothing about TLS, HTTP or policy.
//!
//! An [`EndpointSet`] also says which transports each endpoint's mesh port offers
//! ([`Transports`]): HTTP/2 over TLS on TCP always, and HTTP/3 over QUIC on UDP (same port
//! number) where the endpoint advertises it. An endpoint that advertises nothing, like a sidecar
//! that predates QUIC, is HTTP/2 only; callers try QUIC only towards [`EndpointSet::offers_h3`].
//!
//! Resolvers here: [`local`] (the default, a registry directory shared by the sidecars of one
//! user on one host), [`static_`] (a fixed list), [`mdns`] (multicast DNS on the local link,
//! like Dapr self-hosted) and [`dns`] (unicast DNS names, like Kubernetes services).

pub mod config;
pub mod dns;
pub mod local;
pub mod mdns;
pub mod static_;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::watch;

pub use config::{
    Balancing, ConfigError, DEFAULT_MESH_PORT, DnsConfig, MdnsConfig, NameResolution, Resolution,
    ResolverConfig, StaticActors, StaticMap,
};

/// Which app is being looked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The app id.
    pub app_id: String,
    /// Its namespace.
    pub namespace: String,
}

impl Target {
    /// A target in `namespace`.
    pub fn new(app_id: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            namespace: namespace.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.app_id, self.namespace)
    }
}

/// The transports a sidecar's mesh port offers: HTTP/2 over TLS on TCP always, and HTTP/3 over
/// QUIC on UDP (same port number) when `h3`.
///
/// Serialized as the list of names (`["h2", "h3"]`); read leniently: names it does not know are
/// skipped, a comma-separated string is read as a list, and anything else means h2 only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Transports {
    /// Whether the mesh port also accepts HTTP/3 over QUIC on UDP.
    pub h3: bool,
}

impl Transports {
    /// HTTP/2 only: what a peer that advertises nothing offers.
    pub const H2: Self = Self { h3: false };
    /// HTTP/2 over TCP and HTTP/3 over QUIC.
    pub const H2_H3: Self = Self { h3: true };

    /// Parses advertised names (`h2`, `h3`, surrounding spaces ignored). Names it does not know
    /// are skipped (a newer peer may offer more), so this never fails; h2 is always offered.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            h3: names.into_iter().any(|n| n.trim() == "h3"),
        }
    }

    /// Parses configured names (`h2`, `h3`, surrounding spaces ignored; h2 is always offered,
    /// so an empty list means h2 only). An unknown or empty name is an error that quotes it;
    /// the caller adds the field.
    pub fn parse_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Self::H2;
        for name in names {
            match name.trim() {
                "h2" => {}
                "h3" => out.h3 = true,
                "" => return Err("empty transport name; expected \"h2\" or \"h3\"".to_owned()),
                other => {
                    return Err(format!(
                        "unknown transport {other:?}; expected \"h2\" or \"h3\""
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The names as advertised: `["h2"]` or `["h2", "h3"]`.
    pub fn names(self) -> &'static [&'static str] {
        const H2: &[&str] = &["h2"];
        const H2_H3: &[&str] = &["h2", "h3"];
        if self.h3 { H2_H3 } else { H2 }
    }

    /// The names joined with commas: `h2` or `h2,h3` (the mDNS TXT value).
    pub fn as_str(self) -> &'static str {
        if self.h3 { "h2,h3" } else { "h2" }
    }
}

impl fmt::Display for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Transports {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for Transports {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Lenient on purpose: what a newer peer writes must not make its entry unreadable.
        Ok(match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Self::from_names(s.split(',')),
            serde_json::Value::Array(items) => {
                Self::from_names(items.iter().filter_map(serde_json::Value::as_str))
            }
            _ => Self::H2,
        })
    }
}

/// The addresses at which a target's sidecars accept mesh traffic, in a stable order, and which
/// of them also accept HTTP/3 over QUIC. Two sets that differ only in transports are different,
/// so a change of transports notifies watchers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSet {
    /// Mesh addresses, sorted and without duplicates.
    pub addrs: Vec<SocketAddr>,
    /// Those of `addrs` that also accept HTTP/3 over QUIC, sorted and without duplicates.
    pub h3: Vec<SocketAddr>,
}

impl EndpointSet {
    /// A set of the given addresses (sorted, deduplicated), all HTTP/2 only.
    pub fn new(mut addrs: Vec<SocketAddr>) -> Self {
        addrs.sort();
        addrs.dedup();
        Self {
            addrs,
            h3: Vec::new(),
        }
    }

    /// A set of the given endpoints (sorted, deduplicated). An address listed more than once
    /// offers HTTP/3 if any of its entries says so.
    pub fn with_transports(endpoints: Vec<(SocketAddr, Transports)>) -> Self {
        let mut h3: Vec<SocketAddr> = endpoints
            .iter()
            .filter(|(_, t)| t.h3)
            .map(|(a, _)| *a)
            .collect();
        h3.sort();
        h3.dedup();
        let mut set = Self::new(endpoints.into_iter().map(|(a, _)| a).collect());
        set.h3 = h3;
        set
    }

    /// Whether no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Whether `addr` also accepts HTTP/3 over QUIC (false for addresses not in the set).
    pub fn offers_h3(&self, addr: SocketAddr) -> bool {
        self.h3.binary_search(&addr).is_ok()
    }

    /// The transports `addr` offers: HTTP/2 only unless it is listed in `h3`.
    pub fn transports_of(&self, addr: SocketAddr) -> Transports {
        Transports {
            h3: self.offers_h3(addr),
        }
    }
}

/// A sidecar a resolver knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its app.
    pub target: Target,
    /// Its mesh address.
    pub address: SocketAddr,
    /// What its mesh port offers.
    pub transports: Transports,
    /// Its admin port (metrics, the dashboard), when it says.
    pub admin_port: Option<u16>,
}

/// A name resolver.
///
/// Contract: `resolve` never blocks and never fails; it returns a receiver whose value is the
/// current endpoint set of `target` (empty while none is known) and which is updated whenever
/// that set changes, for as long as the resolver lives. Calling it twice for one target may
/// return receivers of the same channel.
pub trait Resolve: Send + Sync + 'static {
    /// The live endpoint set of `target`.
    fn resolve(&self, target: &Target) -> watch::Receiver<Arc<EndpointSet>>;

    /// A short name for logs and the metadata API, e.g. `local`.
    fn name(&self) -> &'static str;

    /// How long a request for a target with no known endpoint waits for a first answer.
    fn patience(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// Why `target` has no endpoint, when the resolver can say more than that it found none:
    /// what it asked, where, and what to try instead.
    fn why_unresolved(&self, _target: &Target) -> Option<String> {
        None
    }

    /// The sidecars whose apps host `actor_type` in `namespace`, each with its mesh address,
    /// sorted: what actor placement hashes over. A resolver that does not carry actor types
    /// answers none.
    fn actor_hosts(&self, _namespace: &str, _actor_type: &str) -> Vec<(Target, SocketAddr)> {
        Vec::new()
    }

    /// Every sidecar the resolver knows of now, sorted, for the dashboard's mesh view. A
    /// resolver that looks names up one at a time (DNS) knows of none it was not asked for, and
    /// answers none.
    fn peers(&self) -> Vec<Peer> {
        Vec::new()
    }

    /// The targets that have an endpoint at `ip`, each with that endpoint, sorted: how a
    /// connection addressed to a host rather than to a name (intercepted TCP) finds the app
    /// running there. Only what the resolver already knows; a resolver that cannot tell (it
    /// looks names up one at a time) answers none.
    fn at_address(&self, _ip: IpAddr) -> Vec<(Target, SocketAddr)> {
        Vec::new()
    }
}

/// This sidecar's mesh address as `resolver` lists it for peers: the endpoint of its own app
/// `me` on `mesh_port` at an address of this host. `None` while the resolver lists no such
/// endpoint (a DNS answer not in yet, a static map without this sidecar).
pub fn own_address(resolver: &dyn Resolve, me: &Target, mesh_port: u16) -> Option<SocketAddr> {
    let set = resolver.resolve(me).borrow().clone();
    set.addrs
        .iter()
        .copied()
        .find(|a| a.port() == mesh_port && is_own_ip(a.ip()))
}

/// Whether `ip` is an address of this host that peers can be told: one a socket can bind to,
/// never the unspecified or a multicast address.
pub fn is_own_ip(ip: IpAddr) -> bool {
    !ip.is_unspecified()
        && !ip.is_multicast()
        && (ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())
}

/// The entries of `known` whose endpoint is at `ip`, sorted and without duplicates.
fn entries_at<'a>(
    known: impl Iterator<Item = (&'a Target, &'a SocketAddr)>,
    ip: IpAddr,
) -> Vec<(Target, SocketAddr)> {
    let mut found: Vec<(Target, SocketAddr)> = known
        .filter(|(_, a)| a.ip() == ip)
        .map(|(t, a)| (t.clone(), *a))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn advertised_names_are_read_leniently() {
        assert_eq!(Transports::from_names(std::iter::empty()), Transports::H2);
        assert_eq!(Transports::from_names(["h2"]), Transports::H2);
        assert_eq!(
            Transports::from_names("h2,h3".split(',')),
            Transports::H2_H3
        );
        assert_eq!(Transports::from_names(["h3", "h9", ""]), Transports::H2_H3);
        for t in [Transports::H2, Transports::H2_H3] {
            assert_eq!(Transports::from_names(t.names().iter().copied()), t);
            assert_eq!(Transports::from_names(t.as_str().split(',')), t);
        }
    }

    #[test]
    fn configured_names_are_checked() {
        assert_eq!(
            Transports::parse_names(["h2", " h3"]),
            Ok(Transports::H2_H3)
        );
        assert_eq!(
            Transports::parse_names(std::iter::empty()),
            Ok(Transports::H2)
        );
        let e = Transports::parse_names(["h2", "h4"]).unwrap_err();
        assert!(e.contains("\"h4\""), "{e}");
        assert!(Transports::parse_names("h2,".split(',')).is_err());
    }

    #[test]
    fn transports_serialize_as_a_list_of_names() {
        let json = serde_json::to_value(Transports::H2_H3).unwrap();
        assert_eq!(json, serde_json::json!(["h2", "h3"]));
        let read = |v: serde_json::Value| serde_json::from_value::<Transports>(v).unwrap();
        assert_eq!(read(json), Transports::H2_H3);
        assert_eq!(read(serde_json::json!("h2,h3")), Transports::H2_H3);
        assert_eq!(
            read(serde_json::json!(["h2", "quic-v9", 7])),
            Transports::H2
        );
        assert_eq!(read(serde_json::json!({"h3": true})), Transports::H2);
    }

    #[test]
    fn sets_know_which_endpoints_offer_h3() {
        let set = EndpointSet::with_transports(vec![
            (addr(3), Transports::H2),
            (addr(1), Transports::H2_H3),
            (addr(2), Transports::H2),
            (addr(3), Transports::H2_H3),
            (addr(1), Transports::H2),
        ]);
        assert_eq!(set.addrs, [addr(1), addr(2), addr(3)]);
        assert_eq!(set.h3, [addr(1), addr(3)]);
        assert!(set.offers_h3(addr(1)) && !set.offers_h3(addr(2)) && !set.offers_h3(addr(9)));
        assert_eq!(set.transports_of(addr(3)), Transports::H2_H3);
        assert_ne!(
            set,
            EndpointSet::new(set.addrs.clone()),
            "transports are part of the set"
        );
        assert!(EndpointSet::new(vec![addr(2), addr(2)]).h3.is_empty());
    }
}
