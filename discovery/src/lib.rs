//! Name resolution: from a target app id and namespace to the live set of its sidecars' mesh
//! addresses.
//!
//! A [`Resolve`] hands out a [`watch::Receiver`] per target that always holds the current
//! [`EndpointSet`] (possibly empty) and changes as instances come and go; the proxy's balancer
//! reads it on every request. Resolvers are chosen the way Dapr chooses them, by
//! `Configuration.spec.nameResolution.component`; this crate parses that section
//! ([`NameResolution`]). It knows nothing about TLS, HTTP or policy.
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

use tokio::sync::watch;

pub use config::{
    Balancing, ConfigError, DEFAULT_MESH_PORT, DnsConfig, MdnsConfig, NameResolution, Resolution,
    ResolverConfig,
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

/// The addresses at which a target's sidecars accept mesh traffic, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSet {
    /// Mesh addresses, sorted and without duplicates.
    pub addrs: Vec<SocketAddr>,
}

impl EndpointSet {
    /// A set of the given addresses (sorted, deduplicated).
    pub fn new(mut addrs: Vec<SocketAddr>) -> Self {
        addrs.sort();
        addrs.dedup();
        Self { addrs }
    }

    /// Whether no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
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

    /// The targets that have an endpoint at `ip`, each with that endpoint, sorted: how a
    /// connection addressed to a host rather than to a name (intercepted TCP) finds the app
    /// running there. Only what the resolver already knows; a resolver that cannot tell (it
    /// looks names up one at a time) answers none.
    fn at_address(&self, _ip: IpAddr) -> Vec<(Target, SocketAddr)> {
        Vec::new()
    }
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
