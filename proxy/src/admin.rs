//! The admin listener (default 0.0.0.0:9090): `/metrics` in Prometheus text format, `/healthz`
//! (the process is alive), `/ready` (ready for traffic) and a plain-text status page at `/`.
//! Read-only: nothing here changes the sidecar (security rule 4). The status page names the
//! identity, the certificate and every peer's address, so it answers loopback clients only
//! unless `--admin-status-remote` opens it; scraping and health checks work from anywhere.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_certs::Credentials;

use crate::api::Health;
use crate::mesh::outbound::Outbound;
use crate::net::http::{Body, full};

/// What the admin pages show.
pub(crate) struct Admin {
    pub(crate) metrics: PrometheusHandle,
    pub(crate) health: Arc<Health>,
    pub(crate) creds: Credentials,
    pub(crate) outbound: Arc<Outbound>,
    /// Serve the status page to clients that are not on loopback.
    pub(crate) status_remote: bool,
    /// `/metrics` is served (`--enable-metrics`).
    pub(crate) metrics_enabled: bool,
    /// With `--intercept`: its line of the status page.
    pub(crate) interception: Option<String>,
}

pub(crate) async fn handle(
    admin: Arc<Admin>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let local = peer.ip().to_canonical().is_loopback();
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" if admin.metrics_enabled => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            admin.metrics.render(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/ready" if admin.health.ready() => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".to_owned(),
        ),
        "/" if local || admin.status_remote => (StatusCode::OK, "text/plain", status_page(&admin)),
        "/" => (
            StatusCode::FORBIDDEN,
            "text/plain",
            "the status page answers loopback clients only (see --admin-status-remote)\n"
                .to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut rsp = Response::new(full(body));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(rsp)
}

fn status_page(admin: &Admin) -> String {
    let info = admin.creds.info();
    let left = info
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
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
        admin.outbound.resolver_name(),
        admin.outbound.balancing(),
        admin.outbound.transport(),
        targets(&admin.outbound),
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
