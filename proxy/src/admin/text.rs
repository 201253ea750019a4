//! The plain-text status at `/status.txt`: the identity, the certificate, the resolver and
//! what it sees of every target called so far, for a terminal or a script.

use super::Admin;
use crate::mesh::outbound::Outbound;

pub(super) fn status(admin: &Admin) -> String {
    let info = admin.creds.info();
    let left = info
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let outbound = &admin.api.outbound;
    format!(
        "outrider {}\nidentity: {}\nready: {}\ncertificate: serial {} generation {}, expires in {}s, \
         trust bundle of {} roots{}\nname resolution: {}, balancing: {}, mesh transport: {}\n{}",
        crate::api::VERSION_STR,
        admin.creds.id(),
        admin.health.ready(),
        info.serial,
        info.generation,
        left.as_secs(),
        admin.creds.trust_roots(),
        match admin.creds.files_status() {
            None => String::new(),
            Some(Ok(())) => "; files in force".to_owned(),
            Some(Err(e)) => format!("; files refused, the last good ones stay: {e}"),
        },
        outbound.resolver_name(),
        outbound.balancing(),
        outbound.transport(),
        targets(outbound),
    ) + &admin
        .interception
        .as_ref()
        .map(|l| format!("{l}\n"))
        .unwrap_or_default()
}

/// One line per target called so far, then one per endpoint with its state.
fn targets(outbound: &Outbound) -> String {
    let mut out = String::new();
    for t in outbound.targets() {
        out += &format!(
            "target {}.{}: {} endpoint(s)\n",
            t.app_id,
            t.namespace,
            t.endpoints.len()
        );
        for e in t.endpoints {
            out += &format!(
                "  {} {} {}\n",
                e.balancer.address, e.balancer.state, e.transport
            );
        }
    }
    out
}
