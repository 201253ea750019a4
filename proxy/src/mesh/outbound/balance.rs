//! The concrete stage's balancer for the mesh: `outrider_filters::balance`'s picker
//! (round-robin or p2c over peak-EWMA load, outlier ejection, the avoided endpoint) over the
//! target's pooled mutual-TLS HTTP/2 client. Every endpoint sends through a clone of that one
//! client, the request URI naming the address, so the pool holds a connection per address.
//!
//! Choosing endpoints is the picker's; making the client and recognising a failed connection
//! are `outbound`'s.

use hyper_util::client::legacy::Client;
pub(crate) use outrider_filters::balance::EndpointView;

use crate::net::http::Body;

/// A target's pooled client: HTTP/2 over mutual TLS, requests coalesced (see `coalesce`).
pub(crate) type MeshClient = Client<crate::net::coalesce::MeshConnector, Body>;

/// Picks endpoints of one target: `Balancer::new(balancing, endpoints, client)`, then
/// `pick(avoid)` per attempt.
pub(crate) type Balancer = outrider_filters::balance::Balancer<MeshClient>;
