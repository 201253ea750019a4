//! The flags of daprd that `outrider run` takes under daprd's names, so that whatever launches
//! daprd (the dapr CLI, an injector, a script) can launch Outrider unchanged. Each one either
//! works, or is taken with a warning saying what Outrider does instead (`config::daprd` decides
//! which); none is silently dropped. Booleans take daprd's forms: `--flag`, `--flag=false`.

use std::path::PathBuf;

use clap::Args;

/// daprd's flags without an Outrider flag of the same meaning.
#[derive(Debug, Args)]
pub(crate) struct DaprdArgs {
    /// Addresses the Dapr HTTP and gRPC APIs listen on, comma-separated [default: 127.0.0.1].
    #[arg(long, env = "OUTRIDER_DAPR_LISTEN_ADDRESSES", value_delimiter = ',')]
    pub(crate) dapr_listen_addresses: Vec<String>,
    /// A port serving only `GET /v1.0/healthz`, `/v1.0/healthz/outbound` and `/v1.0/metadata`,
    /// for probes from outside the host (daprd's `PUT /v1.0/metadata/{key}` is not served
    /// there: nothing that changes state on a port other hosts reach).
    #[arg(long, env = "OUTRIDER_DAPR_PUBLIC_PORT")]
    pub(crate) dapr_public_port: Option<u16>,
    /// The address `--dapr-public-port` binds to [default: 0.0.0.0].
    #[arg(long, env = "OUTRIDER_DAPR_PUBLIC_LISTEN_ADDRESS")]
    pub(crate) dapr_public_listen_address: Option<String>,
    /// The address the mesh port binds to [default: 0.0.0.0].
    #[arg(long, env = "OUTRIDER_DAPR_INTERNAL_GRPC_LISTEN_ADDRESS")]
    pub(crate) dapr_internal_grpc_listen_address: Option<String>,
    /// Serve Prometheus metrics on the admin listener's /metrics.
    #[arg(long, env = "OUTRIDER_ENABLE_METRICS", default_value = "true", num_args = 0..=1,
        require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub(crate) enable_metrics: bool,
    /// Applies only to calls into the app: at most this many requests and deliveries in flight
    /// to it at once; -1 for no limit.
    #[arg(long, env = "OUTRIDER_APP_MAX_CONCURRENCY", default_value_t = -1, allow_negative_numbers = true)]
    pub(crate) app_max_concurrency: i64,
    /// Probe the app's health and stop deliveries and invocations while it fails.
    #[arg(long, env = "OUTRIDER_ENABLE_APP_HEALTH_CHECK", default_value = "false", num_args = 0..=1,
        require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub(crate) enable_app_health_check: bool,
    /// The path the HTTP health probe asks for (HTTP apps only).
    #[arg(
        long,
        env = "OUTRIDER_APP_HEALTH_CHECK_PATH",
        default_value = "/healthz"
    )]
    pub(crate) app_health_check_path: String,
    /// Seconds between health probes.
    #[arg(
        long,
        env = "OUTRIDER_APP_HEALTH_PROBE_INTERVAL",
        default_value_t = 5,
        allow_negative_numbers = true
    )]
    pub(crate) app_health_probe_interval: i64,
    /// Milliseconds a health probe may take.
    #[arg(
        long,
        env = "OUTRIDER_APP_HEALTH_PROBE_TIMEOUT",
        default_value_t = 500,
        allow_negative_numbers = true
    )]
    pub(crate) app_health_probe_timeout: i64,
    /// Consecutive failed probes that make the app unhealthy.
    #[arg(
        long,
        env = "OUTRIDER_APP_HEALTH_THRESHOLD",
        default_value_t = 3,
        allow_negative_numbers = true
    )]
    pub(crate) app_health_threshold: i64,
    /// Largest request body, in MB (daprd's older flag; `--max-body-size` wins when both are given).
    #[arg(
        long,
        env = "OUTRIDER_DAPR_HTTP_MAX_REQUEST_SIZE",
        allow_negative_numbers = true
    )]
    pub(crate) dapr_http_max_request_size: Option<i64>,
    /// daprd's read buffer, which also bounds request heads (e.g. 4Ki). Outrider reads heads of
    /// up to 64 KiB on every listener.
    #[arg(long, env = "OUTRIDER_READ_BUFFER_SIZE")]
    pub(crate) read_buffer_size: Option<String>,
    /// As `--read-buffer-size`, in KB (daprd's older flag).
    #[arg(
        long,
        env = "OUTRIDER_DAPR_HTTP_READ_BUFFER_SIZE",
        allow_negative_numbers = true
    )]
    pub(crate) dapr_http_read_buffer_size: Option<i64>,
    /// After SIGTERM, keep serving for up to this long (e.g. 30s) while the app still runs and,
    /// with health checks, is healthy; then the graceful shutdown starts.
    #[arg(long, env = "OUTRIDER_DAPR_BLOCK_SHUTDOWN_DURATION")]
    pub(crate) dapr_block_shutdown_duration: Option<String>,
    /// CORS: origins allowed to call the HTTP API from a browser, comma-separated, or `*` for
    /// any; without it no CORS headers are sent, as in daprd.
    #[arg(long, env = "OUTRIDER_ALLOWED_ORIGINS", default_value = "")]
    pub(crate) allowed_origins: String,
    /// Calls the sidecar skips at start: `subscribe` (`GET /dapr/subscribe`), `config`
    /// (`GET /dapr/config`, never made by Outrider).
    #[arg(long, env = "OUTRIDER_DISABLE_INIT_ENDPOINTS", value_delimiter = ',')]
    pub(crate) disable_init_endpoints: Vec<String>,
    /// Serve the APIs on Unix sockets in this directory (daprd's flag; not supported: warned).
    #[arg(long, env = "OUTRIDER_UNIX_DOMAIN_SOCKET")]
    pub(crate) unix_domain_socket: Option<PathBuf>,
    /// daprd's mutual TLS switch: Outrider's mesh is always mutual TLS.
    #[arg(long, env = "OUTRIDER_ENABLE_MTLS", num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_parser = go_bool)]
    pub(crate) enable_mtls: Option<bool>,
    /// The app serves TLS: as `--app-protocol https` (or `grpcs`).
    #[arg(long, env = "OUTRIDER_APP_SSL", default_value = "false", num_args = 0..=1,
        require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub(crate) app_ssl: bool,
    /// daprd's profiling server (not available: warned when enabled).
    #[arg(long, env = "OUTRIDER_ENABLE_PROFILING", default_value = "false", num_args = 0..=1,
        require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub(crate) enable_profiling: bool,
    /// Port of daprd's profiling server (unused).
    #[arg(long, env = "OUTRIDER_PROFILE_PORT", allow_negative_numbers = true)]
    pub(crate) profile_port: Option<i64>,
    /// Actor placement service (none is used: warned).
    #[arg(long, env = "OUTRIDER_PLACEMENT_HOST_ADDRESS")]
    pub(crate) placement_host_address: Option<String>,
    /// Scheduler service for jobs and reminders (none is used: warned).
    #[arg(long, env = "OUTRIDER_SCHEDULER_HOST_ADDRESS", value_delimiter = ',')]
    pub(crate) scheduler_host_address: Vec<String>,
    /// Scheduler streams (unused, like the scheduler).
    #[arg(long, env = "OUTRIDER_SCHEDULER_JOB_STREAMS")]
    pub(crate) scheduler_job_streams: Option<u32>,
    /// Actor dissemination timeout (unused, like placement).
    #[arg(long, env = "OUTRIDER_ACTORS_DISSEMINATE_TIMEOUT")]
    pub(crate) actors_disseminate_timeout: Option<String>,
    /// daprd's deprecated actors service flag (no effect there either).
    #[arg(long, env = "OUTRIDER_ACTORS_SERVICE", hide = true)]
    pub(crate) actors_service: Option<String>,
    /// daprd's deprecated reminders service flag (no effect there either).
    #[arg(long, env = "OUTRIDER_REMINDERS_SERVICE", hide = true)]
    pub(crate) reminders_service: Option<String>,
    /// daprd's timeout for asking the app which input bindings it serves (bindings are not
    /// served yet: warned).
    #[arg(long, env = "OUTRIDER_APP_BINDING_OPTIONS_TIMEOUT")]
    pub(crate) app_binding_options_timeout: Option<String>,
    /// daprd's hot-reload reconcile period (resources are read at start: warned).
    #[arg(long, env = "OUTRIDER_HOT_RELOAD_RECONCILE_INTERVAL")]
    pub(crate) hot_reload_reconcile_interval: Option<String>,
    /// daprd's control plane (Outrider has none: warned).
    #[arg(long, env = "OUTRIDER_CONTROL_PLANE_ADDRESS")]
    pub(crate) control_plane_address: Option<String>,
    /// The trust domain of the CA service; it must be the mesh's (`--trust-domain`).
    #[arg(long, env = "DAPR_CONTROLPLANE_TRUST_DOMAIN")]
    pub(crate) control_plane_trust_domain: Option<String>,
    /// Audiences of the token sent to daprd's CA (Outrider's CA takes join or Kubernetes
    /// tokens: warned).
    #[arg(
        long,
        env = "OUTRIDER_SENTRY_REQUEST_JWT_AUDIENCES",
        value_delimiter = ','
    )]
    pub(crate) sentry_request_jwt_audiences: Vec<String>,
    /// daprd's switch for its built-in `kubernetes` secret store (Outrider has none).
    #[arg(long, env = "OUTRIDER_DISABLE_BUILTIN_K8S_SECRET_STORE", default_value = "false",
        num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub(crate) disable_builtin_k8s_secret_store: bool,
    /// Wait until a sidecar on --dapr-http-port is ready for outbound calls, then exit 0
    /// (daprd's `--wait`); no sidecar is started.
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_parser = go_bool)]
    pub(crate) wait: bool,
}

/// A boolean as daprd reads one: `1 t T TRUE true True`, `0 f F FALSE false False`.
pub(crate) fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}
