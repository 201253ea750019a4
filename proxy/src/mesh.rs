//! Sidecars calling each other: the workload identity (`identity`), the outbound path from a
//! target app id to one of its sidecars (`outbound`), and the inbound stack that serves the mesh
//! port (`inbound`).

pub(crate) mod identity;
pub(crate) mod inbound;
pub(crate) mod outbound;
