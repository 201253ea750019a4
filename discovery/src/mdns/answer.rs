//! Reading an mDNS answer: which sidecar it describes.

use std::net::{IpAddr, SocketAddr};

use mdns_sd::ResolvedService;

use super::{
    Instance, TXT_ACTORS, TXT_ADMIN_PORT, TXT_APP_ID, TXT_MESH_PORT, TXT_NAMESPACE, TXT_TRANSPORTS,
};
use crate::{Target, Transports};

/// The sidecar an answer describes: TXT `app-id` and `namespace`, the SRV port (or TXT
/// `mesh-port`), one address, IPv4 first (link-local IPv6 needs a scope the mesh client does not
/// carry), TXT `transports` (HTTP/2 only without it), TXT `actors` (none without it) and TXT
/// `admin-port` (none without it).
pub(super) fn endpoint_of(svc: &ResolvedService) -> Option<Instance> {
    let app_id = svc
        .get_property_val_str(TXT_APP_ID)
        .filter(|s| !s.is_empty())?;
    let namespace = svc
        .get_property_val_str(TXT_NAMESPACE)
        .filter(|s| !s.is_empty())?;
    let port = match svc.get_port() {
        0 => svc.get_property_val_str(TXT_MESH_PORT)?.parse().ok()?,
        p => p,
    };
    let ip = pick_address(svc.get_addresses().iter().map(|a| a.to_ip_addr()))?;
    let transports = svc
        .get_property_val_str(TXT_TRANSPORTS)
        .map_or(Transports::H2, |v| Transports::from_names(v.split(',')));
    let actors = svc
        .get_property_val_str(TXT_ACTORS)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let admin_port = svc
        .get_property_val_str(TXT_ADMIN_PORT)
        .and_then(|v| v.parse().ok())
        .filter(|p| *p != 0);
    Some(Instance {
        target: Target::new(app_id, namespace),
        addr: SocketAddr::new(ip, port),
        transports,
        actors,
        admin_port,
    })
}

pub(super) fn pick_address(addrs: impl Iterator<Item = IpAddr>) -> Option<IpAddr> {
    addrs
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_unspecified(),
            IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_unicast_link_local(),
        })
        .min_by_key(|ip| (ip.is_ipv6(), *ip))
}
