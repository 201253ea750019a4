//! What daprd's flags decide. Each works as in daprd, or is accepted with a warning that says
//! what Outrider does instead, or — when honouring it would mean less protection than the user
//! asked for, or accepting it would hide that something is missing — is refused with the reason.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::HeaderValue;

use super::Problem;
use crate::cli::RunArgs;

/// The largest request head Outrider reads on any listener.
const MAX_HEAD: u64 = 64 * 1024;

/// `--enable-app-health-check` and its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppHealthCheck {
    /// The HTTP probe's path (with a leading `/`).
    pub(crate) path: String,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    /// Failed probes that make the app unhealthy.
    pub(crate) threshold: u32,
}

/// `--allowed-origins`: which browser origins get CORS headers on the HTTP API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum AllowedOrigins {
    /// No CORS headers (daprd's default, the empty value).
    #[default]
    None,
    /// Every origin (`*`).
    All,
    /// These origins.
    List(Vec<HeaderValue>),
}

/// What daprd's flags decide.
#[derive(Clone, Debug)]
pub(crate) struct FromDaprd {
    pub(crate) max_body_size: u64,
    pub(crate) app_health: Option<AppHealthCheck>,
    /// `--app-max-concurrency` when positive.
    pub(crate) app_max_concurrency: Option<usize>,
    pub(crate) allowed_origins: AllowedOrigins,
    /// `--disable-init-endpoints subscribe`: `GET /dapr/subscribe` is not asked.
    pub(crate) skip_subscribe: bool,
    /// `--disable-init-endpoints config`: `GET /dapr/config` is not asked (no actors hosted).
    pub(crate) skip_config: bool,
    /// `--dapr-block-shutdown-duration`.
    pub(crate) block_shutdown: Option<Duration>,
    pub(crate) enable_metrics: bool,
}

/// The addresses `--dapr-listen-addresses` names [default: 127.0.0.1]; `None` for a value that
/// is not an address (reported by [`check`]).
pub(crate) fn listen_addresses(args: &RunArgs) -> Vec<Option<IpAddr>> {
    let given = &args.daprd.dapr_listen_addresses;
    if given.iter().all(|a| a.trim().is_empty()) {
        return vec![Some(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    }
    given
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| ip(a))
        .collect()
}

/// An IP address as daprd's listen flags take one: a literal, `[v6]`, or `localhost`.
pub(crate) fn ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().ok()
}

/// `--dapr-public-port` at `--dapr-public-listen-address`.
pub(crate) fn public_address(args: &RunArgs) -> Option<SocketAddr> {
    let port = args.daprd.dapr_public_port?;
    let ip = match &args.daprd.dapr_public_listen_address {
        Some(a) if !a.trim().is_empty() => ip(a)?,
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Some(SocketAddr::new(ip, port))
}

/// Checks daprd's flags; errors go to `problems`, notes on what Outrider does instead to
/// `warnings`.
pub(super) fn check(
    args: &RunArgs,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> FromDaprd {
    let d = &args.daprd;
    let mut error = |at: &str, message: String| {
        problems.push(Problem {
            at: format!("--{at}"),
            message,
        })
    };
    addresses(args, &mut error);
    let max_body_size = body_size(args, &mut error);
    let app_health = app_health(args, &mut error);
    let allowed_origins = allowed_origins(&d.allowed_origins, &mut error);
    let (skip_subscribe, skip_config) = skipped_init(&d.disable_init_endpoints, &mut error);
    let block_shutdown = d.dapr_block_shutdown_duration.as_deref().and_then(|v| {
        let parsed = outrider_filters::duration::go_duration(v);
        if parsed.is_none() {
            error(
                "dapr-block-shutdown-duration",
                format!("{v:?} is not a duration like 30s or 1m"),
            );
        }
        parsed.filter(|d| !d.is_zero())
    });
    if args.daprd.wait && !args.command.is_empty() {
        error(
            "wait",
            "--wait only waits for a running sidecar; it starts no app".into(),
        );
    }
    warn_unserved(args, warnings);
    warn_different(args, warnings);
    FromDaprd {
        max_body_size,
        app_health,
        app_max_concurrency: usize::try_from(d.app_max_concurrency)
            .ok()
            .filter(|n| *n > 0),
        allowed_origins,
        skip_subscribe,
        skip_config,
        block_shutdown,
        enable_metrics: d.enable_metrics,
    }
}

/// The listen addresses must be IP addresses (or `localhost`).
fn addresses(args: &RunArgs, error: &mut impl FnMut(&str, String)) {
    let d = &args.daprd;
    for (a, given) in listen_addresses(args).iter().zip(&d.dapr_listen_addresses) {
        if a.is_none() {
            error(
                "dapr-listen-addresses",
                format!("{given:?} is not an IP address or localhost"),
            );
        }
    }
    for (flag, value) in [
        ("dapr-public-listen-address", &d.dapr_public_listen_address),
        (
            "dapr-internal-grpc-listen-address",
            &d.dapr_internal_grpc_listen_address,
        ),
    ] {
        if let Some(a) = value.as_deref().filter(|a| ip(a).is_none()) {
            error(flag, format!("{a:?} is not an IP address or localhost"));
        }
    }
}

/// `--disable-init-endpoints`: whether `subscribe`, and whether `config`, are among them.
fn skipped_init(endpoints: &[String], error: &mut impl FnMut(&str, String)) -> (bool, bool) {
    let mut skip = (false, false);
    for e in endpoints {
        match e.trim().to_ascii_lowercase().as_str() {
            "subscribe" => skip.0 = true,
            "config" => skip.1 = true,
            "" => {}
            _ => error(
                "disable-init-endpoints",
                format!("{e:?} is neither config nor subscribe"),
            ),
        }
    }
    skip
}

/// `--max-body-size`, else daprd's older `--dapr-http-max-request-size` (MB), else 4 MiB. No
/// limit at all is refused: one request could take all memory.
fn body_size(args: &RunArgs, error: &mut impl FnMut(&str, String)) -> u64 {
    match (args.max_body_size, args.daprd.dapr_http_max_request_size) {
        (Some(n), _) => n,
        (None, Some(mb)) if mb > 0 && mb <= 1 << 20 => (mb as u64) << 20,
        (None, Some(mb)) => {
            error(
                "dapr-http-max-request-size",
                format!(
                    "{mb} is not a size from 1 to 1048576 MB; an unlimited body would let one \
                     request take all memory"
                ),
            );
            4 << 20
        }
        (None, None) => 4 << 20,
    }
}

/// `--enable-app-health-check` and its settings, checked as daprd checks them: values of 0 or
/// less mean the default, and the timeout must be shorter than the interval.
fn app_health(args: &RunArgs, error: &mut impl FnMut(&str, String)) -> Option<AppHealthCheck> {
    let d = &args.daprd;
    if !d.enable_app_health_check {
        return None;
    }
    let or = |v: i64, default: u64| u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(default);
    let interval = Duration::from_secs(or(d.app_health_probe_interval, 5));
    let timeout = Duration::from_millis(or(d.app_health_probe_timeout, 500));
    let threshold = u32::try_from(or(d.app_health_threshold, 3)).unwrap_or(u32::MAX);
    if timeout >= interval {
        error(
            "app-health-probe-timeout",
            format!(
                "{} ms must be shorter than --app-health-probe-interval ({} s)",
                timeout.as_millis(),
                interval.as_secs()
            ),
        );
    }
    if args.app_port.is_none_or(|p| p == 0) {
        error(
            "enable-app-health-check",
            "needs --app-port: there is no app to probe".into(),
        );
    }
    let path = d.app_health_check_path.trim();
    let path = format!("/{}", path.trim_start_matches('/'));
    if path.parse::<http::uri::PathAndQuery>().is_err() {
        error(
            "app-health-check-path",
            format!("{:?} is not a URL path", d.app_health_check_path),
        );
    }
    Some(AppHealthCheck {
        path,
        interval,
        timeout,
        threshold,
    })
}

/// `--allowed-origins`: empty for none, `*` for all, else comma-separated origins.
fn allowed_origins(v: &str, error: &mut impl FnMut(&str, String)) -> AllowedOrigins {
    match v.trim() {
        "" => AllowedOrigins::None,
        "*" => AllowedOrigins::All,
        list => AllowedOrigins::List(
            list.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .filter_map(|o| {
                    let valid = o == "null"
                        || o.parse::<http::Uri>()
                            .is_ok_and(|u| u.scheme().is_some() && u.host().is_some());
                    if !valid {
                        error(
                            "allowed-origins",
                            format!("{o:?} is not an origin like https://app.example.com"),
                        );
                    }
                    HeaderValue::try_from(o).ok().filter(|_| valid)
                })
                .collect(),
        ),
    }
}

/// The flags of services and features Outrider does not have: taken, with a line saying so.
fn warn_unserved(args: &RunArgs, warnings: &mut Vec<Problem>) {
    let d = &args.daprd;
    let mut warn = |at: &str, message: &str| {
        warnings.push(Problem {
            at: format!("--{at}"),
            message: message.to_owned(),
        })
    };
    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    if given(&d.placement_host_address) || given(&d.actors_service) {
        warn(
            "placement-host-address",
            "no placement service is used: sidecars place actors through name resolution",
        );
    }
    if d.scheduler_host_address
        .iter()
        .any(|a| !a.trim().is_empty())
        || d.scheduler_job_streams.is_some()
        || given(&d.reminders_service)
    {
        warn(
            "scheduler-host-address",
            "no scheduler service is used: reminders and jobs live in the actor state store",
        );
    }
    if given(&d.actors_disseminate_timeout) {
        warn(
            "actors-disseminate-timeout",
            "there is no placement service to wait for; ignored",
        );
    }
    if given(&d.app_binding_options_timeout) {
        warn(
            "app-binding-options-timeout",
            "input bindings give the app 3 s (daprd's default) to answer their OPTIONS probe; the value is ignored",
        );
    }
    if given(&d.hot_reload_reconcile_interval) {
        warn(
            "hot-reload-reconcile-interval",
            "resources are read once at start (access policies are watched); ignored",
        );
    }
    if given(&d.control_plane_address) {
        warn(
            "control-plane-address",
            "Outrider has no control plane; ignored",
        );
    }
}

/// The flags of things Outrider does its own way: taken, with a line saying how.
fn warn_different(args: &RunArgs, warnings: &mut Vec<Problem>) {
    let d = &args.daprd;
    let mut warn = |at: &str, message: &str| {
        warnings.push(Problem {
            at: format!("--{at}"),
            message: message.to_owned(),
        })
    };
    if d.enable_mtls == Some(false) {
        warn(
            "enable-mtls",
            "sidecars always talk mutual TLS in Outrider; it stays on",
        );
    }
    if d.enable_profiling {
        warn(
            "enable-profiling",
            "there is no profiling server; use the admin listener's /metrics, or perf",
        );
    }
    if d.allowed_origins.trim() == "*" {
        warn(
            "allowed-origins",
            "\"*\": any web page open in a browser on this host may call the API (set \
             DAPR_API_TOKEN, or list the origins)",
        );
    }
    if let Some(dir) = &d.unix_domain_socket {
        warnings.push(Problem {
            at: "--unix-domain-socket".into(),
            message: format!(
                "{} : Unix sockets are not served yet; the APIs listen on TCP as \
                 --dapr-listen-addresses says",
                dir.display()
            ),
        });
    }
    if !d.sentry_request_jwt_audiences.is_empty() {
        warnings.push(Problem {
            at: "--sentry-request-jwt-audiences".into(),
            message: "the CA service takes join tokens or Kubernetes service-account tokens \
                      (its own --k8s-audience); ignored"
                .into(),
        });
    }
    if let Some(td) = d
        .control_plane_trust_domain
        .as_deref()
        .filter(|td| *td != args.trust_domain)
    {
        warnings.push(Problem {
            at: "--control-plane-trust-domain".into(),
            message: format!(
                "{td:?}: the CA service is expected in the mesh's trust domain, --trust-domain \
                 {:?}",
                args.trust_domain
            ),
        });
    }
    read_buffer(args, warnings);
}

/// `--read-buffer-size` / `--dapr-http-read-buffer-size`: Outrider reads heads of up to 64 KiB
/// whatever they say; a larger value is noted, since heads past 64 KiB are still refused.
fn read_buffer(args: &RunArgs, warnings: &mut Vec<Problem>) {
    let d = &args.daprd;
    let (at, bytes) = match (&d.read_buffer_size, d.dapr_http_read_buffer_size) {
        (Some(v), _) => ("read-buffer-size", crate::cli::parse_size(v).ok()),
        (None, Some(kb)) => (
            "dapr-http-read-buffer-size",
            u64::try_from(kb).ok().map(|kb| kb << 10),
        ),
        (None, None) => return,
    };
    match bytes {
        Some(b) if b <= MAX_HEAD => {}
        _ => warnings.push(Problem {
            at: format!("--{at}"),
            message: "request heads of up to 64 KiB are read on every listener; larger ones \
                      are still refused"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests;
