//! The admin listener (default 0.0.0.0:9090). To every client: `/metrics` in Prometheus text
//! format, `/healthz` (the process is alive) and `/ready` (ready for traffic). To loopback
//! clients only, unless `--admin-status-remote` opens them: the dashboard at `/` (a page and its
//! assets compiled into the binary, fed by `/api/*` and a server-sent event stream) and the
//! plain-text status at `/status.txt`, which name the identity, the certificate and every
//! peer's address.
//!
//! Read-only: every route answers `GET` and `HEAD` only, anything else gets 405 (security rule
//! 4), and nothing shown is a secret, a token or a header value. A page on another site cannot
//! read the dashboard through DNS rebinding: its routes answer only requests whose `Host` is an
//! address or `localhost`, and the page's content security policy lets it load and call nothing
//! but its own origin.

mod assets;
mod events;
pub(crate) mod history;
mod overview;
mod text;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use outrider_certs::Credentials;
use outrider_filters::authz::Denials;

use crate::api::{ApiState, Health};
use crate::net::http::{Body, full};
pub(crate) use history::History;

/// What the admin pages show.
pub(crate) struct Admin {
    pub(crate) metrics: PrometheusHandle,
    pub(crate) health: Arc<Health>,
    pub(crate) creds: Credentials,
    pub(crate) api: Arc<ApiState>,
    pub(crate) denials: Arc<Denials>,
    pub(crate) history: Arc<History>,
    /// Serve the dashboard and status to clients that are not on loopback.
    pub(crate) status_remote: bool,
    /// `/metrics` is served (`--enable-metrics`).
    pub(crate) metrics_enabled: bool,
    /// With `--intercept`: its line of the status page.
    pub(crate) interception: Option<String>,
    /// What the mesh port offers: `h2`, and `h3` when its UDP socket is bound.
    pub(crate) offers: Vec<&'static str>,
    /// This sidecar's mesh port: the mesh view leaves this sidecar out.
    pub(crate) mesh_port: u16,
    pub(crate) started: (Instant, SystemTime),
    /// Event streams open at most; one more is refused with 503.
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the admin listener stops: the event streams end.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// The overview of the latest reading, built once for all the streams that send it.
    pub(crate) overview: std::sync::Mutex<Option<(u64, Arc<str>)>>,
}

/// Dashboard event streams open at once at most (the listener's connection cap is 32).
pub(crate) const MAX_STREAMS: usize = 8;

pub(crate) async fn handle(
    admin: Arc<Admin>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut rsp = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "the admin port is read-only: GET and HEAD only\n",
        );
        rsp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(rsp);
    }
    let path = req.uri().path();
    match path {
        "/metrics" if admin.metrics_enabled => {
            return Ok(typed(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                admin.metrics.render(),
            ));
        }
        "/healthz" => return Ok(plain(StatusCode::OK, "ok\n")),
        "/ready" if admin.health.ready() => return Ok(plain(StatusCode::OK, "ready\n")),
        "/ready" => return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")),
        _ => {}
    }
    let local = peer.ip().to_canonical().is_loopback();
    if !local && !admin.status_remote {
        return Ok(plain(
            StatusCode::FORBIDDEN,
            "the dashboard and status answer loopback clients only (see --admin-status-remote)\n",
        ));
    }
    let authority = req.uri().authority().map(|a| a.as_str());
    // A `Host` that is not text reads as empty, which no rule allows.
    let host = (req.headers().get(header::HOST)).map(|h| h.to_str().unwrap_or(""));
    if !host_allowed(host.or(authority)) {
        return Ok(plain(
            StatusCode::FORBIDDEN,
            "the dashboard answers requests to an address or localhost only\n",
        ));
    }
    Ok(match path {
        "/status.txt" => plain(StatusCode::OK, text::status(&admin)),
        "/api/overview" => assets::json(&overview::build(&admin)),
        "/api/history" => assets::json(&admin.history.all()),
        "/api/events" => events::stream(&admin),
        _ => assets::serve(path).unwrap_or_else(|| plain(StatusCode::NOT_FOUND, "not found\n")),
    })
}

/// Until `stop`: the exporter's upkeep every 5 s, and a reading of the metrics for the history
/// every [`history::EVERY`].
pub(crate) async fn keep_up(
    metrics: PrometheusHandle,
    history: Arc<History>,
    stop: tokio_util::sync::CancellationToken,
) {
    use tokio::time::MissedTickBehavior::Delay;
    let mut upkeep = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut reading = tokio::time::interval(history::EVERY);
    // After a stall, one reading, not a burst of them microseconds apart.
    upkeep.set_missed_tick_behavior(Delay);
    reading.set_missed_tick_behavior(Delay);
    loop {
        tokio::select! {
            _ = upkeep.tick() => metrics.run_upkeep(),
            _ = reading.tick() => {
                let text = metrics.render();
                history.record(&text, Instant::now(), SystemTime::now());
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Whether a request's `Host` (or HTTP/2 `:authority`) names this machine by an address or
/// `localhost`, or is absent (HTTP/1.0 tools): a name a rebinding attack controls is refused, and
/// so is a `Host` that is not text.
fn host_allowed(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) if after.is_empty() || after.starts_with(':') => v6,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    typed(status, "text/plain; charset=utf-8", body.into())
}

fn typed(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut rsp = Response::new(full(body));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    rsp
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts_that_name_this_machine_by_address_or_localhost() {
        for ok in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "[::1]",
            "10.0.0.7:9091",
        ] {
            assert!(host_allowed(Some(ok)), "{ok}");
        }
        assert!(host_allowed(None));
        assert!(!host_allowed(Some("")), "a Host that is not text");
        for bad in [
            "evil.example:9090",
            "evil.example",
            "localhost.evil.example",
            "[::1]x",
            "127.0.0.1.nip.io:9090",
        ] {
            assert!(!host_allowed(Some(bad)), "{bad}");
        }
    }
}
