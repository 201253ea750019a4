//! Sockets and bytes: the serve loops with their connection caps and deadlines, the HTTP/1
//! framing guard, write coalescing for mesh connections, and the body and header hygiene every
//! hop applies, and the QUIC endpoints of HTTP/3 between sidecars.
//!
//! Nothing here knows a route, a Dapr API or a target app: the folders above (`api`, `mesh`,
//! `to_app`) hand their services to these loops.

pub(crate) mod coalesce;
pub(crate) mod detect;
pub(crate) mod guard;
pub(crate) mod h1;
pub(crate) mod http;
pub(crate) mod quic;
pub(crate) mod serve;
pub(crate) mod tcp;
