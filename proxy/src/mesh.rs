//! Sidecars calling each other: the workload identity (`identity`), the outbound path from a
//! target app id to one of its sidecars (`outbound`), the inbound stack that serves the mesh
//! port (`inbound`), and the listeners for an unmodified app's redirected traffic
//! (`transparent`).

pub(crate) mod identity;
pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod transparent;

/// The header of a mesh `CONNECT` that names the port of the callee's app the tunnel is for.
pub(crate) const TUNNEL_PORT: http::HeaderName =
    http::HeaderName::from_static("outrider-tunnel-port");
