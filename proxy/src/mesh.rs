//! Sidecars calling each other: the workload identity (`identity`), the outbound path from a
//! target app id to one of its sidecars (`outbound`), the inbound stack that serves the mesh
//! port (`inbound`), where actors live (`placement`), and the listeners for an unmodified app's redirected traffic
//! (`transparent`).

pub(crate) mod identity;
pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod placement;
pub(crate) mod transparent;

/// The header of a mesh `CONNECT` that names the port of the callee's app the tunnel is for.
pub(crate) const TUNNEL_PORT: http::HeaderName =
    http::HeaderName::from_static("outrider-tunnel-port");

/// Marks a mesh request as an actor call between sidecars, saying why it came here: `owner` (the
/// caller's placement names this sidecar) or `holder` (this sidecar holds the actor's claim).
/// Invocations never carry it: the outbound path strips it from what apps send.
pub(crate) const ACTOR_HOP: http::HeaderName = http::HeaderName::from_static("outrider-actor-hop");
