//! The concrete stage's balancer for the mesh: `outrider_filters::balance`'s picker
//! (round-robin or p2c over peak-EWMA load, outlier ejection, the avoided endpoint) over the
//! target's [`MeshClient`] (HTTP/2 or HTTP/3 per endpoint). Every endpoint sends through a clone
//! of that one client, the request URI naming the address, so the pools hold a connection per
//! address.
//!
//! Choosing endpoints is the picker's; making the client and recognising a failed connection
//! are `outbound`'s.

pub(crate) use outrider_filters::balance::EndpointView;

pub(crate) use super::transport::MeshClient;

/// Picks endpoints of one target: `Balancer::new(balancing, endpoints, client)`, then
/// `pick(avoid)` per attempt.
pub(crate) type Balancer = outrider_filters::balance::Balancer<MeshClient>;
